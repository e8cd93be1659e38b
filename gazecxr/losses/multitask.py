"""MT-UNet's uncertainty-weighted joint loss of diagnosis and saliency."""

from __future__ import annotations

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
    KL is `SaliencyKLLoss` (batch mean), CE the batch-mean cross-entropy. ``forward`` returns the
    total and its raw parts ``ce`` and ``kl``.
    """

    def __init__(self, mode: str = "learn_class") -> None:
        super().__init__()
        if mode not in SIGMA_MODES:
            raise ValueError(f"unknown sigma mode {mode!r}; valid modes: {list(SIGMA_MODES)}")
        self.mode = mode
        for name, learned in (("log_sigma_class", mode != "fixed"), ("log_sigma_saliency", mode == "learn_both")):
            if learned:
                self.register_parameter(name, nn.Parameter(torch.zeros(())))
            else:
                self.register_buffer(name, torch.zeros(()))
        self.kl = SaliencyKLLoss()

    def forward(self, class_logits: Tensor, labels: Tensor, saliency_logits: Tensor,
                heatmaps: Tensor) -> dict[str, Tensor]:
        ce = F.cross_entropy(class_logits.float(), labels)
        kl = self.kl(saliency_logits.float(), heatmaps)
        return {"total": self.weigh(ce, kl), "ce": ce, "kl": kl}

    def weigh(self, ce: Tensor, kl: Tensor) -> Tensor:
        """The weighted total of a cross-entropy and a KL value."""
        sigma_c, sigma_s = self.log_sigma_class.exp(), self.log_sigma_saliency.exp()
        return ce / sigma_c ** 2 + torch.log1p(sigma_c) + kl / (2 * sigma_s ** 2) + torch.log1p(sigma_s)
