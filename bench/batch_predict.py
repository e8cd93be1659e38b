"""Archive batch prediction throughput (``python -m gazecxr.predict --input-list``), 1 vs 2 reader workers.

A synthetic archive of 2000×1600 16-bit PNG radiographs (decoding and letterboxing them is the
readers' work) is predicted with the demo architecture exported to ONNX (untrained weights,
640×512 input, ONNX Runtime backend), batch size 8, into a fresh output directory per run. Each
run is a separate ``python -m gazecxr.predict`` process, so its peak memory is its own: the
main process's peak RSS and the largest reader worker's. ``images_per_s`` excludes the
process start (model loading included); ``ratio`` = images/s with 2 workers / with 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import ROOT, cpu_info, exported_demo_model, report

RUNNER = """
import json, resource, sys, time
from gazecxr.predict import main
tic = time.perf_counter()
code = main(sys.argv[1:])
seconds = time.perf_counter() - tic
print(json.dumps({"code": code, "seconds": seconds,
                  "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_archive(folder: Path, n: int, size: tuple[int, int] = (2000, 1600)) -> Path:
    """``n`` smooth-plus-noise 16-bit PNGs of ``size`` in ``folder``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size[0], 0:size[1]] / np.array(size, float).reshape(2, 1, 1)
    for i in range(n):
        image = np.exp(-((yy - 0.5) ** 2 + (xx - 0.4 - 0.01 * i) ** 2) / 0.08) + 0.2 * rng.random(size)
        Image.fromarray((image / image.max() * 60000).astype(np.uint16)).save(folder / f"film{i:04d}.png")
    return folder


def run(model: Path, archive: Path, out: Path, workers: int, batch_size: int) -> dict:
    """One batch-prediction process; its seconds, exit code and peak memory."""
    args = ["--input-list", str(archive), "--out", str(out), "--backend", "onnxruntime", "--model", str(model),
            "--workers", str(workers), "--batch-size", str(batch_size)]
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"batch prediction failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48, help="images in the archive (default: %(default)s)")
    args = parser.parse_args(argv)
    info = cpu_info()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        model = exported_demo_model(root)
        archive = make_archive(root / "archive", args.images)
        rows = {}
        for workers in (1, 2):
            result = run(model, archive, root / f"out-{workers}", workers, 8)
            rows[str(workers)] = {"images_per_s": round(args.images / result["seconds"], 2),
                                  "seconds": round(result["seconds"], 2),
                                  "main_peak_mb": round(result["main_peak_mb"]),
                                  "worker_peak_mb": round(result["worker_peak_mb"])}
            print(f"workers {workers}: {rows[str(workers)]}", flush=True)
        shard_mb = sum(p.stat().st_size for p in (root / "out-1" / "shards").iterdir()) / 2**20
    ratio = rows["2"]["images_per_s"] / rows["1"]["images_per_s"]
    return report("batch_predict", ratio, None, ratio_of="images/s, 2 workers / 1", results=rows,
                  images=args.images, image_size="2000x1600 16-bit PNG", model="demo architecture, ONNX Runtime",
                  shards_mb=round(shard_mb, 1), not_measured=["GPU", "the paper architecture (model-bound)"], **info)


if __name__ == "__main__":
    main()
