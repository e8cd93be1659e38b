"""Ground-truth gaze heatmaps: the paper's recipe, computed directly at model resolution."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from gazecxr.data.geometry import Letterbox, resize

DEFAULT_SIGMA = 75.5
"""Gaussian σ in original-image pixels: OpenCV's σ for the released code's 501-px kernel."""
REFERENCE_KERNEL = 501
"""Kernel size of the released code's OpenCV blur: it truncates the Gaussian at 250 px."""
TRUNCATE = (REFERENCE_KERNEL // 2) / DEFAULT_SIGMA
"""Gaussian truncation radius in σ units (≈3.31 σ), as the reference kernel."""


def in_image(x: np.ndarray, y: np.ndarray, orig_size: tuple[int, int]) -> np.ndarray:
    """Boolean mask of gaze samples that fall on the image (off-film samples are dropped)."""
    h, w = orig_size
    x, y = np.asarray(x), np.asarray(y)
    return (x >= 0) & (x < w) & (y >= 0) & (y < h)


def _normalised(heat: np.ndarray) -> np.ndarray:
    heat = np.clip(heat, 0.0, None)
    total = float(heat.sum(dtype=np.float64))
    if total <= 0:
        raise ValueError("heatmap has no mass: no gaze sample fell on the image")
    return (heat / total).astype(np.float32)


def gaze_heatmap(
    x: np.ndarray,
    y: np.ndarray,
    letterbox: Letterbox,
    sigma: float = DEFAULT_SIGMA,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Gaze heatmap on the model canvas, summing to 1.

    ``x``/``y`` are original-image pixel coordinates (column, row), ``sigma`` is in
    original pixels and ``weights`` optional per-sample weights (e.g. fixation durations).
    Equivalent to the reference recipe (accumulate at full resolution, blur, resize) but
    computed on the resized grid: samples are splatted bilinearly and blurred with
    σ·scale, reflecting at the film's edges like OpenCV; the padding stays zero.
    """
    x, y = np.asarray(x), np.asarray(y)
    weights = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    keep = in_image(x, y, letterbox.orig_size) & (weights > 0)
    if not keep.any():
        raise ValueError("no gaze sample falls on the image")
    nh, nw = letterbox.resized
    u, v = letterbox.to_canvas_coords(x[keep], y[keep])
    u = np.clip(u - letterbox.pad[1], 0, nw - 1)
    v = np.clip(v - letterbox.pad[0], 0, nh - 1)
    grid = _splat(u, v, weights[keep], (nh, nw))
    sigma_px = (sigma * nh / letterbox.orig_size[0], sigma * nw / letterbox.orig_size[1])
    blurred = gaussian_filter(grid, sigma_px, mode="mirror", truncate=TRUNCATE)
    canvas = np.zeros(letterbox.canvas, np.float64)
    canvas[letterbox.region] = blurred
    return _normalised(canvas)


def _splat(u: np.ndarray, v: np.ndarray, w: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear splatting of weighted points at continuous (column u, row v) positions."""
    h, wd = shape
    u0 = np.minimum(np.floor(u).astype(np.int64), wd - 1)
    v0 = np.minimum(np.floor(v).astype(np.int64), h - 1)
    fu, fv = u - u0, v - v0
    u1, v1 = np.minimum(u0 + 1, wd - 1), np.minimum(v0 + 1, h - 1)
    flat = np.zeros(h * wd, np.float64)
    for rows, cols, share in (
        (v0, u0, (1 - fu) * (1 - fv)),
        (v0, u1, fu * (1 - fv)),
        (v1, u0, (1 - fu) * fv),
        (v1, u1, fu * fv),
    ):
        flat += np.bincount(rows * wd + cols, weights=w * share, minlength=h * wd)
    return flat.reshape(h, wd)


def reference_heatmap(
    x: np.ndarray,
    y: np.ndarray,
    letterbox: Letterbox,
    sigma: float = DEFAULT_SIGMA,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The released code's recipe, for fidelity checks and benchmarks (slow, full resolution).

    Accumulates samples at their original pixels, blurs with a Gaussian truncated like
    OpenCV's 501-px kernel (reflect-101 borders), then resizes into the canvas.
    """
    x, y = np.asarray(x), np.asarray(y)
    weights = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    keep = in_image(x, y, letterbox.orig_size)
    h, w = letterbox.orig_size
    full = np.zeros((h, w), np.float64)
    np.add.at(full, (y[keep].astype(np.int64), x[keep].astype(np.int64)), weights[keep])
    full = gaussian_filter(full, sigma, mode="mirror", truncate=TRUNCATE)
    canvas = np.zeros(letterbox.canvas, np.float64)
    canvas[letterbox.region] = resize(full.astype(np.float32), letterbox.resized)
    return _normalised(canvas)
