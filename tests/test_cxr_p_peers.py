"""The peer methods on CXR-P (tiny settings): films without gaze train each peer's classification and are
skipped by every loss term that reads gaze and by every saliency score; each peer has the task's one output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gazecxr.config import load_config
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.gaze_stats import GazeStatsDataset, time_scale, viewing_time
from gazecxr.losses import SaliencyKLLoss, UncertaintyWeightedLoss
from gazecxr.models.eg_vit import EGViT
from gazecxr.models.gaze_mtl import GazeMTL
from gazecxr.models.gdvig import GDViG
from gazecxr.models.mtunet import MTUNet
from gazecxr.tasks import create_task, task_of
from gazecxr.training.mechanism_tasks import GazeDistanceTask, GazeStatsTask, TokenMaskTask, smoothed_loss
from gazecxr.training.peers import MTUNetTask, gaze_dataset, peer_model, run_peer
from test_cxr_p_pipeline import cxrp_h5  # noqa: F401  (module fixture: a tiny converted CXR-P file)

SIIM = create_task({"name": "siim_pneumothorax"})
MIXED = torch.tensor([True, False, True, False])
"""A batch's ``has_gaze``: films 1 and 3 without gaze (all-zero heatmaps)."""


def _heatmaps(n: int = 4, side: int = 16) -> torch.Tensor:
    heat = torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0))
    heat = heat / heat.sum(dim=(2, 3), keepdim=True)
    heat[~MIXED] = 0.0
    return heat


def _labels(n: int = 4) -> torch.Tensor:
    return torch.tensor([[1.0], [0.0], [0.0], [1.0]])[:n]


def test_mtunet_kl_runs_over_the_films_with_gaze_and_ce_over_all():
    loss = UncertaintyWeightedLoss("fixed", SIIM.loss)
    logits, saliency, heat = torch.randn(4, 1), torch.randn(4, 1, 16, 16), _heatmaps()
    out = loss(logits, _labels(), saliency, heat, MIXED)
    assert out["kl"].item() == pytest.approx(SaliencyKLLoss()(saliency[MIXED], heat[MIXED]).item(), rel=1e-6)
    assert out["ce"].item() == pytest.approx(SIIM.loss(logits, _labels()).item(), rel=1e-6)
    assert out["total"].item() == pytest.approx(out["ce"].item() + out["kl"].item() / 2 + 2 * math.log(2), rel=1e-6)
    saliency.requires_grad_(True)
    none = loss(logits, _labels(), saliency, heat, torch.zeros(4, dtype=torch.bool))
    assert none["kl"].item() == 0.0 and torch.isfinite(none["total"])
    none["total"].backward()
    assert torch.count_nonzero(saliency.grad) == 0  # no gaze film: the saliency head gets no gradient


def test_mtunet_task_scores_nan_for_films_without_gaze_and_finite_metrics():
    task = MTUNetTask(MTUNet(width=0.0625, num_classes=1, dropout=0.0), UncertaintyWeightedLoss("fixed", SIIM.loss),
                      SIIM)
    task.eval()
    batch = {"image": torch.rand(4, 1, 32, 32), "label": _labels(), "heatmap": _heatmaps(side=32), "has_gaze": MIXED}
    with torch.no_grad():
        out = task.outputs(batch)
        batch_kl = task.weighting(task.net(batch["image"])["class_logits"], batch["label"],
                                  task.net(batch["image"])["saliency_logits"], batch["heatmap"], MIXED)["kl"]
    for name in ("kl_loss", "kl", "cc", "hs"):
        assert torch.isnan(out[name][~MIXED]).all() and torch.isfinite(out[name][MIXED]).all(), name
    assert out["kl_loss"][MIXED].mean().item() == pytest.approx(batch_kl.item(), rel=1e-5)
    metrics = task.metrics(out)
    assert all(np.isfinite(metrics[k]) for k in ("val_total_loss", "val_kl_loss", "val_kl", "val_cc", "val_loss"))
    none = task.metrics({**out, **{k: torch.full((4,), float("nan"), dtype=torch.float64)
                                   for k in ("kl_loss", "kl", "cc", "hs")}})
    assert np.isfinite(none["val_total_loss"]) and np.isnan(none["val_kl"])


def test_gdvig_map_loss_runs_over_the_films_with_gaze():
    torch.manual_seed(0)
    task = GazeDistanceTask(GDViG(image_size=32, channels=(8, 16, 24, 32), blocks=(1, 1, 1, 1), hidden=32,
                                  num_classes=1), task=SIIM)
    predicted = torch.rand(4, 1, 32, 32, requires_grad=True)
    heat = _heatmaps(side=32)
    mixed = task.map_loss(predicted, {"heatmap": heat, "has_gaze": MIXED})
    alone = task.map_loss(predicted[MIXED], {"heatmap": heat[MIXED]})
    assert mixed.item() == pytest.approx(alone.item(), rel=1e-6) and mixed.item() > 0
    none = task.map_loss(predicted, {"heatmap": heat, "has_gaze": torch.zeros(4, dtype=torch.bool)})
    assert none.item() == 0.0 and none.requires_grad
    task.trainable.eval()
    batch = {"image": torch.rand(4, 1, 32, 32), "label": _labels(), "heatmap": heat, "has_gaze": MIXED}
    logits, maps = task.net.forward_with_map(batch["image"])
    expected = SIIM.loss(logits, batch["label"]) + task.map_loss(maps, batch)
    assert task.loss(batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_token_mask_masks_only_the_films_with_gaze():
    torch.manual_seed(0)
    net = EGViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=1, masked_blocks=1).eval()
    always, never = (TokenMaskTask(net, mask_probability=p, keep_tokens=5, task=SIIM) for p in (1.0, 0.0))
    image, heat = torch.rand(4, 1, 32, 32), _heatmaps(side=32)
    batch = {"image": image, "label": _labels(), "heatmap": heat, "has_gaze": MIXED}
    logits = always.masked_logits(batch)
    torch.testing.assert_close(logits[MIXED], net(image[MIXED], always.keep(heat[MIXED])).float())
    torch.testing.assert_close(logits[~MIXED], net(image[~MIXED]).float())
    assert not torch.allclose(logits[MIXED], net(image[MIXED]).float())  # the gaze films are masked
    flat = {**batch, "has_gaze": torch.zeros(4, dtype=torch.bool)}
    assert always.loss(flat).item() == pytest.approx(never.loss(flat).item(), rel=1e-6)
    always.loss(batch).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_label_smoothing_of_a_finding_moves_targets_towards_one_half():
    logits, labels = torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [0.0]])
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.95], [0.05]]))
    assert smoothed_loss(SIIM, logits, labels, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_gaze_mtl_targets_of_films_without_gaze_are_nan_not_zero(cxrp_h5):  # noqa: F811
    base = GazeCXRDataset(cxrp_h5, "train")
    assert (~base.has_gaze).any() and base.has_gaze.any()
    stats = GazeStatsDataset(base)
    assert np.isnan(stats.targets[~base.has_gaze]).all() and np.isfinite(stats.targets[base.has_gaze]).all()
    times = [viewing_time(base.fixations(int(i))) for i in base.indices[base.has_gaze]]
    assert stats.time_reference == pytest.approx(time_scale(times))
    net = GazeMTL(arch="resnet18", num_classes=1, size="tiny")
    batch = {"image": torch.rand(4, 1, 32, 32), "label": _labels(), "gaze_stats": torch.full((4, 2), float("nan"))}
    torch.manual_seed(0)
    with_aux = GazeStatsTask(net, aux_weight=1.0, task=SIIM).loss(batch)
    torch.manual_seed(0)
    plain = GazeStatsTask(net, aux_weight=0.0, task=SIIM).loss(batch)
    assert torch.isfinite(with_aux) and with_aux.item() == pytest.approx(plain.item(), rel=1e-5)


def test_gazegnn_sees_an_all_zero_map_for_a_film_without_gaze(cxrp_h5):  # noqa: F811
    config = load_config("cxrp_test", [f"data.h5={cxrp_h5}"])
    data = gaze_dataset(config, "train", augment=False)
    items = [data[i] for i in range(len(data))]
    assert all(item["label"].shape == (1,) for item in items)
    assert all((item["gaze"].sum() > 0) == item["has_gaze"] for item in items)


def test_peers_get_the_tasks_number_of_outputs():
    for preset, outputs in (("test", 3), ("cxrp_test", 1), ("cxrp", 1)):
        config = load_config(preset)
        for method in ("mtunet", "irnetv2", "gazegnn", "gaze_token_mask", "gdvig", "gaze_mtl"):
            assert peer_model(config, method, task_of(config))["num_classes"] == outputs, (preset, method)


@pytest.mark.parametrize("method", ["mtunet", "gazegnn", "gaze_token_mask", "gdvig", "gaze_mtl"])
def test_each_peer_trains_on_the_converted_file(method, cxrp_h5, tmp_path):  # noqa: F811
    config = load_config("cxrp_test", [f"data.h5={cxrp_h5}", f"registry.root={tmp_path / 'checkpoints'}",
                                       f"runs.root={tmp_path / 'runs'}", f"peers.{method}.train.max_epochs=1"])
    entry = run_peer(method, config, progress=False)
    assert entry.architecture[method]["num_classes"] == 1 and entry.architecture["task"]["name"] == "siim_pneumothorax"
    assert entry.metrics["epochs"] == 1.0
    assert np.isfinite(entry.metrics["val_loss"]) and 0.0 <= entry.metrics["val_auc_macro"] <= 1.0
    if method == "mtunet":
        assert all(np.isfinite(entry.metrics[k]) for k in ("val_kl", "val_cc", "val_kl_loss", "val_total_loss"))
