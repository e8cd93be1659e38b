"""Inputs of the explanation study: the source study's image recipe, splits and region ground truth.

Recipe (seeds/002, section 3.3.3): CLAHE, resize to ``image_size`` × ``image_size``, augmentation in
training (Gaussian noise, rotation ≤ 10°, horizontal flip, brightness/contrast), then a per-image
z-score. CLAHE is OpenCV's ``createCLAHE`` (clip limit 2, 8 × 8 tiles by default) on a 16-bit copy of
the [0, 1] image: OpenCV is already installed with pytorch-grad-cam (the ``[explain]`` extra), it is
the implementation CXR pipelines use, and its C++ kernel is an order of magnitude faster than
scikit-image's ``equalize_adapthist`` (which would be one more dependency).

Region ground truth per (test image, finding): a file's ``region_mask`` (SIIM-ACR), its boxes (NIH,
VinDr) or ellipses (REFLACX), resized with the image (nearest neighbour; boxes scaled), or — with
``regions: gaze`` — the hottest ``gaze_region_percent`` % of the radiologist's gaze map (EGD-CXR). With
``regions: both`` (CXR-P: masks and gaze on the same films) a pair's region is its annotation and the
film's gaze map and gaze region ride beside it, so every map is scored against both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from gazecxr.config.errors import ConfigError, InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.splits import balanced_group_split
from gazecxr.tasks import TaskSpec

__all__ = ["Pair", "Recipe", "StudyImages", "clahe", "pairs_of", "resize_map", "study_splits"]


@dataclass(frozen=True)
class Recipe:
    """The image recipe (``explain.recipe`` section)."""

    image_size: int = 224
    clahe: bool = True
    clip_limit: float = 2.0
    tile_grid: int = 8
    rotation: float = 10.0
    hflip: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    noise_std: float = 0.03

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> Recipe:
        """The recipe of a config section; unknown keys are an error naming the valid ones."""
        section = dict(section or {})
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - valid)
        if unknown:
            raise ConfigError(f"unknown explain.recipe key(s) {unknown}; valid: {sorted(valid)}")
        recipe = cls(**section)
        if recipe.image_size < 16:
            raise ConfigError(f"explain.recipe.image_size must be at least 16; got {recipe.image_size}")
        return recipe


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV) of a [0, 1] image (H, W), in [0, 1]."""
    import cv2

    grey = np.rint(np.clip(np.asarray(image, np.float64), 0, 1) * 65535).astype(np.uint16)
    out = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid))).apply(grey)
    return out.astype(np.float32) / 65535.0


def resize_map(values: Any, size: int, nearest: bool = False) -> np.ndarray:
    """An (H, W) map or mask brought to size × size (bilinear; nearest neighbour for masks)."""
    t = torch.as_tensor(np.asarray(values, np.float32))[None, None]
    if nearest:
        return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy() > 0.5
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


class StudyImages(Dataset):
    """Records ``rows`` (positions in ``base``) of a converted file through the recipe: items hold
    ``image`` (1, S, S) z-scored, ``label`` (the task's target), ``index`` (file row), ``position``.

    With ``box_findings`` (the detector's classes, seed 000's multi-task model) items also carry the
    record's boxes of those findings at S × S, padded (``gazecxr.training.detection``); augmentation is
    then photometric only (noise, brightness, contrast), so that the boxes stay where they are.
    """

    def __init__(self, base: GazeCXRDataset, rows: Sequence[int], recipe: Recipe, augment: bool,
                 box_findings: Sequence[str] | None = None):
        self.base, self.rows, self.recipe, self.augment = base, np.asarray(rows, np.int64), recipe, augment
        self.box_findings = None if box_findings is None else list(box_findings)

    def __len__(self) -> int:
        return len(self.rows)

    def grey(self, position: int) -> np.ndarray:
        """The record's CLAHE-equalised image at S × S in [0, 1] (before augmentation and z-score)."""
        image = self.base[int(self.rows[position])]["image"][0].numpy()
        if self.recipe.clahe:
            image = clahe(image, self.recipe.clip_limit, self.recipe.tile_grid)
        return resize_map(image, self.recipe.image_size)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = self.base[int(self.rows[position])]
        image = item["image"][0].numpy()
        if self.recipe.clahe:
            image = clahe(image, self.recipe.clip_limit, self.recipe.tile_grid)
        x = torch.from_numpy(resize_map(image, self.recipe.image_size))[None]
        if self.augment:
            x = self._augment(x)
        x = (x - x.mean()) / x.std().clamp_min(1e-6)
        out = {"image": x, "label": item["label"], "index": int(item["index"]), "position": position}
        if self.box_findings is not None:
            out.update(self._boxes(int(item["index"])))
        return out

    def _boxes(self, index: int) -> dict[str, Any]:
        from gazecxr.training.detection import MAX_BOXES

        regions = self.base.regions(index)
        h, w = self.base.canvas
        s = self.recipe.image_size
        boxes, labels = torch.zeros(MAX_BOXES, 4), torch.zeros(MAX_BOXES, dtype=torch.long)
        kept = [(b, self.box_findings.index(regions.label_names[f]) + 1) for b, f in zip(regions.boxes, regions.finding)
                if f >= 0 and regions.label_names[f] in self.box_findings][:MAX_BOXES]
        for k, (box, label) in enumerate(kept):
            boxes[k] = torch.as_tensor(np.asarray(box, np.float64) * [s / w, s / h, s / w, s / h], dtype=torch.float32)
            labels[k] = label
        return {"boxes": boxes, "box_labels": labels, "n_boxes": len(kept)}

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        r = self.recipe
        if self.box_findings is None:
            angle = float(torch.empty(()).uniform_(-r.rotation, r.rotation))
            x = TF.rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
            if r.hflip and bool(torch.rand(()) < 0.5):
                x = TF.horizontal_flip(x)
        gain = 1 + float(torch.empty(()).uniform_(-r.contrast, r.contrast))
        offset = float(torch.empty(()).uniform_(-r.brightness, r.brightness))
        x = (x - 0.5) * gain + 0.5 + offset
        return (x + r.noise_std * torch.randn_like(x)).clamp(0, 1)


def _positive(targets: np.ndarray) -> np.ndarray:
    t = np.asarray(targets)
    return (t.reshape(len(t), -1)[:, 0] > 0.5) if t.ndim > 1 else t > 0


def study_splits(h5: Any, task: TaskSpec, balanced: Mapping[str, Any] | None,
                 seed: int) -> dict[str, tuple[GazeCXRDataset, np.ndarray]]:
    """Per split (train, val, test): the labelled records of the file and the positions used.

    ``balanced`` ({enabled, n, val, test}, single-output tasks only) instead draws n records, half
    positive, from all labelled records (seeded), test/2 and val/2 of each class for test and validation
    and the rest for training, as the source study built its 7,200-image SIIM subset (5,200 / 1,000 /
    1,000); drawn by patient (`balanced_group_split`): no patient has records in two splits.
    """
    wanted = task if task.multilabel else None
    if not balanced or not balanced.get("enabled", False):
        out = {}
        for split in ("train", "val", "test"):
            base = GazeCXRDataset(h5, split, labelled_only=True, task=wanted)
            if not len(base):
                raise InputError(f"{h5}: the {split!r} split has no labelled records")
            out[split] = (base, np.arange(len(base)))
        return out
    if task.num_outputs != 1:
        raise ConfigError(f"explain.balanced needs a single-output task (e.g. siim_pneumothorax); "
                          f"{task.name!r} has {task.num_outputs}")
    base = GazeCXRDataset(h5, "all", labelled_only=True, task=wanted)
    n, n_val, n_test = int(balanced["n"]), int(balanced["val"]), int(balanced["test"])
    positive = _positive(base.targets)
    half = n // 2
    for name, count in (("pos", int(positive.sum())), ("neg", int((~positive).sum()))):
        if count < half:
            raise InputError(f"{h5}: balanced subset of {n} needs {half} {name} records, the file has {count}")
    per_class = {"test": n_test // 2, "val": (n_test + n_val) // 2 - n_test // 2,
                 "train": half - (n_test + n_val) // 2}
    empty = [split for split, k in per_class.items() if k <= 0]
    if empty:
        raise InputError(f"balanced subset: the {empty[0]!r} split is empty (n={n}, val={n_val}, test={n_test})")
    rows = balanced_group_split(base.patient_ids, positive, per_class, seed)
    return {split: (base, rows[split]) for split in ("train", "val", "test")}


@dataclass
class Pair:
    """One scored (image, finding): the logit explained, the region (S, S) bool and its boxes (K, 4) at S;
    with ``regions: both``, the film's gaze map (S, S) and its gaze region (None for a film without gaze)."""

    position: int
    index: int
    target: int
    finding: str
    region: np.ndarray
    boxes: np.ndarray | None
    gaze_map: np.ndarray | None = None
    gaze_region: np.ndarray | None = None


def _gaze_region(heatmap: np.ndarray, percent: float) -> np.ndarray:
    flat = heatmap.ravel()
    k = max(1, math.ceil(percent * flat.size / 100))
    cutoff = np.partition(flat, flat.size - k)[flat.size - k]
    return (heatmap >= cutoff) & (heatmap > 0)


def _film_gaze(base: GazeCXRDataset, item: Mapping[str, Any], size: int, regions: str) -> np.ndarray | None:
    """The record's gaze map at ``size`` × ``size``; None for a film without gaze (``has_gaze`` false)."""
    if "heatmap" not in item:
        raise InputError(f"{base.h5_path}: explain.regions is {regions!r} but the file has no gaze heatmaps")
    if not item.get("has_gaze", True):
        return None
    return resize_map(item["heatmap"][0].numpy(), size)


def pairs_of(base: GazeCXRDataset, row: int, position: int, target: Any, task: TaskSpec, size: int,
             regions: str, gaze_percent: float) -> list[Pair]:
    """The scored pairs of one record: each present finding with a region (``regions: annotations``), the
    record's true class with its gaze region (``regions: gaze``; none for a film without gaze), or the
    annotated pairs with the film's gaze beside them (``regions: both``)."""
    item = base[int(row)]
    index = int(item["index"])
    if regions == "gaze":
        heat = _film_gaze(base, item, size, regions)
        if heat is None:
            return []
        cls = int(np.argmax(np.asarray(target))) if task.multilabel else int(target)
        return [Pair(position, index, cls, task.names[cls], _gaze_region(heat, gaze_percent), None)]
    pairs = _annotated_pairs(base, index, position, target, task, size)
    if regions == "both" and pairs:
        heat = _film_gaze(base, item, size, regions)
        for pair in pairs:
            if heat is not None:
                pair.gaze_map, pair.gaze_region = heat, _gaze_region(heat, gaze_percent)
    return pairs


def _annotated_pairs(base: GazeCXRDataset, index: int, position: int, target: Any, task: TaskSpec,
                     size: int) -> list[Pair]:
    """Each present finding of record ``index`` with an annotated region that covers part of the canvas."""
    present = np.flatnonzero(np.asarray(target, np.float64).reshape(-1) > 0.5) if task.multilabel else [int(target)]
    h, w = base.canvas
    out = []
    for f in present:
        name = task.names[int(f)]
        mask = base.region_mask(index, name)
        if mask is None or not mask.any():
            continue
        region = resize_map(mask, size, nearest=True)
        if not region.any() or region.all():
            continue
        boxes = None
        annotated = base.regions(index)
        if len(annotated) and name in annotated.label_names:
            b = annotated.of(name).boxes.astype(np.float64)
            if len(b):
                boxes = b * np.array([size / w, size / h, size / w, size / h])
        out.append(Pair(position, index, int(f), name, region, boxes))
    return out
