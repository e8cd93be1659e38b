"""MT-UNet (Zhu, Rohling, Salcudean, MIDL 2022): one UNet that predicts the class and the gaze saliency.

Faithful to the released code (github hz-zhu/MT-UNet): a plain UNet with filters
[64, 128, 256, 512, 1024] × ``width`` on one input channel, [conv3×3 (bias) → BN → ReLU] ×2
per level, 2×2 max-pooling between levels, nearest ×2 up-sampling → conv3×3 → BN → ReLU,
concatenation with the skip and a double conv on the way up to the full-resolution ``d2``.
The class head reads the globally pooled deepest encoder map ``e5`` and ``d2``
(Linear → Dropout(0.25) → ReLU → Linear); the saliency head is conv3×3 + BN + ReLU → conv1×1.
At width 1 it has 34.6 M parameters. Its loss is `gazecxr.losses.UncertaintyWeightedLoss`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from .factory import register_model

FILTERS = (64, 128, 256, 512, 1024)
DOWNSAMPLING = 2 ** (len(FILTERS) - 1)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two conv3×3 (with bias) → BN → ReLU."""
    return nn.Sequential(
        Conv2dNormActivation(in_channels, out_channels, kernel_size=3, bias=True),
        Conv2dNormActivation(out_channels, out_channels, kernel_size=3, bias=True),
    )


def up_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest ×2 up-sampling, then conv3×3 (with bias) → BN → ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         Conv2dNormActivation(in_channels, out_channels, kernel_size=3, bias=True))


@register_model("mtunet")
class MTUNet(nn.Module):
    """Multi-task UNet: ``forward`` gives ``class_logits`` (N, num_classes) and ``saliency_logits``
    (N, 1, H, W) (softmax over all pixels gives the saliency map); H and W must be multiples of 16."""

    def __init__(self, width: float = 1.0, in_channels: int = 1, num_classes: int = 3,
                 hidden: int | None = None, dropout: float = 0.25) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        f = [max(1, round(c * width)) for c in FILTERS]
        self.filters = f
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder = nn.ModuleList([conv_block(c_in, c_out) for c_in, c_out in zip([in_channels, *f[:-1]], f)])
        self.up = nn.ModuleList([up_conv(f[i], f[i - 1]) for i in range(len(f) - 1, 0, -1)])
        self.decoder = nn.ModuleList([conv_block(2 * f[i - 1], f[i - 1]) for i in range(len(f) - 1, 0, -1)])
        hidden = f[0] if hidden is None else hidden
        self.classifier = nn.Sequential(nn.Linear(f[0] + f[-1], hidden), nn.Dropout(dropout), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))
        self.saliency_head = nn.Sequential(Conv2dNormActivation(f[0], f[0], kernel_size=3, bias=True),
                                           nn.Conv2d(f[0], 1, kernel_size=1))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``class_logits``, ``saliency_logits`` and the last decoder map ``decoder`` (N, f0, H, W)."""
        if x.shape[-2] % DOWNSAMPLING or x.shape[-1] % DOWNSAMPLING:
            raise ValueError(f"MT-UNet input height and width must be multiples of {DOWNSAMPLING}, "
                             f"got {tuple(x.shape[-2:])}")
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        e5 = x
        for up, block, skip in zip(self.up, self.decoder, reversed(skips[:-1])):
            x = block(torch.cat((skip, up(x)), dim=1))
        pooled = torch.cat((e5.mean(dim=(-2, -1)), x.mean(dim=(-2, -1))), dim=1)
        return {"class_logits": self.classifier(pooled), "saliency_logits": self.saliency_head(x), "decoder": x}
