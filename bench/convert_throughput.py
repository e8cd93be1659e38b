"""End-to-end ``python -m data_prep.egd_cxr`` throughput (images/s) with 1 and 2 worker processes.

Writes a synthetic raw dataset (default 60 films, nominal height 1024, DICOM + EGD-CXR csvs)
into a temporary directory, then times the whole converter command (interpreter start,
CSV parsing, DICOM decoding, letterboxing, heatmaps, HDF5 writing) at 640×512 with σ = 26 px.
``ratio`` = images/s with 2 workers / images/s with 1 worker.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_info, report
from gazecxr.data.synthetic import generate


def convert_once(raw: Path, out: Path, workers: int) -> tuple[float, int]:
    """Seconds of one converter run and the number of records it converted."""
    command = [sys.executable, "-m", "data_prep.egd_cxr", "--egd-dir", str(raw / "EGD"), "--image-dir",
               str(raw / "MIMIC"), "--out", str(out), "--height", "640", "--width", "512", "--sigma", "26",
               "--workers", str(workers), "--quiet"]
    tic = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    converted = json.loads(out.with_name(out.stem + ".report.json").read_text())["summary"]["converted"]
    return seconds, converted


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.convert_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60, help="synthetic films (default: %(default)s)")
    parser.add_argument("--size", type=int, default=1024, help="nominal film height (default: %(default)s)")
    args = parser.parse_args(argv)
    info = cpu_info()
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        raw = Path(tmp) / "raw"
        tic = time.perf_counter()
        generate(raw, n=args.images, seed=0, size=args.size, progress=False)
        generate_s = time.perf_counter() - tic
        results = {w: convert_once(raw, Path(tmp) / f"w{w}.h5", w) for w in (1, 2)}
    rates = {w: n / s for w, (s, n) in results.items()}
    print(f"generated {args.images} synthetic films (height ~{args.size}) in {generate_s:.1f} s")
    for w, (s, n) in results.items():
        print(f"data_prep.egd_cxr --workers {w}: {n} images in {s:.1f} s = {rates[w]:.2f} images/s")
    return report("convert_throughput", rates[2] / rates[1], None,
                  images_per_s={str(w): round(r, 3) for w, r in rates.items()},
                  seconds={str(w): round(s, 2) for w, (s, _) in results.items()},
                  images=args.images, film_height=args.size, output="640x512, sigma 26 px, raw gaze",
                  generate_s=round(generate_s, 1), **info)


if __name__ == "__main__":
    main()
