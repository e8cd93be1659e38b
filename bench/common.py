"""Helpers shared by the benchmarks: synthetic data, untrained registry entries, timing, JSON."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gazecxr.config import load_config
from gazecxr.data.convert import ConvertOptions
from gazecxr.data.sources.egd_cxr import convert_egd_cxr
from gazecxr.data.synthetic import generate
from gazecxr.models.factory import create_model
from gazecxr.training.data import input_size
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import seed_everything

ROOT = Path(__file__).resolve().parents[1]


def demo_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``configs/demo.yaml`` with ``overrides`` applied."""
    return load_config(ROOT / "configs" / "demo.yaml", overrides)


def synthetic_h5(out_dir: Path, n: int, height: int, width: int, size: int = 256, seed: int = 0) -> Path:
    """A synthetic dataset of ``n`` films (nominal height ``size``) converted at ``height``×``width``."""
    raw = out_dir / "raw"
    generate(raw, n=n, seed=seed, size=size, progress=False)
    h5 = out_dir / "synthetic.h5"
    convert_egd_cxr(raw / "EGD", raw / "MIMIC", h5,
            ConvertOptions(height=height, width=width, sigma=75.5 * size / 3000, test_size=max(2, n // 10)),
            progress=False)
    return h5


def save_untrained_lineage(config: Mapping[str, Any], stages: int = 3, seed: int = 0,
                           size: Sequence[int] | None = None) -> list[Entry]:
    """Randomly initialised stage-1 … stage-``stages`` entries in the config's registry (oldest first).

    For measurements and tests that need checkpoints but not trained ones; ``size`` is the
    recorded input [height, width] (default: the configured dataset's).
    """
    seed_everything(seed)
    registry = Registry(config["registry"]["root"])
    size = list(size) if size is not None else input_size(config)
    encoder_section = dict(config["model"]["encoder"])
    encoder = create_model(encoder_section)
    entries = [registry.save({"encoder": encoder.state_dict()}, stage="stage1", config=dict(config),
                             architecture={"encoder": encoder_section, "input_size": size},
                             metrics={"val_auc_macro": 0.5})]
    if stages >= 2:
        unet_section = {**config["model"]["unet"], "aux_channels": encoder.feature_channels}
        unet = create_model(unet_section)
        entries.append(registry.save({"unet": unet.state_dict()}, stage="stage2", config=dict(config),
                                     architecture={"unet": unet_section, "encoder": encoder_section,
                                                   "input_size": size},
                                     parents=[entries[0].id], metrics={"val_kl": 1.0}))
    if stages >= 3:
        classifier_section = {**config["model"]["classifier"], "dense_channels": encoder.feature_channels,
                              "decoder_channels": unet.decoder_channels}
        classifier = create_model(classifier_section)
        entries.append(registry.save({"classifier": classifier.state_dict()}, stage="stage3", config=dict(config),
                                     architecture={"classifier": classifier_section, "input_size": size},
                                     parents=[entries[1].id], metrics={"val_auc_macro": 0.5}))
    return entries


def exported_demo_model(root: Path, size: Sequence[int] = (640, 512)) -> Path:
    """An untrained demo-architecture stage-3 lineage (registry under ``root``) exported to ``root/demo.onnx``."""
    from gazecxr.inference.export import export_onnx

    config = demo_config([f"registry.root={root / 'checkpoints'}"])
    entry = save_untrained_lineage(config, stages=3, size=list(size))[-1]
    model = root / "demo.onnx"
    export_onnx(root / "checkpoints", entry.id, model)
    return model


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return times


def interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds of each function, called in turn ``repeats`` times after ``warmup``
    untimed rounds, so that a change in machine load affects all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            tic = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tic)
    return times


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_info() -> dict[str, Any]:
    """Threads torch uses and the 1-minute load average when the measurement started."""
    import os

    return {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def report(name: str, ratio: float | None, target: float | None, **fields: Any) -> dict[str, Any]:
    """Print the benchmark's result as its final line: ``{"bench", "ratio", "target", ...}``."""
    record = {"bench": name, "ratio": None if ratio is None else round(float(ratio), 3), "target": target,
              "meets_target": None if target is None or ratio is None else bool(ratio >= target), **fields}
    sys.stdout.flush()
    print(json.dumps(record), flush=True)
    return record
