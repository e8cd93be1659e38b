"""Stage 2: residual squeeze-and-excitation UNet (Res-SE UNet) for saliency prediction.

With ``aux_channels > 0`` the UNet is the paper's dual-encoder network: a second encoder's
feature map (the frozen DenseNet's, stride 32) enters at the start of the decoding path,
brought to the deepest UNet level's size and fused with it. With ``aux_channels = 0`` it
is the "Res-SE UNet alone" baseline with a plain UNet decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from .factory import register_model

BASE_FILTERS = (64, 128, 256, 512, 1024)
DOWNSAMPLING = 2 ** (len(BASE_FILTERS) - 1)


def saliency_from_logits(logits: Tensor) -> Tensor:
    """Saliency map of the same shape as `logits` (N, ...): softmax over all pixels of each image."""
    return torch.softmax(logits.flatten(1), dim=1).view_as(logits)


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, plus a 3x3 conv shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2dNormActivation(in_channels, out_channels, kernel_size=3)
        self.conv2 = Conv2dNormActivation(out_channels, out_channels, kernel_size=3, activation_layer=None)
        self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def encoder_level(in_channels: int, out_channels: int, se_reduction: int = 16) -> nn.Sequential:
    """Residual block followed by a squeeze-and-excitation block."""
    return nn.Sequential(
        ResidualBlock(in_channels, out_channels),
        SqueezeExcitation(out_channels, max(1, out_channels // se_reduction)),
    )


class UpBlock(nn.Module):
    """Upsample to the skip's size, conv3x3-BN-ReLU, concatenate the skip, two conv3x3-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = Conv2dNormActivation(in_channels, out_channels, kernel_size=3)
        self.fuse = nn.Sequential(
            Conv2dNormActivation(skip_channels + out_channels, out_channels, kernel_size=3),
            Conv2dNormActivation(out_channels, out_channels, kernel_size=3),
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
        return self.fuse(torch.cat([skip, x], dim=1))


@register_model("resse_unet")
class ResSEUNet(nn.Module):
    """Res-SE UNet mapping (N, in_channels, H, W) images to (N, 1, H, W) saliency logits.

    Encoder: 5 levels of `encoder_level` with filters [64, 128, 256, 512, 1024] x `width`,
    2x2 max-pooling between levels (H and W must be divisible by 16).
    Decoder, with an auxiliary feature (`aux_channels` > 0): the aux map is fused with the
    deepest level (1/16) and the decoder climbs 1/16 -> 1 with channels
    [512, 256, 128, 64, 64] x `width` (released code's layout). Without it: a standard UNet
    decoder 1/8 -> 1 with channels [512, 256, 128, 64] x `width`.
    Head: conv3x3-BN-ReLU, conv1x1 -> 1 logit map.
    """

    def __init__(
        self, in_channels: int = 1, width: float = 1.0, aux_channels: int = 0, se_reduction: int = 16
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.filters = [max(1, round(f * width)) for f in BASE_FILTERS]
        self.aux_channels = aux_channels
        f = self.filters
        ins = [in_channels, *f[:-1]]
        self.encoder = nn.ModuleList(encoder_level(i, o, se_reduction) for i, o in zip(ins, f))
        self.pool = nn.MaxPool2d(kernel_size=2)
        if aux_channels:
            skips = f[::-1]
            outs = [*f[3::-1], f[0]]
            first = aux_channels
        else:
            skips = f[3::-1]
            outs = f[3::-1]
            first = f[4]
        ins = [first, *outs[:-1]]
        self.decoder = nn.ModuleList(UpBlock(i, s, o) for i, s, o in zip(ins, skips, outs))
        self.head = nn.Sequential(
            Conv2dNormActivation(f[0], f[0], kernel_size=3),
            nn.Conv2d(f[0], 1, kernel_size=1),
        )

    @property
    def decoder_channels(self) -> int:
        """Channels of the last decoder feature map (full resolution)."""
        return self.filters[0]

    def forward(self, x: Tensor, aux: Tensor | None = None) -> dict[str, Tensor]:
        """``logits`` (N, 1, H, W) and the last ``decoder`` feature map (N, decoder_channels, H, W)."""
        if x.ndim != 4 or x.shape[-2] % DOWNSAMPLING or x.shape[-1] % DOWNSAMPLING:
            raise ValueError(f"expected (N, C, H, W) input with H, W divisible by {DOWNSAMPLING}, got {tuple(x.shape)}")
        if (aux is None) != (self.aux_channels == 0):
            raise ValueError(f"this UNet was built with aux_channels={self.aux_channels}; aux given: {aux is not None}")
        features = []
        h = x
        for index, level in enumerate(self.encoder):
            h = level(self.pool(h) if index else h)
            features.append(h)
        skips = features[::-1]
        if aux is None:
            h, skips = skips[0], skips[1:]
        else:
            h = aux
        for block, skip in zip(self.decoder, skips):
            h = block(h, skip)
        return {"logits": self.head(h), "decoder": h}
