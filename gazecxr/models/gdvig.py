"""GD-ViG (Wu et al., MICCAI 2024): a gaze-map generator whose predicted map shapes a ViG's graph.

After the released code (IPMI-NWU/GD-ViG ``End2End_SIIMACR``): a ViG-UNet generator (a Pyramid
ViG encoder, transposed-conv ×2 up-sampling with residual conv blocks on the skips, ReLU output)
predicts the film's gaze map from the image; the classifier, a Pyramid ViG, builds every block's
kNN graph (k = 9) on ‖xᵢ − xⱼ‖² + (gᵢ − gⱼ)²·norm(gᵢ) with g that *predicted* map
(`gazecxr.models.vig.gaze_distance`); trained with cross-entropy + 1.0 · MSE of the predicted map
to the gaze map (`gazecxr.training.mechanism_tasks.GazeDistanceTask`). The graph is built without
gradients, so the classification loss does not reach the generator, as released. No gaze is
needed at test time. ``gaze_guided=False`` builds the plain ViG alone (no generator).

Differences: both variants keep ViG's relative-position term in the distance (the released
GD-ViG drops it), so the switch changes the gaze term only; the head is this package's
Pyramid ViG head (one hidden layer; released: a 1000-wide layer in between); the generator's
encoder has the classifier's widths and depths; a grey image enters as one channel, resized
(bilinear, antialiased) to ``image_size``; ``generator_size`` (default ``image_size``) lets the
generator work on a smaller copy of the image (the tiny CPU variants), its map resized back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .factory import register_model
from .vig import Downsample, PyramidViG


class ResidualConv(nn.Module):
    """BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus a conv3×3 + BN shortcut; as released."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.conv_skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_block(x) + self.conv_skip(x)


class GazeMapGenerator(nn.Module):
    """ViG-UNet: gaze map (N, 1, S, S) ≥ 0 of images (N, C, S, S); encoder features at S/4 … S/32."""

    def __init__(self, image_size: int, in_channels: int, channels: Sequence[int], blocks: Sequence[int], k: int,
                 reduce_ratios: Sequence[int]) -> None:
        super().__init__()
        self.encoder = PyramidViG(image_size, in_channels, 1, channels, blocks, k, reduce_ratios, hidden=1)
        self.encoder.prediction = nn.Identity()  # only the stem and the stages are used
        c = list(channels)
        self.up = nn.ModuleList([nn.ConvTranspose2d(c[i], c[i], 2, stride=2) for i in range(len(c) - 1, 0, -1)])
        self.fuse = nn.ModuleList([ResidualConv(c[i] + c[i - 1], c[i - 1]) for i in range(len(c) - 1, 0, -1)])
        half = max(1, c[0] // 2)
        self.output = nn.Sequential(
            nn.Conv2d(c[0], c[0], 3, padding=1), nn.BatchNorm2d(c[0]), nn.ReLU(),
            nn.ConvTranspose2d(c[0], half, 2, stride=2), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU(),
            nn.ConvTranspose2d(half, 1, 2, stride=2), nn.ReLU())

    def stages(self, x: Tensor) -> list[Tensor]:
        """The encoder's output at the end of each stage, shallowest first."""
        x = self.encoder.stem_features(x)
        out = []
        for layer in self.encoder.backbone:
            if isinstance(layer, Downsample):
                out.append(x)
            x = layer(x)
        return [*out, x]

    def forward(self, x: Tensor) -> Tensor:
        *skips, x = self.stages(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            x = fuse(torch.cat([up(x), skip], dim=1))
        return self.output(x)


@register_model("gdvig")
class GDViG(nn.Module):
    """``forward(image)``: class logits of grey images (N, 1, H, W) in [0, 1]; ``forward_with_map``
    also gives the predicted gaze map (None without ``gaze_guided``). ``classifier`` is a
    `PyramidViG`; ``generator`` a `GazeMapGenerator` (only when ``gaze_guided``)."""

    def __init__(self, image_size: int = 224, channels: Sequence[int] = (80, 160, 400, 640),
                 blocks: Sequence[int] = (2, 2, 6, 2), k: int = 9, reduce_ratios: Sequence[int] = (4, 2, 1, 1),
                 hidden: int = 1024, dropout: float = 0.0, num_classes: int = 3, in_channels: int = 1,
                 gaze_guided: bool = True, generator_size: int | None = None) -> None:
        super().__init__()
        self.image_size, self.gaze_guided = image_size, gaze_guided
        self.generator_size = image_size if generator_size is None else generator_size
        self.classifier = PyramidViG(image_size, in_channels, num_classes, channels, blocks, k, reduce_ratios,
                                     hidden, dropout)
        self.generator = (GazeMapGenerator(self.generator_size, in_channels, channels, blocks, k, reduce_ratios)
                          if gaze_guided else None)

    def resize(self, x: Tensor, side: int | None = None) -> Tensor:
        """Images or maps (N, C, H, W) resized to a square of ``side`` (default: the model's input)."""
        size = (side or self.image_size,) * 2
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)

    def forward_with_map(self, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """Class logits (N, num_classes) and the predicted gaze map (N, 1, g, g), g = ``generator_size``
        (None without gaze guidance); the map enters the graph resized to the classifier's input."""
        x = self.resize(image)
        if self.generator is None:
            return self.classifier(x), None
        predicted = self.generator(self.resize(x, self.generator_size))
        return self.classifier(x, gaze=self.resize(predicted)), predicted

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_with_map(image)[0]
