"""Array-level training of the field's gaze mechanisms (for the gaze-utility benchmark): no registry, no files.

``fit_mechanism(name, train, val, ...)`` trains mechanism ``name`` of `MECHANISMS` on ``train``
(gaze used by its training objective only, `gazecxr.training.mechanism_tasks`), keeps the epoch
of best validation macro AUC (``val`` is the only split it scores) and returns
``predict_proba(images) -> (N, n_classes)``, which needs no gaze. ``use_gaze=False`` trains
exactly the mechanism with its switch off (the same backbone without gaze):

- ``gaze_token_mask`` (EG-ViT): a tiny timm ViT, top-K gaze patches through all blocks but the
  last with probability 0.5 per batch; off: ``mask_probability = 0``.
- ``gdvig`` (GD-ViG): a tiny Pyramid ViG whose kNN graph adds the gaze term of the map predicted
  by a ViG-UNet generator trained on the gaze maps (MSE; it sees the image at half size); off:
  ``gaze_guided = False`` (the plain ViG, no generator).
- ``gaze_mtl`` (Gaze-MTL): a tiny timm ResNet with auxiliary heads regressing each film's gaze
  statistics (`gazecxr.data.gaze_stats`: time, diffusivity of the gaze map; no label-derived
  localisation target); off: ``aux_weight = 0``. ``MechanismData.time`` gives the viewing times;
  without it the time target is each map's total, constant for normalised heatmaps.

Determinism: the model is built and trained under ``torch.manual_seed(seed)``, batches are drawn
by ``numpy.random.default_rng(seed)``, and the mechanisms' own random draws use generators seeded
from ``seed``; one CPU thread gives bit-identical results for the same arguments. Optimiser: Adam
at ``lr``; a last training batch of one image is skipped (batch norm needs two).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gazecxr.data.gaze_stats import map_statistics, map_time, time_scale
from gazecxr.metrics import classification_metrics
from gazecxr.models.eg_vit import EGViT
from gazecxr.models.gaze_mtl import AUX_TASKS, GazeMTL
from gazecxr.models.gdvig import GDViG
from gazecxr.training.mechanism_tasks import GazeDistanceTask, GazeStatsTask, MechanismTask, TokenMaskTask

WIDTHS = ("tiny", "small")
"""Model sizes of the array API (``tiny``: seconds per epoch on one CPU core at 64×64)."""


@dataclass(frozen=True)
class MechanismData:
    """One split: images (N, 1, H, W) float32 in [0, 1], labels (N,) int64 class indices, gaze
    (N, H, W) float32 >= 0 (each film's gaze heatmap; may be shuffled or uninformative) and,
    optionally, time (N,) each film's viewing time (Gaze-MTL's time target; None: each gaze map's
    total, which is the same for every film of a normalised heatmap)."""

    images: np.ndarray
    labels: np.ndarray
    gaze: np.ndarray
    time: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise ValueError(f"images must be (N, 1, H, W), got {self.images.shape}")
        if self.labels.ndim != 1 or self.images.shape[0] != n:
            raise ValueError(f"labels must be (N,) with N = {self.images.shape[0]} images, got {self.labels.shape}")
        if self.gaze.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"gaze must be (N, H, W) = {(n, *self.images.shape[2:])}, got {self.gaze.shape}")
        if (self.gaze < 0).any() or not np.isfinite(self.gaze).all():
            raise ValueError("gaze maps must be finite and >= 0")
        if self.time is not None and np.shape(self.time) != (n,):
            raise ValueError(f"time must be (N,) = ({n},), got {np.shape(self.time)}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Setup:
    """What a mechanism is built from: class count, gaze switch, model size, square input side,
    seed, and the training split (for statistics such as Gaze-MTL's time normaliser)."""

    n_classes: int
    use_gaze: bool
    width: str
    side: int
    seed: int
    train: MechanismData


@dataclass(frozen=True)
class Mechanism:
    """One mechanism of the array API: ``build`` gives its training task (model inside), ``extras``
    the per-film training inputs its loss reads beside image and label, as arrays (N, ...)."""

    name: str
    build: Callable[[Setup], MechanismTask]
    extras: Callable[[Setup, MechanismData], dict[str, np.ndarray]]
    multiple: int
    """The input side must be a multiple of this (patch size, ViG's stride 32)."""
    min_side: int = 32
    """The smallest input side at which the gaze can act (GD-ViG: below 64 px every key node is a
    neighbour of every node, so the gaze term cannot change the graph)."""


def _heatmap(setup: Setup, split: MechanismData) -> dict[str, np.ndarray]:
    return {"heatmap": split.gaze[:, None]}


EG_VIT_WIDTHS: dict[str, dict[str, Any]] = {
    "tiny": {"patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2},
    "small": {"patch_size": 8, "embed_dim": 64, "depth": 4, "num_heads": 4},
}
KEEP_FRACTION = 64 / 196
"""EG-ViT keeps 64 of ViT-S/16's 196 patches at 224 px; the array API keeps the same share."""


def _token_mask(setup: Setup) -> MechanismTask:
    net = EGViT(img_size=setup.side, num_classes=setup.n_classes, in_channels=1, **EG_VIT_WIDTHS[setup.width])
    patches = net.grid[0] * net.grid[1]
    return TokenMaskTask(net, mask_probability=0.5 if setup.use_gaze else 0.0,
                         keep_tokens=max(1, round(KEEP_FRACTION * patches)), seed=setup.seed)


GDVIG_WIDTHS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": (8, 16, 32, 48), "blocks": (1, 1, 1, 1), "hidden": 64},
    "small": {"channels": (24, 48, 96, 144), "blocks": (1, 1, 2, 1), "hidden": 128},
}


def _gaze_distance(setup: Setup) -> MechanismTask:
    net = GDViG(image_size=setup.side, num_classes=setup.n_classes, in_channels=1, gaze_guided=setup.use_gaze,
                generator_size=max(32, setup.side // 64 * 32), **GDVIG_WIDTHS[setup.width])
    return GazeDistanceTask(net)


GAZE_MTL_WIDTHS: dict[str, dict[str, Any]] = {"tiny": {}, "small": {"overrides": {"channels": (16, 32, 64, 128)}}}


def _gaze_stats(setup: Setup) -> MechanismTask:
    net = GazeMTL(arch="resnet18", num_classes=setup.n_classes, in_channels=1, size="tiny",
                  **GAZE_MTL_WIDTHS[setup.width])
    return GazeStatsTask(net, aux_weight=1.0 if setup.use_gaze else 0.0)


def _statistics(setup: Setup, split: MechanismData) -> dict[str, np.ndarray]:
    """Gaze-MTL's targets of a split, the time normalised by the training split's mean + 2·std."""
    if not setup.use_gaze:
        return {}
    train = setup.train
    reference = train.time if train.time is not None else np.array([map_time(m) for m in train.gaze])
    return {"gaze_stats": map_statistics(split.gaze, split.time, time_scale(reference), AUX_TASKS)}


MECHANISMS: dict[str, Mechanism] = {
    "gaze_token_mask": Mechanism("gaze_token_mask", _token_mask, _heatmap, multiple=8),
    "gdvig": Mechanism("gdvig", _gaze_distance, _heatmap, multiple=32, min_side=64),
    "gaze_mtl": Mechanism("gaze_mtl", _gaze_stats, _statistics, multiple=1),
}
"""Mechanism name → how the array API builds and feeds it."""


def _side(shape: tuple[int, ...], multiple: int) -> int:
    """The model's square input side: the larger image side rounded to a multiple of ``multiple``."""
    return max(multiple, int(round(max(shape) / multiple)) * multiple)


def _tensors(split: MechanismData, extras: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    out = {"image": torch.from_numpy(np.ascontiguousarray(split.images, dtype=np.float32)),
           "label": torch.from_numpy(np.asarray(split.labels, dtype=np.int64))}
    out.update({key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for key, value in extras.items()})
    return out


def _probabilities(task: MechanismTask, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    task.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32))
            parts.append(torch.softmax(task.logits(x), dim=1).double().numpy())
    return np.concatenate(parts)


def macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes present in ``labels`` (with at least one other)."""
    names = [str(k) for k in range(probs.shape[1])]
    return float(classification_metrics(labels, probs, names)["auc_macro"])


def _check(name: str, train: MechanismData, val: MechanismData, n_classes: int, width: str) -> Mechanism:
    if name not in MECHANISMS:
        raise ValueError(f"unknown mechanism {name!r}; valid: {sorted(MECHANISMS)}")
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {list(WIDTHS)}, got {width!r}")
    for split, labels in (("train", train.labels), ("val", val.labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{split} labels must be class indices in [0, {n_classes}), "
                             f"got {labels.min()}..{labels.max()}")
    if len(train) < 2:
        raise ValueError(f"training needs at least 2 images, got {len(train)}")
    if len(np.unique(val.labels)) < 2:
        raise ValueError("the validation split needs at least two classes (the epoch is chosen by its macro AUC)")
    if train.images.shape[1:] != val.images.shape[1:]:
        raise ValueError(f"train and val images differ in shape: {train.images.shape[1:]} vs {val.images.shape[1:]}")
    mechanism = MECHANISMS[name]
    if max(train.images.shape[2:]) < mechanism.min_side:
        raise ValueError(f"{name} needs images of at least {mechanism.min_side} px (got {train.images.shape[2:]}): "
                         "below that its gaze cannot change the model")
    return mechanism


def fit_mechanism(name: str, train: MechanismData, val: MechanismData, *, n_classes: int, use_gaze: bool,
                  epochs: int, batch_size: int, lr: float, seed: int,
                  width: str = "tiny") -> Callable[[np.ndarray], np.ndarray]:
    """Train on train, choose the epoch by val macro AUC (val only), return
    ``predict_proba(images (N, 1, H, W)) -> (N, n_classes)`` probabilities (no gaze input)."""
    mechanism = _check(name, train, val, n_classes, width)
    torch.manual_seed(seed)
    setup = Setup(n_classes, use_gaze, width, _side(train.images.shape[2:], mechanism.multiple), seed, train)
    task = mechanism.build(setup)
    data = _tensors(train, mechanism.extras(setup, train))
    optimiser = torch.optim.Adam(task.trainable.parameters(), lr=lr)
    order_rng = np.random.default_rng(seed)
    best_auc, best_state = -np.inf, copy.deepcopy(task.trainable.state_dict())
    for _ in range(epochs):
        task.train()
        order = order_rng.permutation(len(train))
        for start in range(0, len(order), batch_size):
            rows = torch.from_numpy(order[start:start + batch_size])
            if len(rows) < 2:
                continue
            optimiser.zero_grad()
            task.loss({key: value[rows] for key, value in data.items()}).backward()
            optimiser.step()
        auc = macro_auc(val.labels, _probabilities(task, val.images))
        if auc > best_auc:
            best_auc, best_state = auc, copy.deepcopy(task.trainable.state_dict())
    task.trainable.load_state_dict(best_state)
    task.eval()

    def predict_proba(images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes) of images (N, 1, H, W); no gaze."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (N, 1, H, W), got {images.shape}")
        return _probabilities(task, images)

    return predict_proba
