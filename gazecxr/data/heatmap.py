"""Ground-truth gaze heatmaps: the paper's recipe, computed directly at model resolution."""

from __future__ import annotations

from dataclasses import dataclass

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


def fixation_gaussian_heatmap(
    x: np.ndarray,
    y: np.ndarray,
    duration: np.ndarray,
    sigma_x: np.ndarray,
    sigma_y: np.ndarray,
    shown: np.ndarray,
    letterbox: Letterbox,
) -> np.ndarray:
    """The REFLACX authors' heatmap on the model canvas, summing to 1.

    Each fixation (original-pixel column ``x``, row ``y``, even off the image) adds a 2-D
    Gaussian density with per-fixation σ (``sigma_x``, ``sigma_y``: one degree of visual
    angle, in image pixels) evaluated only on the pixels of the region shown on screen at
    that moment (``shown``: rows of xmin, ymin, xmax, ymax, rounded and clipped to the
    image), weighted by the fixation's duration. The Gaussian is separable and resizing is
    linear and separable, so the sum is formed from 1-D profiles resized to the canvas:
    identical to accumulating at full resolution and resizing, without the full-size array.
    """
    x, y, duration, sigma_x, sigma_y = (np.asarray(v, np.float64).ravel() for v in (x, y, duration, sigma_x, sigma_y))
    shown = np.asarray(shown, np.float64).reshape(-1, 4)
    h, w = letterbox.orig_size
    keep = (duration > 0) & (sigma_x > 0) & (sigma_y > 0) & np.isfinite(x + y + duration + sigma_x + sigma_y)
    if not keep.any():
        raise ValueError("heatmap has no mass: no fixation with a positive duration and angular resolution")
    x, y, duration, sigma_x, sigma_y, shown = x[keep], y[keep], duration[keep], sigma_x[keep], sigma_y[keep], shown[keep]
    x0, y0, x1, y1 = (np.clip(np.round(shown[:, k]), 0, limit).astype(np.int64)[:, None]
                      for k, limit in enumerate((w, h, w, h)))
    cols, rows = np.arange(w)[None, :], np.arange(h)[None, :]
    gx = np.exp(-0.5 * ((cols - x[:, None]) / sigma_x[:, None]) ** 2) / (np.sqrt(2 * np.pi) * sigma_x[:, None])
    gy = np.exp(-0.5 * ((rows - y[:, None]) / sigma_y[:, None]) ** 2) / (np.sqrt(2 * np.pi) * sigma_y[:, None])
    gx *= (cols >= x0) & (cols < x1)
    gy *= (rows >= y0) & (rows < y1)
    nh, nw = letterbox.resized
    gx = resize(gx.astype(np.float32), (len(x), nw)).astype(np.float64)
    gy = resize(gy.astype(np.float32), (len(y), nh)).astype(np.float64)
    canvas = np.zeros(letterbox.canvas, np.float64)
    canvas[letterbox.region] = gy.T @ (duration[:, None] * gx)
    return _normalised(canvas)


@dataclass(frozen=True)
class PointGaze:
    """Gaze points of one reading (original pixels) and the EGD recipe's σ: renders :func:`gaze_heatmap`."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    sigma: float

    def render(self, letterbox: Letterbox) -> np.ndarray:
        return gaze_heatmap(self.x, self.y, letterbox, self.sigma, self.weight)

    def on_image(self, orig_size: tuple[int, int]) -> tuple[int, int]:
        """(samples on the image, samples off it)."""
        inside = int(in_image(self.x, self.y, orig_size).sum())
        return inside, len(self.x) - inside


@dataclass(frozen=True)
class FixationGaussians:
    """Fixations of one reading with their angular resolution and shown region: renders
    :func:`fixation_gaussian_heatmap` (σ = ``degrees`` of visual angle)."""

    x: np.ndarray
    y: np.ndarray
    duration: np.ndarray
    pixels_per_degree_x: np.ndarray
    pixels_per_degree_y: np.ndarray
    shown: np.ndarray
    degrees: float = 1.0

    def render(self, letterbox: Letterbox) -> np.ndarray:
        return fixation_gaussian_heatmap(self.x, self.y, self.duration, self.degrees * self.pixels_per_degree_x,
                                         self.degrees * self.pixels_per_degree_y, self.shown, letterbox)

    def on_image(self, orig_size: tuple[int, int]) -> tuple[int, int]:
        """(fixations on the image, fixations off it)."""
        inside = int(in_image(self.x, self.y, orig_size).sum())
        return inside, len(self.x) - inside
