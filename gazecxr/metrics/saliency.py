"""Saliency-map agreement (KL, CC, HS/SIM) and fixation prediction (NSS, AUC-Judd, shuffled AUC)
with the canvas-pixel rounding of fixation points.

Each accepts numpy arrays or torch tensors of any real dtype, computes in float64, and takes
either one map ``(H, W)`` (returns a Python float) or a batch ``(N, H, W)`` (returns a
float64 numpy array of N values, one per map); conventions of the MIT/Tübingen benchmark.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gazecxr.metrics._arrays import (
    EPS,
    _as_map_batch,
    _check_same_shape,
    _distribution_pair,
    _item,
    _result,
    _to_float64,
)


def kl_divergence(pred: Any, gt: Any) -> float | np.ndarray:
    """KL divergence of the prediction from the ground truth, KL(G ‖ P), in nats.

    KL = Σ G·log(ε + G / (P + ε)) with ε = ``EPS``, after normalising both maps to sum 1.
    0 for identical maps; lower is better.
    """
    p, g, single = _distribution_pair(pred, gt)
    return _result(np.sum(g * np.log(EPS + g / (p + EPS)), axis=1), single)


def correlation_coefficient(pred: Any, gt: Any) -> float | np.ndarray:
    """Pearson correlation (CC) of prediction and ground truth over pixels, in [-1, 1].

    A constant map carries no spatial information and has no defined correlation; CC is
    then reported as 0 (the pysaliency / MIT benchmark convention) instead of NaN.
    """
    p, g, single = _distribution_pair(pred, gt)
    pc = p - p.mean(axis=1, keepdims=True)
    gc = g - g.mean(axis=1, keepdims=True)
    constant = (np.ptp(p, axis=1) == 0) | (np.ptp(g, axis=1) == 0)
    denom = np.sqrt(np.sum(pc * pc, axis=1) * np.sum(gc * gc, axis=1))
    denom[constant] = 1.0
    cc = np.clip(np.sum(pc * gc, axis=1) / denom, -1.0, 1.0)
    cc[constant] = 0.0
    return _result(cc, single)


def histogram_similarity(pred: Any, gt: Any) -> float | np.ndarray:
    """Histogram similarity (HS, a.k.a. SIM): Σ min(P, G) of the normalised maps.

    In [0, 1]: 1 for identical maps, 0 for maps with disjoint support.
    """
    p, g, single = _distribution_pair(pred, gt)
    return _result(np.sum(np.minimum(p, g), axis=1), single)


def _prediction_and_fixations(pred: Any, fixations: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """``pred`` as a finite float64 batch (N, H*W), ``fixations`` as a bool batch of the same shape with
    at least one fixated pixel per map, and the single-map flag."""
    p_arr = _to_float64(pred, "pred")
    f_arr = _to_float64(fixations, "fixations")
    _check_same_shape(p_arr, f_arr, "pred", "fixations")
    p, single = _as_map_batch(p_arr, "pred")
    f, _ = _as_map_batch(f_arr, "fixations")
    if not np.all((f == 0) | (f == 1)):
        raise ValueError("fixations must be a binary map (values 0 or 1)")
    fixated = f == 1
    empty = np.flatnonzero(fixated.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"{_item(single, int(empty[0]), 'fixations')} has no fixated pixel; the fixation "
                         "metrics are undefined")
    return p, fixated, single


def nss(pred: Any, fixations: Any) -> float | np.ndarray:
    """Normalised scanpath saliency: mean over fixated pixels of the prediction's z-score
    (P − mean P) / std P, with the population std over all pixels.

    ``pred`` may be any finite real-valued map (NSS is invariant to positive scaling and
    to shifts, so probabilities, unnormalised maps and logits give the same value).
    ``fixations`` is a binary map of the same shape with at least one fixated pixel per
    map (see `fixated_map`: each fixated pixel counts once). A constant prediction has no
    z-score; its NSS is reported as 0 (chance level), as pysaliency does.
    """
    p, fixated, single = _prediction_and_fixations(pred, fixations)
    std = p.std(axis=1, keepdims=True)
    constant = np.ptp(p, axis=1) == 0
    std[constant] = 1.0
    z = (p - p.mean(axis=1, keepdims=True)) / std
    z[constant] = 0.0
    return _result(np.sum(z * fixated, axis=1) / fixated.sum(axis=1), single)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def auc_judd(pred: Any, fixations: Any) -> float | np.ndarray:
    """AUC-Judd (MIT/Tübingen benchmark): area under the ROC curve of the prediction as a classifier of
    fixated (positive) against all other (negative) pixels, swept over the prediction's values at the
    fixated pixels as thresholds.

    At each distinct threshold θ among the fixated pixels' values, the true-positive rate is the share
    of fixated pixels with P ≥ θ and the false-positive rate the share of non-fixated pixels with
    P ≥ θ; the curve runs from (0, 0) through these points to (1, 1) and is integrated with the
    trapezoid rule. Ties count as above the threshold, so tied values give one point: a constant
    map scores 0.5. This equals pysaliency's ``general_roc(positives, negatives, judd=1)``; the MIT
    Matlab code instead breaks ties with random jitter (and scores a tied threshold by rank), which
    differs only on maps with tied values at fixated pixels. Invariant to any strictly increasing
    transform of ``pred``. ``fixations`` is a binary map (see `fixated_map`) that must leave at
    least one pixel unfixated.
    """
    p, fixated, single = _prediction_and_fixations(pred, fixations)
    values = np.empty(len(p))
    for i, (row, fix) in enumerate(zip(p, fixated)):
        positives, negatives = np.sort(row[fix]), np.sort(row[~fix])
        if negatives.size == 0:
            raise ValueError(f"{_item(single, i, 'fixations')} fixates every pixel; AUC-Judd needs "
                             "non-fixated pixels")
        thresholds = np.unique(positives)[::-1]
        tpr = (positives.size - np.searchsorted(positives, thresholds, side="left")) / positives.size
        fpr = (negatives.size - np.searchsorted(negatives, thresholds, side="left")) / negatives.size
        values[i] = _trapezoid(np.concatenate([[0.0], tpr, [1.0]]), np.concatenate([[0.0], fpr, [1.0]]))
    return _result(values, single)


def shuffled_auc(pred: Any, fixations: Any, nonfixations: Any) -> float | np.ndarray:
    """Shuffled AUC (sAUC, MIT/Tübingen benchmark): the probability that the prediction ranks a fixated
    pixel of this image above a pixel fixated on *other* images, ties counting one half.

    ``nonfixations`` (same shape as ``pred``) counts, per pixel, the other images' fixations there
    (see `fixation_counts`); each counts as one negative, so pixels fixated often elsewhere weigh more
    and a centre-bias map scores about 0.5. Positives are this image's fixated pixels (binary
    ``fixations``, each pixel once). Per image this is pysaliency's per-positive ROC
    (``general_rocs_per_positive``, with the other images' fixations as negatives) averaged over the
    positives, i.e. the Mann–Whitney statistic; it uses every other fixation instead of the MIT code's
    random subsamples, so it is deterministic. Invariant to strictly increasing transforms of ``pred``.
    """
    p_arr = _to_float64(pred, "pred")
    w_arr = _to_float64(nonfixations, "nonfixations")
    _check_same_shape(p_arr, w_arr, "pred", "nonfixations")
    p, fixated, single = _prediction_and_fixations(p_arr, fixations)
    weights, _ = _as_map_batch(w_arr, "nonfixations")
    if weights.min() < 0:
        raise ValueError("nonfixations must be non-negative fixation counts")
    values = np.empty(len(p))
    for i, (row, fix, w) in enumerate(zip(p, fixated, weights)):
        used = w > 0
        if not used.any():
            raise ValueError(f"{_item(single, i, 'nonfixations')} has no fixation of another image; sAUC "
                             "is undefined")
        order = np.argsort(row[used], kind="stable")
        negatives = row[used][order]
        cumulative = np.concatenate([[0.0], np.cumsum(w[used][order])])
        positives = row[fix]
        below = cumulative[np.searchsorted(negatives, positives, side="left")]
        up_to = cumulative[np.searchsorted(negatives, positives, side="right")]
        values[i] = float(np.mean(below + 0.5 * (up_to - below)) / cumulative[-1])
    return _result(values, single)


# ----------------------------------------------------------------------------- fixations


def fixation_pixels(points: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Canvas pixel (row, column) of each fixation in ``points`` (K, ≥2: x = column, y = row, further
    columns such as the duration ignored) on an (H, W) canvas.

    Fixation coordinates are continuous canvas coordinates with pixel centres at integers (the
    geometry of ``Letterbox.to_canvas_coords``), so a fixation belongs to the pixel whose centre
    is nearest: ``floor(coordinate + 0.5)``. This is pysaliency's ``x_int``/``y_int`` (truncation)
    translated to centre-at-integer coordinates. Coordinates up to one pixel beyond the canvas edge
    (rounding at the image border) are clipped onto it; farther ones are an error.
    """
    h, w = shape
    p = _to_float64(points, "fixations")
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"fixations must be an array (K, 2+) of x, y canvas coordinates; got shape {p.shape}")
    x, y = p[:, 0], p[:, 1]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fixations contain NaN or infinite coordinates")
    outside = (x < -1) | (x > w) | (y < -1) | (y > h)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(f"fixation {i} at (x={x[i]:.6g}, y={y[i]:.6g}) lies outside the {h}×{w} canvas")
    rows = np.clip(np.floor(y + 0.5), 0, h - 1).astype(np.int64)
    cols = np.clip(np.floor(x + 0.5), 0, w - 1).astype(np.int64)
    return rows, cols


def fixation_counts(points: Any, shape: tuple[int, int]) -> np.ndarray:
    """Number of fixations per pixel (H, W) int64, pixels as in `fixation_pixels`."""
    rows, cols = fixation_pixels(points, shape)
    return np.bincount(rows * shape[1] + cols, minlength=shape[0] * shape[1]).reshape(shape)


def fixated_map(points: Any, shape: tuple[int, int]) -> np.ndarray:
    """Binary fixation map (H, W) bool: True on every pixel hit by at least one fixation.

    Several fixations on the same pixel count once, as in the MIT benchmark's binary fixation
    maps (pysaliency instead weights each fixation; the two agree when no pixel is hit twice).
    """
    return fixation_counts(points, shape) > 0
