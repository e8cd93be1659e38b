"""The anatomy section of an EGD-CXR evaluation: each map's share of mass in the lungs, the
heart/mediastinum and elsewhere, per class, for gaze, the model's saliency and Grad-CAM
(``gazecxr.metrics.anatomy.anatomy_by_class``), collected image by image during the evaluation pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from gazecxr import CLASS_NAMES
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.metrics.anatomy import anatomy_by_class

__all__ = ["ANATOMY_METHODS", "AnatomyShares"]

ANATOMY_METHODS: dict[str, str] = {"heatmap": "gaze", "full": "full", "gradcam": "gradcam"}
"""Example key of a map → method name in the anatomy section."""

MASKS = {"lungs": "lung_mask", "heart": "heart_mask"}
"""Region name → mask dataset of a converted EGD-CXR file."""


class AnatomyShares:
    """Collects the maps of ``ANATOMY_METHODS`` and the anatomical masks of each evaluated image (only
    when every file of ``dataset`` stores lung and heart masks and the image has a class label)."""

    def __init__(self, dataset: GazeCXRDataset) -> None:
        self.dataset = dataset
        self.enabled = all(_has_masks(p) for p in dataset.h5_paths)
        self.maps: dict[str, list[np.ndarray]] = {m: [] for m in ANATOMY_METHODS.values()}
        self.masks: dict[str, list[np.ndarray]] = {r: [] for r in MASKS}
        self.labels: list[int] = []

    def add(self, example: Mapping[str, Any]) -> None:
        """One image's example (``run_split``'s ``on_image``): its label, maps and split ``position``."""
        if not self.enabled or int(example["label"]) < 0 or any(k not in example for k in ANATOMY_METHODS):
            return
        index = int(self.dataset.indices[int(example["position"])])
        k, row = self.dataset._locate(index)
        f = self.dataset._h5(k)
        for region, key in MASKS.items():
            self.masks[region].append(f[key][row].astype(bool))
        for key, method in ANATOMY_METHODS.items():
            self.maps[method].append(np.asarray(example[key], np.float32))
        self.labels.append(int(example["label"]))

    def summary(self) -> dict[str, Any] | None:
        """``anatomy_by_class`` of the collected images (gaze as reference), or None without any."""
        if not self.labels:
            return None
        return anatomy_by_class({m: np.stack(v) for m, v in self.maps.items()},
                                {r: np.stack(v) for r, v in self.masks.items()}, np.array(self.labels),
                                CLASS_NAMES, reference="gaze")


def _has_masks(path: Any) -> bool:
    with h5py.File(path, "r") as f:
        return all(key in f for key in MASKS.values())
