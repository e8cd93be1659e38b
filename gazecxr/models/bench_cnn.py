"""The gaze-utility benchmark's small networks: a CNN backbone that learns on a CPU in seconds, the saliency
decoder that learns the gaze map from it, and the heads that put the two together.

- `BenchCNN`: conv blocks (3×3 conv, batch norm, ReLU, 2×2 max pool) at ``widths``, global average pooling and
  a linear classifier; `BenchCNN.cam` is the class activation map of its last block (Zhou et al., 2016).
- `SaliencyDecoder`: the dual-encoder idea of the paper's stage 2 in miniature: its own small image encoder
  beside the frozen backbone's feature map, a 1×1 saliency logit at the feature resolution.
- `FusionHead`: the paper's stage-3 classifier on the frozen backbone and decoder features, ``linear`` (both
  pooled, concatenated, one linear layer) or ``conv`` (a 3×3 conv over both maps, then pooled).
- `SaliencyPoolHead`: pools the backbone's feature map under the predicted saliency distribution (instead of
  uniformly), so only where the gaze model looks reaches the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .factory import register_model


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_model("bench_cnn")
class BenchCNN(nn.Module):
    """Small CNN classifier: ``features`` (B, widths[-1], H/2^k, W/2^k), ``forward`` logits (B, num_classes)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.classifier = nn.Linear(chans[-1], num_classes)
        self.out_channels = chans[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's feature map."""
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))

    def cam(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Class activation maps (B, h, w) of ``classes`` (B,) from a `features` map."""
        weights = self.classifier.weight[classes]
        return torch.einsum("bc,bchw->bhw", weights, features)


@register_model("bench_saliency_decoder")
class SaliencyDecoder(nn.Module):
    """Saliency logits (B, h, w) at the backbone's feature resolution from the image and the frozen feature map;
    ``embed`` is the decoder's own feature map (B, width, h, w) that the fusion heads read."""

    def __init__(self, in_channels: int = 1, backbone_channels: int = 64, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        chans = [in_channels, *([width] * depth)]
        self.encoder = nn.Sequential(*(_block(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.mix = nn.Sequential(nn.Conv2d(width + backbone_channels, width, 3, padding=1), nn.ReLU(inplace=True))
        self.logit = nn.Conv2d(width, 1, 1)

    def embed(self, image: torch.Tensor, backbone_features: torch.Tensor) -> torch.Tensor:
        """The decoder's feature map, aligned with ``backbone_features``."""
        own = self.encoder(image)
        if own.shape[-2:] != backbone_features.shape[-2:]:
            own = F.adaptive_avg_pool2d(own, backbone_features.shape[-2:])
        return self.mix(torch.cat([own, backbone_features], dim=1))

    def forward(self, image: torch.Tensor, backbone_features: torch.Tensor) -> torch.Tensor:
        return self.logit(self.embed(image, backbone_features))[:, 0]


@register_model("bench_fusion_head")
class FusionHead(nn.Module):
    """Classifier on the backbone's and the decoder's feature maps (``head`` ``linear`` or ``conv``)."""

    def __init__(self, backbone_channels: int = 64, decoder_channels: int = 16, num_classes: int = 3,
                 head: str = "linear") -> None:
        super().__init__()
        if head not in ("linear", "conv"):
            raise ValueError(f"FusionHead head must be 'linear' or 'conv', got {head!r}")
        both = backbone_channels + decoder_channels
        self.conv = (nn.Sequential(nn.Conv2d(both, both, 3, padding=1), nn.ReLU(inplace=True))
                     if head == "conv" else nn.Identity())
        self.classifier = nn.Linear(both, num_classes)

    def forward(self, backbone_features: torch.Tensor, decoder_features: torch.Tensor) -> torch.Tensor:
        both = self.conv(torch.cat([backbone_features, decoder_features], dim=1))
        return self.classifier(both.mean(dim=(2, 3)))


def saliency_pool(features: torch.Tensor, saliency_logits: torch.Tensor) -> torch.Tensor:
    """Feature vectors (B, C): ``features`` (B, C, h, w) averaged under softmax(``saliency_logits``) (B, h, w)."""
    weights = torch.softmax(saliency_logits.flatten(1), dim=1).view_as(saliency_logits)
    return torch.einsum("bhw,bchw->bc", weights, features)


@register_model("bench_saliency_pool_head")
class SaliencyPoolHead(nn.Module):
    """Linear classifier on the backbone's feature map pooled under the predicted saliency distribution."""

    def __init__(self, backbone_channels: int = 64, num_classes: int = 3) -> None:
        super().__init__()
        self.classifier = nn.Linear(backbone_channels, num_classes)

    def forward(self, backbone_features: torch.Tensor, saliency_logits: torch.Tensor) -> torch.Tensor:
        return self.classifier(saliency_pool(backbone_features, saliency_logits))
