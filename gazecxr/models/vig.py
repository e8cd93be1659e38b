"""Pyramid Vision GNN (ViG, Han et al., NeurIPS 2022), the backbone of GazeGNN; no library provides it.

Written after the released code (huawei-noah Efficient-AI-Backbones ``vig_pytorch/pyramid_vig.py``,
as copied by ukaukaaaa/GazeGNN ``models/pvig_gaze.py``), with the same module names and tensor
shapes, so that its state dicts load as they are: every block is a ``Grapher`` (fc1 → dynamic
dilated kNN graph convolution with max-relative aggregation → fc2, residual) followed by an ``FFN``
(residual); stages are joined by a ``Downsample`` (``backbone.N.conv.0/1``: stride-2 conv + BN).
Image patches are graph nodes; each node's k neighbours are found in feature space among the
(average-pooled by ``reduce_ratio``) nodes, with a fixed relative 2-D sin-cos position term
(``backbone.N.0.relative_pos``, shape (1, nodes, pooled nodes)) added to the distance.

``forward(x, gaze=...)`` adds GD-ViG's gaze term (`gaze_distance`) to every block's kNN distance
(`gazecxr.models.gdvig`); without it the network is the plain ViG.

State dicts of this package before the official layout (downsampling at ``backbone.N.0/1``, 2-D
``relative_pos``) are mapped to it by `PyramidViG.upgrade_state_dict` (the registry loader and
GazeGNN's ``pretrained`` file loading apply it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_pos_embed_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """(len(positions), dim) sin-cos embedding of 1-D positions (MAE convention: sines then cosines)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_pos_embed_2d(dim: int, grid: int) -> np.ndarray:
    """(grid², dim) 2-D sin-cos embedding of a grid×grid node lattice (half the channels per axis)."""
    w, h = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    return np.concatenate([sincos_pos_embed_1d(dim // 2, w), sincos_pos_embed_1d(dim // 2, h)], axis=1)


def relative_position(dim: int, grid: int, reduce_ratio: int) -> Tensor:
    """The released relative-position distance term (1, grid², grid²/r²): −2·⟨e_i, e_j⟩/dim of the 2-D
    sin-cos embeddings, the key axis resized bicubically to the pooled node count."""
    embed = sincos_pos_embed_2d(dim, grid)
    rel = torch.from_numpy(2 * embed @ embed.T / embed.shape[1]).float()[None, None]
    n = grid * grid
    rel = F.interpolate(rel, size=(n, n // (reduce_ratio * reduce_ratio)), mode="bicubic", align_corners=False)
    return -rel[0]


def gaze_distance(query: Tensor, keys: Tensor) -> Tensor:
    """GD-ViG's gaze term (B, N, M) of the kNN distance: (g_i − g_j)² · norm(g_i), with ``query``
    (B, N) the gaze at the query nodes, ``keys`` (B, M) at the key nodes and norm the per-image
    min-max scaling of the query gaze (0 for a constant map, where the released code divided by 0)."""
    lo = query.amin(dim=1, keepdim=True)
    span = query.amax(dim=1, keepdim=True) - lo
    norm = torch.where(span > 0, (query - lo) / span.clamp_min(torch.finfo(query.dtype).tiny), torch.zeros_like(query))
    return (query.unsqueeze(2) - keys.unsqueeze(1)).pow(2) * norm.unsqueeze(2)


def dilated_knn(x: Tensor, y: Tensor, k: int, dilation: int, relative_pos: Tensor | None,
                extra: Tensor | None = None) -> Tensor:
    """Indices (B, N, k') into the M key nodes ``y`` (B, M, C) of each query node of ``x`` (B, N, C):
    the k·dilation nearest (L2 on unit-normalised features, plus ``relative_pos`` (1, N, M) and an
    ``extra`` distance term (B, N, M)), every ``dilation``-th of them; k·dilation is capped at M
    (only matters for tiny inputs)."""
    with torch.no_grad():
        x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        dist = x.pow(2).sum(-1, keepdim=True) - 2 * x @ y.transpose(1, 2) + y.pow(2).sum(-1).unsqueeze(1)
        if relative_pos is not None:
            dist = dist + relative_pos
        if extra is not None:
            dist = dist + extra
        return dist.topk(min(k * dilation, y.shape[1]), dim=-1, largest=False).indices[..., ::dilation]


class MRConv(nn.Module):
    """Max-relative graph convolution: [x_i, max_j (x_j − x_i)] → grouped 1×1 conv → BN → GELU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4) -> None:
        super().__init__()
        self.nn = nn.Sequential(nn.Conv2d(2 * in_channels, out_channels, 1, groups=groups),
                                nn.BatchNorm2d(out_channels), nn.GELU())

    def forward(self, x: Tensor, keys: Tensor, neighbours: Tensor) -> Tensor:
        """``x`` (B, C, N), ``keys`` (B, C, M), ``neighbours`` (B, N, k) → (B, out, N, 1)."""
        b, c, n = x.shape
        index = neighbours.reshape(b, 1, -1).expand(b, c, -1)
        gathered = keys.gather(2, index).view(b, c, n, -1)
        relative = (gathered - x.unsqueeze(-1)).amax(dim=-1)
        return self.nn(torch.stack([x, relative], dim=2).reshape(b, 2 * c, n, 1))


class DyGraphConv(nn.Module):
    """Dynamic graph convolution: kNN graph rebuilt from the current features on every forward."""

    def __init__(self, in_channels: int, out_channels: int, k: int, dilation: int, reduce_ratio: int) -> None:
        super().__init__()
        self.k, self.dilation, self.r = k, dilation, reduce_ratio
        self.gconv = MRConv(in_channels, out_channels)

    def forward(self, x: Tensor, relative_pos: Tensor | None, gaze: Tensor | None = None) -> Tensor:
        """``gaze`` (B, 1, H, W) at the nodes adds `gaze_distance` (key gaze max-pooled like GD-ViG's)."""
        b, c, h, w = x.shape
        keys = F.avg_pool2d(x, self.r, self.r) if self.r > 1 else x
        x, keys = x.reshape(b, c, -1), keys.reshape(b, c, -1)
        extra = None
        if gaze is not None:
            gaze_keys = F.max_pool2d(gaze, self.r, self.r) if self.r > 1 else gaze
            extra = gaze_distance(gaze.flatten(1).float(), gaze_keys.flatten(1).float())
        neighbours = dilated_knn(x.transpose(1, 2), keys.transpose(1, 2), self.k, self.dilation, relative_pos, extra)
        return self.gconv(x, keys, neighbours).reshape(b, -1, h, w)


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))


class Grapher(nn.Module):
    """fc1 (1×1 conv + BN) → graph conv to 2C channels → fc2 (1×1 conv + BN back to C), residual."""

    def __init__(self, channels: int, k: int, dilation: int, reduce_ratio: int, grid: int) -> None:
        super().__init__()
        self.fc1 = _conv_bn(channels, channels)
        self.graph_conv = DyGraphConv(channels, 2 * channels, k, dilation, reduce_ratio)
        self.fc2 = _conv_bn(2 * channels, channels)
        self.register_buffer("relative_pos", relative_position(channels, grid, reduce_ratio))

    def forward(self, x: Tensor, gaze: Tensor | None = None) -> Tensor:
        """``gaze`` (B, 1, H, W): the gaze at the nodes, for GD-ViG's gaze-aware graph."""
        n = x.shape[-2] * x.shape[-1]
        if n != self.relative_pos.shape[-2]:
            raise ValueError(f"ViG block built for {self.relative_pos.shape[-2]} nodes got {n}: "
                             "the input size must be the model's image_size")
        return self.fc2(self.graph_conv(self.fc1(x), self.relative_pos, gaze)) + x


class FFN(nn.Module):
    """1×1 conv + BN (C → 4C) → GELU → 1×1 conv + BN (4C → C), residual."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = _conv_bn(channels, hidden), nn.GELU(), _conv_bn(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x))) + x


class Downsample(nn.Module):
    """Stride-2 3×3 conv + BN between stages (``conv.0``, ``conv.1``, as in the released code)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def upgrade_legacy_state_dict(state: Mapping[str, Tensor], downsample_indices: Sequence[int]) -> dict[str, Tensor]:
    """``state`` with this package's pre-official key layout mapped to the released one: the
    downsampling layers ``backbone.N.0/1.*`` → ``backbone.N.conv.0/1.*`` (N in
    ``downsample_indices``) and each 2-D ``relative_pos`` (nodes, pooled) → (1, nodes, pooled).
    Keys already in the released layout are left as they are."""
    out: dict[str, Tensor] = {}
    legacy = tuple(f"backbone.{i}." for i in downsample_indices)
    for key, value in state.items():
        start = next((p for p in legacy if key.startswith(p) and not key.startswith(f"{p}conv.")), None)
        if start is not None:
            key = f"{start}conv.{key[len(start):]}"
        elif key.endswith(".relative_pos") and isinstance(value, Tensor) and value.ndim == 2:
            value = value[None]
        out[key] = value
    return out


class PyramidViG(nn.Module):
    """Pyramid ViG: a stem to stride 4, stages of (Grapher, FFN) blocks separated by stride-2 convs,
    and a 1×1-conv head on the globally pooled last stage. ViG-Ti: channels [48, 96, 240, 384],
    blocks [2, 2, 6, 2], k = 9, reduce ratios [4, 2, 1, 1], head width 1024.

    ``forward_features`` takes an optional ``embedding`` added to the stem output (with the
    position embedding), the hook GazeGNN uses for its gaze grid, and an optional ``gaze`` map
    (N, 1, S, S) that enters every block's graph distance (GD-ViG): max-pooled by 4 to the stem's
    node grid and by 2 at every downsampling, as released.
    """

    def __init__(self, image_size: int = 224, in_channels: int = 3, num_classes: int = 3,
                 channels: Sequence[int] = (48, 96, 240, 384), blocks: Sequence[int] = (2, 2, 6, 2), k: int = 9,
                 reduce_ratios: Sequence[int] = (4, 2, 1, 1), hidden: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % 32:
            raise ValueError(f"ViG image_size must be a multiple of 32, got {image_size}")
        if not len(channels) == len(blocks) == len(reduce_ratios):
            raise ValueError("channels, blocks and reduce_ratios need one value per stage")
        c0 = channels[0]
        self.image_size = image_size
        self.stem = nn.ModuleDict({"convs": nn.Sequential(
            nn.Conv2d(in_channels, c0 // 2, 3, stride=2, padding=1), nn.BatchNorm2d(c0 // 2), nn.GELU(),
            nn.Conv2d(c0 // 2, c0, 3, stride=2, padding=1), nn.BatchNorm2d(c0), nn.GELU(),
            nn.Conv2d(c0, c0, 3, stride=1, padding=1), nn.BatchNorm2d(c0),
        )})
        grid = image_size // 4
        self.pos_embed = nn.Parameter(torch.zeros(1, c0, grid, grid))
        max_dilation = 49 // k
        layers: list[nn.Module] = []
        index = 0
        for stage, (c, depth, r) in enumerate(zip(channels, blocks, reduce_ratios)):
            if stage > 0:
                layers.append(Downsample(channels[stage - 1], c))
                grid //= 2
            for _ in range(depth):
                dilation = min(index // 4 + 1, max_dilation)
                layers.append(nn.Sequential(Grapher(c, k, dilation, r, grid), FFN(c, 4 * c)))
                index += 1
        self.backbone = nn.Sequential(*layers)
        self.downsample_indices = tuple(i for i, layer in enumerate(layers) if isinstance(layer, Downsample))
        self.prediction = nn.Sequential(nn.Conv2d(channels[-1], hidden, 1), nn.BatchNorm2d(hidden), nn.GELU(),
                                        nn.Dropout(dropout), nn.Conv2d(hidden, num_classes, 1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def upgrade_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``state`` in the released key layout (`upgrade_legacy_state_dict` for this network's stages)."""
        return upgrade_legacy_state_dict(state, self.downsample_indices)

    def stem_features(self, x: Tensor, embedding: Tensor | None = None) -> Tensor:
        """Stem output plus position embedding (and ``embedding``): the first stage's nodes (N, C0, S/4, S/4)."""
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"ViG input must be {self.image_size}×{self.image_size}, got {tuple(x.shape[-2:])}")
        x = self.stem["convs"](x) + self.pos_embed
        return x if embedding is None else x + embedding

    def forward_features(self, x: Tensor, embedding: Tensor | None = None, gaze: Tensor | None = None) -> Tensor:
        """Last-stage feature map (N, channels[-1], S/32, S/32) of images (N, C, S, S)."""
        x = self.stem_features(x, embedding)
        if gaze is None:
            return self.backbone(x)
        if tuple(gaze.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"ViG gaze map must be {self.image_size}×{self.image_size}, got {tuple(gaze.shape[-2:])}")
        gaze = F.max_pool2d(gaze, 4, 4)
        for layer in self.backbone:
            if isinstance(layer, Downsample):
                x, gaze = layer(x), F.max_pool2d(gaze, 2, 2)
            else:
                grapher, ffn = layer
                x = ffn(grapher(x, gaze))
        return x

    def forward(self, x: Tensor, embedding: Tensor | None = None, gaze: Tensor | None = None) -> Tensor:
        """Class logits (N, num_classes)."""
        pooled = F.adaptive_avg_pool2d(self.forward_features(x, embedding, gaze), 1)
        return self.prediction(pooled).flatten(1)
