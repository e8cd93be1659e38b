"""Attention-alignment losses: a classifier's class activation map pulled towards a target map (the gaze
map, or in the benchmark's positive control the true evidence mask), as in Follow My Eye (Wang et al., IEEE
TMI 2022) and GG-CAM (Zhu et al., 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pool_distribution(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``maps`` (B, H, W) ≥ 0 area-pooled to ``size`` and normalised to sum 1 per map (an all-zero map stays 0)."""
    pooled = F.adaptive_avg_pool2d(maps.unsqueeze(1).clamp_min(0), size)[:, 0]
    total = pooled.flatten(1).sum(1).clamp_min(1e-12)
    return pooled / total.view(-1, 1, 1)


def cam_alignment_loss(cam: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean KL(target ‖ softmax(cam)) over the maps whose target has mass; 0 when none has.

    ``cam`` (B, h, w) are logits over positions, ``target`` (B, H, W) any non-negative map (pooled to h × w)."""
    q = pool_distribution(target, tuple(cam.shape[-2:])).flatten(1)
    has = q.sum(1) > 0
    if not bool(has.any()):
        return cam.sum() * 0.0
    log_p = torch.log_softmax(cam.flatten(1), dim=1)
    q = q[has]
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p[has])).sum(1)
    return kl.mean()
