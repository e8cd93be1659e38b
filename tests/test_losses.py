"""Saliency KL loss against the benchmark formula; metric-learning losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gazecxr.losses import MetricLoss, SaliencyKLLoss, make_metric_loss, supcon_loss, triplet_loss

EPS = 2.2204e-16


def benchmark_kl(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    """Per-image KL of DESIGN.md "Metrics", averaged over the batch."""
    p = prediction.reshape(len(prediction), -1)
    g = ground_truth.reshape(len(ground_truth), -1)
    p = p / p.sum(axis=1, keepdims=True)
    g = g / g.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(g * np.log(EPS + g / (p + EPS)), axis=1)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kl_loss_matches_benchmark_formula(dtype):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4, 1, 16, 12))
    ground_truth = rng.random((4, 16, 12)) ** 4
    ground_truth[:, :4] = 0.0
    ground_truth[1] *= 7.0
    prediction = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(axis=(1, 2, 3), keepdims=True)
    expected = benchmark_kl(prediction, ground_truth)
    loss = SaliencyKLLoss()(torch.tensor(logits, dtype=dtype), torch.tensor(ground_truth, dtype=dtype))
    assert expected > 0.5
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_kl_loss_is_zero_for_a_perfect_prediction_and_has_finite_gradients():
    ground_truth = torch.rand(2, 1, 8, 8)
    ground_truth[:, :, :2] = 0.0
    logits = torch.log(ground_truth + 1e-30).requires_grad_()
    loss = SaliencyKLLoss()(logits, ground_truth)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_kl_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ per image"):
        SaliencyKLLoss()(torch.rand(2, 1, 8, 8), torch.rand(2, 8, 4))


def _clusters(n_per_class: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    centres = torch.eye(3, 6) * 3.0
    labels = torch.arange(3).repeat_interleave(n_per_class)
    return centres[labels] + 0.5 * torch.randn(len(labels), 6), labels


@pytest.mark.parametrize("miner", ["semihard", "hard", "all"])
def test_triplet_loss_decreases_on_separable_data(miner):
    inputs, labels = _clusters()
    embedder = torch.nn.Linear(6, 4)
    loss_fn = triplet_loss(margin=0.2, miner=miner)
    reference = triplet_loss(margin=0.2, miner="all")
    with torch.no_grad():
        before = reference(embedder(inputs), labels).item()
    optimizer = torch.optim.Adam(embedder.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        loss_fn(embedder(inputs), labels).backward()
        optimizer.step()
    with torch.no_grad():
        after = reference(embedder(inputs), labels).item()
    assert before > 0.05
    assert after < 0.5 * before


def test_supcon_loss_decreases_on_separable_data():
    inputs, labels = _clusters()
    embedder = torch.nn.Linear(6, 4)
    loss_fn = supcon_loss(temperature=0.1)
    optimizer = torch.optim.Adam(embedder.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        optimizer.zero_grad()
        loss = loss_fn(embedder(inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_make_metric_loss():
    triplet = make_metric_loss({"name": "triplet", "margin": 0.3, "miner": "hard"})
    assert isinstance(triplet, MetricLoss)
    assert triplet.loss.margin == 0.3 and triplet.miner.type_of_triplets == "hard"
    supcon = make_metric_loss({"name": "supcon", "temperature": 0.5})
    assert supcon.loss.temperature == 0.5 and supcon.miner is None
    with pytest.raises(ValueError, match=r"valid names: \['supcon', 'triplet'\]"):
        make_metric_loss({"name": "arcface"})
    with pytest.raises(ValueError, match="bad options"):
        make_metric_loss({"name": "supcon", "margin": 0.2})
    with pytest.raises(ValueError, match="valid miners"):
        triplet_loss(miner="random")


def test_kl_loss_equals_the_kl_metric_on_the_same_maps():
    from gazecxr.metrics import kl_divergence
    from gazecxr.models.resse_unet import saliency_from_logits

    torch.manual_seed(3)
    logits = torch.randn(5, 1, 20, 16, dtype=torch.float64) * 2
    ground_truth = torch.rand(5, 1, 20, 16, dtype=torch.float64) ** 3
    loss = SaliencyKLLoss()(logits, ground_truth).item()
    metric = kl_divergence(saliency_from_logits(logits)[:, 0], ground_truth[:, 0]).mean()
    assert loss == pytest.approx(metric, rel=1e-6)
