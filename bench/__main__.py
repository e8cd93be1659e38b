"""``python -m bench [NAME ...]``: run the benchmarks, each in its own process, and summarise them.

Every benchmark prints its measurements and, as its last line, a JSON object
``{"bench": name, "ratio": x, "target": y, ...}``; this runner collects those lines into a
summary table (and optionally a JSON file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gazecxr.cli.options import prog_name, run_main

BENCHES = {
    "feature_cache": "stage-3 epoch, cached frozen features vs uncached (demo config)",
    "frozen_encoder": "stage-2 training step, no-grad tap-only DenseNet vs released-code wiring",
    "heatmap": "gaze heatmap, model-resolution recipe vs full-resolution reference",
    "convert_throughput": "data_prep.egd_cxr images/s, 2 workers vs 1",
    "predict_latency": "predict at 640x512, stage-2 + stage-3 run separately vs one shared DenseNet pass",
    "onnx_latency": "ONNX Runtime vs eager PyTorch at 640x512, paper model batch 1 (also batch 8, demo model)",
    "batch_predict": "archive batch prediction images/s, 2 reader workers vs 1 (demo model, ONNX Runtime)",
    "int8": "int8 static quantisation vs float ONNX model, ms per image (demo model)",
    "report_page": "report page opening in headless Chromium, 100-image vs 1,000-image report (first page decoded)",
    "bootstrap": "a report's statistics, vectorised patient bootstrap vs a resampling loop (100 and 1,000 images)",
}


def run_one(name: str) -> tuple[dict[str, Any] | None, float]:
    """Run ``bench.<name>`` in a subprocess, echo its output; its JSON record and wall seconds."""
    tic = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", f"bench.{name}"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    seconds = time.perf_counter() - tic
    sys.stdout.write(process.stdout)
    if process.returncode != 0:
        sys.stdout.write(process.stderr[-4000:])
        return None, seconds
    lines = process.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else None), seconds


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def summary_table(rows: list[tuple[str, dict[str, Any] | None, float]]) -> str:
    """The results as a fixed-width table: bench, ratio, target, met, seconds, description."""
    header = ("bench", "ratio", "target", "met", "seconds", "what")
    lines = [header]
    for name, record, seconds in rows:
        if record is None:
            lines.append((name, "FAILED", "-", "-", f"{seconds:.0f}", BENCHES[name]))
        else:
            lines.append((name, _cell(record.get("ratio")), _cell(record.get("target")),
                          _cell(record.get("meets_target")), f"{seconds:.0f}", BENCHES[name]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in lines)


@run_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog_name("python -m bench"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="benchmarks: " + "; ".join(f"{k}: {v}" for k, v in BENCHES.items()))
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="leave a benchmark out")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write all records to FILE")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, what in BENCHES.items():
            print(f"{name:20s} {what}")
        return 0
    unknown = sorted((set(args.names) | set(args.skip)) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    names = [n for n in (args.names or BENCHES) if n not in args.skip]
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    rows = []
    for name in names:
        print(f"\n== {name}: {BENCHES[name]}", flush=True)
        record, seconds = run_one(name)
        rows.append((name, record, seconds))
    print("\n" + summary_table(rows))
    if args.json:
        args.json.write_text(json.dumps([r for _, r, _ in rows], indent=2) + "\n")
    return 0 if all(r is not None for _, r, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
