"""Supervised contrastive loss for multi-label images: positives weighted by label-set overlap.

pytorch-metric-learning's ``SupConLoss`` takes one integer label per image; with up to 15 REFLACX
findings per image, exact label-set matches are rare in a batch and images sharing some findings
would be pushed apart. ``JaccardSupConLoss`` generalises SupCon (Khosla et al., 2020) by weighting
every other image of the batch as a positive by the Jaccard similarity of the two label sets.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from torch import Tensor, nn

__all__ = ["jaccard_similarity", "JaccardSupConLoss"]


def jaccard_similarity(labels: Tensor) -> Tensor:
    """Pairwise Jaccard similarity |A ∩ B| / |A ∪ B| (N, N) of multi-hot label sets (N, F).

    Two empty sets (no finding) are the same label set: similarity 1. Integer class labels (N,)
    are read as one-hot sets, so the similarity is 1 for equal classes and 0 otherwise.
    """
    if labels.ndim == 1:
        labels = labels[:, None] == labels.unique()[None, :]
    if labels.ndim != 2:
        raise ValueError(f"labels must be class indices (N,) or multi-hot (N, F); got shape {tuple(labels.shape)}")
    y = labels.to(torch.float64)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("multi-hot labels must be 0 or 1")
    inter = y @ y.T
    union = y.sum(1, keepdim=True) + y.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


class JaccardSupConLoss(nn.Module):
    """Multi-label supervised contrastive loss on L2-normalised embeddings (cosine similarity s).

    For anchor i: ℓ_i = −Σ_{j≠i} w_ij log(exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ)) / Σ_{j≠i} w_ij with
    w_ij = ``jaccard_similarity``; the loss is the mean over anchors with Σ w_ij > 0 (0 when there is
    none). With single labels (or one-hot sets) w is 1 for same-class pairs and 0 otherwise, which is
    exactly SupCon as pytorch-metric-learning's ``SupConLoss`` computes it. Called like
    ``gazecxr.losses.MetricLoss``: ``loss(embeddings (N, D), labels (N,) or (N, F))``.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive; got {temperature!r}")
        self.temperature = float(temperature)
        self.similarity = CosineSimilarity()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if embeddings.ndim != 2 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"embeddings (N, D) and labels with N rows expected; got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        n = embeddings.shape[0]
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
        weights = jaccard_similarity(labels).to(embeddings.device, embeddings.dtype) * off_diagonal
        logits = self.similarity(embeddings, embeddings) / self.temperature
        logits = logits.masked_fill(~off_diagonal, float("-inf"))
        log_prob = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).masked_fill(~off_diagonal, 0.0)
        total = weights.sum(1)
        anchors = total > 0
        if not bool(anchors.any()):
            return embeddings.sum() * 0.0
        per_anchor = -(weights * log_prob).sum(1)[anchors] / total[anchors]
        return per_anchor.mean()
