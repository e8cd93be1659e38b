"""MT-UNet's uncertainty-weighted joint loss of diagnosis and saliency."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gazecxr.losses.saliency import SaliencyKLLoss

SIGMA_MODES = ("learn_class", "learn_both", "fixed")
"""Weighting modes of `UncertaintyWeightedLoss`: which log-sigmas are learned (the others stay 0)."""


class UncertaintyWeightedLoss(nn.Module):
    """MT-UNet's joint loss ``CE/σc² + log(σc + 1) + KL/(2σs²) + log(σs + 1)``, σ = exp(s).

    ``mode`` ``learn_class`` (the released recipe) learns s_c and keeps s_s = 0; ``learn_both``
    learns both; ``fixed`` keeps both at 0 (σ = 1: CE + KL/2 + 2·log 2). Both log-sigmas start at 0.
    KL is `SaliencyKLLoss` (batch mean over the films with gaze when ``has_gaze`` is given: 0 for a
    batch without any), CE is ``class_loss`` over every film (default the batch-mean cross-entropy;
    a multi-label task gives its own loss, e.g. BCE). ``forward`` returns the total and its raw parts
    ``ce`` and ``kl``.
    """

    def __init__(self, mode: str = "learn_class",
                 class_loss: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        if mode not in SIGMA_MODES:
            raise ValueError(f"unknown sigma mode {mode!r}; valid modes: {list(SIGMA_MODES)}")
        self.mode = mode
        self.class_loss = class_loss or F.cross_entropy
        for name, learned in (("log_sigma_class", mode != "fixed"), ("log_sigma_saliency", mode == "learn_both")):
            if learned:
                self.register_parameter(name, nn.Parameter(torch.zeros(())))
            else:
                self.register_buffer(name, torch.zeros(()))
        self.kl = SaliencyKLLoss()

    def forward(self, class_logits: Tensor, labels: Tensor, saliency_logits: Tensor,
                heatmaps: Tensor, has_gaze: Tensor | None = None) -> dict[str, Tensor]:
        ce = self.class_loss(class_logits.float(), labels)
        kl = self.kl(saliency_logits.float(), heatmaps, has_gaze)
        return {"total": self.weigh(ce, kl), "ce": ce, "kl": kl}

    def weigh(self, ce: Tensor, kl: Tensor) -> Tensor:
        """The weighted total of a cross-entropy and a KL value."""
        sigma_c, sigma_s = self.log_sigma_class.exp(), self.log_sigma_saliency.exp()
        return ce / sigma_c ** 2 + torch.log1p(sigma_c) + kl / (2 * sigma_s ** 2) + torch.log1p(sigma_s)
