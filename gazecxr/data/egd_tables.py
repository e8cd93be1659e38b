"""Reading the EGD-CXR tables: master sheet, and gaze samples streamed in chunks."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gazecxr.egd_format import EYE_GAZE, FIXATIONS, LABEL_COLUMNS, MASTER_SHEET

MASTER_REQUIRED: tuple[str, ...] = ("dicom_id", "path", "study_id", "patient_id", *LABEL_COLUMNS)
GAZE_SOURCES = {"raw": EYE_GAZE, "fixations": FIXATIONS}


class TableFormatError(ValueError):
    """A CSV that does not have the EGD-CXR layout; the message names the file and column."""


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


def read_master_sheet(egd_dir: str | Path) -> pd.DataFrame:
    """The master sheet with ``label`` added (class index, or -1 unless exactly one class is 1).

    Identifiers are read as strings; every other column is kept as parsed by pandas
    (quoted fields with commas and newlines included).
    """
    path = Path(egd_dir) / MASTER_SHEET
    if not path.is_file():
        raise TableFormatError(f"{path}: master sheet not found (is --egd-dir the EGD-CXR folder?)")
    check_columns(path, MASTER_REQUIRED)
    frame = pd.read_csv(path, dtype={"dicom_id": str, "path": str, "study_id": str, "patient_id": str})
    onehot = frame[list(LABEL_COLUMNS)].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy()
    exactly_one = (onehot == 1).sum(axis=1) == 1
    frame["label"] = np.where(exactly_one, onehot.argmax(axis=1), -1).astype(int)
    return frame


def stream_gaze(
    egd_dir: str | Path,
    dicom_ids: Collection[str],
    source: str = "raw",
    chunksize: int = 250_000,
) -> dict[str, GazePoints]:
    """Gaze points per wanted ``dicom_id``, read in chunks (bounded memory).

    ``source="raw"`` reads ``eye_gaze.csv`` (every 60 Hz sample, weight 1);
    ``"fixations"`` reads ``fixations.csv`` weighted by the fixation duration ``FPOGD``.
    Rows of other images (calibration screens) are ignored; rows with missing coordinates
    are dropped. Coordinates are returned as they are, including off-image ones.
    """
    if source not in GAZE_SOURCES:
        raise ValueError(f"gaze source must be one of {sorted(GAZE_SOURCES)}, got {source!r}")
    path = Path(egd_dir) / GAZE_SOURCES[source]
    if not path.is_file():
        raise TableFormatError(f"{path}: gaze table not found")
    columns = ["DICOM_ID", "X_ORIGINAL", "Y_ORIGINAL"] + (["FPOGD"] if source == "fixations" else [])
    check_columns(path, columns)
    wanted = set(dicom_ids)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    reader = pd.read_csv(path, usecols=columns, chunksize=chunksize, dtype={"DICOM_ID": str})
    for chunk in reader:
        chunk = chunk[chunk["DICOM_ID"].isin(wanted)]
        values = [pd.to_numeric(chunk[name], errors="coerce").to_numpy(np.float64) for name in columns[1:]]
        valid = np.isfinite(np.stack(values)).all(axis=0)
        x, y = (np.round(v[valid]).astype(np.int32) for v in values[:2])
        w = values[2][valid] if source == "fixations" else np.ones(int(valid.sum()), np.float32)
        for dicom_id, rows in chunk["DICOM_ID"][valid].groupby(chunk["DICOM_ID"][valid], sort=False).indices.items():
            parts.setdefault(dicom_id, []).append((x[rows], y[rows], w[rows]))
    points = {
        dicom_id: GazePoints(*(np.concatenate(column) for column in zip(*pieces)))
        for dicom_id, pieces in parts.items()
    }
    return points
