"""Whether data are synthetic phantoms, carried from the generator through the HDF5 file to reports.

``gazecxr.data.synthetic`` writes `SYNTHETIC_MARKER` into every dataset folder it makes; the converter
records its presence as the HDF5 root attribute ``synthetic``; reports, tables and the app read it
and put `SYNTHETIC_NOTICE` at their top.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py

SYNTHETIC_MARKER = "SYNTHETIC.txt"
"""File at the root of a raw dataset folder written by ``gazecxr.data.synthetic``."""

SYNTHETIC_MARKER_TEXT = ("Synthetic chest-film phantoms with simulated gaze, written by gazecxr.data.synthetic. "
                         "Not patient data; results on them are not comparable to the paper's numbers.\n")

SYNTHETIC_NOTICE = "synthetic phantoms — not comparable to the paper's numbers"
"""The line every report, table or app view made from synthetic data shows at its top."""


def is_synthetic_source(folder: str | Path) -> bool:
    """Whether a raw dataset folder was written by ``gazecxr.data.synthetic`` (it holds `SYNTHETIC_MARKER`)."""
    return (Path(folder) / SYNTHETIC_MARKER).is_file()


def is_synthetic_attrs(attrs: Mapping[str, Any]) -> bool:
    """Whether HDF5 root attributes mark a converted file as synthetic (absent: not synthetic)."""
    return bool(attrs.get("synthetic", False))


def is_synthetic_h5(path: str | Path) -> bool:
    """Whether the converted HDF5 file at ``path`` holds synthetic phantoms."""
    with h5py.File(path, "r") as f:
        return is_synthetic_attrs(f.attrs)
