"""`GazeCXRDataset`: one split of a converted HDF5 file as a torch Dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from gazecxr import CLASS_NAMES
from gazecxr.data.geometry import Letterbox

SPLITS = ("train", "val", "test", "all")
REQUIRED = ("image", "heatmap", "label", "dicom_id", "patient_id", "split", "orig_size", "scale", "pad")


class GazeCXRDataset(Dataset):
    """Records of one split of a gazecxr HDF5 file.

    Each item is a dict: ``image`` (1,H,W) float32 in [0,1], ``heatmap`` (1,H,W) float32
    summing to 1, ``label`` int (index into ``CLASS_NAMES``), ``dicom_id`` str and ``index``
    (the record's row in the file); plus ``lung_mask``/``heart_mask`` (1,H,W) bool when
    ``masks=True`` and the file has them. The file is opened lazily in each process, so
    the dataset is safe with DataLoader workers.
    """

    class_names = CLASS_NAMES

    def __init__(
        self,
        h5_path: str | Path,
        split: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        masks: bool = False,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.h5_path = Path(h5_path)
        if not self.h5_path.is_file():
            raise FileNotFoundError(f"{self.h5_path}: dataset file not found (create it with data_prep.egd_cxr)")
        self.split, self.transform = split, transform
        with h5py.File(self.h5_path, "r") as f:
            missing = [k for k in REQUIRED if k not in f]
            if missing:
                raise ValueError(f"{self.h5_path}: not a gazecxr dataset, missing datasets {missing}")
            names = [str(n) for n in f["label"].attrs.get("class_names", CLASS_NAMES)]
            if tuple(names) != CLASS_NAMES:
                raise ValueError(f"{self.h5_path}: class_names {names} differ from {list(CLASS_NAMES)}")
            splits = f["split"].asstr()[:]
            self.indices = np.flatnonzero(splits == split) if split != "all" else np.arange(len(splits))
            self.labels = f["label"][:][self.indices].astype(np.int64)
            self.dicom_ids = f["dicom_id"].asstr()[:][self.indices]
            self.patient_ids = f["patient_id"].asstr()[:][self.indices]
            self._geometry = (f["orig_size"][:], f["scale"][:], f["pad"][:])
            self.canvas = tuple(f["image"].shape[1:])
            self.has_masks = masks and all(k in f for k in ("lung_mask", "heart_mask"))
            self.has_fixations = "fixation_offsets" in f and "fixations" in f
            self._fixation_offsets = f["fixation_offsets"][:] if self.has_fixations else None
            self.attrs = dict(f.attrs)
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def _h5(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.h5_path, "r")
        return self._file

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        f = self._h5()
        sample: dict[str, Any] = {
            "image": torch.from_numpy(f["image"][row].astype(np.float32))[None],
            "heatmap": torch.from_numpy(f["heatmap"][row].astype(np.float32))[None],
            "label": int(self.labels[i]),
            "dicom_id": str(self.dicom_ids[i]),
            "index": row,
        }
        if self.has_masks:
            sample["lung_mask"] = torch.from_numpy(f["lung_mask"][row])[None]
            sample["heart_mask"] = torch.from_numpy(f["heart_mask"][row])[None]
        return self.transform(sample) if self.transform is not None else sample

    def fixations(self, index: int) -> np.ndarray:
        """Fixations (K, 3) of the record at file row ``index``: canvas x (column), y (row), duration
        in seconds; only those on the image. Empty (0, 3) when the record or file has none."""
        if not self.has_fixations:
            return np.zeros((0, 3), np.float32)
        start, stop = (int(v) for v in self._fixation_offsets[index:index + 2])
        return self._h5()["fixations"][start:stop].astype(np.float32).reshape(-1, 3)

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
        return np.bincount(self.labels, minlength=len(CLASS_NAMES))

    def summary(self) -> dict[str, Any]:
        """Size, class counts and patients of this split."""
        counts = self.class_counts()
        return {"split": self.split, "records": len(self), "patients": len(set(self.patient_ids)),
                "classes": {n: int(c) for n, c in zip(CLASS_NAMES, counts)}}
