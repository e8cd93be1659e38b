"""Inception-ResNet-v2 classifier (timm), the paper's IRNetv2 comparison row."""

from __future__ import annotations

import math

import timm
import torch.nn.functional as F
from torch import Tensor, nn

from .factory import register_model

MIN_INPUT = 75
"""Smallest height/width timm's Inception-ResNet-v2 accepts (its stem has unpadded convolutions)."""


@register_model("irnetv2")
class InceptionResNetV2(nn.Module):
    """``timm.create_model("inception_resnet_v2", pretrained=False, num_classes, in_chans)``; ``forward``
    gives class logits (N, num_classes).

    Inputs with a side shorter than `MIN_INPUT` (only tiny test canvases; the paper's 640×512 is
    far above it) are enlarged bilinearly, keeping their aspect ratio, until that side is 75 px.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.net = timm.create_model("inception_resnet_v2", pretrained=False, num_classes=num_classes,
                                     in_chans=in_channels, drop_rate=drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        short = min(x.shape[-2:])
        if short < MIN_INPUT:
            size = [math.ceil(side * MIN_INPUT / short) for side in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.net(x)
