"""Gaze-MTL (Saab et al., MICCAI 2021): a classifier with auxiliary heads that regress gaze statistics.

As in the released code (HazyResearch/observational, Gaze-MTL): a CNN (an ImageNet-pretrained
ResNet-50 in the paper; here any timm classifier, `TimmClassifier`, randomly initialised) shares
its pooled features between the class head and one linear head per gaze statistic of the film
(`gazecxr.data.gaze_stats`: ``time``, ``diffusivity``), trained jointly (`gazecxr.training.mechanism_tasks.GazeStatsTask`). The
auxiliary heads are used in training only; ``forward`` gives the class logits of the image alone.
Gaze-MTL's ``loc`` head is left out: its target is 0 for every negative film, so it encodes the label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .factory import register_model
from .timm_classifier import TimmClassifier

AUX_TASKS = ("time", "diffusivity")
"""The gaze statistics an auxiliary head can regress (`gazecxr.data.gaze_stats.GAZE_STATISTICS`)."""


@register_model("gaze_mtl")
class GazeMTL(nn.Module):
    """``backbone`` (a timm classifier without its head, randomly initialised: ``arch``, ``size``,
    ``overrides`` as for `TimmClassifier`), ``classifier`` (Linear to the classes) and ``aux`` (one Linear to a
    scalar per name of ``aux_tasks``, in that order)."""

    def __init__(self, arch: str = "resnet50", num_classes: int = 3, in_channels: int = 1, size: str = "full",
                 aux_tasks: Sequence[str] = AUX_TASKS, drop_rate: float = 0.0,
                 overrides: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        unknown = sorted(set(aux_tasks) - set(AUX_TASKS))
        if unknown or len(set(aux_tasks)) != len(aux_tasks):
            raise ValueError(f"aux_tasks must be distinct names of {list(AUX_TASKS)}, got {list(aux_tasks)}")
        self.aux_tasks = tuple(aux_tasks)
        self.backbone = TimmClassifier(arch=arch, num_classes=0, in_channels=in_channels, size=size,
                                       drop_rate=drop_rate, overrides=overrides)
        features = int(self.backbone.net.num_features)
        self.classifier = nn.Linear(features, num_classes)
        self.aux = nn.ModuleDict({task: nn.Linear(features, 1) for task in self.aux_tasks})

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits (N, num_classes) and auxiliary predictions (N, len(aux_tasks))."""
        features = self.backbone(x)
        aux = [self.aux[task](features) for task in self.aux_tasks]
        return self.classifier(features), torch.cat(aux, dim=1) if aux else features.new_zeros(len(x), 0)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, num_classes) of images (N, in_channels, H, W)."""
        return self.classifier(self.backbone(x))
