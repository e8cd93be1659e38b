"""VinDr-CXR source (PhysioNet 1.0.0): boxes of three readers per training image, consensus on test.

``annotations/annotations_{train,test}.csv`` hold ``image_id,rad_id,class_name,x_min,y_min,x_max,y_max``
(test: the consensus, ``rad_id`` may be absent); a ``No finding`` row has empty box fields and gives
no box. ``annotations/image_labels_{train,test}.csv`` hold ``image_id,rad_id`` (train) and one 0/1
column per finding; the stored ``findings`` are the fraction of the image's readers that marked each
(the consensus 0/1 on test). Each reader is a reading (its ``rad_id``), each box keeps its reader, so
agreement between readers' boxes can be measured. Films: ``train/<image_id>.dicom`` and
``test/<image_id>.dicom`` (MONOCHROME1 and 2, 12–16-bit; ``voi_lut`` applies their VOI LUT / window).
The dataset has no patient id: every image is its own group.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gazecxr.data.convert import ConversionReport, ConvertOptions, ReadingSpec, SourceRecord
from gazecxr.data.tables import TableFormatError

ANNOTATION_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
READER_COLUMN = "rad_id"
NO_FINDING = "No finding"
SPLITS = ("train", "test")
ANNOTATIONS = "annotations/annotations_{split}.csv"
IMAGE_LABELS = "annotations/image_labels_{split}.csv"
FILM = "{split}/{image_id}.dicom"

LOCAL_FINDINGS = ("Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD",
                  "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
                  "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis")
"""The 14 local findings of the VinBigData Kaggle release (the default of the ``vindr_findings`` task)."""

RELEASE_LABELS = ("Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
                  "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung cavity",
                  "Lung cyst", "Lung Opacity", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
                  "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
                  "COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", NO_FINDING)
"""The 28 image-level labels of PhysioNet's ``image_labels_train.csv`` (22 local, then 6 global), in file order."""

LABEL_ALIASES = {"Other disease": "Other diseases"}
"""Release spellings → the one name stored (``image_labels_test.csv`` spells it ``Other disease``)."""


def _columns(frame: pd.DataFrame) -> dict[str, str]:
    """Column names by lower case (``rad_id`` is spelled ``rad_ID`` in some releases)."""
    return {c.strip().lower(): c for c in frame.columns}


def read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A VinDr CSV with ``required`` columns (case-insensitive) renamed to their lower-case names."""
    if not path.is_file():
        raise TableFormatError(f"{path}: file missing (is --vindr-dir the VinDr-CXR folder?)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    names = _columns(frame)
    missing = [c for c in required if c not in names]
    if missing:
        raise TableFormatError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    rename = {names[c]: c for c in (*required, READER_COLUMN) if c in names}
    return frame.rename(columns=rename)


def read_labels(path: Path) -> pd.DataFrame:
    """An ``image_labels_*.csv`` table with its finding columns renamed to their stored names."""
    frame = read_table(path, ("image_id",))
    frame = frame.rename(columns={c: LABEL_ALIASES.get(c.strip(), c.strip()) for c in frame.columns})
    doubled = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if doubled:
        raise TableFormatError(f"{path}: finding column(s) {doubled} appear twice (spellings {LABEL_ALIASES})")
    return frame


@dataclass
class VinDrSource:
    """The VinDr-CXR folder ``vindr_dir`` (annotations/, train/, test/)."""

    vindr_dir: Path
    voi_lut: bool = False
    box_masks: bool = False
    name: str = "VinDr-CXR"
    finding_names: tuple[str, ...] | None = None
    has_gaze: bool = False

    def description(self) -> str:
        return f"VinDr-CXR ({self.vindr_dir.name})"

    def label_names(self) -> tuple[str, ...]:
        """Finding columns of ``image_labels_train.csv`` (everything after image_id and rad_id), in file order,
        each by its one stored name (`LABEL_ALIASES`)."""
        frame = read_labels(self.vindr_dir / IMAGE_LABELS.format(split="train"))
        return tuple(c for c in frame.columns if c not in ("image_id", READER_COLUMN))

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """One record per labelled image whose DICOM exists; one reading per reader (one for a consensus)."""
        names = self.label_names()
        self.finding_names = names
        canvas, out = (options.height, options.width), []
        for split in SPLITS:
            labels_path = self.vindr_dir / IMAGE_LABELS.format(split=split)
            if split == "test" and not labels_path.is_file():
                continue
            labels = read_labels(labels_path)
            missing = [n for n in names if n not in labels.columns]
            if missing:
                raise TableFormatError(f"{labels_path}: missing finding column(s) {missing} of image_labels_train.csv")
            boxes = self._boxes(split, names, report)
            readings: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
            for _, row in labels.iterrows():
                values = pd.to_numeric(row[list(names)], errors="coerce").to_numpy(np.float64)
                if np.isnan(values).any() or not np.isin(values, (0, 1)).all():
                    raise TableFormatError(f"{labels_path}: image {row['image_id']}: finding values must be 0 or 1")
                readings[row["image_id"]][str(row.get(READER_COLUMN, "")).strip()] = values.astype(np.float32)
            for image_id, by_reader in readings.items():
                if options.limit is not None and len(out) >= options.limit:
                    break
                rel = FILM.format(split=split, image_id=image_id)
                if not (self.vindr_dir / rel).is_file():
                    report.skip(image_id, f"image missing: {self.vindr_dir / rel}")
                    continue
                image_boxes = boxes.get(image_id, {})
                readers = sorted(set(by_reader) | set(image_boxes))
                specs = []
                for reader in readers:
                    found = image_boxes.get(reader, [])
                    specs.append(ReadingSpec(
                        reading_id=reader, findings=by_reader.get(reader, np.zeros(len(names), np.float32)),
                        boxes=np.array([b for _, b in found]).reshape(-1, 4),
                        box_findings=np.array([k for k, _ in found], np.int32)))
                out.append(SourceRecord(image_id, image_id, -1, str(self.vindr_dir), rel, canvas, tuple(specs),
                                        gaze=False, split=split, voi_lut=self.voi_lut, box_masks=self.box_masks,
                                        regions_known=True, info={"readers": readers}))
        return out

    def _boxes(self, split: str, names: tuple[str, ...], report: ConversionReport
               ) -> dict[str, dict[str, list[tuple[int, np.ndarray]]]]:
        """Boxes per image and reader: (finding index, [x_min, y_min, x_max, y_max]); ``No finding`` rows
        and rows of findings without an image label column give none (the latter are reported)."""
        path = self.vindr_dir / ANNOTATIONS.format(split=split)
        out: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
        if not path.is_file():
            return out
        table = read_table(path, ANNOTATION_COLUMNS)
        for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False)):
            record = dict(zip(table.columns, row))
            name, image_id = record["class_name"].strip(), record["image_id"].strip()
            reader = str(record.get(READER_COLUMN, "")).strip()
            coords = [record[c].strip() for c in ANNOTATION_COLUMNS[2:]]
            if name == NO_FINDING:
                if any(coords):
                    raise TableFormatError(f"{path}:{line}: a 'No finding' row with a box {coords}")
                out[image_id].setdefault(reader, [])
                continue
            if name not in names:
                report.skip(image_id, f"box dropped: finding {name!r} has no column in the image labels",
                            reading_id=reader)
                continue
            try:
                box = np.array([float(v) for v in coords])
            except ValueError as err:
                raise TableFormatError(f"{path}:{line}: box {coords} of {name!r} is not four numbers") from err
            out[image_id][reader].append((names.index(name), box))
        return out
