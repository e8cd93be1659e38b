"""Reading raw CSV tables: header checks with clear errors, and gaze points of one image."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gazecxr.config.errors import InputError


class TableFormatError(InputError):
    """A CSV that does not have the expected layout; the message names the file and column."""


@dataclass(frozen=True)
class GazePoints:
    """Gaze samples of one image: original-pixel column ``x``, row ``y`` and ``weight``."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def check_columns(path: Path, required: Collection[str]) -> None:
    """Raise ``TableFormatError`` naming the file and the first missing column."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise TableFormatError(f"{path}: cannot read the CSV header ({err})") from err
    missing = [c for c in required if c not in header]
    if missing:
        raise TableFormatError(
            f"{path}: missing column {missing[0]!r}"
            + (f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else "")
            + f"; found columns {list(header)[:8]}{'…' if len(header) > 8 else ''}"
        )
