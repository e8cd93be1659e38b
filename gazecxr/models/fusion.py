"""Stage 3: multi-scale feature-fusion classifier over the DenseNet and UNet-decoder features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from .factory import register_model

HEADS = ("linear", "conv")


@register_model("fusion")
class FusionClassifier(nn.Module):
    """Class logits from a DenseNet feature map and the UNet's last decoder feature map.

    ``head="linear"`` (released code): global-average-pooled DenseNet feature and pooled decoder
    feature, concatenated -> Linear(hidden) -> Dropout -> ReLU -> Linear(num_classes).
    ``head="conv"`` (the paper's "simple CNN"): the decoder map is average-pooled to the DenseNet
    map's size, concatenated with it -> 2 x conv3x3-BN-ReLU(hidden) -> global pooling -> Dropout
    -> Linear(num_classes).
    """

    def __init__(
        self,
        dense_channels: int = 1920,
        decoder_channels: int = 64,
        num_classes: int = 3,
        head: str = "linear",
        hidden: int = 64,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; valid heads: {list(HEADS)}")
        self.dense_channels = dense_channels
        self.decoder_channels = decoder_channels
        self.head = head
        fused = dense_channels + decoder_channels
        if head == "linear":
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(fused, hidden),
                nn.Dropout(dropout),
                nn.ReLU(),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.net = nn.Sequential(
                Conv2dNormActivation(fused, hidden, kernel_size=3),
                Conv2dNormActivation(hidden, hidden, kernel_size=3),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )

    def forward(self, dense_features: Tensor, decoder_features: Tensor) -> Tensor:
        """Class logits (N, num_classes) from (N, dense_channels, h, w) and (N, decoder_channels, H, W)."""
        size = (1, 1) if self.head == "linear" else dense_features.shape[-2:]
        fused = torch.cat(
            [F.adaptive_avg_pool2d(dense_features, size), F.adaptive_avg_pool2d(decoder_features, size)], dim=1
        )
        return self.net(fused)
