"""Stage-3 epoch time with the frozen-feature cache against the uncached path (demo architecture).

Runs ``run_stage3`` on a synthetic dataset at the demo geometry (160×128, custom DenseNet
growth 12 / blocks [2,4,8,6], UNet width 0.125, untrained stage-1/2 checkpoints) with
``train.feature_cache`` = off, memory and disk, and compares the median epoch time
(training + validation) from each run's log. ``ratio`` = uncached / cached (memory) epoch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.common import (
    cpu_info,
    demo_config,
    median,
    report,
    save_untrained_lineage,
    synthetic_h5,
)
from gazecxr.config import deep_merge
from gazecxr.training.stages import run_stage3

TARGET = 10.0


def _run(config: dict, mode: str) -> dict:
    """One stage-3 run with cache ``mode``: wall time and per-epoch seconds."""
    tic = time.perf_counter()
    entry = run_stage3(deep_merge(config, {"train": {"feature_cache": mode}}), progress=False)
    wall = time.perf_counter() - tic
    run = next(t.split("=", 1)[1] for t in entry.tags if t.startswith("run="))
    log = Path(config["runs"]["root"]) / "stage3" / run / "log.jsonl"
    epochs = [json.loads(line)["seconds"] for line in log.read_text().splitlines()]
    return {"wall_s": wall, "epoch_s": epochs, "val_auc_macro": entry.metrics["val_auc_macro"],
            "val_loss": entry.metrics["val_loss"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.feature_cache", description=__doc__)
    parser.add_argument("--records", type=int, default=200, help="synthetic films (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default: %(default)s)")
    args = parser.parse_args(argv)
    info = cpu_info()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        out = Path(tmp)
        h5 = synthetic_h5(out, args.records, 160, 128)
        config = demo_config([f"data.h5={h5}", f"registry.root={out / 'checkpoints'}", f"runs.root={out / 'runs'}",
                              "train.device=cpu", f"train.max_epochs={args.epochs}", "train.patience=null"])
        save_untrained_lineage(config, stages=2)
        runs = {mode: _run(config, mode) for mode in ("off", "memory", "disk")}
    for mode, run in runs.items():
        print(f"stage 3, feature_cache={mode:6s}: run {run['wall_s']:6.2f} s, epochs "
              + ", ".join(f"{s:.3f}" for s in run["epoch_s"]) + " s")
    off, memory, disk = (median(runs[m]["epoch_s"]) for m in ("off", "memory", "disk"))
    same = abs(runs["off"]["val_loss"] - runs["memory"]["val_loss"]) <= 1e-5 * abs(runs["off"]["val_loss"])
    print(f"median epoch: uncached {off:.3f} s, cached in memory {memory:.4f} s, on disk {disk:.4f} s; "
          f"same validation loss: {same}")
    return report("feature_cache", off / memory, TARGET, uncached_epoch_s=round(off, 4),
                  cached_epoch_s=round(memory, 4), disk_epoch_s=round(disk, 4),
                  disk_ratio=round(off / disk, 2), run_ratio=round(runs["off"]["wall_s"] / runs["memory"]["wall_s"], 2),
                  same_val_loss=same, records=args.records, epochs=args.epochs,
                  config="demo: DenseNet custom g12 [2,4,8,6], UNet width 0.125, 160x128, batch 16, linear head",
                  **info)


if __name__ == "__main__":
    main()
