"""One stage-2 training step: gazecxr's frozen-encoder wiring against the released code's.

Demo sizes on the CPU: batch 16 of 1×160×128, custom DenseNet (growth 12, blocks [2,4,8,6],
24 initial features), Res-SE UNet width 0.125 with the DenseNet's feature as its second
encoder; a step is forward, KL loss, backward and an Adam update of the UNet.

- ``gazecxr``: the DenseNet runs under ``no_grad`` and stops at its tap (``features_only``):
  no autograd graph, no layers after the tap, no classifier head.
- ``released``: as the released code: the DenseNet (parameters ``requires_grad=False``) runs
  inside the training graph with grad mode on, its whole forward including the classifier
  head (whose output the step does not use).
- ``stored``: the DenseNet frozen only by leaving it out of the optimiser (parameters still
  require grad), so autograd stores its activations and backpropagates through it.

Step times are measured in one process with the variants' steps interleaved (so load changes
on a shared machine hit all alike); memory is measured for each variant in a fresh process
as the growth of its peak RSS (``ru_maxrss``) from after the models and the batch exist to
the end of its steps. ``ratio`` = released / gazecxr step time with the default
``denseblock4`` tap; ``memory_ratio`` likewise for peak-RSS growth. The ``transition3`` tap
(the paper text's option) is measured too: there ``features_only`` skips the last dense block.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable

import torch

from bench.common import cpu_info, interleaved, median, peak_rss_mb, report, timed
from gazecxr.losses import SaliencyKLLoss
from gazecxr.models.factory import create_model
from gazecxr.training.objectives import SaliencyTask

VARIANTS = ("gazecxr", "released", "stored")
TAPS = ("denseblock4", "transition3")
ENCODER = {"name": "densenet", "arch": "custom", "growth_rate": 12, "block_config": [2, 4, 8, 6],
           "num_init_features": 24}
UNET_WIDTH = 0.125
BATCH, HEIGHT, WIDTH = 16, 160, 128


def training_step(variant: str, tap: str) -> tuple[Callable[[], None], Callable[[], object], torch.nn.Module]:
    """Closures doing one training step of ``variant`` and only its DenseNet part, and the DenseNet."""
    torch.manual_seed(0)
    encoder = create_model({**ENCODER, "tap": tap}).eval()
    encoder.requires_grad_(variant == "stored")
    unet = create_model({"name": "resse_unet", "width": UNET_WIDTH, "aux_channels": encoder.feature_channels})
    unet.train()
    optimizer = torch.optim.Adam(unet.parameters(), lr=1e-4)
    image = torch.rand(BATCH, 1, HEIGHT, WIDTH)
    heatmap = torch.softmax(torch.rand(BATCH, HEIGHT * WIDTH), 1).view(BATCH, 1, HEIGHT, WIDTH)
    task, kl = SaliencyTask(unet, encoder), SaliencyKLLoss()

    def encode() -> object:
        if variant == "gazecxr":
            return task.frozen_features(image)
        return encoder.forward_features(image)  # tap, embedding and class logits, in the graph

    def loss() -> torch.Tensor:
        if variant == "gazecxr":
            return task.loss({"image": image, "heatmap": heatmap})
        return kl(unet(image, aux=encode()["tap"])["logits"], heatmap)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    return step, encode, encoder


def measure_memory(variant: str, tap: str, steps: int) -> dict:
    """Peak-RSS growth (MiB) over ``steps`` training steps of one variant, in this process."""
    step, _, encoder = training_step(variant, tap)
    base = peak_rss_mb()
    timed(step, steps, warmup=0)
    return {"variant": variant, "tap": tap, "rss_base_mb": base, "rss_growth_mb": peak_rss_mb() - base,
            "encoder_grads": any(p.grad is not None for p in encoder.parameters())}


def _memory_in_subprocess(variant: str, tap: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.frozen_encoder", "--memory-of", variant, "--tap", tap,
                          "--steps", str(steps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(prog="python -m bench.frozen_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (default: %(default)s)")
    parser.add_argument("--memory-of", choices=VARIANTS, help="measure one variant's memory in this process")
    parser.add_argument("--tap", choices=TAPS, default="denseblock4", help="DenseNet tap for --memory-of")
    args = parser.parse_args(argv)
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, args.tap, 3)))
        return None
    info = cpu_info()
    cases = [(v, "denseblock4") for v in VARIANTS] + [(v, "transition3") for v in VARIANTS[:2]]
    memory = {case: _memory_in_subprocess(*case, steps=3) for case in cases}
    closures = {case: training_step(*case)[:2] for case in cases}
    times = {case: median(t) for case, t in
             interleaved({c: f[0] for c, f in closures.items()}, args.steps, warmup=1).items()}
    encode = {case: median(t) for case, t in
              interleaved({c: f[1] for c, f in closures.items()}, 4 * args.steps, warmup=1).items()}
    for case in cases:
        m = memory[case]
        print(f"{case[0]:9s} tap {case[1]:11s}: step {times[case] * 1000:7.1f} ms (DenseNet part "
              f"{encode[case] * 1000:6.1f} ms), peak RSS "
              f"+{m['rss_growth_mb']:6.1f} MiB (base {m['rss_base_mb']:.0f} MiB), "
              f"DenseNet gradients: {m['encoder_grads']}")

    growth = {case: m["rss_growth_mb"] for case, m in memory.items()}

    def versus_ours(of: dict, variant: str, tap: str = "denseblock4") -> float:
        return round(of[(variant, tap)] / of[("gazecxr", tap)], 3)

    return report(
        "frozen_encoder", versus_ours(times, "released"), None,
        memory_ratio=versus_ours(growth, "released"), encoder_ratio=versus_ours(encode, "released"),
        stored_ratio=versus_ours(times, "stored"), stored_memory_ratio=versus_ours(growth, "stored"),
        transition3_ratio=versus_ours(times, "released", "transition3"),
        transition3_memory_ratio=versus_ours(growth, "released", "transition3"),
        transition3_encoder_ratio=versus_ours(encode, "released", "transition3"),
        step_ms={f"{v}/{t}": round(s * 1000, 1) for (v, t), s in times.items()},
        encoder_ms={f"{v}/{t}": round(s * 1000, 2) for (v, t), s in encode.items()},
        rss_growth_mb={f"{v}/{t}": round(g, 1) for (v, t), g in growth.items()},
        memory="peak RSS growth (ru_maxrss) over 3 steps, each variant in a fresh process",
        timing=f"median of {args.steps} interleaved steps (DenseNet part alone: {4 * args.steps}) after "
               "1 warm-up round, one process",
        config=f"demo sizes: batch {BATCH} x 1x{HEIGHT}x{WIDTH}, DenseNet custom g12 [2,4,8,6], "
               f"UNet width {UNET_WIDTH}",
        **info,
    )


if __name__ == "__main__":
    main()
