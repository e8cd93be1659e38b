"""The training objectives of the field's gaze mechanisms, shared by the peer registry
(`gazecxr.training.peers`) and the array-level benchmark API (`gazecxr.training.gaze_mechanisms`).

Each reads gaze only in ``loss`` (training); ``logits`` and ``outputs`` (validation, test) take
the images alone. Each has a switch that leaves the same backbone trained without gaze:

- `TokenMaskTask` (EG-ViT): with probability ``mask_probability`` per batch, only the
  ``keep_tokens`` patches of highest gaze (``heatmap``) pass the masked blocks; label-smoothed
  cross-entropy. Switch: ``mask_probability = 0`` (the coin is never thrown, no gaze is read).
- `GazeDistanceTask` (GD-ViG): cross-entropy + ``map_weight`` · MSE of the model's predicted gaze
  map to the film's ``heatmap`` (scaled to maximum 1). Switch: a model built with
  ``gaze_guided = False`` (no generator; cross-entropy only).
- `GazeStatsTask` (Gaze-MTL): cross-entropy + ``aux_weight`` · the sum over the auxiliary heads of
  the MSE to the film's ``gaze_stats`` (NaN targets skipped). Switch: ``aux_weight = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gazecxr.models.eg_vit import EGViT, patch_scores, top_patches
from gazecxr.models.gaze_mtl import GazeMTL
from gazecxr.models.gdvig import GDViG
from gazecxr.training.engine import Batch, Outputs, Task
from gazecxr.training.objectives import classification_summary


class MechanismTask(Task):
    """Cross-entropy classification whose validation reads the images only."""

    trainable: nn.Module

    def logits(self, images: Tensor) -> Tensor:
        """Class logits (N, K) of images alone (no gaze)."""
        return self.trainable(images).float()

    def outputs(self, batch: Batch) -> Outputs:
        return {"logits": self.logits(batch["image"]), "label": batch["label"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return classification_summary(outputs["label"], outputs["logits"])


class TokenMaskTask(MechanismTask):
    """EG-ViT's training of an `EGViT`; the mask coin uses its own generator seeded with ``seed``."""

    def __init__(self, net: EGViT, mask_probability: float = 0.5, keep_tokens: int = 64,
                 label_smoothing: float = 0.1, seed: int = 0) -> None:
        if not 0 <= mask_probability <= 1:
            raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
        grid = net.grid
        if not 0 < keep_tokens <= grid[0] * grid[1]:
            raise ValueError(f"keep_tokens must be in 1..{grid[0] * grid[1]} (the model's patches), got {keep_tokens}")
        self.trainable, self.net = net, net
        self.mask_probability, self.keep_tokens, self.label_smoothing = mask_probability, keep_tokens, label_smoothing
        self.coin = torch.Generator().manual_seed(int(seed))

    def keep(self, gaze: Tensor) -> Tensor:
        """Indices (N, keep_tokens) of the patches of highest mean gaze of maps (N, 1, H, W)."""
        return top_patches(patch_scores(gaze, self.net.grid), self.keep_tokens)

    def loss(self, batch: Batch) -> Tensor:
        masked = self.mask_probability > 0 and float(torch.rand((), generator=self.coin)) < self.mask_probability
        keep = self.keep(batch["heatmap"]) if masked else None
        logits = self.net(batch["image"], keep).float()
        return F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)


def peak_normalised(maps: Tensor) -> Tensor:
    """Maps (N, 1, H, W) divided by each one's maximum (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


class GazeDistanceTask(MechanismTask):
    """GD-ViG's training of a `GDViG`: cross-entropy, plus (``gaze_guided`` models) ``map_weight`` ·
    MSE of the predicted map to the film's ``heatmap`` resized to the model input and scaled to maximum 1."""

    def __init__(self, net: GDViG, map_weight: float = 1.0) -> None:
        if map_weight < 0:
            raise ValueError(f"map_weight must be >= 0, got {map_weight}")
        self.trainable, self.net, self.map_weight = net, net, map_weight

    def loss(self, batch: Batch) -> Tensor:
        logits, predicted = self.net.forward_with_map(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        if predicted is None:
            return loss
        target = peak_normalised(self.net.resize(batch["heatmap"], predicted.shape[-1]).float())
        return loss + self.map_weight * F.mse_loss(predicted.float(), target)


def masked_mse(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the finite entries of ``target`` (0 when there are none)."""
    finite = torch.isfinite(target)
    if not finite.any():
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[finite], target[finite])


class GazeStatsTask(MechanismTask):
    """Gaze-MTL's training of a `GazeMTL`: cross-entropy + ``aux_weight`` · Σ over its auxiliary heads
    of the MSE to the batch's ``gaze_stats`` (N, len(aux_tasks)) (non-finite targets skipped); with
    ``aux_weight = 0`` the heads and the statistics are not used at all."""

    def __init__(self, net: GazeMTL, aux_weight: float = 1.0) -> None:
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        self.trainable, self.net, self.aux_weight = net, net, aux_weight

    def loss(self, batch: Batch) -> Tensor:
        if self.aux_weight == 0:
            return F.cross_entropy(self.net(batch["image"]).float(), batch["label"])
        logits, aux = self.net.forward_all(batch["image"])
        target = batch["gaze_stats"].float()
        if target.shape != aux.shape:
            raise ValueError(f"gaze_stats {tuple(target.shape)} do not match the heads {list(self.net.aux_tasks)}")
        aux_loss = sum((masked_mse(aux[:, j].float(), target[:, j]) for j in range(aux.shape[1])), logits.new_zeros(()))
        return F.cross_entropy(logits.float(), batch["label"]) + self.aux_weight * aux_loss
