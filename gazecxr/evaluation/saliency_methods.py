"""The evaluated methods as predictors, the non-learned saliency maps, and per-image scoring.

A predictor maps a batch of images (N, 1, H, W) and their letterboxed image regions
(N, H, W, True on the image) to named saliency maps and named class probabilities. Every
saliency map is a distribution over the model canvas (non-negative, sums to 1), like the
ground-truth heatmaps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor, nn

from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.method_outputs import MethodOutputs, Predictor
from gazecxr.evaluation.peer_predictors import peer_entry_predictor
from gazecxr.explain.gradcam import gradcam_from_tap
from gazecxr.metrics import (
    auc_judd,
    correlation_coefficient,
    histogram_similarity,
    kl_divergence,
    nss,
    shuffled_auc,
)
from gazecxr.models.cooperative import GazeCXRModel, freeze
from gazecxr.models.densenet import DenseNetEncoder
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.tasks import task_from_record
from gazecxr.training.checkpoint_io import (
    SALIENCY_STAGES,
    load_encoder,
    load_full_model,
    load_saliency,
)
from gazecxr.training.peers import PEER_METHODS
from gazecxr.training.registry import Entry, Registry

NSS_TOP_FRACTION: float = 0.05
"""Share of canvas pixels, those of highest ground-truth density, that form NSS's fixation map."""

SALIENCY_METRICS: tuple[str, ...] = ("kl", "cc", "hs", "nss", "auc_judd", "sauc")
"""Per-image saliency scores, in report order (KL lower is better, the others higher)."""

FIXATION_METRICS: tuple[str, ...] = ("auc_judd", "sauc")
"""The scores that need recorded fixations (absent for files without them)."""

_CHUNK = 64


def uniform_map(size: tuple[int, int]) -> np.ndarray:
    """The uniform distribution over an (H, W) canvas."""
    h, w = size
    return np.full((h, w), 1.0 / (h * w), dtype=np.float64)


def center_bias_map(h5_path: str | Path | Sequence[str | Path], split: str = "train") -> np.ndarray:
    """The mean ground-truth heatmap of ``split`` in a gazecxr HDF5 file, summing to 1 (for a list
    of files, over their joint patient-grouped split, as in training)."""
    if not isinstance(h5_path, (str, Path)):
        dataset = GazeCXRDataset(h5_path, split)
        if not len(dataset):
            raise InputError(f"{[str(p) for p in h5_path]}: the {split!r} split is empty; no centre-bias map")
        total = sum(dataset[i]["heatmap"][0].double().numpy() for i in range(len(dataset)))
        return total / total.sum()
    with h5py.File(h5_path, "r") as f:
        rows = np.flatnonzero(f["split"].asstr()[:] == split)
        if rows.size == 0:
            raise InputError(f"{h5_path}: the {split!r} split is empty; no centre-bias map")
        total = np.zeros(f["heatmap"].shape[1:], dtype=np.float64)
        for start in range(0, rows.size, _CHUNK):
            maps = f["heatmap"][rows[start:start + _CHUNK]].astype(np.float64)
            sums = maps.sum(axis=(1, 2), keepdims=True)
            total += (maps / np.where(sums > 0, sums, 1.0)).sum(axis=0)  # films without gaze add nothing
    return total / total.sum()


def gradcam_saliency(cams: Tensor, regions: Tensor) -> Tensor:
    """Grad-CAM maps (N, H, W) as distributions confined to each image's letterboxed region.

    ``regions`` (N, H, W) is True on the image and False on the padding. A CAM with no mass
    on the image (all zero) becomes the uniform distribution over the image region.
    """
    inside = regions.to(cams.dtype)
    masked = cams.clamp_min(0) * inside
    totals = masked.flatten(1).sum(1).view(-1, 1, 1)
    uniform = inside / inside.flatten(1).sum(1).view(-1, 1, 1)
    return torch.where(totals > 0, masked / totals.clamp_min(torch.finfo(cams.dtype).tiny), uniform)


def fixation_map(gt: np.ndarray, fraction: float = NSS_TOP_FRACTION) -> np.ndarray:
    """Binary fixation maps (N, H, W) for NSS from ground-truth heatmaps (N, H, W).

    The fixated pixels of a map are its ``ceil(fraction · H · W)`` pixels of highest density
    (ties broken by pixel order), excluding pixels of zero density.
    """
    flat = np.asarray(gt, dtype=np.float64).reshape(len(gt), -1)
    k = max(1, math.ceil(fraction * flat.shape[1]))
    top = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    fixated = np.zeros(flat.shape, dtype=np.float64)
    np.put_along_axis(fixated, top, 1.0, axis=1)
    fixated[flat <= 0] = 0.0
    return fixated.reshape(np.shape(gt))


def score_maps(pred: np.ndarray, gt: np.ndarray, fixations: np.ndarray,
               nonfixations: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image scores (arrays of N) of predicted maps against ground truth (N, H, W): KL, CC, HS, NSS on
    the binary ``fixations`` maps and, when the other images' fixation counts ``nonfixations`` are given,
    AUC-Judd and sAUC. Images without a fixated pixel score NaN on the fixation metrics."""
    scores = {"kl": np.asarray(kl_divergence(pred, gt)), "cc": np.asarray(correlation_coefficient(pred, gt)),
              "hs": np.asarray(histogram_similarity(pred, gt))}
    fixated = np.asarray(fixations).reshape(len(pred), -1).any(axis=1)
    metrics = {"nss": lambda keep: nss(pred[keep], fixations[keep])}
    if nonfixations is not None:
        metrics["auc_judd"] = lambda keep: auc_judd(pred[keep], fixations[keep])
        metrics["sauc"] = lambda keep: shuffled_auc(pred[keep], fixations[keep], nonfixations[keep])
    for name, metric in metrics.items():
        scores[name] = np.full(len(pred), np.nan)
        if fixated.any():
            scores[name][fixated] = metric(fixated)
    return scores


# ----------------------------------------------------------------------------- predictors


def softmax_probabilities(logits: Tensor) -> Tensor:
    """Exclusive-class probabilities of (N, K) logits."""
    return torch.softmax(logits.float(), 1)


def full_model_predictor(model: GazeCXRModel, name: str = "full", stage1_name: str | None = "stage1",
                         gradcam_name: str | None = "gradcam",
                         probabilities: Callable[[Tensor], Tensor] = softmax_probabilities) -> Predictor:
    """The 3-stage model: its saliency and fusion-classifier ``probabilities`` (of its logits) as ``name``,
    from the same DenseNet pass the DenseNet's own probabilities as ``stage1_name`` and its Grad-CAM for
    its predicted class as ``gradcam_name`` (see `gradcam_saliency`); None leaves one out."""

    def predict(images: Tensor, regions: Tensor) -> MethodOutputs:
        with torch.no_grad():
            out = model(images)
        result = MethodOutputs(saliency={name: saliency_from_logits(out["saliency_logits"])[:, 0]},
                               probs={name: probabilities(out["class_logits"])})
        if stage1_name is not None:
            result.probs[stage1_name] = probabilities(out["encoder_logits"])
        if gradcam_name is not None:
            cams, _ = gradcam_from_tap(model.encoder, out["dense_features"], tuple(images.shape[-2:]))
            result.saliency[gradcam_name] = gradcam_saliency(cams, regions)
        return result

    return predict


def saliency_predictor(name: str, unet: nn.Module, encoder: DenseNetEncoder | None = None) -> Predictor:
    """A saliency UNet (fed the DenseNet feature when it has an ``encoder``) as method ``name``."""

    def predict(images: Tensor, regions: Tensor) -> MethodOutputs:
        with torch.no_grad():
            aux = encoder.forward_features(images)["tap"] if encoder is not None else None
            logits = unet(images, aux=aux)["logits"]
        return MethodOutputs(saliency={name: saliency_from_logits(logits)[:, 0]})

    return predict


def encoder_predictor(name: str, encoder: DenseNetEncoder,
                      probabilities: Callable[[Tensor], Tensor] = softmax_probabilities) -> Predictor:
    """A stage-1 DenseNet's class ``probabilities`` (of its logits) as method ``name``."""

    def predict(images: Tensor, regions: Tensor) -> MethodOutputs:
        with torch.no_grad():
            logits = encoder.forward_features(images)["logits"]
        return MethodOutputs(probs={name: probabilities(logits)})

    return predict


def constant_predictor(name: str, saliency_map: np.ndarray) -> Predictor:
    """The same (H, W) saliency map for every image, as method ``name``."""
    fixed = torch.from_numpy(np.asarray(saliency_map, dtype=np.float64))

    def predict(images: Tensor, regions: Tensor) -> MethodOutputs:
        return MethodOutputs(saliency={name: fixed.expand(len(images), *fixed.shape)})

    return predict


def entry_predictor(registry: Registry, entry: Entry, name: str, device: torch.device) -> Predictor:
    """The model of a registry entry as method ``name``, frozen on ``device``: a stage-1 entry gives
    class probabilities (independent sigmoids for a multi-label entry), a stage-2 or baseline entry a
    saliency map, a stage-3 entry both."""
    task, _ = task_from_record(entry.architecture.get("task"))
    probabilities = task.probabilities if task.multilabel else softmax_probabilities
    if entry.stage == "stage1":
        encoder, _ = load_encoder(registry, entry.id)
        return encoder_predictor(name, freeze(encoder).to(device), probabilities)
    if entry.stage in SALIENCY_STAGES:
        unet, encoder, _ = load_saliency(registry, entry.id, entry.stage)
        return saliency_predictor(name, freeze(unet).to(device),
                                  None if encoder is None else freeze(encoder).to(device))
    if entry.stage == "stage3":
        model, _ = load_full_model(registry, entry.id)
        return full_model_predictor(model.to(device), name, stage1_name=None, gradcam_name=None,
                                    probabilities=probabilities)
    if entry.stage in PEER_METHODS:  # peer methods and gaze mechanisms (gazegnn: a `uses_gaze` predictor)
        return peer_entry_predictor(registry, entry, name, device)
    raise InputError(f"checkpoint {entry.id}: no predictor for stage {entry.stage!r}")
