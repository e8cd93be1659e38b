"""EGD-CXR (+ MIMIC-CXR images) → the gazecxr HDF5 contract, with a JSON report."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.data.egd_tables import GazePoints, read_master_sheet, stream_gaze
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import DEFAULT_SIGMA, gaze_heatmap, in_image
from gazecxr.data.images import ImageReadError, locate_image, read_radiograph
from gazecxr.data.splits import make_split
from gazecxr.egd_format import FIXATIONS, MASK_FILES, SEGMENTATION_DIR

MASK_GROUPS = {"lung_mask": ("left_lung", "right_lung"), "heart_mask": ("mediastinum",)}


@dataclass(frozen=True)
class ConvertOptions:
    """Parameters of one conversion; stored in the HDF5 root attributes and the report."""

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


@dataclass
class ConversionReport:
    """What a conversion did: every record converted and every record skipped, with why."""

    output: str
    options: dict[str, Any]
    converted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, dicom_id: str, reason: str) -> None:
        self.skipped.append({"dicom_id": dicom_id, "reason": reason})

    def summary(self) -> dict[str, Any]:
        """Counts by split, class and skip reason."""
        reasons = Counter(s["reason"].split(":")[0] for s in self.skipped)
        return {
            "converted": len(self.converted),
            "skipped": len(self.skipped),
            "by_split": dict(Counter(r["split"] for r in self.converted)),
            "by_class": dict(Counter(r["class"] for r in self.converted)),
            "skip_reasons": dict(reasons),
        }

    def write(self, path: Path) -> None:
        payload = {"output": self.output, "options": self.options, "summary": self.summary(),
                   "converted": self.converted, "skipped": self.skipped}
        _atomic_write_text(path, json.dumps(payload, indent=2))


@dataclass(frozen=True)
class _Task:
    dicom_id: str
    image_root: str
    relative_path: str
    mask_dir: str
    points: GazePoints
    canvas: tuple[int, int]
    sigma: float
    fixations: GazePoints | None = None


@dataclass
class _Record:
    dicom_id: str
    image: np.ndarray
    heatmap: np.ndarray
    letterbox: Letterbox
    masks: dict[str, np.ndarray]
    image_file: str
    n_samples: int
    n_off_image: int
    fixations: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    fixations_original: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))


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


def _convert_one(task: _Task) -> _Record | tuple[str, str]:
    """Convert one record, or return (dicom_id, reason) when it must be skipped."""
    try:
        file = locate_image(task.image_root, task.relative_path)
        pixels = read_radiograph(file)
        letterbox = Letterbox.fit(pixels.shape, task.canvas)
        pts = task.points
        on_image = in_image(pts.x, pts.y, letterbox.orig_size)
        if not on_image.any():
            return task.dicom_id, f"no gaze samples: all {len(pts)} samples fall outside the {pixels.shape} image"
        heatmap = gaze_heatmap(pts.x, pts.y, letterbox, task.sigma, pts.weight)
        masks = _read_masks(Path(task.mask_dir), letterbox)
    except ImageReadError as err:
        reason = "image missing" if "image missing" in str(err) or "not found" in str(err) else "unreadable image"
        return task.dicom_id, f"{reason}: {err}"
    canvas_fix, original_fix = fixation_arrays(task.fixations, letterbox)
    return _Record(task.dicom_id, letterbox.image_to_canvas(pixels), heatmap, letterbox, masks,
                   str(file), int(on_image.sum()), int((~on_image).sum()), canvas_fix, original_fix)


def fixation_arrays(points: GazePoints | None, letterbox: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """On-image fixations as canvas (x, y, duration) float32 rows and original (x, y) rows."""
    if points is None or not len(points):
        return np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32)
    keep = in_image(points.x, points.y, letterbox.orig_size)
    x, y = np.asarray(points.x, np.float64)[keep], np.asarray(points.y, np.float64)[keep]
    u, v = letterbox.to_canvas_coords(x, y)
    canvas = np.stack([u, v, np.asarray(points.weight, np.float64)[keep]], axis=1).astype(np.float32)
    return canvas, np.stack([x, y], axis=1).astype(np.float32)


def _run_tasks(tasks: list[_Task], workers: int) -> Iterator[_Record | tuple[str, str]]:
    """Results in task order, decoded by ``workers`` processes with a bounded queue."""
    if workers <= 1:
        yield from map(_convert_one, tasks)
        return
    window = workers * 4
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(tasks), window):
            yield from pool.map(_convert_one, tasks[start:start + window])


class StrictConversionError(ValueError):
    """``strict`` conversion with skipped records: nothing was written but the report."""

    def __init__(self, report: ConversionReport, report_file: Path):
        self.report, self.report_file = report, report_file
        super().__init__(f"--strict: {len(report.skipped)} record(s) skipped, output not written; "
                         f"see {report_file}")


class _H5Writer:
    """Appends records to resizable HDF5 datasets, one chunk per image."""

    def __init__(self, file: h5py.File, canvas: tuple[int, int]):
        self.file, self.canvas, self.n = file, canvas, 0
        h, w = canvas
        for name, dtype in (("image", np.float32), ("heatmap", np.float32)):
            file.create_dataset(name, (0, h, w), dtype, maxshape=(None, h, w), chunks=(1, h, w),
                                compression="lzf")
        for name, dtype, tail in (("orig_size", np.int32, (2,)), ("scale", np.float64, ()),
                                  ("pad", np.int32, (2,))):
            file.create_dataset(name, (0, *tail), dtype, maxshape=(None, *tail))
        self.mask_names: set[str] = set()
        self.fixations: list[np.ndarray] = []
        self.fixations_original: list[np.ndarray] = []

    def append(self, record: _Record) -> None:
        i, h, w = self.n, *self.canvas
        for name in ("image", "heatmap", "orig_size", "scale", "pad"):
            self.file[name].resize(i + 1, axis=0)
        self.file["image"][i] = record.image
        self.file["heatmap"][i] = record.heatmap
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
        self.fixations.append(record.fixations)
        self.fixations_original.append(record.fixations_original)
        self.n += 1

    def _write_fixations(self) -> None:
        """The ragged fixation tables: ``fixation_offsets`` (N+1,), ``fixations`` (M, 3), ``fixations_original`` (M, 2)."""
        counts = [len(f) for f in self.fixations]
        self.file.create_dataset("fixation_offsets", data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        self.file.create_dataset("fixations", data=np.concatenate(self.fixations).astype(np.float32).reshape(-1, 3))
        self.file.create_dataset("fixations_original",
                                 data=np.concatenate(self.fixations_original).astype(np.float32).reshape(-1, 2))
        self.file["fixations"].attrs["columns"] = ["x", "y", "duration_s"]
        self.file["fixations_original"].attrs["columns"] = ["x", "y"]

    def finish(self, columns: dict[str, np.ndarray], attrs: dict[str, Any], fixations: bool = True) -> None:
        if fixations:
            self._write_fixations()
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


def convert(
    egd_dir: str | Path,
    image_dir: str | Path,
    output: str | Path,
    options: ConvertOptions = ConvertOptions(),
    progress: bool = True,
) -> ConversionReport:
    """Convert raw EGD-CXR records to ``output`` (HDF5) and write its JSON report beside it.

    Bad records are skipped with a reason; the HDF5 file is written under a temporary name
    and renamed only when complete, so an earlier output is never lost to a failed run.
    Raises ``ValueError`` when no record could be converted, and ``StrictConversionError``
    when ``options.strict`` and any record was skipped; neither writes the HDF5 file.
    """
    egd_dir, image_dir, output = Path(egd_dir), Path(image_dir), Path(output)
    canvas = (options.height, options.width)
    if options.height % 32 or options.width % 32:
        raise ValueError(f"--height/--width must be multiples of 32 for the networks, got {canvas}")
    report = ConversionReport(str(output), asdict(options))
    sheet = read_master_sheet(egd_dir)
    if options.limit is not None:
        sheet = sheet.iloc[: options.limit]
    duplicated = sheet["dicom_id"].duplicated()
    for dicom_id in sheet.loc[duplicated, "dicom_id"]:
        report.skip(dicom_id, "duplicate dicom_id: listed more than once in the master sheet")
    sheet = sheet[~duplicated]
    bad_label = sheet["label"] < 0
    for dicom_id in sheet.loc[bad_label, "dicom_id"]:
        report.skip(dicom_id, "label not exactly one of Normal/CHF/pneumonia")
    sheet = sheet[~bad_label]
    gaze = stream_gaze(egd_dir, set(sheet["dicom_id"]), options.gaze)
    has_gaze = sheet["dicom_id"].isin(gaze.keys())
    for dicom_id in sheet.loc[~has_gaze, "dicom_id"]:
        report.skip(dicom_id, f"no gaze samples: no rows for this image in the {options.gaze} gaze table")
    sheet = sheet[has_gaze].reset_index(drop=True)
    has_fixations = (egd_dir / FIXATIONS).is_file()
    fixations = (gaze if options.gaze == "fixations" else stream_gaze(egd_dir, set(sheet["dicom_id"]), "fixations")
                 ) if has_fixations else {}
    tasks = [
        _Task(row.dicom_id, str(image_dir), row.path, str(egd_dir / SEGMENTATION_DIR / row.dicom_id),
              gaze[row.dicom_id], canvas, options.sigma, fixations.get(row.dicom_id))
        for row in sheet.itertuples()
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    kept: list[int] = []
    try:
        with h5py.File(tmp, "w") as file:
            writer = _H5Writer(file, canvas)
            results = _run_tasks(tasks, options.workers)
            for i, result in enumerate(tqdm(results, total=len(tasks), desc="converting", unit="img",
                                            disable=not progress)):
                if isinstance(result, tuple):
                    report.skip(*result)
                    continue
                writer.append(result)
                kept.append(i)
                report.converted.append({
                    "dicom_id": result.dicom_id, "patient_id": str(sheet.at[i, "patient_id"]),
                    "class": CLASS_NAMES[int(sheet.at[i, "label"])], "image_file": result.image_file,
                    "orig_size": list(result.letterbox.orig_size), "gaze_samples": result.n_samples,
                    "gaze_samples_off_image": result.n_off_image, "fixations": len(result.fixations),
                })
            if not kept:
                raise ValueError(f"no record could be converted from {egd_dir} ({len(report.skipped)} skipped; "
                                 f"first reason: {report.skipped[0]['reason'] if report.skipped else 'empty master sheet'})")
            done = sheet.iloc[kept]
            labels = done["label"].to_numpy(np.int64)
            patients = done["patient_id"].astype(str).to_numpy()
            split = make_split(options.split, patients, labels, options.seed, options.test_size,
                               options.val_fraction)
            for rec, name in zip(report.converted, split):
                rec["split"] = str(name)
            writer.finish(
                {"label": labels, "dicom_id": done["dicom_id"].to_numpy(), "patient_id": patients,
                 "split": split},
                {"source": f"EGD-CXR ({egd_dir.name}) + images ({image_dir.name})",
                 "sigma": options.sigma, "gaze_source": options.gaze, "height": options.height,
                 "width": options.width, "split_method": options.split, "seed": options.seed,
                 "test_size": options.test_size, "val_fraction": options.val_fraction,
                 "limit": -1 if options.limit is None else options.limit,
                 "heatmap": "gaze samples splatted at model resolution, Gaussian σ·scale, sum 1",
                 "package_version": __version__,
                 "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                fixations=has_fixations,
            )
        if options.strict and report.skipped:
            rejected = output.with_name(output.stem + ".rejected.report.json")
            report.write(rejected)
            raise StrictConversionError(report, rejected)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    report.write(report_path(output))
    return report


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
