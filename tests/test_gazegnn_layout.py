"""GazeGNN / Pyramid ViG state dicts in the released layout (huawei-noah ``vig_pytorch/pyramid_vig.py``,
ukaukaaaa/GazeGNN ``models/pvig_gaze.py``) load as they are; this package's earlier layout is upgraded;
a file of another network still fails with its clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gazecxr.models.gazegnn import GazeGNN
from gazecxr.models.vig import upgrade_legacy_state_dict

TINY = {"image_size": 32, "channels": (8, 16, 24, 32), "blocks": (1, 2, 1, 1), "hidden": 16}


def official_layout(image_size: int = 224, channels=(48, 96, 240, 384), blocks=(2, 2, 6, 2),
                    reduce_ratios=(4, 2, 1, 1), hidden: int = 1024, num_classes: int = 3,
                    gaze: bool = True) -> dict[str, tuple[int, ...]]:
    """Key → shape of the released ``DeepGCN`` state dict, written out from the released code:
    ``Stem.convs`` (conv, BN, act) ×2 + (conv, BN); ``pos_embed``; ``backbone`` = for each stage a
    ``Downsample`` (``conv`` = Sequential(conv 3×3 s2, BN)) before all but the first, then blocks
    ``Seq(Grapher, FFN)``: Grapher ``fc1`` (conv, BN), ``graph_conv.gconv.nn`` (BasicConv: conv
    groups=4, BN), ``fc2`` (conv, BN) and the ``relative_pos`` Parameter (1, n, n/r²); FFN ``fc1``,
    ``fc2`` (conv, BN); ``prediction`` (conv, BN, act, dropout, conv); GazeGNN's ``b1`` BatchNorm2d(1)."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int, groups: int = 1) -> None:
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (cout, cin // groups, k, k), (cout,)

    def bn(name: str, c: int) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{suffix}"] = (c,)
        keys[f"{name}.num_batches_tracked"] = ()

    c0 = channels[0]
    conv("stem.convs.0", 3, c0 // 2, 3)
    bn("stem.convs.1", c0 // 2)
    conv("stem.convs.3", c0 // 2, c0, 3)
    bn("stem.convs.4", c0)
    conv("stem.convs.6", c0, c0, 3)
    bn("stem.convs.7", c0)
    keys["pos_embed"] = (1, c0, image_size // 4, image_size // 4)
    nodes, index = (image_size // 4) ** 2, 0
    for i, (c, depth, r) in enumerate(zip(channels, blocks, reduce_ratios)):
        if i > 0:
            conv(f"backbone.{index}.conv.0", channels[i - 1], c, 3)
            bn(f"backbone.{index}.conv.1", c)
            nodes //= 4
            index += 1
        for _ in range(depth):
            grapher, ffn = f"backbone.{index}.0", f"backbone.{index}.1"
            conv(f"{grapher}.fc1.0", c, c, 1)
            bn(f"{grapher}.fc1.1", c)
            conv(f"{grapher}.graph_conv.gconv.nn.0", 2 * c, 2 * c, 1, groups=4)
            bn(f"{grapher}.graph_conv.gconv.nn.1", 2 * c)
            conv(f"{grapher}.fc2.0", 2 * c, c, 1)
            bn(f"{grapher}.fc2.1", c)
            keys[f"{grapher}.relative_pos"] = (1, nodes, nodes // (r * r))
            conv(f"{ffn}.fc1.0", c, 4 * c, 1)
            bn(f"{ffn}.fc1.1", 4 * c)
            conv(f"{ffn}.fc2.0", 4 * c, c, 1)
            bn(f"{ffn}.fc2.1", c)
            index += 1
    conv("prediction.0", channels[-1], hidden, 1)
    bn("prediction.1", hidden)
    conv("prediction.4", hidden, num_classes, 1)
    if gaze:
        bn("b1", 1)
    return keys


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {key: torch.tensor(5) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=gen)
            for key, shape in layout.items()}


def test_vig_ti_gazegnn_has_the_released_keys_and_shapes():
    ours = {key: tuple(value.shape) for key, value in GazeGNN().state_dict().items()}
    official = official_layout()
    assert sorted(set(ours) ^ set(official)) == []
    assert ours == official
    assert "backbone.2.conv.0.weight" in ours and "backbone.2.0.weight" not in ours


def test_official_state_dict_loads_as_it_is(tmp_path):
    state = random_state(official_layout(**TINY))
    net = GazeGNN(**TINY)
    net.load_state_dict(state)  # strict: every key and shape matches
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key

    # as a pretrained file (ImageNet ViG: no b1, a 1000-class head left at its initialisation)
    imagenet = random_state(official_layout(**TINY, num_classes=1000, gaze=False), seed=1)
    path = tmp_path / "pvig_ti.pth"
    torch.save(imagenet, path)
    loaded = GazeGNN(**TINY, pretrained=str(path)).state_dict()
    assert torch.equal(loaded["backbone.1.conv.0.weight"], imagenet["backbone.1.conv.0.weight"])
    assert torch.equal(loaded["backbone.2.0.relative_pos"], imagenet["backbone.2.0.relative_pos"])
    assert loaded["prediction.4.weight"].shape == (3, 16, 1, 1)


def test_relative_position_equals_the_released_formula():
    # get_2d_relative_pos_embed (MAE sin-cos, float32 grid), resized to the pooled node count, negated
    def released(dim: int, grid: int, r: int) -> torch.Tensor:
        gh, gw = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))[::-1]
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

        def embed_1d(pos: np.ndarray) -> np.ndarray:
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)

        emb = np.concatenate([embed_1d(gw), embed_1d(gh)], axis=1)  # grid[0] is w (meshgrid(w, h))
        rel = torch.from_numpy(np.float32(2 * emb @ emb.T / emb.shape[1]))[None, None]
        n = grid * grid
        return -F.interpolate(rel, size=(n, n // (r * r)), mode="bicubic", align_corners=False).squeeze(1)

    net = GazeGNN(**TINY)
    assert torch.allclose(net.backbone[0][0].relative_pos, released(8, 8, 4), atol=1e-6)
    assert torch.allclose(net.backbone[2][0].relative_pos, released(16, 4, 2), atol=1e-6)


def test_earlier_layout_is_upgraded_and_a_mismatching_file_fails(tmp_path):
    from gazecxr.training.checkpoint_io import build_module
    from gazecxr.training.registry import Registry

    official = random_state(official_layout(**TINY))
    legacy = {key.replace(".conv.", ".", 1) if ".conv." in key and key.startswith("backbone.") else key:
              value[0] if key.endswith("relative_pos") else value for key, value in official.items()}
    assert "backbone.1.0.weight" in legacy and legacy["backbone.2.0.relative_pos"].ndim == 2
    net = GazeGNN(**TINY)
    assert upgrade_legacy_state_dict(legacy, net.downsample_indices).keys() == official.keys()

    section = {"name": "gazegnn", **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}}
    registry = Registry(tmp_path / "ck")
    entry = registry.save({"gazegnn": legacy}, stage="gazegnn", config={}, architecture={"gazegnn": section})
    state, entry = registry.load(entry.id)
    built = build_module(entry, "gazegnn", state)
    for key, value in built.state_dict().items():
        assert torch.equal(value, official[key]), key

    other = random_state(official_layout(**{**TINY, "channels": (16, 32, 48, 64)}))
    path = tmp_path / "vig_s.pth"
    torch.save(other, path)
    with pytest.raises(ValueError, match="not a matching Pyramid ViG state dict; missing or mis-shaped"):
        GazeGNN(**TINY, pretrained=str(path))
