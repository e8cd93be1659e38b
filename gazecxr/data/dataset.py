"""`GazeCXRDataset`: one split of a converted HDF5 file as a torch Dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from gazecxr import CLASS_NAMES
from gazecxr.config.errors import InputError, InputNotFoundError
from gazecxr.data.convert import split_labels
from gazecxr.data.geometry import Letterbox
from gazecxr.data.regions import RegionBoxes, no_regions
from gazecxr.data.splits import SPLIT_METHODS, make_split

SPLITS = ("train", "val", "test", "all")
REQUIRED = ("image", "label", "dicom_id", "patient_id", "split", "orig_size", "scale", "pad")


class GazeCXRDataset(Dataset):
    """Records of one split of one gazecxr HDF5 file, or of several files as one dataset.

    Each item is a dict: ``image`` (1,H,W) float32 in [0,1], ``heatmap`` (1,H,W) float32
    summing to 1 (all zero, with ``has_gaze`` false, for a film without gaze), ``label`` int (index into ``CLASS_NAMES``, -1 for records without one, e.g.
    REFLACX), ``dicom_id`` str and ``index`` (the record's row in the file; with several files,
    the row in their concatenation); plus ``lung_mask``/``heart_mask`` (1,H,W) bool when
    ``masks=True`` and the files have them. With several files the split is recomputed over
    all of them, grouped by patient across files. ``labelled_only`` keeps only records with
    a class label (stages 1 and 3); with a multi-label ``task`` (``gazecxr.tasks.Findings``) an
    item's ``label`` is instead its multi-hot target vector (float32, from the file's ``findings``
    certainties; ``targets`` holds them all) and ``labelled_only`` keeps the records of files with
    findings; ``sources`` only records of those datasets (the file
    attribute ``dataset``, e.g. "EGD-CXR", "REFLACX"), the split still computed over all; ``views`` only
    records whose stored view or projection is one of them (e.g. ``("Frontal",)`` or ``("PA",)``; CheXpert
    files store both). Files are opened lazily in each process, so the dataset
    is safe with DataLoader workers.
    """

    class_names = CLASS_NAMES

    def __init__(
        self,
        h5_path: str | Path | Sequence[str | Path],
        split: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        masks: bool = False,
        labelled_only: bool = False,
        sources: Sequence[str] | None = None,
        task: Any = None,
        views: Sequence[str] | None = None,
    ):
        if split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}, got {split!r}")
        paths = [h5_path] if isinstance(h5_path, (str, Path)) else list(h5_path)
        if not paths:
            raise InputError("no dataset file given")
        self.h5_paths = [Path(p) for p in paths]
        self.h5_path = self.h5_paths[0]
        self.split, self.transform = split, transform
        parts = [self._read_file(path) for path in self.h5_paths]
        canvases = {p["canvas"] for p in parts}
        if len(canvases) > 1:
            raise InputError(f"{[str(p) for p in self.h5_paths]}: files have different canvases {sorted(canvases)}")
        self.canvas = parts[0]["canvas"]
        sizes = [len(p["labels"]) for p in parts]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        column = {key: np.concatenate([p[key] for p in parts]) for key in
                  ("labels", "dicom_ids", "patient_ids", "splits", "sources", "views", "has_gaze")}
        self._geometry = tuple(np.concatenate([p["geometry"][k] for p in parts]) for k in range(3))
        self._fixation_offsets = [p["fixation_offsets"] for p in parts]
        self._reading_rows = [p["reading_rows"] for p in parts]
        self.has_fixations = all(o is not None for o in self._fixation_offsets)
        self.has_masks = masks and all(p["masks"] for p in parts)
        self.has_heatmap = all(p["heatmap"] for p in parts)
        """Whether every file has gaze heatmaps (items then carry ``heatmap``); the public datasets have none."""
        self.attrs = parts[0]["attrs"]
        splits = column["splits"] if len(parts) == 1 else self._joint_split(column)
        keep = (splits == split) if split != "all" else np.ones(len(splits), bool)
        targets = self._task_targets(parts, task) if task is not None else None
        if labelled_only:
            keep &= (column["labels"] >= 0) if targets is None else ~np.isnan(targets).all(axis=1)
        if sources is not None:
            keep &= np.isin(column["sources"], list(sources))
        if views is not None:
            lacking = [str(p) for p, part in zip(self.h5_paths, parts) if not part["has_views"]]
            if lacking:
                raise InputError(f"{lacking}: no stored view or projection to filter on (views={list(views)}); "
                                 "convert CheXpert again with this version")
            keep &= np.isin(column["views"][:, 0], list(views)) | np.isin(column["views"][:, 1], list(views))
        self.indices = np.flatnonzero(keep)
        self.labels = column["labels"][self.indices].astype(np.int64)
        self.targets = self.labels if targets is None else targets[self.indices]
        self.dicom_ids = column["dicom_ids"][self.indices]
        self.patient_ids = column["patient_ids"][self.indices]
        self.sources = column["sources"][self.indices]
        self.has_gaze = column["has_gaze"][self.indices]
        """Per record, whether its heatmap holds gaze (false: a film without gaze, an all-zero map that the
        saliency loss and the saliency scores skip)."""
        self._files: dict[int, h5py.File] = {}

    @staticmethod
    def _read_file(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise InputNotFoundError(f"{path}: dataset file not found (create it with data_prep.egd_cxr)")
        if not h5py.is_hdf5(path):
            raise InputError(f"{path}: not an HDF5 file (create it with gazecxr convert)")
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED if k not in f]
            if missing:
                raise InputError(f"{path}: not a gazecxr dataset, missing datasets {missing}")
            names = [str(n) for n in f["label"].attrs.get("class_names", CLASS_NAMES)]
            if tuple(names) != CLASS_NAMES:
                raise InputError(f"{path}: class_names {names} differ from {list(CLASS_NAMES)}")
            n = len(f["label"])
            return {
                "labels": f["label"][:], "dicom_ids": f["dicom_id"].asstr()[:], "patient_ids": f["patient_id"].asstr()[:],
                "splits": f["split"].asstr()[:],
                "sources": np.full(n, str(f.attrs.get("dataset", "EGD-CXR")), dtype=object),
                "geometry": (f["orig_size"][:], f["scale"][:], f["pad"][:]), "canvas": tuple(f["image"].shape[1:]),
                "masks": all(k in f for k in ("lung_mask", "heart_mask")),
                "heatmap": "heatmap" in f,
                "views": np.stack([f[k].asstr()[:] if k in f else np.full(n, "", dtype=object)
                                   for k in ("view", "projection")], axis=1).astype(object),
                "has_views": "view" in f or "projection" in f,
                "has_gaze": f["has_gaze"][:].astype(bool) if "has_gaze" in f else np.full(n, "heatmap" in f),
                "fixation_offsets": f["fixation_offsets"][:] if "fixation_offsets" in f and "fixations" in f else None,
                "reading_rows": ({int(r): np.flatnonzero((f["reading_record"][:] == r) & f["reading_has_heatmap"][:])
                                  for r in np.unique(f["reading_record"][:])} if "reading_heatmap" in f else {}),
                "attrs": dict(f.attrs),
                "findings": ((f["findings"][:], [str(n) for n in f["findings"].attrs["label_names"]])
                             if "findings" in f else None),
            }

    @staticmethod
    def _task_targets(parts: list[dict[str, Any]], task: Any) -> np.ndarray:
        """Multi-hot targets (N, F) of every record (NaN rows for a file without the task's findings)."""
        rows = []
        for p in parts:
            if p["findings"] is None:
                rows.append(np.full((len(p["labels"]), task.num_outputs), np.nan, np.float32))
            else:
                rows.append(task.targets_from_certainties(*p["findings"]))
        return np.concatenate(rows).astype(np.float32)

    def _joint_split(self, column: dict[str, np.ndarray]) -> np.ndarray:
        """One split over all files, grouped by patient across them, with the first file's split
        parameters. An image in two files (same ``dicom_id``) is grouped with the patient of its
        first record, so it lands in one split even if the files spelled the patient differently."""
        a = self.attrs
        if str(a.get("split_method", "paper")) not in SPLIT_METHODS:
            return column["splits"]
        first_patient: dict[str, str] = {}
        for dicom_id, patient in zip(column["dicom_ids"], column["patient_ids"]):
            first_patient.setdefault(str(dicom_id), str(patient))
        groups = np.array([first_patient[str(d)] for d in column["dicom_ids"]], dtype=object)
        return make_split(str(a.get("split_method", "paper")), groups, split_labels(column["labels"]),
                          int(a.get("seed", 0)), int(a.get("test_size", 100)), float(a.get("val_fraction", 0.1)))

    def _locate(self, index: int) -> tuple[int, int]:
        """(file number, row in that file) of global record ``index``."""
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return k, int(index - self._offsets[k])

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    @property
    def _file(self) -> h5py.File | None:
        """The first file's handle once opened (None before: files open lazily per process)."""
        return self._files.get(0)

    def _h5(self, k: int = 0) -> h5py.File:
        if k not in self._files:
            self._files[k] = h5py.File(self.h5_paths[k], "r")
        return self._files[k]

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = int(self.indices[i])
        k, row = self._locate(index)
        f = self._h5(k)
        sample: dict[str, Any] = {
            "image": torch.from_numpy(f["image"][row].astype(np.float32))[None],
            "label": int(self.labels[i]) if self.targets is self.labels else torch.from_numpy(self.targets[i]),
            "dicom_id": str(self.dicom_ids[i]),
            "index": index,
        }
        if self.has_heatmap:
            sample["heatmap"] = torch.from_numpy(f["heatmap"][row].astype(np.float32))[None]
            sample["has_gaze"] = bool(self.has_gaze[i])
        if self.has_masks:
            sample["lung_mask"] = torch.from_numpy(f["lung_mask"][row])[None]
            sample["heart_mask"] = torch.from_numpy(f["heart_mask"][row])[None]
        return self.transform(sample) if self.transform is not None else sample

    def fixations(self, index: int) -> np.ndarray:
        """Fixations (K, 3) of the record at file row ``index``: canvas x (column), y (row), duration
        in seconds; only those on the image. Empty (0, 3) when the record or file has none."""
        if not self.has_fixations:
            return np.zeros((0, 3), np.float32)
        k, row = self._locate(index)
        start, stop = (int(v) for v in self._fixation_offsets[k][row:row + 2])
        return self._h5(k)["fixations"][start:stop].astype(np.float32).reshape(-1, 3)

    def finding_ellipses(self, index: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every reader's finding ellipses of record ``index``: boxes (K, 4) canvas xmin, ymin, xmax,
        ymax, their labels (K, L) bool and the L label names; K = 0 when the file stores none."""
        k, row = self._locate(index)
        f = self._h5(k)
        if "ellipse_offsets" not in f:
            return np.zeros((0, 4), np.float32), np.zeros((0, 0), bool), []
        start, stop = (int(v) for v in f["ellipse_offsets"][row:row + 2])
        names = [str(n) for n in f["ellipse_labels"].attrs["label_names"]]
        return (f["ellipses"][start:stop].astype(np.float32).reshape(-1, 4),
                f["ellipse_labels"][start:stop].astype(bool).reshape(-1, len(names)), names)

    def regions(self, index: int) -> RegionBoxes:
        """Annotated regions of record ``index`` (a sample's ``index``): the boxes of a public dataset
        (``boxes``, with finding and reader per box) or a REFLACX file's ellipses (one row per ellipse and
        label, reader = reading id); empty when the file stores none."""
        k, row = self._locate(index)
        f = self._h5(k)
        if "box_offsets" in f:
            start, stop = (int(v) for v in f["box_offsets"][row:row + 2])
            return RegionBoxes(f["boxes"][start:stop].astype(np.float32).reshape(-1, 4),
                               f["boxes_original"][start:stop].astype(np.float32).reshape(-1, 4),
                               f["box_finding"][start:stop].astype(np.int32),
                               np.array(f["box_reader"].asstr()[start:stop], dtype=object), "box",
                               [str(n) for n in f["box_finding"].attrs["label_names"]])
        boxes, labels, names = self.finding_ellipses(index)
        if not len(boxes):
            return no_regions(names)
        start = int(f["ellipse_offsets"][row])
        which = f["ellipse_reading"][start:start + len(boxes)]
        ids = f["reading_id"].asstr()[:] if "reading_id" in f else np.zeros(0, dtype=object)
        rows, finding = np.nonzero(labels) if labels.size else (np.zeros(0, int), np.zeros(0, int))
        bare = np.flatnonzero(~labels.any(axis=1)) if labels.size else np.arange(len(boxes))
        rows, finding = np.concatenate([rows, bare]), np.concatenate([finding, np.full(len(bare), -1)])
        order = np.argsort(rows, kind="stable")
        rows, finding = rows[order], finding[order]
        letterbox = self.letterbox(index)
        (nh, nw), (h, w) = letterbox.resized, letterbox.orig_size
        scale = np.array([w / nw, h / nh, w / nw, h / nh])
        shift = np.array([letterbox.pad[1], letterbox.pad[0]] * 2)
        original = ((boxes[rows] - shift) * scale).astype(np.float32)
        reader = np.array([str(ids[r]) if 0 <= r < len(ids) else "" for r in which[rows]], dtype=object)
        return RegionBoxes(boxes[rows], original, finding.astype(np.int32), reader, "ellipse", names)

    def region_mask(self, index: int, finding: str | None = None) -> np.ndarray | None:
        """(H, W) bool canvas region of record ``index``: the stored ``region_mask`` (when ``finding`` is None
        or the mask's finding), else the union of its boxes (of ``finding``) rasterised (pixel centres inside;
        ellipses as ellipses). None when the record was not annotated for regions (e.g. an NIH image outside
        the box list) or the file has no region ground truth."""
        k, row = self._locate(index)
        f = self._h5(k)
        if "regions_known" in f and not bool(f["regions_known"][row]):
            return None
        if "region_mask" in f and (finding is None or finding == f["region_mask"].attrs.get("finding")):
            return f["region_mask"][row].astype(bool)
        regions = self.regions(index)
        if "regions_known" not in f and not len(regions):
            return None
        if finding is not None:
            regions = regions.of(finding)
        return regions.mask(self.canvas)

    def reader_count(self, index: int) -> int:
        """Number of readings with a heatmap of record ``index`` stored separately (0 for one-reader files)."""
        k, row = self._locate(index)
        return len(self._reading_rows[k].get(row, ()))

    def reader_maps(self, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per-reader heatmaps (R, H, W) of record ``index`` and each reader's fixations (K, 3),
        canvas coordinates; R = 0 when the file stores no per-reading maps."""
        k, row = self._locate(index)
        rows = self._reading_rows[k].get(row, np.zeros(0, np.int64))
        if not rows.size:
            return np.zeros((0, *self.canvas), np.float32), []
        f = self._h5(k)
        maps = np.stack([f["reading_heatmap"][int(r)] for r in rows]).astype(np.float32)
        fixations = self.fixations(index)
        if self.has_fixations and "fixation_reading" in f:
            start, stop = (int(v) for v in self._fixation_offsets[k][row:row + 2])
            which = f["fixation_reading"][start:stop]
            return maps, [fixations[which == r] for r in rows]
        return maps, [np.zeros((0, 3), np.float32) for _ in rows]

    def letterbox(self, index: int) -> Letterbox:
        """Geometry of the record at file row ``index`` (a sample's ``index``)."""
        orig, scale, pad = (g[index] for g in self._geometry)
        return Letterbox((int(orig[0]), int(orig[1])), self.canvas, float(scale), (int(pad[0]), int(pad[1])))

    def to_original(self, canvas_map: np.ndarray | torch.Tensor, index: int, distribution: bool = True) -> np.ndarray:
        """Map an H×W model-space map of record ``index`` back to its original image geometry."""
        if isinstance(canvas_map, torch.Tensor):
            canvas_map = canvas_map.detach().cpu().float().numpy()
        return self.letterbox(index).to_original(np.squeeze(canvas_map), distribution)

    def class_counts(self) -> np.ndarray:
        """Number of records per class in this split."""
        return np.bincount(self.labels[self.labels >= 0], minlength=len(CLASS_NAMES))

    def summary(self) -> dict[str, Any]:
        """Size, class counts and patients of this split."""
        counts = self.class_counts()
        return {"split": self.split, "records": len(self), "patients": len(set(self.patient_ids)),
                "classes": {n: int(c) for n, c in zip(CLASS_NAMES, counts)},
                "unlabelled": int((self.labels < 0).sum()),
                "by_source": {str(s): int(c) for s, c in zip(*np.unique(self.sources, return_counts=True))}}
