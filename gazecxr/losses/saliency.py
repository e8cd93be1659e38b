"""Saliency loss: KL divergence between the gaze heatmap and the predicted map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SaliencyKLLoss(nn.Module):
    """KL(G || P) averaged over the batch, P = softmax of the logits over all pixels of an image.

    Per image: sum_i G_i (log G_i - log P_i), with G normalised to sum 1 and 0 log 0 = 0, computed
    from log-softmax (stable for any logits). This equals the benchmark metric
    sum_i G_i log(eps + G_i / (P_i + eps)), eps = 2.2204e-16, up to terms of order eps/P and eps
    (relative difference < 1e-5 in practice); the released code's ``F.kl_div(log P, G)`` is the same
    quantity. Inputs: logits (N, ...) and targets with the same number of elements per image; with
    ``has_gaze`` (N,) the mean runs over the images with gaze only (0, still on the graph, when none has).
    """

    def forward(self, logits: Tensor, target: Tensor, has_gaze: Tensor | None = None) -> Tensor:
        if has_gaze is not None:
            rows = has_gaze.to(device=logits.device, dtype=torch.bool)
            if not rows.any():
                return logits.sum() * 0.0
            logits, target = logits[rows], target.to(logits.device)[rows]
        log_p = F.log_softmax(logits.flatten(1), dim=1)
        g = target.flatten(1).to(log_p.dtype)
        if g.shape != log_p.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ per image")
        g = g / g.sum(dim=1, keepdim=True)
        return F.kl_div(log_p, g, reduction="batchmean")
