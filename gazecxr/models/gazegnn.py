"""GazeGNN (Wang et al., WACV 2024): a Pyramid ViG-Ti classifier with the radiologist's gaze added
to its patch embedding. It needs the gaze at test time (an oracle setting).

As in the released code (github ukaukaaaa/GazeGNN): ``x = stem(image) + pos_embed + b1(grid)``
where ``grid`` (S/4 × S/4, 56×56 at S = 224) holds the sums of the per-pixel gaze map
(`gazecxr.data.gaze_maps.fixation_duration_map`) over 14×14 windows at stride 4, min-max
normalised per image, and ``b1`` is a ``BatchNorm2d(1)`` broadcast to all channels. Module names
and shapes follow the released code, so that its state dicts (``backbone.N.conv.0.*`` downsampling,
``relative_pos`` (1, nodes, pooled nodes), ``b1.*``) load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .factory import register_model
from .vig import PyramidViG

WINDOW, STRIDE = 14, 4
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gaze_grid(maps: Tensor) -> Tensor:
    """Window sums (N, S/4, S/4) of per-pixel gaze maps (N, S, S), S a multiple of 4.

    Cell (i, j) sums rows 4i−7 … 4i+6 and columns 4j−7 … 4j+6 (clipped to the image), then each
    grid is min-max normalised to [0, 1] (a constant grid is left as it is). The released code also
    drops the last row and column of the image from every window (it clips at 223 exclusive);
    here they count.
    """
    if maps.ndim != 3 or maps.shape[-1] != maps.shape[-2] or maps.shape[-1] % STRIDE:
        raise ValueError(f"gaze maps must be (N, S, S) with S a multiple of {STRIDE}, got {tuple(maps.shape)}")
    before, after = WINDOW // 2, WINDOW // 2 - STRIDE
    padded = F.pad(maps[:, None].float(), (before, after, before, after))
    sums = F.avg_pool2d(padded, WINDOW, STRIDE, divisor_override=1)[:, 0]
    lo = sums.amin(dim=(1, 2), keepdim=True)
    span = sums.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (sums - lo) / span.clamp_min(torch.finfo(sums.dtype).tiny), sums)


@register_model("gazegnn")
class GazeGNN(PyramidViG):
    """``forward(image, gaze)``: class logits from grey images (N, 1, H, W) in [0, 1] and their
    per-pixel gaze maps (N, 1, H, W), both resized to ``image_size``² (bilinear, antialiased).

    `pretrained`: ``"none"`` or a path to a (Pyramid ViG or GazeGNN) state dict; a classifier
    layer of another class count is left at its initialisation. ``imagenet_norm`` normalises the
    3-channel image with ImageNet statistics, by default exactly when weights are loaded.
    """

    def __init__(self, image_size: int = 224, channels: Sequence[int] = (48, 96, 240, 384),
                 blocks: Sequence[int] = (2, 2, 6, 2), k: int = 9, reduce_ratios: Sequence[int] = (4, 2, 1, 1),
                 hidden: int = 1024, dropout: float = 0.0, num_classes: int = 3, pretrained: str = "none",
                 imagenet_norm: bool | None = None) -> None:
        super().__init__(image_size, 3, num_classes, channels, blocks, k, reduce_ratios, hidden, dropout)
        self.b1 = nn.BatchNorm2d(1)
        if pretrained != "none":
            self._load_pretrained(pretrained)
        self.imagenet_norm = pretrained != "none" if imagenet_norm is None else imagenet_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _load_pretrained(self, pretrained: str) -> None:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} not found (no ViG weights can be downloaded); "
                                    "use pretrained: none or a path to a Pyramid ViG-Ti state dict")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = self.upgrade_state_dict(state)
        own = self.state_dict()
        kept = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
        missing = sorted(set(own) - set(kept) - {"b1.weight", "b1.bias", "b1.running_mean", "b1.running_var",
                                                   "b1.num_batches_tracked", "prediction.4.weight", "prediction.4.bias"})
        if missing:
            raise ValueError(f"{path}: not a matching Pyramid ViG state dict; missing or mis-shaped {missing[:5]}")
        self.load_state_dict(kept, strict=False)

    def resize(self, x: Tensor) -> Tensor:
        """Images or maps (N, C, H, W) resized to the model's square input."""
        size = (self.image_size, self.image_size)
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)

    def forward(self, image: Tensor, gaze: Tensor) -> Tensor:  # type: ignore[override]
        x = self.resize(image).expand(-1, 3, -1, -1)
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        grid = gaze_grid(self.resize(gaze)[:, 0])
        return super().forward(x, embedding=self.b1(grid[:, None]))
