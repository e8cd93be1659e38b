"""The known answer of a synthetic dataset, for benchmarks: each film's true evidence mask and marker state.

Written by the EGD-CXR and REFLACX writers with ``evidence=True`` (CLI ``--evidence``) into their layout
folder (``OUT/EGD/`` or ``OUT/REFLACX/``), beside the files the real datasets have:

- ``synthetic_evidence/<dicom_id>.png``: the film's evidence region (`gazecxr.data.synthetic.phantom.
  evidence_mask`: the consolidation disc of a pneumonia film, the perihilar zones of a CHF film, within
  the lungs; empty for a normal film), 8-bit 0/255, the film's own size (original pixels);
- ``synthetic_shortcut.csv``: ``dicom_id,marker_state,label`` per film, the marker state of
  `gazecxr.data.synthetic.shortcut` (0 when the dataset has no shortcut) and the phantom's class index
  (Normal 0, CHF 1, pneumonia 2; REFLACX's own tables carry no such class).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

EVIDENCE_DIR = "synthetic_evidence"
SHORTCUT_TABLE = "synthetic_shortcut.csv"
SHORTCUT_COLUMNS = ("dicom_id", "marker_state", "label")
_LAYOUTS = ("EGD", "REFLACX")


class EvidenceWriter:
    """Writes the evidence sidecar of one layout folder: a mask PNG per `add`, the table on `finish`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        (self.folder / EVIDENCE_DIR).mkdir(parents=True)
        self.rows: list[tuple[str, int, int]] = []

    def add(self, dicom_id: str, mask: np.ndarray, marker_state: int, label: int) -> None:
        """Record one film: its evidence ``mask`` (bool, H x W), marker state and class index."""
        Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).save(self.folder / EVIDENCE_DIR / f"{dicom_id}.png",
                                                                     compress_level=1)
        self.rows.append((dicom_id, int(marker_state), int(label)))

    def finish(self) -> None:
        """Write `SHORTCUT_TABLE` (films in the order added)."""
        pd.DataFrame(self.rows, columns=list(SHORTCUT_COLUMNS)).to_csv(self.folder / SHORTCUT_TABLE, index=False)


def evidence_folder(raw_dir: str | Path) -> Path:
    """The folder holding `SHORTCUT_TABLE`: ``raw_dir`` itself (a layout folder, EGD/ or REFLACX/) or its one
    layout subfolder that has it (a dataset root)."""
    raw_dir = Path(raw_dir)
    if (raw_dir / SHORTCUT_TABLE).is_file():
        return raw_dir
    found = [raw_dir / name for name in _LAYOUTS if (raw_dir / name / SHORTCUT_TABLE).is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{raw_dir}: several layouts hold {SHORTCUT_TABLE} ({[p.name for p in found]}); "
                         f"name one of them")
    raise FileNotFoundError(f"{raw_dir / SHORTCUT_TABLE} not found (nor in {'/ or '.join(_LAYOUTS)}/): the dataset "
                            f"was written without its evidence sidecar (gazecxr synthetic --evidence)")


def read_synthetic_evidence(raw_dir: str | Path, dicom_ids: Iterable[str]) -> dict[str, tuple[np.ndarray, int]]:
    """Each of ``dicom_ids``' (true evidence mask, marker state) from a dataset written with ``evidence=True``.

    ``raw_dir`` is the layout folder (``OUT/EGD`` or ``OUT/REFLACX``) or the dataset root ``OUT``. Masks are
    boolean (H, W) arrays in the film's original pixels. An id the sidecar lacks is a LookupError naming it.
    """
    folder = evidence_folder(raw_dir)
    table_path = folder / SHORTCUT_TABLE
    table = pd.read_csv(table_path, dtype={"dicom_id": str}, keep_default_na=False)
    missing_columns = [c for c in SHORTCUT_COLUMNS if c not in table.columns]
    if missing_columns:
        raise ValueError(f"{table_path}: missing column(s) {missing_columns}; expected {list(SHORTCUT_COLUMNS)}")
    states = dict(zip(table["dicom_id"], table["marker_state"].astype(int)))
    out: dict[str, tuple[np.ndarray, int]] = {}
    for dicom_id in dicom_ids:
        if dicom_id not in states:
            raise LookupError(f"{table_path}: no film {dicom_id!r}")
        mask_path = folder / EVIDENCE_DIR / f"{dicom_id}.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{mask_path}: evidence mask of {dicom_id!r} not found")
        out[dicom_id] = (np.asarray(Image.open(mask_path)) > 127, states[dicom_id])
    return out
