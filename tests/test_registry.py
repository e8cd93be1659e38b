"""Tests for the checkpoint registry (gazecxr.training.registry)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import pickle
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch
from torch import nn

import gazecxr
from gazecxr.training import registry as reg
from gazecxr.training.registry import (
    ArchitectureMismatchError,
    CorruptCheckpointError,
    Registry,
    check_state_compatible,
    main,
)

ARCH = {"encoder": "densenet201", "unet": {"filters": [64, 128, 256, 512, 1024], "se_reduction": 16}}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock(monkeypatch):
    """Deterministic creation times: each save is one second after the previous one."""
    state = {"now": datetime(2026, 11, 21, 23, 31, 0, tzinfo=timezone.utc)}

    def tick() -> datetime:
        state["now"] += timedelta(seconds=1)
        return state["now"]

    monkeypatch.setattr(reg, "_utcnow", tick)
    return state


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "checkpoints")


def _state(seed: float = 0.0) -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(int(seed * 1000))
    return {
        "encoder": {"conv.weight": torch.randn(4, 1, 3, 3, generator=gen), "bn.num_batches_tracked": torch.tensor(7)},
        "unet": {"head.weight": torch.full((2, 3), seed), "head.bias": torch.arange(2, dtype=torch.float64)},
    }


def _save(registry: Registry, stage: str, seed: float = 0.0, **kwargs) -> reg.Entry:
    kwargs.setdefault("config", {"stage": stage, "lr": 1e-4})
    kwargs.setdefault("architecture", ARCH)
    return registry.save(_state(seed), stage=stage, **kwargs)


def _flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- save / load ----------------------------------------------------------------------------


def test_save_load_round_trip(registry, clock):
    config = {"stage": "stage1", "lr": 1e-4, "data": {"path": Path("/data/x.h5"), "size": (640, 512)}}
    entry = registry.save(_state(0.5), stage="stage1", config=config, architecture=ARCH,
                          metrics={"val_auc_macro": 0.93, "val_kl": 0.71}, tags=["study=abc", "trial=3"])
    assert re.fullmatch(r"s1-20261121T233101-[0-9a-f]{6}", entry.id)
    assert entry.path == registry.root / entry.id
    assert entry.stage == "stage1"
    assert entry.created == "2026-11-21T23:31:01.000000+00:00"
    assert entry.config == {"stage": "stage1", "lr": 1e-4, "data": {"path": "/data/x.h5", "size": [640, 512]}}
    assert entry.metrics == {"val_auc_macro": 0.93, "val_kl": 0.71}
    assert entry.tags == ["study=abc", "trial=3"]
    assert entry.parents == []
    assert entry.package_version == gazecxr.__version__
    assert entry.sha256 == hashlib.sha256(entry.model_path.read_bytes()).hexdigest()
    assert json.loads((entry.path / "entry.json").read_text()) == entry.to_dict()

    state, loaded = registry.load(entry.id, stage="stage1", architecture=ARCH)
    assert loaded == entry
    expected = _state(0.5)
    assert state.keys() == expected.keys()
    for part in expected:
        assert state[part].keys() == expected[part].keys()
        for key, tensor in expected[part].items():
            assert state[part][key].dtype == tensor.dtype
            assert torch.equal(state[part][key], tensor)
    assert [p.name for p in registry.root.iterdir()] == [entry.id]  # no temp dirs left


def test_baseline_stage_id_and_invalid_inputs(registry, clock):
    entry = _save(registry, "baseline_unet", metrics={"val_kl": 0.78})
    assert entry.id.startswith("baseline_unet-20261121T")
    with pytest.raises(ValueError, match="invalid stage"):
        _save(registry, "stage 2")
    with pytest.raises(LookupError, match="parent entries not found.*nope"):
        _save(registry, "stage2", parents=["nope"])
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        _save(registry, "stage1", config={"fn": object()})
    with pytest.raises(TypeError, match="state value at encoder.opt"):
        registry.save({"encoder": {"opt": object()}}, stage="stage1", config={}, architecture={})
    with pytest.raises(ValueError, match="reserved"):
        _save(registry, "stage1", tags=["latest"])
    assert [e.id for e in registry.entries()] == [entry.id]


def test_id_collision_is_retried(registry, monkeypatch):
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(reg, "_utcnow", lambda: fixed)
    monkeypatch.setattr(reg, "_random_suffix", lambda: next(suffixes))
    first = _save(registry, "stage2", seed=1.0)
    second = _save(registry, "stage2", seed=2.0)
    assert first.id == "s2-20260102T030405-aaaaaa"
    assert second.id == "s2-20260102T030405-bbbbbb"
    assert torch.equal(registry.load(first.id)[0]["unet"]["head.weight"], torch.full((2, 3), 1.0))
    assert torch.equal(registry.load(second.id)[0]["unet"]["head.weight"], torch.full((2, 3), 2.0))


# -- lineage, resolution ----------------------------------------------------------------------


def test_lineage_stage3_stage2_stage1(registry, clock):
    s1 = _save(registry, "stage1")
    s2 = _save(registry, "stage2", parents=[s1.id])
    s3 = _save(registry, "stage3", parents=[s2.id, s1.id])
    assert [e.id for e in registry.lineage(s3.id)] == [s3.id, s2.id, s1.id]
    assert [e.id for e in registry.lineage(s2.id)] == [s2.id, s1.id]
    assert [e.id for e in registry.lineage(s1.id)] == [s1.id]
    assert s3.parents == [s2.id, s1.id]


def test_best_and_latest_per_stage(registry, clock):
    a1 = _save(registry, "stage1", metrics={"val_auc_macro": 0.80})
    b1 = _save(registry, "stage1", metrics={"val_auc_macro": 0.91})
    c1 = _save(registry, "stage1", metrics={"val_auc_macro": 0.85})
    a2 = _save(registry, "stage2", metrics={"val_kl": 0.90, "val_cc": 0.50})
    b2 = _save(registry, "stage2", metrics={"val_kl": 0.70, "val_cc": 0.40})
    c2 = _save(registry, "stage2", metrics={"val_kl": 0.80, "val_cc": 0.60})
    nometric = _save(registry, "stage2", metrics={})

    assert registry.resolve("best", stage="stage1").id == b1.id           # default: val_auc_macro, max
    assert registry.resolve("best", stage="stage2").id == b2.id           # default: val_kl, min
    assert registry.resolve("best", stage="stage2", metric="val_cc").id == c2.id
    assert registry.resolve("best", stage="stage2", metric="val_cc", mode="min").id == b2.id
    assert registry.resolve("best", stage="stage2", metric="val_kl", mode="max").id == a2.id
    assert registry.resolve("best", metric="val_kl").id == b2.id          # inferred min, all stages
    assert registry.resolve("latest", stage="stage1").id == c1.id
    assert registry.resolve("latest", stage="stage2").id == nometric.id
    assert registry.resolve("latest").id == nometric.id
    assert [e.id for e in registry.entries("stage1")] == [a1.id, b1.id, c1.id]
    with pytest.raises(LookupError, match="metric=.*mixed stages"):
        registry.resolve("best")
    with pytest.raises(LookupError, match="no entry has metric 'val_acc'.*val_cc, val_kl"):
        registry.resolve("best", stage="stage2", metric="val_acc")
    with pytest.raises(LookupError, match="no entries in .*stage3.*stages present: stage1, stage2"):
        registry.resolve("latest", stage="stage3")
    undefined = _save(registry, "stage3", metrics={"val_auc_macro": float("nan")})
    with pytest.raises(LookupError, match=f"'val_auc_macro' is undefined \\(NaN\\) for every entry \\({undefined.id}\\)"):
        registry.resolve("best", stage="stage3", metric="val_auc_macro")


def test_tags_resolution_and_updates(registry, clock):
    t1 = _save(registry, "stage2", tags=["study=abc", "trial=1"], metrics={"val_kl": 0.6})
    t2 = _save(registry, "stage2", tags=["study=abc", "trial=2"], metrics={"val_kl": 0.8})
    demo = _save(registry, "stage1", tags=["demo"])
    assert registry.resolve("tag:demo").id == demo.id
    assert registry.resolve("demo").id == demo.id
    assert registry.resolve("trial=1").id == t1.id
    assert registry.resolve("tag:study=abc").id == t2.id                  # latest carrying the tag
    assert registry.resolve("tag:study=abc", metric="val_kl").id == t1.id  # best carrying the tag
    assert [e.id for e in registry.entries(tag="study=abc")] == [t1.id, t2.id]
    with pytest.raises(LookupError, match="no entry has tag 'demo'"):
        registry.resolve("tag:demo", stage="stage2")

    updated = registry.add_tags(t2.id, ["keep", "study=abc"])
    assert updated.tags == ["study=abc", "trial=2", "keep"]
    assert Registry(registry.root).resolve("keep").id == t2.id
    replaced = registry.set_tags("keep", ["final"])
    assert replaced.tags == ["final"]
    assert Registry(registry.root).resolve(t2.id).tags == ["final"]
    assert registry.entries(tag="keep") == []
    assert registry.verify() == []


def test_prefix_resolution_and_errors(registry, monkeypatch):
    stamps = iter(datetime(2026, 5, 1, 12, 0, s, tzinfo=timezone.utc) for s in range(10))
    suffixes = iter(["abc111", "abc222", "fff000"])
    monkeypatch.setattr(reg, "_utcnow", lambda: next(stamps))
    monkeypatch.setattr(reg, "_random_suffix", lambda: next(suffixes))
    a = _save(registry, "stage1")
    b = _save(registry, "stage1")
    c = _save(registry, "stage2")
    assert a.id == "s1-20260501T120000-abc111"
    assert registry.resolve("s1-20260501T120001").id == b.id
    assert registry.resolve("s2").id == c.id
    assert registry.resolve(c.id, stage="stage2").id == c.id
    with pytest.raises(LookupError, match=f"ambiguous id prefix matching 2 entries: {a.id}, {b.id}"):
        registry.resolve("s1-2026")
    with pytest.raises(LookupError, match=f"matches no id, id prefix or tag; entries in .*{c.id}"):
        registry.resolve("s9")
    with pytest.raises(LookupError, match=f"checkpoint {a.id} is stage 'stage1', not 'stage2'"):
        registry.resolve(a.id, stage="stage2")
    with pytest.raises(LookupError, match="no entries in"):
        Registry(registry.root / "empty").resolve("latest")


# -- integrity --------------------------------------------------------------------------------


def test_corrupted_checkpoint_detected_by_load_and_verify(registry, clock):
    good = _save(registry, "stage1")
    bad = _save(registry, "stage2", parents=[good.id])
    assert registry.verify() == []
    _flip_byte(bad.model_path)
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {bad.id} is corrupted: sha256 mismatch"):
        registry.load(bad.id)
    problems = registry.verify()
    assert len(problems) == 1 and problems[0].startswith(f"{bad.id}: sha256 mismatch")
    assert registry.verify(bad.id) == problems
    assert registry.verify(good.id) == []
    registry.load(good.id)  # unaffected

    good.model_path.unlink()
    with pytest.raises(CorruptCheckpointError, match="is missing"):
        registry.load(good.id)
    assert f"{good.id}: missing model.safetensors" in registry.verify()


def test_corrupt_entry_json_temp_dirs_and_missing_parent(registry, clock):
    s1 = _save(registry, "stage1")
    s2 = _save(registry, "stage2", parents=[s1.id])
    half = registry.root / "s2-20261121T000000-deadbe"
    half.mkdir()
    (half / "entry.json").write_text('{"id": "s2-20261121T000000-deadbe", "stage": "sta')
    (registry.root / ".tmp-123-abcdef").mkdir()
    (registry.root / ".tmp-123-abcdef" / "entry.json").write_text("garbage")

    assert [e.id for e in registry.entries()] == [s1.id, s2.id]
    problems = registry.verify()
    assert len(problems) == 1 and problems[0].startswith(f"{half.name}: unreadable entry.json")
    assert registry.verify(half.name) == problems

    shutil.rmtree(half)
    shutil.rmtree(s1.path)
    assert registry.verify() == [f"{s2.id}: missing parent {s1.id}"]
    with pytest.raises(LookupError, match=f"parent {s1.id} of {s2.id} is missing"):
        registry.lineage(s2.id)


def test_architecture_mismatch_names_the_keys(registry, clock):
    entry = _save(registry, "stage2")
    other = {"encoder": "densenet201", "unet": {"filters": [32, 64, 128, 256, 512], "se_reduction": 16, "extra": 1}}
    with pytest.raises(ArchitectureMismatchError) as info:
        registry.load(entry.id, architecture=other)
    message = str(info.value)
    header, diffs = message.split(": ", 1)
    assert header == f"checkpoint {entry.id} has a different architecture"
    assert diffs.split("; ") == [
        "unet.extra: only requested (1)",
        "unet.filters: checkpoint [64, 128, 256, 512, 1024] != requested [32, 64, 128, 256, 512]",
    ]
    same_as_tuples = {"encoder": "densenet201", "unet": {"se_reduction": 16, "filters": (64, 128, 256, 512, 1024)}}
    state, _ = registry.load(entry.id, architecture=same_as_tuples)
    assert torch.equal(state["unet"]["head.bias"], torch.arange(2, dtype=torch.float64))


def test_check_state_compatible():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    check_state_compatible(model, model.state_dict())
    other = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)).state_dict()
    other["9.weight"] = torch.zeros(1)
    del other["1.running_var"]
    with pytest.raises(ArchitectureMismatchError) as info:
        check_state_compatible(model, other)
    message = str(info.value)
    assert message.startswith("state dict does not fit Sequential")
    assert "missing keys (1): 1.running_var" in message
    assert "unexpected keys (1): 9.weight" in message
    assert "0.weight (checkpoint (2, 4) vs model (3, 4))" in message
    assert "shape mismatches (5)" in message


# -- safety: weights_only ---------------------------------------------------------------------


class _Payload:
    """A non-tensor object that weights_only loading must refuse."""


def _as_legacy_entry(entry: reg.Entry, state: dict) -> reg.Entry:
    """Rewrite ``entry`` as written before safetensors: ``model.pt`` (torch.save) and no weights_file key."""
    entry.model_path.unlink()
    legacy = entry.path / "model.pt"
    torch.save(state, legacy)
    record = entry.to_dict()
    del record["weights_file"]
    record["sha256"] = hashlib.sha256(legacy.read_bytes()).hexdigest()
    (entry.path / "entry.json").write_text(json.dumps(record))
    return reg._read_entry(entry.path)


def test_new_entries_are_safetensors_and_old_pt_entries_still_load(registry, clock):
    entry = _save(registry, "stage1", seed=0.25)
    assert entry.weights_file == "model.safetensors" and entry.model_path.name == "model.safetensors"
    assert sorted(p.name for p in entry.path.iterdir()) == ["entry.json", "model.safetensors"]
    data = entry.model_path.read_bytes()  # safetensors: 8-byte header size, JSON header, raw tensor bytes
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    assert {k for k in header if k != "__metadata__"} == {"encoder/conv.weight", "encoder/bn.num_batches_tracked",
                                                          "unet/head.weight", "unet/head.bias"}
    assert len(data) == 8 + size + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")

    legacy = _as_legacy_entry(entry, _state(0.25))
    assert legacy.weights_file == "model.pt" and registry.verify(legacy.id) == []
    loaded, expected = registry.load(legacy.id)[0], _state(0.25)
    assert {k: list(v) for k, v in loaded.items()} == {k: list(v) for k, v in expected.items()}
    for part in expected:
        for key, tensor in expected[part].items():
            assert loaded[part][key].dtype == tensor.dtype and torch.equal(loaded[part][key], tensor)


def test_load_of_an_old_pt_entry_uses_weights_only(registry, clock, monkeypatch):
    entry = _as_legacy_entry(_save(registry, "stage1"), _state())
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    registry.load(entry.id)
    assert calls and calls[0].get("weights_only") is True

    monkeypatch.setattr(torch, "load", real_load)
    torch.save({"encoder": {"x": _Payload()}}, entry.model_path)
    record = entry.to_dict()
    record["sha256"] = hashlib.sha256(entry.model_path.read_bytes()).hexdigest()
    (entry.path / "entry.json").write_text(json.dumps(record))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        registry.load(entry.id)


# -- concurrency ------------------------------------------------------------------------------


def _concurrent_writer(root: str, worker: int, barrier) -> None:
    registry = Registry(root)
    barrier.wait()
    for i in range(5):
        registry.save({"w": {"value": torch.tensor([worker, i])}}, stage="stage1",
                      config={"worker": worker, "i": i}, architecture={"kind": "tiny"},
                      metrics={"val_auc_macro": worker + i / 10}, tags=[f"worker={worker}"])


def test_concurrent_writers(registry):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_concurrent_writer, args=(str(registry.root), w, barrier)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]

    entries = registry.entries()
    assert len(entries) == 20 and len({e.id for e in entries}) == 20
    assert registry.verify() == []
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".")]
    seen = set()
    for entry in entries:
        state, _ = registry.load(entry.id, architecture={"kind": "tiny"})
        worker, i = state["w"]["value"].tolist()
        assert entry.config == {"worker": worker, "i": i} and entry.tags == [f"worker={worker}"]
        seen.add((worker, i))
    assert seen == {(w, i) for w in range(4) for i in range(5)}
    assert registry.resolve("best", stage="stage1").config == {"worker": 3, "i": 4}


# -- command line -----------------------------------------------------------------------------


def test_cli_list_show_verify(registry, clock, capsys):
    root = str(registry.root)
    s1 = _save(registry, "stage1", metrics={"val_auc_macro": 0.9123, "val_acc": 0.8}, tags=["demo"])
    s2 = _save(registry, "stage2", parents=[s1.id], metrics={"val_kl": 0.7061})
    s3 = _save(registry, "stage3", parents=[s2.id, s1.id], metrics={"val_auc_macro": 0.925})

    assert main(["--root", root, "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "STAGE", "CREATED", "(UTC)", "METRICS", "TAGS", "PARENTS"]
    assert [line.split()[0] for line in lines[1:]] == [s1.id, s2.id, s3.id]
    assert lines[1].split()[1:] == ["stage1", "2026-11-21", "23:31:01", "val_auc_macro=0.9123", "val_acc=0.8", "demo", "-"]
    assert lines[3].split()[-1] == f"{s2.id},{s1.id}"

    assert main(["--root", root, "list", "--stage", "stage2"]) == 0
    out = capsys.readouterr().out
    assert s2.id in out and s1.id + "  " not in out and "val_kl=0.7061" in out
    assert main(["--root", root, "list", "--tag", "nothing"]) == 0
    assert "no entries" in capsys.readouterr().out

    assert main(["--root", root, "show", "latest"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == s3.id and shown["metrics"] == {"val_auc_macro": 0.925}
    assert [node["id"] for node in shown["lineage"]] == [s3.id, s2.id, s1.id]
    assert shown["config"] == s3.config and shown["path"] == str(s3.path)

    assert main(["--root", root, "verify"]) == 0
    assert "OK: 3 entries verified" in capsys.readouterr().out
    _flip_byte(s2.model_path)
    assert main(["--root", root, "verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{s2.id}: sha256 mismatch")
    assert main(["--root", root, "verify", s1.id]) == 0
    capsys.readouterr()

    assert main(["--root", root, "show", "zzz"]) == 2  # a user error: one line, exit 2 as in every command
    assert "error: checkpoint 'zzz' matches no id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert "list" in help_text and "verify" in help_text and "latest" in help_text


def test_cli_module_entry_point(registry, clock):
    entry = _save(registry, "stage1", tags=["demo"])
    run = subprocess.run([sys.executable, "-m", "gazecxr.training.registry", "--root", str(registry.root), "list"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert entry.id in run.stdout and "demo" in run.stdout
