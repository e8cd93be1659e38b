"""Inference latency of ``gazecxr.predict`` at 640×512 on the CPU, and the shared DenseNet pass.

Untrained stage-1/2/3 checkpoints are written into a temporary registry so that
``load_predictor`` loads them like trained ones. Measured per architecture and batch size:

- ``predict``: ``Predictor.predict`` end to end on 640×512 arrays (letterbox, model,
  saliency and probabilities mapped back to the original geometry), ms per image;
- ``fused``: the assembled model's forward (one DenseNet pass feeds both the UNet and the
  fusion classifier), ms per image;
- ``separate``: the stage-2 and stage-3 models run one after the other, the DenseNet twice
  (once for the UNet, once for the classifier; the UNet's decoder feature is reused).

The paper architecture (DenseNet-201, UNet width 1.0) takes seconds per image on two CPU
cores, so it gets few repetitions: batch 1 one warm-up round and 2 timed rounds of all three
paths, batch 8 a single ``predict`` run without warm-up (``--quick`` leaves it out). The demo
architecture (custom DenseNet, UNet width 0.125) at the same 640×512 gets a warm-up round and
3 timed rounds per batch size.
``ratio`` = separate / fused forward time of the paper architecture at batch 1.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    ROOT,
    cpu_info,
    interleaved,
    median,
    report,
    save_untrained_lineage,
)
from gazecxr.config import load_config
from gazecxr.predict import load_predictor

SIZE = (640, 512)
CONFIGS = {"paper": "paper.yaml", "demo": "demo.yaml"}


def _separate(model: torch.nn.Module, x: torch.Tensor) -> None:
    """The stage-2 model, then the stage-3 model with its own DenseNet pass."""
    saliency = model.unet(x, aux=model.encoder.forward_features(x)["tap"])
    model.classifier(model.encoder.forward_features(x)["tap"], saliency["decoder"])


@dataclass(frozen=True)
class Plan:
    """How one batch size is measured: timed rounds, untimed warm-up rounds, which paths."""

    repeats: int
    warmup: int
    paths: tuple[str, ...] = ("predict", "fused", "separate")


def measure(arch: str, plans: dict[int, Plan], root: Path) -> dict:
    """Per-image milliseconds of each planned path (predict / fused / separate) per batch size.

    The paths of one batch size run in turn, round after round, so that a change in machine
    load (or the allocator warming up) does not favour whichever runs last.
    """
    config = load_config(ROOT / "configs" / CONFIGS[arch], [f"registry.root={root / arch}"])
    save_untrained_lineage(config, stages=3, size=SIZE)
    predictor = load_predictor(root / arch, "latest", device="cpu")
    model = predictor.model
    rng = np.random.default_rng(0)
    out = {}
    for batch, plan in plans.items():
        arrays = [rng.random(SIZE, dtype=np.float32) for _ in range(batch)]
        x = torch.from_numpy(np.stack(arrays))[:, None]
        paths = {"predict": lambda: predictor.predict(arrays, batch_size=batch),
                 "fused": lambda: model(x), "separate": lambda: _separate(model, x)}
        with torch.no_grad():
            times = interleaved({p: paths[p] for p in plan.paths}, plan.repeats, plan.warmup)
        row: dict = {f"{p}_ms": 1000 * median(t) / batch for p, t in times.items()}
        if "separate" in times and "fused" in times:
            row["separate_over_fused"] = median(times["separate"]) / median(times["fused"])
        row.update(repeats=plan.repeats, warmups=plan.warmup)
        out[str(batch)] = row
        shown = ", ".join(f"{p} {row[f'{p}_ms']:8.1f}" for p in plan.paths)
        ratio = f", separate/fused x{row['separate_over_fused']:.3f}" if "separate_over_fused" in row else ""
        print(f"{arch:5s} batch {batch}: ms/image {shown}{ratio} "
              f"({plan.repeats} timed round(s) after {plan.warmup} warm-up)", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.predict_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the paper model at batch 8 (slowest part)")
    parser.add_argument("--skip-paper", action="store_true", help="only the demo architecture")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions for the demo model (default: %(default)s)")
    args = parser.parse_args(argv)
    info = cpu_info()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        results["demo"] = measure("demo", {1: Plan(args.repeats, 1), 8: Plan(args.repeats, 1)}, Path(tmp))
        if not args.skip_paper:
            plans = {1: Plan(2, 1)}
            if not args.quick:
                plans[8] = Plan(1, 0, ("predict",))
            results["paper"] = measure("paper", plans, Path(tmp))
    headline = results.get("paper", results["demo"])["1"]
    rounded = {arch: {b: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                      for b, r in per.items()} for arch, per in results.items()}
    return report("predict_latency", headline["separate_over_fused"], None,
                  ratio_of="paper" if "paper" in results else "demo", results=rounded,
                  architectures={"paper": "DenseNet-201 + Res-SE UNet width 1.0 + linear fusion head",
                                 "demo": "custom DenseNet g12 [2,4,8,6] + UNet width 0.125 + linear head"},
                  input="640x512 arrays, CPU, float32, untrained weights",
                  not_measured=(["paper architecture"] if args.skip_paper else
                                ["paper architecture at batch 8 (--quick)"] if args.quick else
                                ["paper architecture at batch 8: fused and separate forward (minutes per round; "
                                 "the stage-sharing ratio is measured at batch 1 and for the demo model at 8)"]),
                  **info)


if __name__ == "__main__":
    main()
