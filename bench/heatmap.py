"""Gaze heatmap: the fast model-resolution recipe against the released code's full-resolution one.

A 3000×2500 synthetic film with ~1,500 raw 60 Hz gaze samples (integer original-pixel
coordinates, as ``X_ORIGINAL``/``Y_ORIGINAL``; simulated readings, some samples off the film),
letterboxed into the 640×512 model canvas with σ = 75.5 px. ``reference_heatmap`` accumulates
at full resolution, blurs with a Gaussian truncated at 250 px like OpenCV's 501-px kernel
(scipy ``gaussian_filter``, mode ``mirror`` = BORDER_REFLECT_101; OpenCV is not a dependency)
and resizes; ``gaze_heatmap`` splats and blurs directly on the canvas.
``ratio`` = reference time / fast time; ``pearson`` compares the two maps over the canvas.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import cpu_info, median, report, timed
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import (
    DEFAULT_SIGMA,
    gaze_heatmap,
    in_image,
    reference_heatmap,
)
from gazecxr.data.synthetic.gaze import simulate_reading
from gazecxr.data.synthetic.phantom import CHF, draw_phantom

TARGET = 20.0
PEARSON_TARGET = 0.99
ORIGINAL = (3000, 2500)
CANVAS = (640, 512)


def realistic_gaze(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` integer (column, row) gaze samples of simulated readings of one 3000×2500 film."""
    rng = np.random.default_rng(seed)
    phantom = draw_phantom(rng, CHF, *ORIGINAL)
    xs, ys = [], []
    while sum(len(x) for x in xs) < samples:
        reading = simulate_reading(phantom, rng)
        xs.append(reading.x)
        ys.append(reading.y)
    x, y = np.concatenate(xs)[:samples], np.concatenate(ys)[:samples]
    return np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.heatmap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1500, help="raw gaze samples (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="timed reference runs (default: %(default)s)")
    args = parser.parse_args(argv)
    info = cpu_info()
    x, y = realistic_gaze(args.samples)
    h, w = ORIGINAL
    on_film = int(in_image(x, y, ORIGINAL).sum())
    letterbox = Letterbox.fit(ORIGINAL, CANVAS)
    reference = reference_heatmap(x, y, letterbox, DEFAULT_SIGMA)
    fast = gaze_heatmap(x, y, letterbox, DEFAULT_SIGMA)
    ref_s = median(timed(lambda: reference_heatmap(x, y, letterbox, DEFAULT_SIGMA), args.repeats, warmup=0))
    fast_s = median(timed(lambda: gaze_heatmap(x, y, letterbox, DEFAULT_SIGMA), args.repeats * 20, warmup=0))
    pearson = float(np.corrcoef(reference.ravel(), fast.ravel())[0, 1])
    l1 = float(np.abs(reference - fast).sum())
    print(f"{len(x)} samples ({on_film} on the film), {h}x{w} -> {CANVAS[0]}x{CANVAS[1]}, sigma {DEFAULT_SIGMA} px")
    print(f"reference_heatmap {ref_s * 1000:9.1f} ms, gaze_heatmap {fast_s * 1000:7.2f} ms; "
          f"Pearson {pearson:.5f}, L1 distance {l1:.5f}")
    return report("heatmap", ref_s / fast_s, TARGET, reference_ms=round(ref_s * 1000, 1),
                  fast_ms=round(fast_s * 1000, 3), pearson=round(pearson, 6), pearson_target=PEARSON_TARGET,
                  meets_pearson=pearson >= PEARSON_TARGET, l1_distance=round(l1, 6), samples=len(x),
                  samples_on_film=on_film, original=list(ORIGINAL), canvas=list(CANVAS),
                  reference_blur="scipy gaussian_filter, truncate 250 px, mode mirror (opencv not installed)",
                  **info)


if __name__ == "__main__":
    main()
