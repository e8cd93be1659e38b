"""ONNX Runtime vs eager PyTorch on the CPU: the exported three-stage model at 640×512.

Untrained stage-1/2/3 checkpoints of the paper architecture (``configs/paper.yaml``: DenseNet-201,
Res-SE UNet width 1.0, linear fusion head) and the demo architecture are exported with
``gazecxr.inference.export`` (verified against PyTorch as usual) and both predictors run the same
letterboxed canvases through `run_canvases` (model, saliency softmax and class probabilities;
reading images and mapping back are shared code and are left out). The two backends run in
turn, round after round, so that a change in machine load affects both alike. ``ms`` are per
image, medians of the timed rounds.

``ratio`` = eager PyTorch / ONNX Runtime time of the paper model at batch 1 (target 1.5).
Repetitions (each after a warm-up round): demo 3 at batch 1, 1 at batch 8; paper 2 at batch 1,
1 at batch 8 (left out with ``--quick``). ``--profile`` adds, for the paper model at batch 1
(one timed round each), ONNX Runtime at each graph optimisation level and with one intra-op
thread, the TorchScript exporter's graph, and the time per operator type from ONNX Runtime's
profiler and from the PyTorch profiler.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
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
from gazecxr.inference.export import export_onnx
from gazecxr.inference.onnx_backend import (
    INPUT_NAME,
    OnnxPredictor,
    open_session,
    read_metadata,
)
from gazecxr.predict import load_predictor

SIZE = (640, 512)
CONFIGS = {"paper": "paper.yaml", "demo": "demo.yaml"}
TARGET = 1.5


def _predictors(arch: str, root: Path, exporter: str = "dynamo") -> tuple:
    config = load_config(ROOT / "configs" / CONFIGS[arch], [f"registry.root={root / arch}"])
    entry = save_untrained_lineage(config, stages=3, size=SIZE)[-1]
    path = root / f"{arch}-{exporter}.onnx"
    result = export_onnx(root / arch, entry.id, path, exporter=exporter)
    print(f"{arch}: exported with {exporter} ({result.bytes / 2**20:.0f} MiB), probabilities max abs diff "
          f"{result.verification.probabilities_max_abs_diff:.1e}, saliency Pearson "
          f"{result.verification.saliency_min_pearson:.6f}", flush=True)
    return load_predictor(root / arch, entry.id, device="cpu"), path


def _ort(path: Path, threads: int | None = None, optimization: str = "all") -> OnnxPredictor:
    session = open_session(path, threads=threads, optimization=optimization)
    return OnnxPredictor(session, path, read_metadata(session, path))


def measure(arch: str, plans: dict[int, tuple[int, int]], root: Path) -> dict:
    """Per-image ms of eager PyTorch and ONNX Runtime per batch size ((repeats, warm-up) each)."""
    torch_predictor, path = _predictors(arch, root)
    ort_predictor = _ort(path)
    rng = np.random.default_rng(0)
    out = {}
    for batch, (repeats, warmup) in plans.items():
        canvases = rng.random((batch, *SIZE), dtype=np.float32)
        times = interleaved({"pytorch": lambda: torch_predictor.run_canvases(canvases, False),
                             "onnxruntime": lambda: ort_predictor.run_canvases(canvases, False)}, repeats, warmup)
        row = {f"{name}_ms": 1000 * median(t) / batch for name, t in times.items()}
        row.update(speedup=median(times["pytorch"]) / median(times["onnxruntime"]), repeats=repeats, warmups=warmup)
        out[str(batch)] = row
        print(f"{arch:5s} batch {batch}: ms/image pytorch {row['pytorch_ms']:8.1f}, onnxruntime "
              f"{row['onnxruntime_ms']:8.1f}, speedup x{row['speedup']:.2f}", flush=True)
    return out


def _ort_op_profile(path: Path, canvases: np.ndarray, tmp: Path) -> dict[str, float]:
    """ms per ONNX operator type over one run (ONNX Runtime's profiler, after a warm-up run)."""
    import onnxruntime as ort

    from gazecxr.inference.onnx_backend import session_options

    options = session_options()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / "ort-profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {INPUT_NAME: canvases[:, None]})
    session.run(None, {INPUT_NAME: canvases[:, None]})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    runs = [e for e in events if e.get("name") == "model_run"]
    start = runs[-1]["ts"]
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            per_op[event["args"]["op_name"]] += event["dur"] / 1000
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def _torch_op_profile(predictor, canvases: np.ndarray) -> dict[str, float]:
    """ms per aten operator over one run (PyTorch profiler, CPU self time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        predictor.run_canvases(canvases, False)
    table = {e.key: e.self_cpu_time_total / 1000 for e in prof.key_averages()}
    return dict(sorted(table.items(), key=lambda kv: -kv[1])[:12])


def profile(root: Path) -> dict:
    """Where the paper model's time goes at batch 1, and how ONNX Runtime settings change it."""
    torch_predictor, path = _predictors("paper", root)
    _, script_path = _predictors("paper", root / "ts", exporter="torchscript")
    canvases = np.random.default_rng(1).random((1, *SIZE), dtype=np.float32)
    variants = {"pytorch": lambda: torch_predictor.run_canvases(canvases, False)}
    for level in ("disable", "basic", "all"):
        ort_predictor = _ort(path, optimization=level)
        variants[f"ort_{level}"] = lambda p=ort_predictor: p.run_canvases(canvases, False)
    single_thread = _ort(path, threads=1)
    variants["ort_all_1thread"] = lambda: single_thread.run_canvases(canvases, False)
    script_predictor = _ort(script_path)
    variants["ort_torchscript_export"] = lambda: script_predictor.run_canvases(canvases, False)
    times = interleaved(variants, repeats=1, warmup=1)
    variant_ms = {name: round(1000 * median(t), 1) for name, t in times.items()}
    for name, ms in variant_ms.items():
        print(f"paper batch 1 {name:24s} {ms:9.1f} ms", flush=True)
    ort_ops = _ort_op_profile(path, canvases, root)
    torch_ops = _torch_op_profile(torch_predictor, canvases)
    print("ONNX Runtime ms per op type:", json.dumps({k: round(v, 1) for k, v in ort_ops.items()}))
    print("PyTorch ms per aten op (top 12):", json.dumps({k: round(v, 1) for k, v in torch_ops.items()}))
    return {"variants_ms": variant_ms, "ort_ops_ms": {k: round(v, 1) for k, v in ort_ops.items()},
            "torch_ops_ms": {k: round(v, 1) for k, v in torch_ops.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.onnx_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the paper model at batch 8 (slowest part)")
    parser.add_argument("--profile", action="store_true", help="also profile the paper model (see above)")
    args = parser.parse_args(argv)
    info = cpu_info()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        results["demo"] = measure("demo", {1: (3, 1), 8: (1, 1)}, Path(tmp))
        results["paper"] = measure("paper", {1: (2, 1)} if args.quick else {1: (2, 1), 8: (1, 1)}, Path(tmp))
        profiled = profile(Path(tmp) / "profile") if args.profile else None
    rounded = {arch: {b: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                      for b, r in per.items()} for arch, per in results.items()}
    return report("onnx_latency", results["paper"]["1"]["speedup"], TARGET, ratio_of="paper batch 1, PyTorch / ORT",
                  results=rounded, profile=profiled, onnxruntime=__import__("onnxruntime").__version__,
                  torch=torch.__version__, input="640x512 canvases, CPU, float32, untrained weights",
                  not_measured=["GPU (no GPU on this machine)"] + (["paper batch 8 (--quick)"] if args.quick else []),
                  **info)


if __name__ == "__main__":
    main()
