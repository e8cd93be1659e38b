"""NIH ChestX-ray14 source (as the NIH Clinical Center distributes it): data entry, boxes, official split.

``Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``) has a header whose bracketed names hold
commas — a CSV reader sees ``OriginalImage[Width`` and ``Height]`` (and ``OriginalImagePixelSpacing[x``,
``y]``) as four columns, which is what the rows hold — and the 2017 file ends every line with an
empty column. ``BBox_List_2017.csv`` puts x, y, w, h (PNG pixels) in four columns under
``Bbox [x,y,w,h]`` followed by three empty ones, and spells ``Infiltrate`` for ``Infiltration``.
Images (1024×1024 PNG, some grey+alpha or RGBA) are found wherever they are below the image root
(``images/`` or ``images_001/images/`` …). Only the file name, finding labels, patient id and boxes
are kept; age, sex and view position are not stored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gazecxr.data.convert import ConversionReport, ConvertOptions, ReadingSpec, SourceRecord
from gazecxr.data.tables import TableFormatError

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
            "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax")
"""The 14 findings in torchxrayvision's order (``NIH_Dataset.pathologies``, which sorts them)."""

NO_FINDING = "No Finding"
DATA_ENTRY_FILES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
BBOX_LIST = "BBox_List_2017.csv"
TRAIN_VAL_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"

DATA_ENTRY_HEADER = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                     "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]")
"""The data-entry header as a CSV reader splits it (the bracketed names hold commas)."""

BBOX_HEADER = ("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", "")
"""The box list header as a CSV reader splits it: x, y, w, h in four columns, then three empty ones."""

BBOX_SPELLINGS = {"Infiltrate": "Infiltration"}
"""Box-list finding names spelled differently from the data entry."""


def read_data_entry(path: Path) -> list[dict[str, str]]:
    """Rows of a data-entry CSV as dicts keyed by :data:`DATA_ENTRY_HEADER` (the trailing empty column of
    the 2017 file dropped). Raises TableFormatError naming the file and line of a malformed row."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TableFormatError(f"{path}: empty file")
        trailing = len(header) == len(DATA_ENTRY_HEADER) + 1 and header[-1] == ""
        if tuple(header[:len(DATA_ENTRY_HEADER)]) != DATA_ENTRY_HEADER or len(header) > len(DATA_ENTRY_HEADER) + trailing:
            raise TableFormatError(f"{path}: not an NIH ChestX-ray14 data entry: header {header} differs from "
                                   f"{','.join(DATA_ENTRY_HEADER)}")
        rows = []
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) == len(DATA_ENTRY_HEADER) + 1 and fields[-1] == "":
                fields = fields[:-1]
            if len(fields) != len(DATA_ENTRY_HEADER):
                raise TableFormatError(f"{path}:{line}: {len(fields)} fields, expected {len(DATA_ENTRY_HEADER)} "
                                       f"(with an optional empty last one)")
            rows.append(dict(zip(DATA_ENTRY_HEADER, fields)))
    return rows


def read_bbox_list(path: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Boxes per image file name: (finding as the data entry spells it, [xmin, ymin, xmax, ymax] PNG pixels)."""
    boxes: dict[str, list[tuple[str, np.ndarray]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header[:6] != BBOX_HEADER[:6]:
            raise TableFormatError(f"{path}: not an NIH box list: header {list(header)} differs from "
                                   f"{','.join(BBOX_HEADER)}")
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) < 6 or any(f.strip() for f in fields[6:]):
                raise TableFormatError(f"{path}:{line}: expected image, finding, x, y, w, h (then empty fields), "
                                       f"got {fields}")
            try:
                x, y, w, h = (float(v) for v in fields[2:6])
            except ValueError as err:
                raise TableFormatError(f"{path}:{line}: box values {fields[2:6]} are not numbers") from err
            finding = BBOX_SPELLINGS.get(fields[1].strip(), fields[1].strip())
            boxes.setdefault(fields[0].strip(), []).append((finding, np.array([x, y, x + w, y + h])))
    return boxes


def parse_findings(labels: str) -> np.ndarray:
    """Multi-hot (14,) float32 over :data:`FINDINGS` of a ``|``-separated ``Finding Labels`` cell;
    ValueError for a name that is neither a finding nor ``No Finding``."""
    out = np.zeros(len(FINDINGS), np.float32)
    for name in (n.strip() for n in labels.split("|")):
        if name == NO_FINDING or not name:
            continue
        if name not in FINDINGS:
            raise ValueError(f"unknown finding {name!r}")
        out[FINDINGS.index(name)] = 1.0
    return out


def index_images(root: Path, suffix: str = ".png") -> dict[str, Path]:
    """Every ``suffix`` file below ``root`` by file name (``images/``, ``images_001/images/`` … wherever)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob(f"*{suffix}")):
        found.setdefault(path.name, path)
    return found


@dataclass
class NIH14Source:
    """The NIH ChestX-ray14 folder ``nih_dir`` (tables and split lists) with its PNGs below ``image_dir``."""

    nih_dir: Path
    image_dir: Path
    box_masks: bool = False
    name: str = "NIH-CXR14"
    finding_names: tuple[str, ...] | None = FINDINGS
    has_gaze: bool = False

    def description(self) -> str:
        return f"NIH ChestX-ray14 ({self.nih_dir.name}) + images ({self.image_dir.name})"

    def data_entry(self) -> Path:
        """The data-entry table (the 2017 file, else the v2020 one)."""
        for name in DATA_ENTRY_FILES:
            if (self.nih_dir / name).is_file():
                return self.nih_dir / name
        raise TableFormatError(f"{self.nih_dir}: no {' or '.join(DATA_ENTRY_FILES)} (is --nih-dir the NIH folder?)")

    def official_split(self) -> dict[str, str]:
        """File name -> "train" (train_val_list.txt) or "test" (test_list.txt)."""
        split: dict[str, str] = {}
        for name, value in ((TRAIN_VAL_LIST, "train"), (TEST_LIST, "test")):
            path = self.nih_dir / name
            if not path.is_file():
                raise TableFormatError(f"{path}: official split list missing (needed by --split official)")
            split.update({line.strip(): value for line in path.read_text().splitlines() if line.strip()})
        return split

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """One record per data-entry row whose PNG is found; boxes from the box list when present."""
        rows = read_data_entry(self.data_entry())
        if options.limit is not None:
            rows = rows[: options.limit]
        boxes = read_bbox_list(self.nih_dir / BBOX_LIST) if (self.nih_dir / BBOX_LIST).is_file() else {}
        split = self.official_split() if options.split == "official" else {}
        images = index_images(self.image_dir)
        canvas, seen, out = (options.height, options.width), set(), []
        for row in rows:
            name = row["Image Index"].strip()
            if name in seen:
                report.skip(name, "duplicate image: listed more than once in the data entry")
                continue
            seen.add(name)
            try:
                findings = parse_findings(row["Finding Labels"])
            except ValueError as err:
                report.skip(name, f"bad finding labels: {err} in {row['Finding Labels']!r}")
                continue
            if name not in images:
                report.skip(name, f"image missing: {name} not found below {self.image_dir}")
                continue
            if split and name not in split:
                report.skip(name, "not in the official split: in neither train_val_list.txt nor test_list.txt")
                continue
            kept = [(f, b) for f, b in boxes.get(name, []) if f in FINDINGS]
            for finding, _ in boxes.get(name, []):
                if finding not in FINDINGS:
                    report.skip(name, f"box dropped: unknown finding {finding!r} in {BBOX_LIST}")
            reading = ReadingSpec(findings=findings,
                                  boxes=np.array([b for _, b in kept]).reshape(-1, 4) if kept else None,
                                  box_findings=np.array([FINDINGS.index(f) for f, _ in kept], np.int32))
            out.append(SourceRecord(name, row["Patient ID"].strip(), -1, str(self.image_dir),
                                    str(images[name].relative_to(self.image_dir)), canvas, (reading,),
                                    gaze=False, split=split.get(name), box_masks=self.box_masks,
                                    regions_known=name in boxes))
        return out
