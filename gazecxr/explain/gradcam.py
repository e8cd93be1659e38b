"""Grad-CAM of the stage-1 DenseNet at its feature tap, as a saliency map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gazecxr.models.densenet import DenseNetEncoder

CAM_EPS = 1e-7
"""Added to a map's peak before scaling (pytorch-grad-cam's constant)."""


def gradcam_from_tap(encoder: DenseNetEncoder, tap: Tensor, size: tuple[int, int],
                     target: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Grad-CAM maps (N, H, W) in [0, 1] and class logits, from an already computed tap feature.

    The rectified map is min–max scaled at the tap's resolution, upsampled bilinearly (half-pixel
    centres) to ``size`` and scaled again: pytorch-grad-cam's GradCAM on the same layer, computed
    from the forward pass that already gave the tap (``gazecxr.explain.cams`` runs the library).
    The class explained is ``target`` (N,) or, by default, the predicted one. Works on frozen
    encoders: only the tap activation is given a gradient.
    """
    tap = tap.detach().float().requires_grad_(True)
    with torch.enable_grad():
        logits = encoder.logits_from_tap(tap)
        target = logits.argmax(1) if target is None else target.to(logits.device)
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, tap)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = _scale(F.relu((weights * tap.detach()).sum(dim=1)))
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _scale(cam), logits.detach()


def _scale(cam: Tensor) -> Tensor:
    """Per-map min–max scaling to [0, 1] as pytorch-grad-cam's ``scale_cam_image`` does it (an all-zero
    map stays zero), so that this path equals the library's GradCAM on the tap layer."""
    cam = cam - cam.flatten(1).amin(1).view(-1, 1, 1)
    return cam / (CAM_EPS + cam.flatten(1).amax(1).view(-1, 1, 1))


def gradcam(encoder: DenseNetEncoder, images: Tensor, target: Tensor | None = None) -> Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of ``images`` (N, 1, H, W) for ``target`` or the predicted class."""
    with torch.no_grad():
        tap = encoder.forward_features(images)["tap"]
    return gradcam_from_tap(encoder, tap, tuple(images.shape[-2:]), target)[0]
