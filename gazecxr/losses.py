"""Training losses: saliency KL divergence, MT-UNet's uncertainty-weighted joint loss, metric-learning losses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import Tensor, nn

TRIPLET_MINERS = ("semihard", "hard", "all", "easy")


class SaliencyKLLoss(nn.Module):
    """KL(G || P) averaged over the batch, P = softmax of the logits over all pixels of an image.

    Per image: sum_i G_i (log G_i - log P_i), with G normalised to sum 1 and 0 log 0 = 0, computed
    from log-softmax (stable for any logits). This equals the benchmark metric
    sum_i G_i log(eps + G_i / (P_i + eps)), eps = 2.2204e-16, up to terms of order eps/P and eps
    (relative difference < 1e-5 in practice); the released code's ``F.kl_div(log P, G)`` is the same
    quantity. Inputs: logits (N, ...) and targets with the same number of elements per image.
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = F.log_softmax(logits.flatten(1), dim=1)
        g = target.flatten(1).to(log_p.dtype)
        if g.shape != log_p.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ per image")
        g = g / g.sum(dim=1, keepdim=True)
        return F.kl_div(log_p, g, reduction="batchmean")


class MetricLoss(nn.Module):
    """pytorch-metric-learning loss on (embeddings, labels), on the tuples chosen by an optional miner."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        tuples = None if self.miner is None else self.miner(embeddings, labels)
        return self.loss(embeddings, labels, tuples)


def triplet_loss(margin: float = 0.2, miner: str = "semihard") -> MetricLoss:
    """Triplet margin loss on label-defined triplets, restricted to `miner`-selected triplets."""
    if miner not in TRIPLET_MINERS:
        raise ValueError(f"unknown triplet miner {miner!r}; valid miners: {list(TRIPLET_MINERS)}")
    return MetricLoss(
        pml_losses.TripletMarginLoss(margin=margin),
        pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=miner),
    )


def supcon_loss(temperature: float = 0.1) -> MetricLoss:
    """Supervised contrastive loss over all pairs of the batch."""
    return MetricLoss(pml_losses.SupConLoss(temperature=temperature))


_METRIC_LOSSES = {"triplet": triplet_loss, "supcon": supcon_loss}


def make_metric_loss(cfg: Mapping[str, Any]) -> MetricLoss:
    """Build a metric loss from ``{"name": "triplet" | "supcon", **kwargs}``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name", "triplet")
    if name not in _METRIC_LOSSES:
        raise ValueError(f"unknown metric loss {name!r}; valid names: {sorted(_METRIC_LOSSES)}")
    try:
        return _METRIC_LOSSES[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options {sorted(kwargs)} for metric loss {name!r}: {err}") from err


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
