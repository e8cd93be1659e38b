"""The training objectives of the field's gaze mechanisms, shared by the peer registry
(`gazecxr.training.peers`) and the array-level benchmark API (`gazecxr.training.gaze_mechanisms`).

Each reads gaze only in ``loss`` (training); ``logits`` and ``outputs`` (validation, test) take
the images alone. The classification term is the run's task loss (``task``, default the three
exclusive EGD classes: cross-entropy; a multi-label task such as ``siim_pneumothorax``: its BCE)
over every film; the gaze terms skip the films without gaze (a batch's ``has_gaze`` false: an
all-zero heatmap, no fixations). Each has a switch that leaves the same backbone trained without gaze:

- `TokenMaskTask` (EG-ViT): with probability ``mask_probability`` per batch, only the
  ``keep_tokens`` patches of highest gaze (``heatmap``) pass the masked blocks; label-smoothed
  task loss. A film without gaze is never masked (its flat map ranks no patch above another).
  Switch: ``mask_probability = 0`` (the coin is never thrown, no gaze is read).
- `GazeDistanceTask` (GD-ViG): task loss + ``map_weight`` · MSE of the model's predicted gaze
  map to the film's ``heatmap`` (scaled to maximum 1), over the films with gaze. Switch: a model
  built with ``gaze_guided = False`` (no generator; task loss only).
- `GazeStatsTask` (Gaze-MTL): task loss + ``aux_weight`` · the sum over the auxiliary heads of
  the MSE to the film's ``gaze_stats`` (NaN targets skipped: a film without gaze has NaN
  statistics, `gazecxr.data.gaze_stats`). Switch: ``aux_weight = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gazecxr.models.eg_vit import EGViT, patch_scores, top_patches
from gazecxr.models.gaze_mtl import GazeMTL
from gazecxr.models.gdvig import GDViG
from gazecxr.tasks import ExclusiveClasses, TaskSpec
from gazecxr.training.engine import Batch, Outputs, Task
from gazecxr.training.objectives import classification_summary


def gaze_mask(batch: Batch) -> Tensor | None:
    """Boolean (N,) of the batch's films with gaze (``has_gaze``), or None when every film has gaze."""
    has_gaze = batch.get("has_gaze")
    if has_gaze is None or bool(has_gaze.all()):
        return None
    return has_gaze.to(torch.bool)


def smoothed_loss(task: TaskSpec, logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """``task``'s loss with label smoothing ε: cross-entropy's own for exclusive classes; for findings,
    the task's loss to targets y·(1 − ε) + ε/2 (unknown NaN targets stay unknown)."""
    if not task.multilabel:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    return task.loss(logits, labels.float() * (1 - smoothing) + smoothing / 2)


class MechanismTask(Task):
    """Classification with ``task``'s loss whose validation reads the images only."""

    trainable: nn.Module
    task: TaskSpec

    def logits(self, images: Tensor) -> Tensor:
        """Class logits (N, K) of images alone (no gaze)."""
        return self.trainable(images).float()

    def outputs(self, batch: Batch) -> Outputs:
        return {"logits": self.logits(batch["image"]), "label": batch["label"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return classification_summary(outputs["label"], outputs["logits"], self.task)


class TokenMaskTask(MechanismTask):
    """EG-ViT's training of an `EGViT`; the mask coin uses its own generator seeded with ``seed``.

    On a masked batch the films with gaze pass their ``keep_tokens`` patches of highest gaze and
    the films without gaze (``has_gaze`` false) all their patches, as on an unmasked batch: a flat
    map ranks no patch above another, so its "top" patches would be an arbitrary choice, not gaze.
    """

    def __init__(self, net: EGViT, mask_probability: float = 0.5, keep_tokens: int = 64,
                 label_smoothing: float = 0.1, seed: int = 0, task: TaskSpec | None = None) -> None:
        if not 0 <= mask_probability <= 1:
            raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
        grid = net.grid
        if not 0 < keep_tokens <= grid[0] * grid[1]:
            raise ValueError(f"keep_tokens must be in 1..{grid[0] * grid[1]} (the model's patches), got {keep_tokens}")
        self.trainable, self.net = net, net
        self.mask_probability, self.keep_tokens, self.label_smoothing = mask_probability, keep_tokens, label_smoothing
        self.coin = torch.Generator().manual_seed(int(seed))
        self.task = task or ExclusiveClasses()

    def keep(self, gaze: Tensor) -> Tensor:
        """Indices (N, keep_tokens) of the patches of highest mean gaze of maps (N, 1, H, W)."""
        return top_patches(patch_scores(gaze, self.net.grid), self.keep_tokens)

    def masked_logits(self, batch: Batch) -> Tensor:
        """Logits (N, K) of a masked batch: films with gaze through their top gaze patches, the others unmasked."""
        image, heatmap, gaze = batch["image"], batch["heatmap"], gaze_mask(batch)
        if gaze is None:
            return self.net(image, self.keep(heatmap)).float()
        if not gaze.any():
            return self.net(image).float()
        masked = self.net(image[gaze], self.keep(heatmap[gaze])).float()
        logits = masked.new_empty(len(image), masked.shape[1])
        logits[gaze] = masked
        logits[~gaze] = self.net(image[~gaze]).float()
        return logits

    def loss(self, batch: Batch) -> Tensor:
        masked = self.mask_probability > 0 and float(torch.rand((), generator=self.coin)) < self.mask_probability
        logits = self.masked_logits(batch) if masked else self.net(batch["image"]).float()
        return smoothed_loss(self.task, logits, batch["label"], self.label_smoothing)


def peak_normalised(maps: Tensor) -> Tensor:
    """Maps (N, 1, H, W) divided by each one's maximum (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


class GazeDistanceTask(MechanismTask):
    """GD-ViG's training of a `GDViG`: the task loss over every film, plus (``gaze_guided`` models)
    ``map_weight`` · `map_loss` over the films with gaze."""

    def __init__(self, net: GDViG, map_weight: float = 1.0, task: TaskSpec | None = None) -> None:
        if map_weight < 0:
            raise ValueError(f"map_weight must be >= 0, got {map_weight}")
        self.trainable, self.net, self.map_weight = net, net, map_weight
        self.task = task or ExclusiveClasses()

    def map_loss(self, predicted: Tensor, batch: Batch) -> Tensor:
        """MSE of predicted maps (N, 1, g, g) to the batch's ``heatmap`` resized to g and scaled to maximum 1,
        over the films with gaze (0, still on the graph, for a batch without any)."""
        heatmap, gaze = batch["heatmap"], gaze_mask(batch)
        if gaze is not None:
            if not gaze.any():
                return predicted.sum() * 0.0
            predicted, heatmap = predicted[gaze], heatmap[gaze]
        target = peak_normalised(self.net.resize(heatmap, predicted.shape[-1]).float())
        return F.mse_loss(predicted.float(), target)

    def loss(self, batch: Batch) -> Tensor:
        logits, predicted = self.net.forward_with_map(batch["image"])
        loss = self.task.loss(logits.float(), batch["label"])
        if predicted is None:
            return loss
        return loss + self.map_weight * self.map_loss(predicted, batch)


def masked_mse(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the finite entries of ``target`` (0 when there are none)."""
    finite = torch.isfinite(target)
    if not finite.any():
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[finite], target[finite])


class GazeStatsTask(MechanismTask):
    """Gaze-MTL's training of a `GazeMTL`: task loss + ``aux_weight`` · Σ over its auxiliary heads
    of the MSE to the batch's ``gaze_stats`` (N, len(aux_tasks)) (non-finite targets skipped); with
    ``aux_weight = 0`` the heads and the statistics are not used at all."""

    def __init__(self, net: GazeMTL, aux_weight: float = 1.0, task: TaskSpec | None = None) -> None:
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        self.trainable, self.net, self.aux_weight = net, net, aux_weight
        self.task = task or ExclusiveClasses()

    def loss(self, batch: Batch) -> Tensor:
        if self.aux_weight == 0:
            return self.task.loss(self.net(batch["image"]).float(), batch["label"])
        logits, aux = self.net.forward_all(batch["image"])
        target = batch["gaze_stats"].float()
        if target.shape != aux.shape:
            raise ValueError(f"gaze_stats {tuple(target.shape)} do not match the heads {list(self.net.aux_tasks)}")
        aux_loss = sum((masked_mse(aux[:, j].float(), target[:, j]) for j in range(aux.shape[1])), logits.new_zeros(()))
        return self.task.loss(logits.float(), batch["label"]) + self.aux_weight * aux_loss
