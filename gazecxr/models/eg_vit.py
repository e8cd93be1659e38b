"""EG-ViT (Ma et al., IEEE TMI 2023): a ViT trained with gaze-masked token sets; no gaze at test time.

After the released code (MoMarky/Eye-gaze-Guided-Vision-Transformer ``models/EGViT.py``,
``main_siim.py``): a timm ViT-S/16 (embed 384, depth 12, 6 heads) whose ``forward(x, keep)``
with the indices of K gaze-ranked patches (64 of 196 as released) runs only the class token and
those patches through the first ``masked_blocks`` blocks (11 of 12), then restores every patch
token by a residual (kept tokens: embedding + their block output, as the released ``index_add_``;
the others: their embedding) and runs all tokens through the remaining blocks. Training applies
the mask to a batch with probability 0.5 (`gazecxr.training.mechanism_tasks.TokenMaskTask`);
``forward(x)`` without ``keep`` is the plain ViT, used for validation and test.

Differences: the class token entering the masked blocks carries its position embedding (the
released code passed the raw class token); a grey image enters as one channel; an input of
another size is resized (bilinear, antialiased) to ``img_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .factory import register_model


def patch_scores(gaze: Tensor, grid: tuple[int, int]) -> Tensor:
    """(N, gh·gw) mean gaze per patch (row-major) of gaze maps (N, 1, H, W) over a gh×gw patch grid."""
    if gaze.ndim != 4 or gaze.shape[1] != 1:
        raise ValueError(f"gaze maps must be (N, 1, H, W), got {tuple(gaze.shape)}")
    return F.adaptive_avg_pool2d(gaze.float(), grid).flatten(1)


def top_patches(scores: Tensor, k: int) -> Tensor:
    """(N, k) indices of the k highest-scoring patches of each row of ``scores`` (N, P), in
    ascending index order; ties go to the lower index."""
    if not 0 < k <= scores.shape[1]:
        raise ValueError(f"keep_tokens must be in 1..{scores.shape[1]} (the patch count), got {k}")
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return order.sort(dim=1).values


@register_model("eg_vit")
class EGViT(nn.Module):
    """A timm VisionTransformer (``vit``) with EG-ViT's masked forward; ``masked_blocks`` defaults
    to depth − 1 (every block but the last)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 384, depth: int = 12,
                 num_heads: int = 6, num_classes: int = 3, in_channels: int = 1, masked_blocks: int | None = None,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        self.masked_blocks = depth - 1 if masked_blocks is None else masked_blocks
        if not 0 <= self.masked_blocks <= depth:
            raise ValueError(f"masked_blocks must be in 0..{depth}, got {self.masked_blocks}")
        self.img_size = img_size
        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_channels,
                                     num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                                     num_heads=num_heads, drop_rate=drop_rate)

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (rows, columns)."""
        return tuple(self.vit.patch_embed.grid_size)  # type: ignore[return-value]

    def resize(self, x: Tensor) -> Tensor:
        """Images (N, C, H, W) resized to the model's square input."""
        size = (self.img_size, self.img_size)
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)

    def embed(self, x: Tensor) -> Tensor:
        """Tokens (N, 1 + P, D) entering the blocks: class token, then patches, position embedded."""
        vit = self.vit
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(self.resize(x)))))

    def masked_tokens(self, x: Tensor, keep: Tensor) -> Tensor:
        """All tokens (N, 1 + P, D) after the masked blocks: the class token and the ``keep`` (N, K)
        patches go through them; patch tokens are then their embedding plus (kept ones only) that output."""
        tokens = self.embed(x)
        cls, patches = tokens[:, :1], tokens[:, 1:]
        index = keep.to(patches.device).unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        hidden = torch.cat([cls, patches.gather(1, index)], dim=1)
        for block in self.vit.blocks[:self.masked_blocks]:
            hidden = block(hidden)
        return torch.cat([hidden[:, :1], patches.scatter_add(1, index, hidden[:, 1:])], dim=1)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Class logits (N, num_classes); with ``keep`` (N, K) patch indices, EG-ViT's masked forward."""
        if keep is None:
            return self.vit(self.resize(x))
        tokens = self.masked_tokens(x, keep)
        for block in self.vit.blocks[self.masked_blocks:]:
            tokens = block(tokens)
        return self.vit.forward_head(self.vit.norm(tokens))
