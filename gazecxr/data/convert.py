"""One converter, any source: radiographs + gaze → the gazecxr HDF5 contract, with a JSON report.

A source (``gazecxr.data.sources``) reads its own tables and yields :class:`SourceRecord`s;
everything else — image decoding, letterboxing, heatmaps, splits, the HDF5 writer and the
report — is shared here.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.config.errors import InputError
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import DEFAULT_SIGMA, in_image
from gazecxr.data.images import ImageReadError, locate_image, read_radiograph
from gazecxr.data.regions import rasterise_boxes, rle_encode
from gazecxr.data.sources.egd_format import MASK_FILES
from gazecxr.data.splits import make_split, official_split
from gazecxr.data.tables import GazePoints, TableFormatError, check_columns

MASK_GROUPS = {"lung_mask": ("left_lung", "right_lung"), "heart_mask": ("mediastinum",)}


@dataclass(frozen=True)
class ConvertOptions:
    """Parameters of one conversion; stored in the HDF5 root attributes and the report.

    ``gaze`` names the heatmap recipe: EGD-CXR "raw" (every sample) or "fixations"
    (duration-weighted); REFLACX "reflacx" (the authors' 1° Gaussians per fixation) or
    "raw" (gaze.csv samples blurred with ``sigma`` pixels, the EGD recipe).
    """

    height: int = 640
    width: int = 512
    gaze: str = "raw"
    sigma: float = DEFAULT_SIGMA
    split: str = "paper"
    test_size: int = 100
    val_fraction: float = 0.1
    seed: int = 0
    limit: int | None = None
    workers: int = 1
    strict: bool = False


class HeatmapRecipe(Protocol):
    """One reading's gaze, able to render its heatmap on a letterboxed canvas."""

    def render(self, letterbox: Letterbox) -> np.ndarray: ...

    def on_image(self, orig_size: tuple[int, int]) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ReadingSpec:
    """One reading of an image as a source read it (original-pixel coordinates).

    ``heatmap`` is None for a reading without gaze (REFLACX discarded readings keep their
    labels and ellipses). ``fixations`` weights are durations in seconds. ``ellipses`` rows
    are xmin, ymin, xmax, ymax; ``ellipse_labels`` one bool column per finding. ``boxes`` (xmin,
    ymin, xmax, ymax rows, pixel edges) are the reading's finding boxes, ``box_findings`` the index of
    each box's finding in the source's ``finding_names`` (region ground truth of the public datasets).
    """

    reading_id: str = ""
    heatmap: HeatmapRecipe | None = None
    fixations: GazePoints | None = None
    findings: np.ndarray | None = None
    ellipses: np.ndarray | None = None
    ellipse_labels: np.ndarray | None = None
    ellipse_certainty: np.ndarray | None = None
    chest_box: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_findings: np.ndarray | None = None


class MaskRecipe(Protocol):
    """A record's region mask, decoded on the film's (height, width) in the worker process."""

    def decode(self, shape: tuple[int, int]) -> np.ndarray: ...


@dataclass(frozen=True)
class SourceRecord:
    """One image to convert: where its film is, who the patient is, its label and readings."""

    record_id: str
    patient_id: str
    label: int
    image_root: str
    relative_path: str
    canvas: tuple[int, int]
    readings: tuple[ReadingSpec, ...]
    mask_dir: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    expected_size: tuple[int, int] | None = None
    """(height, width) the source's tables were made on; a film of another size is skipped."""
    gaze: bool = True
    """Whether the record has gaze (a heatmap); gaze-less datasets (NIH, SIIM, CheXpert, VinDr) store none."""
    split: str | None = None
    """The dataset's own split of the record ("train" or "test"), used by ``--split official``."""
    region_mask: MaskRecipe | None = None
    box_masks: bool = False
    """Store the union of the record's boxes, rasterised on the canvas, as its ``region_mask``."""
    regions_known: bool | None = None
    """Whether the record was annotated for regions (an empty region then means "none");
    None for datasets without region ground truth."""
    voi_lut: bool = False
    """Apply the DICOM's VOI LUT / window before scaling (``gazecxr.data.images.read_dicom``)."""


class Source(Protocol):
    """A dataset's table reader: yields records, names its findings, describes itself."""

    name: str
    finding_names: tuple[str, ...] | None

    def records(self, options: ConvertOptions, report: "ConversionReport") -> list[SourceRecord]: ...

    def description(self) -> str: ...


@dataclass
class ConversionReport:
    """What a conversion did: every record converted and every record (or reading) skipped, with why."""

    output: str
    options: dict[str, Any]
    converted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    """Records converted with a remark (e.g. a split list's label that the mask table overrules)."""

    def skip(self, dicom_id: str, reason: str, **extra: str) -> None:
        self.skipped.append({"dicom_id": dicom_id, **extra, "reason": reason})

    def note(self, dicom_id: str, text: str) -> None:
        self.notes.append({"dicom_id": dicom_id, "note": text})

    def summary(self) -> dict[str, Any]:
        """Counts by split, class and skip reason."""
        reasons = Counter(s["reason"].split(":")[0] for s in self.skipped)
        summary = {
            "converted": len(self.converted),
            "skipped": len(self.skipped),
            "by_split": dict(Counter(r["split"] for r in self.converted)),
            "by_class": dict(Counter(r["class"] for r in self.converted)),
            "skip_reasons": dict(reasons),
        }
        if any(r.get("has_gaze") is False for r in self.converted):
            summary["without_gaze"] = sum(r.get("has_gaze") is False for r in self.converted)
        if self.notes:
            summary["notes"] = len(self.notes)
        return summary

    def write(self, path: Path) -> None:
        payload = {"output": self.output, "options": self.options, "summary": self.summary(),
                   "converted": self.converted, "skipped": self.skipped,
                   **({"notes": self.notes} if self.notes else {})}
        _atomic_write_text(path, json.dumps(payload, indent=2))


@dataclass
class _Reading:
    """A converted reading: its canvas heatmap (or None) and its geometry-converted tables."""

    spec: ReadingSpec
    heatmap: np.ndarray | None
    fixations: np.ndarray
    fixations_original: np.ndarray
    ellipses: np.ndarray
    chest_box: np.ndarray
    boxes: np.ndarray
    boxes_original: np.ndarray


@dataclass
class _Record:
    source: SourceRecord
    image: np.ndarray
    heatmap: np.ndarray | None
    letterbox: Letterbox
    masks: dict[str, np.ndarray]
    image_file: str
    readings: list[_Reading]
    n_samples: int
    n_off_image: int
    skipped_readings: list[tuple[str, str]]
    region_mask: np.ndarray | None = None
    region_rle: str = ""

    @property
    def fixations(self) -> np.ndarray:
        return np.concatenate([r.fixations for r in self.readings])


def report_path(output: str | Path) -> Path:
    """Where the JSON report of ``output`` goes: beside it, ``<name>.report.json``."""
    output = Path(output)
    return output.with_name(output.stem + ".report.json")


def _read_masks(mask_dir: Path, letterbox: Letterbox) -> dict[str, np.ndarray]:
    masks = {}
    for key, parts in MASK_GROUPS.items():
        combined = None
        for part in parts:
            file = next((mask_dir / n for n in MASK_FILES[part] if (mask_dir / n).is_file()), None)
            if file is None:
                return {}
            with Image.open(file) as img:
                mask = np.asarray(img.convert("L")) > 0
            if mask.shape != letterbox.orig_size:
                raise ImageReadError(f"{file}: mask shape {mask.shape} differs from the image {letterbox.orig_size}")
            combined = mask if combined is None else combined | mask
        masks[key] = letterbox.mask_to_canvas(combined)
    return masks


def fixation_arrays(points: GazePoints | None, letterbox: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """On-image fixations as canvas (x, y, duration) float32 rows and original (x, y) rows."""
    if points is None or not len(points):
        return np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32)
    keep = in_image(points.x, points.y, letterbox.orig_size)
    x, y = np.asarray(points.x, np.float64)[keep], np.asarray(points.y, np.float64)[keep]
    u, v = letterbox.to_canvas_coords(x, y)
    canvas = np.stack([u, v, np.asarray(points.weight, np.float64)[keep]], axis=1).astype(np.float32)
    return canvas, np.stack([x, y], axis=1).astype(np.float32)


def boxes_to_canvas(boxes: np.ndarray | None, letterbox: Letterbox) -> np.ndarray:
    """Original-pixel boxes (xmin, ymin, xmax, ymax rows) → canvas coordinates (float32)."""
    if boxes is None:
        return np.zeros((0, 4), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    (nh, nw), (h, w) = letterbox.resized, letterbox.orig_size
    scale = np.array([nw / w, nh / h, nw / w, nh / h])
    shift = np.array([letterbox.pad[1], letterbox.pad[0], letterbox.pad[1], letterbox.pad[0]])
    return (boxes * scale + shift).astype(np.float32)


def _convert_reading(spec: ReadingSpec, letterbox: Letterbox) -> tuple[_Reading, str | None]:
    heatmap, reason = None, None
    if spec.heatmap is not None:
        try:
            heatmap = spec.heatmap.render(letterbox)
        except ValueError as err:
            reason = f"no gaze samples: {err}"
    fixations, original = fixation_arrays(spec.fixations, letterbox)
    boxes = np.zeros((0, 4), np.float32) if spec.boxes is None else np.asarray(spec.boxes, np.float32).reshape(-1, 4)
    return _Reading(spec, heatmap, fixations, original, boxes_to_canvas(spec.ellipses, letterbox),
                    boxes_to_canvas(spec.chest_box, letterbox), boxes_to_canvas(boxes, letterbox), boxes), reason


def _convert_one(task: SourceRecord) -> _Record | tuple[str, str]:
    """Convert one record, or return (record_id, reason) when it must be skipped."""
    try:
        file = locate_image(task.image_root, task.relative_path)
        pixels = read_radiograph(file, voi_lut=task.voi_lut)
        if task.expected_size is not None and pixels.shape != tuple(task.expected_size):
            return task.record_id, (f"image size differs: {file} is {pixels.shape[1]}×{pixels.shape[0]} (width×height), "
                                    f"the tables say {task.expected_size[1]}×{task.expected_size[0]}")
        letterbox = Letterbox.fit(pixels.shape, task.canvas)
        readings, skipped = [], []
        for spec in task.readings:
            reading, reason = _convert_reading(spec, letterbox)
            readings.append(reading)
            if reason:
                skipped.append((spec.reading_id, reason))
        maps = [r.heatmap for r in readings if r.heatmap is not None]
        counts = [s.heatmap.on_image(letterbox.orig_size) for s in task.readings if s.heatmap is not None]
        n_on, n_off = (int(sum(c[k] for c in counts)) for k in (0, 1))
        heatmap = None
        if task.gaze:
            if not maps:
                detail = skipped[0][1].split(": ", 1)[-1] if skipped else "no reading has gaze data"
                return task.record_id, f"no gaze samples: {detail} ({n_off} samples off the {pixels.shape} image)"
            heatmap = np.mean(maps, axis=0)
            heatmap = (heatmap / heatmap.sum(dtype=np.float64)).astype(np.float32)
        masks = _read_masks(Path(task.mask_dir), letterbox) if task.mask_dir else {}
        try:
            region_mask, region_rle = _region_mask(task, readings, letterbox)
        except ValueError as err:
            return task.record_id, f"bad region annotation: {err}"
    except ImageReadError as err:
        reason = "image missing" if "image missing" in str(err) or "not found" in str(err) else "unreadable image"
        return task.record_id, f"{reason}: {err}"
    return _Record(task, letterbox.image_to_canvas(pixels), heatmap, letterbox, masks, str(file), readings,
                   n_on, n_off, skipped, region_mask, region_rle)


def _region_mask(task: SourceRecord, readings: list[_Reading], letterbox: Letterbox) -> tuple[np.ndarray | None, str]:
    """The record's canvas region mask and the run-length string of its original-resolution mask: the
    source's decoded mask, or with ``box_masks`` the union of its boxes; (None, "") when it has neither."""
    if task.region_mask is not None:
        original = np.asarray(task.region_mask.decode(letterbox.orig_size), bool)
        return letterbox.mask_to_canvas(original), rle_encode(original)
    if task.box_masks:
        boxes = [r.boxes_original for r in readings]
        original = rasterise_boxes(np.concatenate(boxes) if boxes else np.zeros((0, 4)), letterbox.orig_size)
        canvas = [r.boxes for r in readings]
        return rasterise_boxes(np.concatenate(canvas) if canvas else np.zeros((0, 4)), letterbox.canvas), \
            rle_encode(original)
    return None, ""


def _run_tasks(tasks: list[SourceRecord], workers: int) -> Iterator[_Record | tuple[str, str]]:
    """Results in task order, decoded by ``workers`` processes with a bounded queue."""
    if workers <= 1:
        yield from map(_convert_one, tasks)
        return
    window = workers * 4
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(tasks), window):
            yield from pool.map(_convert_one, tasks[start:start + window])


class StrictConversionError(InputError):
    """``strict`` conversion with skipped records: nothing was written but the report."""

    exit_code = 1

    def __init__(self, report: ConversionReport, report_file: Path):
        self.report, self.report_file = report, report_file
        super().__init__(f"--strict: {len(report.skipped)} record(s) skipped, output not written; "
                         f"see {report_file}")


def _ragged(file: h5py.File, offsets_name: str, parts: Sequence[np.ndarray], columns: dict[str, int | tuple],
            dtypes: dict[str, Any]) -> None:
    """Write ragged per-record tables: ``offsets_name`` (N+1,) and one dataset per column."""
    counts = [len(p[next(iter(columns))]) for p in parts]
    file.create_dataset(offsets_name, data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    for name, tail in columns.items():
        tail = tail if isinstance(tail, tuple) else ((tail,) if tail else ())
        values = [np.asarray(p[name]).reshape(-1, *tail) for p in parts]
        file.create_dataset(name, data=np.concatenate(values).astype(dtypes[name]) if values
                            else np.zeros((0, *tail), dtypes[name]))


class _H5Writer:
    """Appends records to resizable HDF5 datasets, one chunk per image; ragged tables at the end."""

    def __init__(self, file: h5py.File, canvas: tuple[int, int], finding_names: tuple[str, ...] | None,
                 heatmap: bool = True):
        self.file, self.canvas, self.n = file, canvas, 0
        self.finding_names = finding_names
        h, w = canvas
        self.heatmap = heatmap
        """Whether the file stores heatmaps (and then ``has_gaze`` per record: false for a zero map)."""
        self.images = ("image", "heatmap") if heatmap else ("image",)
        for name, dtype in (("image", np.float32), ("heatmap", np.float32))[:len(self.images)]:
            file.create_dataset(name, (0, h, w), dtype, maxshape=(None, h, w), chunks=(1, h, w),
                                compression="lzf")
        for name, dtype, tail in (("orig_size", np.int32, (2,)), ("scale", np.float64, ()),
                                  ("pad", np.int32, (2,))):
            file.create_dataset(name, (0, *tail), dtype, maxshape=(None, *tail))
        self.mask_names: set[str] = set()
        self.fixations: list[dict[str, np.ndarray]] = []
        self.readings: list[dict[str, Any]] = []
        self.ellipses: list[dict[str, np.ndarray]] = []
        self.findings: list[np.ndarray] = []
        self.has_ellipses = self.has_boxes = False
        self.boxes: list[dict[str, np.ndarray]] = []
        self.regions_known: list[bool] = []
        self.region_rle: list[str] = []

    def append(self, record: _Record) -> None:
        i, h, w = self.n, *self.canvas
        for name in (*self.images, "orig_size", "scale", "pad"):
            self.file[name].resize(i + 1, axis=0)
        self.file["image"][i] = record.image
        if "heatmap" in self.images:
            self.file["heatmap"][i] = 0.0 if record.heatmap is None else record.heatmap
        self.file["orig_size"][i] = record.letterbox.orig_size
        self.file["scale"][i] = record.letterbox.scale
        self.file["pad"][i] = record.letterbox.pad
        for name in MASK_GROUPS:
            if name not in self.file:
                self.file.create_dataset(name, (i, h, w), bool, maxshape=(None, h, w),
                                         chunks=(1, h, w), compression="lzf")
            self.file[name].resize(i + 1, axis=0)
            if name in record.masks:
                self.file[name][i] = record.masks[name]
                self.mask_names.add(name)
        if record.region_mask is not None and "region_mask" not in self.file:
            self.file.create_dataset("region_mask", (i, h, w), bool, maxshape=(None, h, w), chunks=(1, h, w),
                                     compression="lzf")
        if "region_mask" in self.file:
            self.file["region_mask"].resize(i + 1, axis=0)
            if record.region_mask is not None:
                self.file["region_mask"][i] = record.region_mask
        self.regions_known.append(bool(record.source.regions_known))
        self.region_rle.append(record.region_rle)
        self._append_tables(record)
        self.n += 1

    def _append_tables(self, record: _Record) -> None:
        multi = any(r.spec.reading_id for r in record.readings)
        first = len(self.readings)
        fix, orig, which, ell, ell_lab, ell_cert, ell_read = [], [], [], [], [], [], []
        box, box_orig, box_find, box_read = [], [], [], []
        n_labels = len(self.finding_names or ())
        for k, reading in enumerate(record.readings):
            row = first + k if multi else -1
            fix.append(reading.fixations)
            orig.append(reading.fixations_original)
            which.append(np.full(len(reading.fixations), row, np.int32))
            if multi:
                spec = reading.spec
                self.readings.append({
                    "reading_id": spec.reading_id, "record": self.n, "heatmap": reading.heatmap,
                    "findings": spec.findings if spec.findings is not None else np.zeros(n_labels, np.float32),
                    "chest_box": reading.chest_box[0] if len(reading.chest_box) else np.full(4, np.nan, np.float32)})
            ell.append(reading.ellipses)
            ell_lab.append(np.zeros((len(reading.ellipses), n_labels), bool) if reading.spec.ellipse_labels is None
                           else np.asarray(reading.spec.ellipse_labels, bool).reshape(-1, n_labels))
            ell_cert.append(np.zeros(len(reading.ellipses), np.int8) if reading.spec.ellipse_certainty is None
                            else np.asarray(reading.spec.ellipse_certainty))
            ell_read.append(np.full(len(reading.ellipses), row, np.int32))
            self.has_ellipses |= reading.spec.ellipses is not None
            self.has_boxes |= reading.spec.boxes is not None or record.source.regions_known is not None
            box.append(reading.boxes)
            box_orig.append(reading.boxes_original)
            box_find.append(np.zeros(len(reading.boxes), np.int32) if reading.spec.box_findings is None
                            else np.asarray(reading.spec.box_findings, np.int32).reshape(-1))
            box_read.append(np.full(len(reading.boxes), reading.spec.reading_id, dtype=object))
        self.fixations.append({"fixations": np.concatenate(fix), "fixations_original": np.concatenate(orig),
                               "fixation_reading": np.concatenate(which)})
        self.ellipses.append({"ellipses": np.concatenate(ell), "ellipse_labels": np.concatenate(ell_lab),
                              "ellipse_certainty": np.concatenate(ell_cert), "ellipse_reading": np.concatenate(ell_read)})
        self.boxes.append({"boxes": np.concatenate(box), "boxes_original": np.concatenate(box_orig),
                           "box_finding": np.concatenate(box_find), "box_reader": np.concatenate(box_read)})
        if self.finding_names is not None:
            rows = [r.spec.findings for r in record.readings if r.spec.findings is not None]
            self.findings.append(np.mean(rows, axis=0) if rows else np.zeros(n_labels, np.float32))

    def _write_tables(self, fixations: bool) -> None:
        f = self.file
        if fixations:
            _ragged(f, "fixation_offsets", self.fixations,
                    {"fixations": 3, "fixations_original": 2, "fixation_reading": 0},
                    {"fixations": np.float32, "fixations_original": np.float32, "fixation_reading": np.int32})
            f["fixations"].attrs["columns"] = ["x", "y", "duration_s"]
            f["fixations_original"].attrs["columns"] = ["x", "y"]
        if self.finding_names is None:
            return
        names = list(self.finding_names)
        f.create_dataset("findings", data=np.stack(self.findings).astype(np.float32))
        f["findings"].attrs["label_names"] = names
        if self.has_boxes:
            self._write_regions(names)
        if self.has_ellipses:
            _ragged(f, "ellipse_offsets", self.ellipses,
                    {"ellipses": 4, "ellipse_labels": (len(names),), "ellipse_certainty": 0, "ellipse_reading": 0},
                    {"ellipses": np.float32, "ellipse_labels": bool, "ellipse_certainty": np.int8,
                     "ellipse_reading": np.int32})
            f["ellipses"].attrs["columns"] = ["xmin", "ymin", "xmax", "ymax"]
            f["ellipse_labels"].attrs["label_names"] = names
        if not self.readings:
            return
        h, w = self.canvas
        text = h5py.string_dtype("utf-8")
        f.create_dataset("reading_id", data=np.array([r["reading_id"] for r in self.readings], dtype=object), dtype=text)
        f.create_dataset("reading_record", data=np.array([r["record"] for r in self.readings], np.int32))
        has_map = np.array([r["heatmap"] is not None for r in self.readings])
        f.create_dataset("reading_has_heatmap", data=has_map)
        maps = f.create_dataset("reading_heatmap", (len(self.readings), h, w), np.float32, chunks=(1, h, w),
                                compression="lzf")
        for k, r in enumerate(self.readings):
            if r["heatmap"] is not None:
                maps[k] = r["heatmap"]
        f.create_dataset("reading_findings", data=np.stack([r["findings"] for r in self.readings]).astype(np.float32))
        f["reading_findings"].attrs["label_names"] = names
        f.create_dataset("reading_chest_box", data=np.stack([r["chest_box"] for r in self.readings]).astype(np.float32))

    def _write_regions(self, names: list[str]) -> None:
        """Boxes (ragged, canvas and original pixels, finding and reader per box), whether each record was
        annotated, and the original-resolution region masks as run-length strings."""
        f, text = self.file, h5py.string_dtype("utf-8")
        _ragged(f, "box_offsets", self.boxes, {"boxes": 4, "boxes_original": 4, "box_finding": 0},
                {"boxes": np.float32, "boxes_original": np.float32, "box_finding": np.int32})
        readers = np.concatenate([p["box_reader"] for p in self.boxes]).astype(object)
        f.create_dataset("box_reader", data=readers, dtype=text)
        f["boxes"].attrs["columns"] = ["xmin", "ymin", "xmax", "ymax"]
        f["boxes_original"].attrs["columns"] = ["xmin", "ymin", "xmax", "ymax"]
        f["box_finding"].attrs["label_names"] = names
        f.create_dataset("regions_known", data=np.array(self.regions_known, bool))
        if "region_mask" in f:
            f.create_dataset("region_mask_rle", data=np.array(self.region_rle, dtype=object), dtype=text)

    def finish(self, columns: dict[str, np.ndarray], attrs: dict[str, Any], fixations: bool = True) -> None:
        self._write_tables(fixations)
        for name in MASK_GROUPS:
            if name in self.file and name not in self.mask_names:
                del self.file[name]
        text = h5py.string_dtype("utf-8")
        for name, values in columns.items():
            values = np.asarray(values)
            self.file.create_dataset(name, data=values.astype(object) if values.dtype.kind in "OUS" else values,
                                     dtype=text if values.dtype.kind in "OUS" else values.dtype)
        self.file["label"].attrs["class_names"] = list(CLASS_NAMES)
        self.file.attrs.update(attrs)


def split_labels(labels: np.ndarray) -> np.ndarray:
    """Labels for stratified splitting: records without a class label (-1) form their own stratum."""
    labels = np.asarray(labels, np.int64)
    return labels - labels.min() if len(labels) else labels


def split_strata(records: Sequence[SourceRecord], finding_names: Sequence[str] | None,
                 stratify_finding: str | None) -> np.ndarray:
    """Strata of a stratified split: the class label, or for a source without classes that names a
    ``stratify_finding`` (SIIM-ACR: Pneumothorax), whether each record has that finding (mean over its
    readings ≥ 0.5)."""
    labels = np.array([r.label for r in records], np.int64)
    if stratify_finding is None or np.any(labels >= 0) or not finding_names:
        return split_labels(labels)
    column = list(finding_names).index(stratify_finding)
    present = [np.mean([spec.findings[column] for spec in r.readings if spec.findings is not None] or [0.0])
               for r in records]
    return (np.asarray(present) >= 0.5).astype(np.int64)


def convert_source(
    source: Source,
    output: str | Path,
    options: ConvertOptions = ConvertOptions(),
    progress: bool = True,
    fixations: bool = True,
    attrs: dict[str, Any] | None = None,
    split_file: str | Path | None = None,
) -> ConversionReport:
    """Convert the records of ``source`` to ``output`` (HDF5) and write its JSON report beside it.

    ``split_file`` (see :func:`read_split_file`) reproduces a published split: records it does not list
    are skipped, and so are (reported) the ids it lists that the source has no record of; ``options.split``
    is then ignored. A GD-ViG list's train phase is split into train and val (``options.val_fraction``,
    ``options.seed``, grouped by patient); a row whose class disagrees with the record's label is noted
    in the report and the record's label is kept.

    Bad records are skipped with a reason; the HDF5 file is written under a temporary name
    and renamed only when complete, so an earlier output is never lost to a failed run.
    Raises ``InputError`` when no record could be converted, and ``StrictConversionError``
    when ``options.strict`` and any record was skipped; neither writes the HDF5 file.
    """
    output = Path(output)
    canvas = (options.height, options.width)
    if options.height % 32 or options.width % 32:
        raise InputError(f"--height/--width must be multiples of 32 for the networks, got {canvas}")
    report = ConversionReport(str(output), asdict(options))
    tasks = source.records(options, report)
    listed = read_split_file(split_file) if split_file is not None else None
    if listed is not None:
        tasks = _listed_tasks(tasks, listed, report, source.description(), options.limit)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    kept: list[SourceRecord] = []
    try:
        with h5py.File(tmp, "w") as file:
            writer = _H5Writer(file, canvas, source.finding_names, heatmap=getattr(source, "has_gaze", True))
            results = _run_tasks(tasks, options.workers)
            for result in tqdm(results, total=len(tasks), desc="converting", unit="img", disable=not progress):
                if isinstance(result, tuple):
                    report.skip(*result)
                    continue
                for reading_id, reason in result.skipped_readings:
                    report.skip(result.source.record_id, reason, reading_id=reading_id)
                writer.append(result)
                kept.append(result.source)
                report.converted.append({
                    "dicom_id": result.source.record_id, "patient_id": result.source.patient_id,
                    "class": CLASS_NAMES[result.source.label] if result.source.label >= 0 else "none",
                    **result.source.info, "image_file": result.image_file,
                    "orig_size": list(result.letterbox.orig_size), "gaze_samples": result.n_samples,
                    "gaze_samples_off_image": result.n_off_image, "fixations": len(result.fixations),
                    **({"has_gaze": result.source.gaze} if writer.heatmap else {}),
                })
            if not kept:
                raise InputError(f"no record could be converted from {source.description()} ({len(report.skipped)} "
                                 f"skipped; first reason: {report.skipped[0]['reason'] if report.skipped else 'no records'})")
            labels = np.array([r.label for r in kept], np.int64)
            patients = np.array([r.patient_id for r in kept], dtype=str)
            if listed is not None:
                split = _listed_split(kept, listed, patients, options, report)
            elif options.split == "official":
                split = official_split(patients, np.array([r.split or "" for r in kept], dtype=object),
                                       options.seed, options.val_fraction)
            else:
                strata = split_strata(kept, source.finding_names, getattr(source, "stratify_finding", None))
                split = make_split(options.split, patients, strata, options.seed, options.test_size,
                                   options.val_fraction)
            for rec, name in zip(report.converted, split):
                rec["split"] = str(name)
            _note_shared_patients(kept, split, report)
            fields = {name: np.array([str(r.info.get(name, "")) for r in kept], dtype=str)
                      for name in getattr(source, "record_fields", ())}
            columns = {"label": labels, "dicom_id": np.array([r.record_id for r in kept], dtype=str),
                       "patient_id": patients, "split": split, **fields}
            if writer.heatmap:
                columns["has_gaze"] = np.array([r.gaze for r in kept], bool)
            writer.finish(
                columns,
                {"source": source.description(), "dataset": source.name,
                 "sigma": options.sigma, "gaze_source": options.gaze, "height": options.height,
                 "width": options.width, "split_method": listed.method if listed is not None else options.split,
                 "seed": options.seed,
                 "test_size": options.test_size, "val_fraction": options.val_fraction,
                 "limit": -1 if options.limit is None else options.limit,
                 "package_version": __version__,
                 "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(attrs or {})},
                fixations=fixations,
            )
            if "region_mask" in file:
                file["region_mask"].attrs["finding"] = str(getattr(source, "mask_finding", ""))
        if options.strict and report.skipped:
            rejected = output.with_name(output.stem + ".rejected.report.json")
            report.write(rejected)
            raise StrictConversionError(report, rejected)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    report.write(report_path(output))
    return report


GDVIG_COLUMNS = ("image_id", "class_name", "phase")
"""Header of GD-ViG's EGD-CXR split list (github IPMI-NWU/GD-ViG, ``Data/MIMIC_Gaze/mimic_part.csv``)."""


@dataclass(frozen=True)
class SplitList:
    """A published split list: each listed ``dicom_id``'s split (train, val or test; for GD-ViG's list its
    phase, train or test) and, for GD-ViG's list, the class index its row names."""

    path: Path
    split: dict[str, str]
    labels: dict[str, int] = field(default_factory=dict)
    method: str = "file"
    """The ``split_method`` root attribute: "file" (ours, split as listed) or "file:gd-vig" (val carved)."""


def read_split_file(path: str | Path) -> SplitList:
    """A published split list, recognised by its header: ours (CSV ``dicom_id,split``; split train, val
    or test) or GD-ViG's (``image_id,class_name,phase``; image_id ``<dicom_id>.jpg`` or ``.dcm``,
    class_name Normal/CHF/Pneumonia in any case, phase train or test).
    Raises TableFormatError naming the file and the first bad row."""
    path = Path(path)
    if not path.is_file():
        raise TableFormatError(f"{path}: split file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise TableFormatError(f"{path}: cannot read the split file ({err})") from err
    if set(GDVIG_COLUMNS) <= set(table.columns):
        return _read_gdvig_list(path, table)
    if not {"dicom_id", "split"} <= set(table.columns):
        raise TableFormatError(f"{path}: a split file has the columns dicom_id,split (ours) or "
                               f"{','.join(GDVIG_COLUMNS)} (GD-ViG's); found columns {list(table.columns)[:8]}")
    _reject_rows(path, table, "split", ~table["split"].isin(("train", "val", "test")), "train, val or test")
    _reject_duplicates(path, table["dicom_id"])
    return SplitList(path, dict(zip(table["dicom_id"], table["split"])))


def _read_gdvig_list(path: Path, table: pd.DataFrame) -> SplitList:
    """GD-ViG's list: ``.jpg``/``.dcm`` cut from the image ids, class names matched ignoring case."""
    classes = {name.lower(): index for index, name in enumerate(CLASS_NAMES)}
    names = table["class_name"].str.lower()
    _reject_rows(path, table, "class_name", ~names.isin(classes), f"one of {'/'.join(CLASS_NAMES)} (any case)")
    _reject_rows(path, table, "phase", ~table["phase"].isin(("train", "test")), "train or test")
    ids = table["image_id"].str.replace(r"\.(jpg|dcm)$", "", regex=True, case=False)
    _reject_duplicates(path, ids)
    return SplitList(path, dict(zip(ids, table["phase"])), {i: classes[n] for i, n in zip(ids, names)},
                     "file:gd-vig")


def _reject_rows(path: Path, table: pd.DataFrame, column: str, bad: pd.Series, allowed: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableFormatError(f"{path}: row {row + 2}: {column} {table[column].iloc[row]!r} is not {allowed}")


def _reject_duplicates(path: Path, ids: pd.Series) -> None:
    duplicated = ids.duplicated()
    if duplicated.any():
        raise TableFormatError(f"{path}: dicom_id {ids[duplicated].iloc[0]!r} listed twice")


def _listed_tasks(tasks: list[SourceRecord], listed: SplitList, report: ConversionReport, source: str,
                  limit: int | None) -> list[SourceRecord]:
    """The tasks ``listed`` names; the others are skipped, and so are the listed ids that neither a task
    nor an earlier skip has."""
    for task in tasks:
        if task.record_id not in listed.split:
            report.skip(task.record_id, f"not in the split file {listed.path}")
    known = {t.record_id for t in tasks} | {s["dicom_id"] for s in report.skipped}
    beyond = f", or beyond --limit {limit}" if limit is not None else ""
    for dicom_id in listed.split:
        if dicom_id not in known:
            report.skip(dicom_id, f"listed but not read: in the split file {listed.path}, not a record of "
                                  f"{source}{beyond}")
    return [t for t in tasks if t.record_id in listed.split]


def _listed_split(kept: list[SourceRecord], listed: SplitList, patients: np.ndarray, options: ConvertOptions,
                  report: ConversionReport) -> np.ndarray:
    """Split names of the converted records: as listed, or for GD-ViG's list its test phase and its train
    phase with a patient-grouped validation split carved out. A listed class that disagrees with the
    record's label is noted; the record's label is kept."""
    for record in kept:
        label = listed.labels.get(record.record_id, record.label)
        if label != record.label and record.label >= 0:
            report.note(record.record_id, f"class disagrees: the split file {listed.path} says "
                                          f"{CLASS_NAMES[label]}, the dataset's table {CLASS_NAMES[record.label]}; "
                                          f"the table's label is kept")
    given = np.array([listed.split[r.record_id] for r in kept], dtype=str)
    if listed.method == "file":
        return given
    return official_split(patients, given, options.seed, options.val_fraction)


def _note_shared_patients(kept: Sequence[SourceRecord], split: np.ndarray, report: ConversionReport) -> None:
    """Note, at a patient's first record, each patient whose records lie in more than one split: only an
    image-level split does that (a published list, the released recipe), and a user should know."""
    splits: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for record, name in zip(kept, split):
        splits.setdefault(record.patient_id, set()).add(str(name))
        first.setdefault(record.patient_id, record.record_id)
    for patient, names in splits.items():
        if len(names) > 1:
            report.note(first[patient], f"patient {patient} has records in the splits {sorted(names)}: the split "
                                        "is image-level here, so this patient's films are not independent of it")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
