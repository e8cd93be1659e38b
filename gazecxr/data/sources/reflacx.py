"""REFLACX source: phase metadata and per-reading tables → one record per image, one reading per reader.

Readings of one image are grouped by ``dicom_id``; each keeps its own heatmap, fixations,
finding certainties (phase-1 labels mapped onto the phase-2/3 set, see
:data:`gazecxr.data.sources.reflacx_format.PHASE_1_TO_LABELS`), ellipses and chest box. Readings flagged
``eye_tracking_data_discarded`` keep labels and boxes but have no gaze. REFLACX has no
Normal/CHF/pneumonia label: records carry label -1.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gazecxr.data.convert import (
    ConversionReport,
    ConvertOptions,
    ReadingSpec,
    SourceRecord,
)
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import FixationGaussians, PointGaze
from gazecxr.data.sources.reflacx_format import (
    BOOLEAN_LABELS,
    CHEST_BOX,
    CHEST_BOX_COLUMNS,
    ELLIPSE_COORDINATES,
    ELLIPSES,
    FIXATION_COLUMNS,
    FIXATIONS,
    GAZE,
    GAZE_DIR,
    LABELS,
    LABELS_PHASE_1,
    MAIN_DIR,
    METADATA,
    METADATA_COLUMNS,
    PHASE_1_TO_LABELS,
    PHASES,
    SHOWN_COLUMNS,
    TEXT_LABELS,
)
from gazecxr.data.tables import GazePoints, TableFormatError, check_columns

HEATMAP_RECIPES = ("reflacx", "raw")
_MIMIC_PATH = re.compile(r"files/p\d\d/p\d+/s\d+/[^/]+$")


@dataclass(frozen=True)
class RawGazeFile:
    """A reading's ``gaze.csv`` (1000 Hz; blinks have empty positions), read when rendered (in the
    worker process), blurred with the EGD recipe's ``sigma`` original pixels."""

    path: str
    sigma: float

    def _points(self) -> PointGaze:
        frame = pd.read_csv(self.path, usecols=["x_position", "y_position"])
        xy = frame.apply(pd.to_numeric, errors="coerce").dropna().to_numpy(np.float64)
        return PointGaze(xy[:, 0], xy[:, 1], np.ones(len(xy)), self.sigma)

    def render(self, letterbox: Letterbox) -> np.ndarray:
        return self._points().render(letterbox)

    def on_image(self, orig_size: tuple[int, int]) -> tuple[int, int]:
        return self._points().on_image(orig_size)


def certainty(value: object, label: str) -> float:
    """A metadata label cell as certainty 0–5: True/False labels and free text count as 5 when set."""
    if label in TEXT_LABELS:
        return 5.0 if isinstance(value, str) and value.strip() else 0.0
    if label in BOOLEAN_LABELS:
        return 5.0 if str(value).strip().lower() in ("true", "1", "1.0") else 0.0
    number = pd.to_numeric(value, errors="coerce")
    return 0.0 if pd.isna(number) else float(number)


def map_labels(values: dict[str, float], phase: int) -> np.ndarray:
    """Certainties per :data:`LABELS` from one reading's label cells (phase 1 mapped, max where merged)."""
    out = np.zeros(len(LABELS), np.float32)
    for name, value in values.items():
        target = PHASE_1_TO_LABELS.get(name) if phase == 1 else name
        if target is not None and target in LABELS:
            k = LABELS.index(target)
            out[k] = max(out[k], value)
    return out


@dataclass
class ReflacxSource:
    """The REFLACX folder ``reflacx_dir`` (holding main_data/ and gaze_data/) with MIMIC-CXR films
    under ``image_dir``."""

    reflacx_dir: Path
    image_dir: Path
    name: str = "REFLACX"
    finding_names: tuple[str, ...] | None = LABELS
    voi_lut: bool = False
    """Apply each DICOM's VOI LUT / window before scaling (``gazecxr.data.images.read_dicom``)."""

    def description(self) -> str:
        return f"REFLACX ({self.reflacx_dir.name}) + images ({self.image_dir.name})"

    def metadata(self) -> pd.DataFrame:
        """All phases' metadata rows with a ``phase`` column."""
        frames = []
        for phase in PHASES:
            path = self.reflacx_dir / MAIN_DIR / METADATA.format(phase=phase)
            if not path.is_file():
                continue
            check_columns(path, (*METADATA_COLUMNS, *(LABELS_PHASE_1 if phase == 1 else LABELS)))
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame["phase"] = phase
            frames.append(frame)
        if not frames:
            raise TableFormatError(f"{self.reflacx_dir / MAIN_DIR}: no metadata_phase_1/2/3.csv found "
                                   f"(is --reflacx-dir the REFLACX folder?)")
        return pd.concat(frames, ignore_index=True)

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """One record per image with its readings; readings with unusable tables are reported."""
        if options.gaze not in HEATMAP_RECIPES:
            raise ValueError(f"REFLACX heatmap recipe must be one of {HEATMAP_RECIPES}, got {options.gaze!r}")
        meta = self.metadata()
        by_image: dict[str, list[ReadingSpec]] = defaultdict(list)
        first: dict[str, tuple[str, str, tuple[int, int]]] = {}
        clipped: dict[str, int] = defaultdict(int)
        for _, row in meta.iterrows():
            dicom_id = row["dicom_id"]
            if dicom_id not in first and options.limit is not None and len(first) >= options.limit:
                continue
            match = _MIMIC_PATH.search(row["image"].replace("\\", "/"))
            if match is None:
                report.skip(dicom_id, f"bad image path: {row['image']!r} is not a MIMIC-CXR files/pXX/... path",
                            reading_id=row["id"])
                continue
            try:
                size = (int(float(row["image_size_y"])), int(float(row["image_size_x"])))
                spec = self._reading(row, options)
                spec, n_clipped = clip_ellipses(spec, size)
                clipped[dicom_id] += n_clipped
            except (TableFormatError, OSError, ValueError) as err:
                report.skip(dicom_id, f"unreadable reading tables: {err}", reading_id=row["id"])
                continue
            first.setdefault(dicom_id, (row["subject_id"], match.group(0), size))
            by_image[dicom_id].append(spec)
        canvas = (options.height, options.width)
        return [SourceRecord(dicom_id, first[dicom_id][0], -1, str(self.image_dir),
                             first[dicom_id][1], canvas, tuple(specs),
                             info={"readings": [s.reading_id for s in specs],
                                   **({"clipped_ellipses": clipped[dicom_id]} if clipped[dicom_id] else {})},
                             expected_size=first[dicom_id][2], voi_lut=self.voi_lut)
                for dicom_id, specs in by_image.items()]

    def _reading(self, row: pd.Series, options: ConvertOptions) -> ReadingSpec:
        folder = self.reflacx_dir / MAIN_DIR / row["id"]
        phase = int(row["phase"])
        names = LABELS_PHASE_1 if phase == 1 else LABELS
        findings = map_labels({n: certainty(row[n], n) for n in names}, phase)
        ellipses, labels, cert = _ellipses(folder / ELLIPSES, names, phase)
        box = _table(folder / CHEST_BOX, CHEST_BOX_COLUMNS)[list(CHEST_BOX_COLUMNS)].to_numpy(np.float64)[:1]
        discarded = str(row["eye_tracking_data_discarded"]).strip().lower() == "true"
        heatmap, fixations = None, None
        if not discarded:
            table = _table(folder / FIXATIONS, FIXATION_COLUMNS)
            values = table[list(FIXATION_COLUMNS)].apply(pd.to_numeric, errors="coerce")
            values = values.dropna(subset=["x_position", "y_position", "timestamp_start_fixation",
                                           "timestamp_end_fixation"])
            duration = (values["timestamp_end_fixation"] - values["timestamp_start_fixation"]).to_numpy(np.float64)
            x, y = values["x_position"].to_numpy(np.float64), values["y_position"].to_numpy(np.float64)
            fixations = GazePoints(x, y, duration)
            if options.gaze == "reflacx":
                heatmap = FixationGaussians(x, y, duration, values["angular_resolution_x_pixels_per_degree"].to_numpy(),
                                            values["angular_resolution_y_pixels_per_degree"].to_numpy(),
                                            values[list(SHOWN_COLUMNS)].to_numpy(np.float64))
            else:
                gaze = self.reflacx_dir / GAZE_DIR / row["id"] / GAZE
                check_columns(gaze, ("x_position", "y_position"))
                heatmap = RawGazeFile(str(gaze), options.sigma)
        return ReadingSpec(row["id"], heatmap, fixations, findings, ellipses, labels, cert, box)


def clip_ellipses(spec: ReadingSpec, size: tuple[int, int]) -> tuple[ReadingSpec, int]:
    """The reading with its ellipses' boxes clipped to the (height, width) image — the annotation tool let
    them extend below 0 or past the edge — and how many were clipped."""
    if spec.ellipses is None or not len(spec.ellipses):
        return spec, 0
    boxes = np.asarray(spec.ellipses, np.float64).reshape(-1, 4)
    h, w = size
    inside = np.clip(boxes, 0, [w, h, w, h])
    n = int((inside != boxes).any(axis=1).sum())
    return (replace(spec, ellipses=inside) if n else spec), n


def _table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise TableFormatError(f"{path}: file missing")
    check_columns(path, columns)
    return pd.read_csv(path)


def _ellipses(path: Path, names: tuple[str, ...], phase: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (E, 4), label flags (E, len(LABELS)) and certainties (E,) of a reading's ellipses."""
    table = _table(path, ELLIPSE_COORDINATES)
    boxes = table[list(ELLIPSE_COORDINATES[:4])].to_numpy(np.float64).reshape(-1, 4)
    cert = pd.to_numeric(table["certainty"], errors="coerce").fillna(0).to_numpy(np.int8)
    flags = np.stack([map_labels({n: 5.0 * (str(v).strip().lower() == "true") for n, v in r.items()
                                  if n in names}, phase) > 0 for _, r in table.iterrows()]) \
        if len(table) else np.zeros((0, len(LABELS)), bool)
    return boxes, flags, cert
