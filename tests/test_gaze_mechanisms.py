"""The field's gaze mechanisms (EG-ViT token mask, GD-ViG, Gaze-MTL): models, gaze statistics, the
array-level API of the benchmark and the peer registry."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from gazecxr.data.gaze_stats import (diffusivity, fixation_grid, map_grid, map_statistics, time_scale,
                                     time_targets, viewing_time)
from gazecxr.models.eg_vit import EGViT, patch_scores, top_patches
from gazecxr.models.gaze_mtl import GazeMTL
from gazecxr.models.gdvig import GDViG
from gazecxr.models.vig import dilated_knn, gaze_distance
from gazecxr.training.gaze_mechanisms import MECHANISMS, MechanismData, fit_mechanism, macro_auc
from gazecxr.training.mechanism_tasks import GazeDistanceTask, GazeStatsTask, TokenMaskTask



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These many tiny fits run on one thread, as the benchmark runs them (two threads on a busy
    2-core machine make them several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- gaze statistics


def test_gaze_statistics_on_hand_made_maps():
    concentrated = np.zeros((20, 20))
    concentrated[4:8, 6:10] = 1.0  # cells (2..3, 3..4) of the 10×10 grid: one 2×2 block holds everything
    assert map_grid(concentrated)[2:4, 3:5].sum() == 16.0 and map_grid(concentrated).sum() == 16.0
    assert diffusivity(map_grid(concentrated)) == pytest.approx(1.0)
    assert diffusivity(map_grid(np.ones((20, 20)))) == pytest.approx(4 / 100)  # uniform: 4 of 100 cells
    two = np.zeros((10, 10))
    two[0, 0], two[9, 9] = 3.0, 1.0  # far apart: the best 2×2 window holds 3/4
    assert diffusivity(two) == pytest.approx(0.75)
    assert math.isnan(diffusivity(np.zeros((10, 10))))  # no gaze, no target
    fixations = np.array([[0.0, 0.0, 0.5], [19.9, 19.9, 0.25], [25.0, 3.0, 9.0]])  # the last is off the 20×20 canvas
    grid = fixation_grid(fixations, (20, 20))
    assert grid[0, 0] == 0.5 and grid[9, 9] == 0.25 and grid.sum() == 0.75
    assert viewing_time(fixations) == pytest.approx(9.75)


def test_time_target_is_gaze_mtls_capped_ratio_to_mean_plus_two_std():
    reference = [1.0, 2.0, 3.0]
    scale = 2.0 + 2 * np.std(reference)
    assert time_scale(reference) == pytest.approx(scale)
    np.testing.assert_allclose(time_targets([1.0, 10.0], scale), [1.0 / scale, 1.0])
    assert np.isnan(time_targets([1.0], 0.0)).all()
    maps = np.zeros((2, 10, 10), np.float32)
    maps[0, 0, 0], maps[1] = 2.0, 0.04  # totals 2 and 4; the second map is uniform
    stats = map_statistics(maps, None, scale=8.0)
    np.testing.assert_allclose(stats, [[0.25, 1.0], [0.5, 0.04]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown gaze statistic"):
        map_statistics(maps, None, 1.0, ("loc",))


# ----------------------------------------------------------------------------- EG-ViT token mask


def test_top_patches_keeps_the_highest_gaze_patches_in_index_order():
    gaze = torch.zeros(2, 1, 8, 8)
    gaze[0, 0, 0:4, 4:8] = 1.0   # patch (0, 1) of a 2×2 grid
    gaze[0, 0, 4:8, 0:4] = 0.5   # patch (1, 0)
    gaze[1, 0, 4:8, 4:8] = 2.0   # patch (1, 1); the others tie at 0 and go to the lower index
    scores = patch_scores(gaze, (2, 2))
    np.testing.assert_allclose(scores[0].numpy(), [0.0, 1.0, 0.5, 0.0])
    assert top_patches(scores, 2).tolist() == [[1, 2], [0, 3]]
    with pytest.raises(ValueError, match="keep_tokens"):
        top_patches(scores, 5)


def test_masked_forward_runs_only_kept_tokens_and_restores_the_rest_by_residual():
    torch.manual_seed(0)
    net = EGViT(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=2).eval()
    x = torch.rand(2, 1, 32, 32)
    keep = torch.tensor([[0, 5, 9], [3, 4, 15]])
    seen = []
    hook = net.vit.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    last = net.vit.blocks[2].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        logits = net(x, keep)
        embedded, tokens = net.embed(x), net.masked_tokens(x, keep)
        plain = net(x)
    hook.remove(), last.remove()
    assert seen[0] == (2, 4, 16)  # class token + 3 kept patches through the masked blocks
    assert seen[1] == (2, 17, 16)  # all 16 patches again before the last block
    assert logits.shape == plain.shape == (2, 2) and not torch.allclose(logits, plain)
    for b in range(2):
        kept = set(keep[b].tolist())
        for p in range(16):
            same = torch.equal(tokens[b, 1 + p], embedded[b, 1 + p])
            assert same == (p not in kept), (b, p)


def test_token_mask_task_switch_off_never_reads_gaze():
    net = EGViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=2)
    batch = {"image": torch.rand(4, 1, 32, 32), "label": torch.tensor([0, 1, 0, 1])}  # no heatmap at all
    assert torch.isfinite(TokenMaskTask(net, mask_probability=0.0, keep_tokens=4).loss(batch))
    with pytest.raises(KeyError):
        TokenMaskTask(net, mask_probability=1.0, keep_tokens=4).loss(batch)
    with pytest.raises(ValueError, match="keep_tokens"):
        TokenMaskTask(net, keep_tokens=17)


# ----------------------------------------------------------------------------- GD-ViG


def test_gaze_distance_formula_on_a_tiny_example():
    query = torch.tensor([[0.0, 0.5, 1.0]])  # min-max norm: 0, 0.5, 1
    keys = torch.tensor([[0.0, 1.0]])
    expected = torch.tensor([[[0.0, 0.0],            # norm 0: no gaze term
                              [0.25 * 0.5, 0.25 * 0.5],
                              [1.0, 0.0]]])           # (1 − 0)² · 1, (1 − 1)² · 1
    assert torch.allclose(gaze_distance(query, keys), expected)
    assert torch.equal(gaze_distance(torch.ones(1, 3), keys), torch.zeros(1, 3, 2))  # constant map: no term
    x = torch.tensor([[[1.0, 0.0]]])  # one query node; keys 0 (same direction) and 1 (orthogonal)
    y = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert dilated_knn(x, y, 1, 1, None).tolist() == [[[0]]]  # ‖xi − xj‖²: 0 against 2
    extra = gaze_distance(torch.tensor([[1.0]]), torch.tensor([[-1.0, 1.0]]))  # norm of a single node: 0
    assert dilated_knn(x, y, 1, 1, None, extra).tolist() == [[[0]]]
    assert dilated_knn(x, y, 1, 1, None, torch.tensor([[[3.0, 0.0]]])).tolist() == [[[1]]]  # 0 + 3 > 2 + 0


def test_gdvig_uses_its_predicted_map_and_switches_off_to_the_plain_vig():
    # 64 px: the first stages' graphs pick 9 of 16 key nodes (below 64 px every key is a neighbour)
    tiny = {"image_size": 64, "channels": (8, 16, 24, 32), "blocks": (1, 1, 1, 1), "hidden": 16, "num_classes": 2}
    torch.manual_seed(0)
    guided = GDViG(**tiny).eval()
    torch.manual_seed(0)
    plain = GDViG(**tiny, gaze_guided=False).eval()
    assert plain.generator is None
    assert all(torch.equal(a, b) for a, b in zip(guided.classifier.state_dict().values(),
                                                 plain.classifier.state_dict().values()))
    x = torch.rand(3, 1, 80, 80)  # resized to 64
    with torch.no_grad():
        logits, predicted = guided.forward_with_map(x)
        assert logits.shape == (3, 2) and predicted.shape == (3, 1, 64, 64) and (predicted >= 0).all()
        assert plain.forward_with_map(x)[1] is None
        assert torch.equal(plain(x), plain.classifier(plain.resize(x)))
        gaze = torch.zeros(3, 1, 64, 64)
        gaze[:, :, :24] = 1.0
        assert not torch.allclose(guided.classifier(guided.resize(x), gaze=gaze), guided.classifier(guided.resize(x)))
    task = GazeDistanceTask(guided, map_weight=1.0)
    batch = {"image": x, "label": torch.tensor([0, 1, 0]), "heatmap": torch.rand(3, 1, 48, 48)}
    guided.train()
    task.loss(batch).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in guided.generator.parameters())


# ----------------------------------------------------------------------------- Gaze-MTL


def test_gaze_mtl_heads_and_switch_off():
    torch.manual_seed(0)
    net = GazeMTL(arch="resnet18", size="tiny", num_classes=2)
    logits, aux = net.forward_all(torch.rand(4, 1, 32, 32))
    assert logits.shape == (4, 2) and aux.shape == (4, 2)
    batch = {"image": torch.rand(4, 1, 32, 32), "label": torch.tensor([0, 1, 0, 1]),
             "gaze_stats": torch.tensor([[0.5, 0.2], [float("nan"), 0.3], [0.1, float("nan")], [1.0, 0.9]])}
    assert torch.isfinite(GazeStatsTask(net, aux_weight=1.0).loss(batch))
    net.zero_grad()
    GazeStatsTask(net, aux_weight=0.0).loss({k: v for k, v in batch.items() if k != "gaze_stats"}).backward()
    assert all(p.grad is None for p in net.aux.parameters())
    with pytest.raises(ValueError, match="aux_tasks"):
        GazeMTL(arch="resnet18", size="tiny", aux_tasks=("loc",))


# ----------------------------------------------------------------------------- array-level API


def _split(n: int, seed: int, size: int = 32, contrast: float = 0.0) -> MechanismData:
    """Films with a blob that the gaze map marks; class-1 films show it (bright) when ``contrast`` > 0."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.uniform(0.3, 0.5, (n, 1, size, size)).astype(np.float32)
    gaze = np.zeros((n, size, size), np.float32)
    for i in range(n):
        r, c = rng.integers(0, size - 8, 2)
        gaze[i, r:r + 8, c:c + 8] = 1.0 / 64
        if labels[i]:
            images[i, 0, r:r + 8, c:c + 8] += contrast
    return MechanismData(images, labels.astype(np.int64), gaze)


FIT = {"n_classes": 2, "epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 3}


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_the_switch_removes_the_gaze_and_predictions_need_none(name):
    size = MECHANISMS[name].min_side
    train, val, test = (_split(n, seed, size, contrast) for n, seed, contrast in ((24, 0, .2), (12, 1, .2), (6, 2, 0)))
    permuted = MechanismData(train.images, train.labels, train.gaze[np.roll(np.arange(24), 5)])
    val_permuted = MechanismData(val.images, val.labels, val.gaze[::-1].copy())
    off = fit_mechanism(name, train, val, use_gaze=False, **FIT)(test.images)
    assert off.shape == (6, 2) and np.allclose(off.sum(1), 1.0)
    assert np.array_equal(off, fit_mechanism(name, permuted, val_permuted, use_gaze=False, **FIT)(test.images))
    on = fit_mechanism(name, train, val, use_gaze=True, **FIT)(test.images)
    assert np.array_equal(on, fit_mechanism(name, train, val, use_gaze=True, **FIT)(test.images))  # deterministic
    assert not np.array_equal(on, fit_mechanism(name, permuted, val, use_gaze=True, **FIT)(test.images))


def test_a_mechanism_learns_an_easy_set_and_inputs_are_checked():
    train, val, test = _split(64, 0, contrast=0.5), _split(24, 1, contrast=0.5), _split(40, 2, contrast=0.5)
    predict = fit_mechanism("gaze_mtl", train, val, use_gaze=True, **{**FIT, "epochs": 6, "lr": 3e-3})
    assert macro_auc(test.labels, predict(test.images)) > 0.8
    with pytest.raises(ValueError, match="unknown mechanism"):
        fit_mechanism("loc", train, val, use_gaze=True, **FIT)
    one_class = MechanismData(val.images[::2], np.zeros(12, np.int64), val.gaze[::2])
    with pytest.raises(ValueError, match="at least two classes"):
        fit_mechanism("gaze_mtl", train, one_class, use_gaze=True, **FIT)
    with pytest.raises(ValueError, match="gaze must be"):
        MechanismData(train.images, train.labels, train.gaze[:, :8])
    with pytest.raises(ValueError, match="at least 64"):
        fit_mechanism("gdvig", train, val, use_gaze=True, **FIT)


# ----------------------------------------------------------------------------- the peer registry


def test_peer_sections_default_to_the_task_defaults():
    from gazecxr.config.schema import GazeMTLPeerSection, GazeTokenMaskPeerSection, GDViGPeerSection

    for section, task in ((GazeTokenMaskPeerSection, TokenMaskTask), (GDViGPeerSection, GazeDistanceTask),
                          (GazeMTLPeerSection, GazeStatsTask)):
        for key, parameter in inspect.signature(task).parameters.items():
            if key in section.model_fields:
                assert section.model_fields[key].default == parameter.default, (section.__name__, key)


@pytest.mark.parametrize("method, switch", [("gaze_token_mask", "mask_probability=0.5"),
                                            ("gdvig", "gaze_guided=true"), ("gaze_mtl", "aux_weight=0.0")])
def test_a_mechanism_trains_through_the_registry_and_is_evaluated(method, switch, tiny_h5, tmp_path, capsys):
    import json

    from gazecxr.evaluation.saliency_methods import entry_predictor
    from gazecxr.training.cli import main
    from gazecxr.training.registry import Registry
    from tests_paths import ROOT

    extra = ["--set", "peers.gaze_mtl.aux_weight=0.0"] if method == "gaze_mtl" else []
    code = main("peer", ["--method", method, "--config", str(ROOT / "configs" / "test.yaml"), "--quiet",
                         "--set", f"data.h5={tiny_h5}", "--set", f"registry.root={tmp_path / 'ck'}",
                         "--set", f"runs.root={tmp_path / 'runs'}", "--set", f"peers.{method}.train.max_epochs=1",
                         *extra])
    assert code == 0
    registry = Registry(tmp_path / "ck")
    entry = registry.resolve(json.loads(capsys.readouterr().out)["id"])
    assert entry.stage == method and switch in entry.tags
    assert 0.0 <= entry.metrics["val_auc_micro"] <= 1.0 and entry.metrics["parameters"] > 0
    predict = entry_predictor(registry, entry, method, torch.device("cpu"))
    assert not getattr(predict, "uses_gaze", False)
    probs = predict(torch.rand(3, 1, 64, 64), torch.ones(3, 64, 64, dtype=torch.bool)).probs[method]
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(1), torch.ones(3))


def test_gaze_mtl_peer_targets_come_from_the_fixations(tiny_h5):
    from gazecxr.data.dataset import GazeCXRDataset
    from gazecxr.data.gaze_stats import GazeStatsDataset

    train = GazeStatsDataset(GazeCXRDataset(tiny_h5, "train"))
    val = GazeStatsDataset(GazeCXRDataset(tiny_h5, "val"), time_reference=train.time_reference)
    base = val.base
    times = [viewing_time(base.fixations(int(i))) for i in base.indices]
    np.testing.assert_allclose(val.targets[:, 0], np.minimum(np.array(times) / train.time_reference, 1.0), rtol=1e-5)
    first = base.fixations(int(base.indices[0]))
    assert val[0]["gaze_stats"][1].item() == pytest.approx(diffusivity(fixation_grid(first, base.canvas)), rel=1e-5)
    assert ((val.targets[:, 1] > 0) & (val.targets[:, 1] <= 1)).all()


def test_a_config_without_the_mechanism_section_is_refused_by_name(tiny_config):
    from gazecxr.training.peers import run_peer

    config = {**tiny_config, "peers": {k: v for k, v in tiny_config["peers"].items() if k != "gdvig"}}
    with pytest.raises(ValueError, match="no peers.gdvig section"):
        run_peer("gdvig", config, progress=False)
