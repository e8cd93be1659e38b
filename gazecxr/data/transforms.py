"""Paired augmentation: geometry moves image, heatmap and masks together."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF


class PairedAugment:
    """Random affine (rotation, scale, translation, optional horizontal flip) applied
    identically to ``image`` and ``heatmap`` (and masks), plus brightness/contrast jitter
    on the image only. The heatmap stays a distribution (non-negative, sums to 1).

    Horizontal flip is off by default: chest X-ray laterality matters (heart on the left).
    Randomness comes from torch's global RNG, so DataLoader worker seeding applies.
    """

    def __init__(
        self,
        rotation: float = 5.0,
        scale: tuple[float, float] = (0.95, 1.05),
        translate: float = 0.03,
        hflip: bool = False,
        brightness: float = 0.1,
        contrast: float = 0.1,
        strength: float = 1.0,
    ):
        self.rotation = rotation * strength
        self.scale = (1 + (scale[0] - 1) * strength, 1 + (scale[1] - 1) * strength)
        self.translate = translate * strength
        self.hflip = hflip
        self.brightness = brightness * strength
        self.contrast = contrast * strength

    @staticmethod
    def _uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image: torch.Tensor = sample["image"]
        h, w = image.shape[-2:]
        angle = self._uniform(-self.rotation, self.rotation)
        scale = self._uniform(*self.scale)
        shift = [round(self._uniform(-self.translate, self.translate) * w),
                 round(self._uniform(-self.translate, self.translate) * h)]
        flip = self.hflip and bool(torch.rand(()) < 0.5)

        def move(x: torch.Tensor, mode: InterpolationMode) -> torch.Tensor:
            x = TF.affine(x, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0],
                          interpolation=mode)
            return TF.horizontal_flip(x) if flip else x

        out = dict(sample)
        gain = 1 + self._uniform(-self.contrast, self.contrast)
        offset = self._uniform(-self.brightness, self.brightness)
        image = move(image, InterpolationMode.BILINEAR)
        out["image"] = ((image - 0.5) * gain + 0.5 + offset).clamp(0.0, 1.0)
        if "heatmap" in sample:  # files of datasets without gaze (NIH, SIIM, ...) have none
            heat = move(sample["heatmap"], InterpolationMode.BILINEAR).clamp_min(0.0)
            total = heat.sum()
            out["heatmap"] = heat / total if total > 0 else sample["heatmap"]
        for key in ("lung_mask", "heart_mask"):
            if key in sample:
                out[key] = move(sample[key].to(torch.uint8), InterpolationMode.NEAREST).bool()
        if "gaze" in sample:  # per-pixel gaze map in [0, 1] (GazeGNN)
            out["gaze"] = move(sample["gaze"], InterpolationMode.BILINEAR).clamp(0.0, 1.0)
        return out

    def __repr__(self) -> str:
        return (f"PairedAugment(rotation={self.rotation}, scale={self.scale}, translate={self.translate}, "
                f"hflip={self.hflip}, brightness={self.brightness}, contrast={self.contrast})")
