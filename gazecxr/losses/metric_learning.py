"""Metric-learning losses of stage 1 (pytorch-metric-learning): triplet with a miner, supervised contrastive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import Tensor, nn

TRIPLET_MINERS = ("semihard", "hard", "all", "easy")


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
