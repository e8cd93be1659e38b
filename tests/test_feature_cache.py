import json
import os
import shutil

import numpy as np
import pytest
import torch

from bench.common import save_untrained_lineage
from gazecxr.config import deep_merge
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.models.factory import create_model
from gazecxr.training.registry import Registry
from gazecxr.training import feature_cache
from gazecxr.training.data import make_dataset, make_loader
from gazecxr.training.feature_cache import (
    CacheKey,
    FeatureDataset,
    MemoryBudget,
    WithFeatures,
    data_identity,
    load_or_build,
)
from gazecxr.training.engine import Trainer, TrainSettings
from gazecxr.training.runtime import seed_everything
from gazecxr.training.stages import FeatureCacheSpec, run_stage3, stage_loaders
from gazecxr.training.objectives import FusionTask, SaliencyTask

CPU = torch.device("cpu")


def _fusion_task(config, head="linear"):
    seed_everything(0)
    encoder = create_model(config["model"]["encoder"]).eval()
    unet = create_model({**config["model"]["unet"], "aux_channels": encoder.feature_channels}).eval()
    classifier = create_model({**config["model"]["classifier"], "head": head,
                               "dense_channels": encoder.feature_channels,
                               "decoder_channels": unet.decoder_channels}).eval()
    return FusionTask(classifier, encoder, unet)


def _key(config, split="val", head="linear"):
    return CacheKey(stage="stage3", split=split, checkpoints=("0" * 64,), architecture={},
                    features={"head": head}, data=data_identity(config["data"]["h5"]), geometry=(64, 64),
                    precision="cpu/float32")


def _build(config, extract, key, root, mode="memory", budget_mb=64.0, split="val"):
    return load_or_build(key, make_dataset(config, split, augment=False), extract, mode=mode, root=root,
                         budget=MemoryBudget.megabytes(budget_mb), device=CPU, batch_size=4)


def _with(config, **train):
    return deep_merge(config, {"train": train})


@pytest.mark.parametrize("tap", ["denseblock4", "transition3"])
def test_features_only_is_the_tap_of_a_full_pass(tiny_config, tap):
    encoder = create_model({**tiny_config["model"]["encoder"], "tap": tap}).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(encoder.features_only(x), encoder.forward_features(x)["tap"])


@pytest.mark.parametrize("head", ["linear", "conv"])
def test_cached_features_give_the_uncached_logits(tiny_config, tmp_path, head):
    task = _fusion_task(tiny_config, head)
    store = _build(tiny_config, task.frozen_features, _key(tiny_config, head=head), tmp_path)
    n, channels = len(store), task.encoder.feature_channels
    expected_shape = (n, channels, 1, 1) if head == "linear" else (n, channels, 2, 2)  # 64 px / 32
    assert store.arrays["dense"].shape == expected_shape and store.location is None
    with torch.no_grad():
        uncached = torch.cat([task.class_logits({"image": b["image"]})
                              for b in make_loader(tiny_config, "val", 4, train=False)])
        batch = FeatureDataset(store)[list(range(n))]
        cached = task.class_logits(batch)
    assert batch["index"].tolist() == make_dataset(tiny_config, "val", False).indices.tolist()
    assert uncached.shape == (n, 3) and uncached.std() > 0
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-6)


def test_saliency_loss_with_cached_dense_feature_equals_uncached(tiny_config, tmp_path):
    seed_everything(0)
    encoder = create_model(tiny_config["model"]["encoder"]).eval()
    task = SaliencyTask(create_model({**tiny_config["model"]["unet"], "aux_channels": encoder.feature_channels}),
                        encoder)
    key = CacheKey("stage2", "val", ("1" * 64,), {}, {"dense": "tap map"}, data_identity(tiny_config["data"]["h5"]),
                   (64, 64), "cpu/float32")
    store = _build(tiny_config, task.frozen_features, key, tmp_path)
    dataset = WithFeatures(make_dataset(tiny_config, "val", augment=False), store)
    batch = next(iter(make_loader(tiny_config, "val", 4, train=False, dataset=dataset)))
    assert batch["dense"].shape == (4, encoder.feature_channels, 2, 2)
    task.eval()
    with torch.no_grad():
        cached = task.loss(batch)
        uncached = task.loss({k: v for k, v in batch.items() if k != "dense"})
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-6)


def _scores(entry) -> dict[str, float]:
    """An entry's metrics less its wall time, which the cache is meant to change."""
    return {k: v for k, v in entry.metrics.items() if k != "train_seconds"}


def test_stage3_trains_the_same_with_and_without_the_cache(tiny_config, monkeypatch):
    save_untrained_lineage(tiny_config, stages=2)
    registry = Registry(tiny_config["registry"]["root"])
    off = run_stage3(_with(tiny_config, feature_cache="off"), progress=False)
    memory = run_stage3(_with(tiny_config, feature_cache="memory"), progress=False)
    disk = run_stage3(_with(tiny_config, feature_cache="disk"), progress=False)
    reference = registry.load(off.id)[0]["classifier"]
    for entry in (memory, disk):
        assert _scores(entry) == pytest.approx(_scores(off), rel=1e-5, abs=1e-7, nan_ok=True)
        weights = registry.load(entry.id)[0]["classifier"]
        for name, value in reference.items():
            torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-6)
    cache_root = os.path.join(tiny_config["runs"]["root"], "cache")
    assert sorted(name.rsplit("-", 1)[0] for name in os.listdir(cache_root)) == ["stage3-train", "stage3-val"]

    def must_not_rebuild(*args, **kwargs):
        raise AssertionError("a valid disk cache was rebuilt")

    monkeypatch.setattr(feature_cache, "_build", must_not_rebuild)
    again = run_stage3(_with(tiny_config, feature_cache="auto"), progress=False)  # reads the disk caches
    assert _scores(again) == pytest.approx(_scores(off), rel=1e-5, abs=1e-7, nan_ok=True)


def test_stale_or_damaged_caches_are_rebuilt_never_reused(tiny_config, tmp_path, capsys):
    h5 = tmp_path / "copy.h5"
    shutil.copy(tiny_config["data"]["h5"], h5)
    config = deep_merge(tiny_config, {"data": {"h5": str(h5)}})
    task = _fusion_task(config)
    calls = []

    def extract(image):
        calls.append(len(image))
        return task.frozen_features(image)

    root, key = tmp_path / "cache", _key(config)
    first = _build(config, extract, key, root, mode="disk")
    n = len(first)
    assert first.location == key.directory(root) and sum(calls) == n
    manifest = json.loads((first.location / "manifest.json").read_text())
    assert manifest["key"] == key.as_dict() and manifest["records"] == n
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]

    reused = _build(config, extract, key, root, mode="disk")
    assert sum(calls) == n and np.array_equal(reused.arrays["dense"], first.arrays["dense"])

    manifest["key"]["split"] = "train"  # a manifest that does not describe this key
    (first.location / "manifest.json").write_text(json.dumps(manifest))
    rebuilt = _build(config, extract, key, root, mode="disk")
    assert sum(calls) == 2 * n and "stale" in capsys.readouterr().err
    assert np.array_equal(rebuilt.arrays["dense"], first.arrays["dense"])

    np.save(first.location / "dense.npy", np.zeros((n - 1, 1), np.float32))  # damaged array file
    _build(config, extract, key, root, mode="disk")
    assert sum(calls) == 3 * n and "dense.npy has shape" in capsys.readouterr().err

    wrong_records = _key(config, split="train")  # the train split's key and directory, filled by the val split
    shutil.copytree(first.location, wrong_records.directory(root))
    manifest = json.loads((wrong_records.directory(root) / "manifest.json").read_text())
    manifest["key"] = wrong_records.as_dict()
    (wrong_records.directory(root) / "manifest.json").write_text(json.dumps(manifest))
    _build(config, extract, wrong_records, root, mode="disk", split="train")
    assert "stale" in capsys.readouterr().err

    count = sum(calls)
    stat = h5.stat()
    os.utime(h5, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the data file changed: a new key
    changed = _key(config)
    assert changed.digest() != key.digest() and changed.directory(root) != key.directory(root)
    _build(config, extract, changed, root, mode="disk")
    assert sum(calls) == count + n


def test_auto_mode_keeps_what_fits_the_budget_in_memory(tiny_config, tmp_path):
    task = _fusion_task(tiny_config)
    small = _build(tiny_config, task.frozen_features, _key(tiny_config), tmp_path, mode="auto", budget_mb=1)
    assert small.location is None
    spilled = _build(tiny_config, task.frozen_features, _key(tiny_config), tmp_path, mode="auto", budget_mb=0)
    assert spilled.location is not None and spilled.location.parent == tmp_path
    np.testing.assert_array_equal(np.asarray(spilled.arrays["decoder"]), small.arrays["decoder"])
    budget = MemoryBudget.megabytes(1)
    assert budget.take(2**19) and not budget.take(2**20) and budget.used == 2**19


@pytest.mark.parametrize("augment", [True, False])
def test_stage2_caches_only_splits_without_augmentation(tiny_config, tmp_path, augment):
    (entry,) = save_untrained_lineage(tiny_config, stages=1)
    encoder = create_model(tiny_config["model"]["encoder"]).requires_grad_(False).eval()
    task = SaliencyTask(create_model({**tiny_config["model"]["unet"], "aux_channels": encoder.feature_channels}),
                        encoder)
    settings = TrainSettings(batch_size=4, device="cpu", feature_cache="disk")
    trainer = Trainer(task, settings, tmp_path / "run", "val_kl", "min", progress=False)
    spec = FeatureCacheSpec("stage2", (entry,), {"dense": "tap map"}, with_images=True)
    train, val = stage_loaders(task, tiny_config, settings, trainer, augment, spec)
    assert isinstance(val.dataset, WithFeatures)
    assert isinstance(train.dataset, GazeCXRDataset if augment else WithFeatures)
    assert (train.dataset.transform is not None) if augment else train.dataset.base.transform is None
    assert "dense" in next(iter(val))
    root = os.path.join(tiny_config["runs"]["root"], "cache")
    assert sorted(name.rsplit("-", 1)[0] for name in os.listdir(root)) == \
        (["stage2-val"] if augment else ["stage2-train", "stage2-val"])
