"""The raw EGD-CXR 1.0.0 layout (PhysioNet): exact CSV headers, file names, and the readers of
its master sheet and gaze tables."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from gazecxr.data.tables import GazePoints, TableFormatError, check_columns

MASTER_SHEET = "master_sheet.csv"
EYE_GAZE = "eye_gaze.csv"
FIXATIONS = "fixations.csv"
BOUNDING_BOXES = "bounding_boxes.csv"
SEGMENTATION_DIR = "audio_segmentation_transcripts"

MASTER_SHEET_COLUMNS: tuple[str, ...] = (
    "dicom_id", "path", "study_id", "patient_id", "stay_id", "gender", "anchor_age",
    "image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad",
    "dx1", "dx1_icd", "dx2", "dx2_icd", "dx3", "dx3_icd", "dx4", "dx4_icd", "dx5", "dx5_icd",
    "dx6", "dx6_icd", "dx7", "dx7_icd", "dx8", "dx8_icd", "dx9", "dx9_icd",
    "normal_reports", "Normal", "CHF", "pneumonia",
    "consolidation", "enlarged_cardiac_silhouette", "linear__patchy_atelectasis",
    "lobar__segmental_collapse",
    "not_otherwise_specified_opacity___pleural__parenchymal_opacity__",
    "pleural_effusion_or_thickening", "pulmonary_edema__hazy_opacity", "normal_anatomically",
    "elevated_hemidiaphragm", "hyperaeration", "vascular_redistribution",
    "atelectasis__chx", "cardiomegaly__chx", "consolidation__chx", "edema__chx",
    "enlarged_cardiomediastinum__chx", "fracture__chx", "lung_lesion__chx", "lung_opacity__chx",
    "no_finding__chx", "pleural_effusion__chx", "pleural_other__chx", "pneumonia__chx",
    "pneumothorax__chx", "support_devices__chx", "cxr_exam_indication",
)

GAZE_COLUMNS: tuple[str, ...] = (
    "SESSION_ID", "MEDIA_ID", "DICOM_ID", "CNT", "Time (in secs)", "TIMETICK(f=10000000)",
    "FPOGX", "FPOGY", "FPOGS", "FPOGD", "FPOGID", "FPOGV", "BPOGX", "BPOGY", "BPOGV",
    "LPCX", "LPCY", "LPD", "LPS", "LPV", "RPCX", "RPCY", "RPD", "RPS", "RPV",
    "BKID", "BKDUR", "BKPMIN", "LPMM", "LPMMV", "RPMM", "RPMMV",
    "SACCADE_MAG", "SACCADE_DIR", "VID_FRAME", "X_ORIGINAL", "Y_ORIGINAL",
)
"""Shared header of ``eye_gaze.csv`` (raw 60 Hz samples) and ``fixations.csv``."""

BOUNDING_BOX_COLUMNS: tuple[str, ...] = ("dicom_id", "bbox_name", "x1", "x2", "y1", "y2")

LABEL_COLUMNS: tuple[str, ...] = ("Normal", "CHF", "pneumonia")
"""Master-sheet columns holding the one-hot class; same order as ``gazecxr.CLASS_NAMES``."""

MASK_FILES: dict[str, tuple[str, ...]] = {
    "left_lung": ("left_lung.png",),
    "right_lung": ("right_lung.png",),
    "mediastinum": ("mediastinum.png", "mediastanum.png"),
    "aortic_knob": ("aortic_knob.png",),
}
"""Anatomical masks per image; the first name is what we write, later names are accepted
spellings (the released EGD-CXR files spell the mediastinum mask ``mediastanum.png``)."""

SCREEN_SIZE: tuple[int, int] = (1920, 1080)
"""Gazepoint screen (width, height) in pixels; FPOGX/FPOGY are fractions of it."""

MASTER_REQUIRED: tuple[str, ...] = ("dicom_id", "path", "study_id", "patient_id", *LABEL_COLUMNS)
GAZE_SOURCES = {"raw": EYE_GAZE, "fixations": FIXATIONS}


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


def match_truncated(ids: Collection[str], wanted: Collection[str]) -> dict[str, tuple[str | None, str]]:
    """For table ids that are not wanted but shorter than every wanted id (``DICOM_ID``s with their last
    characters cut off, a known quirk of the EGD-CXR gaze tables): the unique wanted id each is a prefix
    of, or None with why ("ambiguous": several; "unmatched": none). Full-length ids (calibration screens)
    are not considered."""
    if not wanted:
        return {}
    shortest = min(len(w) for w in wanted)
    out: dict[str, tuple[str | None, str]] = {}
    for prefix in ids:
        if len(prefix) >= shortest or not prefix:
            continue
        hits = [w for w in wanted if w.startswith(prefix)]
        out[prefix] = (hits[0], "matched") if len(hits) == 1 else (None, "ambiguous" if hits else "unmatched")
    return out


def stream_gaze(
    egd_dir: str | Path,
    dicom_ids: Collection[str],
    source: str = "raw",
    chunksize: int = 250_000,
    truncated: dict[str, dict[str, object]] | None = None,
) -> dict[str, GazePoints]:
    """Gaze points per wanted ``dicom_id``, read in chunks (bounded memory).

    ``source="raw"`` reads ``eye_gaze.csv`` (every 60 Hz sample, weight 1);
    ``"fixations"`` reads ``fixations.csv`` weighted by the fixation duration ``FPOGD``.
    Rows of other images (calibration screens) are ignored; rows with missing coordinates
    are dropped. Coordinates are returned as they are, including off-image ones. Rows whose
    ``DICOM_ID`` is truncated (:func:`match_truncated`) count for the unique id it is a prefix of;
    ambiguous and unmatched prefixes are dropped. ``truncated``, when given, receives per prefix
    ``{"dicom_id": match or None, "status": ..., "rows": n}``.
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
        known = chunk["DICOM_ID"].isin(wanted)
        if not known.all():
            counts = chunk.loc[~known, "DICOM_ID"].value_counts()
            matches = match_truncated(counts.index.tolist(), wanted)
            for prefix, (match, status) in matches.items():
                entry = (truncated if truncated is not None else {}).setdefault(
                    prefix, {"dicom_id": match, "status": status, "rows": 0})
                entry["rows"] = int(entry["rows"]) + int(counts[prefix])
            mapping = {p: m for p, (m, _) in matches.items() if m is not None}
            if mapping:
                chunk = chunk.assign(DICOM_ID=chunk["DICOM_ID"].replace(mapping))
                known = chunk["DICOM_ID"].isin(wanted)
        chunk = chunk[known]
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
