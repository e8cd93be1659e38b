"""Evaluation metrics: saliency-map agreement (KL, CC, HS/SIM) and fixation prediction (NSS,
AUC-Judd, shuffled AUC) with the canvas-pixel rounding of fixation points, diagnosis quality
(AUC, accuracy, confusion matrix, calibration) and paired significance tests.

Saliency metrics follow the MIT/Tübingen benchmark conventions given in DESIGN.md. Each
accepts numpy arrays or torch tensors of any real dtype, computes in float64, and takes
either one map ``(H, W)`` (returns a Python float) or a batch ``(N, H, W)`` (returns a
float64 numpy array of N values, one per map).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

from gazecxr import CLASS_NAMES

EPS: float = 2.2204e-16
"""Regulariser of the KL divergence (MIT saliency benchmark value)."""

PROB_SUM_ATOL: float = 1e-3
"""Tolerance on the row sums of class probabilities given to the classification metrics."""

__all__ = [
    "EPS",
    "PROB_SUM_ATOL",
    "kl_divergence",
    "correlation_coefficient",
    "histogram_similarity",
    "nss",
    "auc_judd",
    "shuffled_auc",
    "fixation_pixels",
    "fixation_counts",
    "fixated_map",
    "classification_metrics",
    "reliability_curve",
    "binned_means",
    "paired_ttest",
]


# ----------------------------------------------------------------------------- inputs


def _to_float64(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy array, torch tensor or nested sequence) as a float64 numpy array."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} cannot be read as a real-valued array: {err}") from err


def _as_map_batch(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """``x`` as a finite float64 batch ``(N, H*W)``, and whether a single map was given."""
    arr = _to_float64(x, name)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be one map (H, W) or a batch (N, H, W); "
            f"got {arr.ndim} dimensions, shape {arr.shape}"
        )
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"{name} has an empty spatial size, shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    single = arr.ndim == 2
    return arr.reshape(1 if single else arr.shape[0], arr.shape[-2] * arr.shape[-1]), single


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    a_shape, b_shape = np.shape(a), np.shape(b)
    if a_shape != b_shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape; "
            f"got {name_a} {a_shape} and {name_b} {b_shape}"
        )


def _item(single: bool, i: int, name: str) -> str:
    return name if single else f"{name}[{i}]"


def _as_distributions(flat: np.ndarray, single: bool, name: str) -> np.ndarray:
    """Each row of ``flat`` divided by its sum, after checking it is a non-zero,
    non-negative map."""
    for i, row in enumerate(flat):
        if row.min() < 0:
            raise ValueError(
                f"{_item(single, i, name)} has negative values (min {row.min():.6g}); "
                "a saliency distribution must be non-negative"
            )
    sums = flat.sum(axis=1, keepdims=True)
    zero = np.flatnonzero(sums[:, 0] == 0)
    if zero.size:
        raise ValueError(
            f"{_item(single, int(zero[0]), name)} is all zeros; "
            "it cannot be normalised to a distribution"
        )
    return flat / sums


def _distribution_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validated ``pred`` and ``gt`` as (N, H*W) rows summing to 1, and the single flag."""
    p = _to_float64(pred, "pred")
    g = _to_float64(gt, "gt")
    _check_same_shape(p, g, "pred", "gt")
    p_flat, single = _as_map_batch(p, "pred")
    g_flat, _ = _as_map_batch(g, "gt")
    return (
        _as_distributions(p_flat, single, "pred"),
        _as_distributions(g_flat, single, "gt"),
        single,
    )


def _result(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


# ----------------------------------------------------------------------------- saliency


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


# ----------------------------------------------------------------------- classification


def _check_classification_inputs(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as int64 labels (N,) and ``probs`` as float64 (N, K), validated."""
    y = _to_float64(y_true, "y_true")
    p = _to_float64(probs, "probs")
    if y.ndim != 1:
        raise ValueError(f"y_true must be a 1-D array of labels (N,); got shape {y.shape}")
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (N, K); got shape {p.shape}")
    n, k = p.shape
    if y.shape[0] != n:
        raise ValueError(
            f"y_true and probs must have the same number of samples; "
            f"got y_true {y.shape} and probs {p.shape}"
        )
    if n == 0:
        raise ValueError("no samples: y_true and probs are empty")
    if k < 2:
        raise ValueError(f"probs must have at least 2 classes (columns); got shape {p.shape}")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(p)):
        raise ValueError("y_true and probs must not contain NaN or infinite values")
    if not np.all(y == np.round(y)):
        raise ValueError("y_true must hold integer class labels")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"y_true labels must lie in [0, {k - 1}] for {k} probability columns; "
            f"got labels from {int(y.min())} to {int(y.max())}"
        )
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probs must lie in [0, 1]")
    row_sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(row_sums - 1.0) > PROB_SUM_ATOL)
    if bad.size:
        raise ValueError(
            f"each row of probs must sum to 1 (within {PROB_SUM_ATOL}); row {int(bad[0])} "
            f"sums to {row_sums[bad[0]]:.6g} (pass softmax probabilities, not logits)"
        )
    return y.astype(np.int64), p


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")


def reliability_curve(y_true: Any, probs: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin calibration of the predicted class (the arg-max) for a reliability diagram.

    Confidence = max probability, binned into ``n_bins`` equal-width bins
    (lo, hi] over [0, 1]. Returns ``bin_edges`` (n_bins + 1), and per bin the mean
    ``confidence``, the ``accuracy`` of the arg-max prediction (both NaN for an empty
    bin) and the sample ``count``.
    """
    y, p = _check_classification_inputs(y_true, probs)
    edges, confidence, accuracy, count = binned_means(p.max(axis=1), p.argmax(axis=1) == y, n_bins)
    return {"bin_edges": edges, "confidence": confidence, "accuracy": accuracy, "count": count}


def binned_means(
    confidence: np.ndarray, outcome: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Calibration bins: ``confidence`` values in [0, 1] binned into ``n_bins`` equal-width bins
    (lo, hi]; returns the bin edges and per bin the mean confidence, the mean ``outcome`` (both NaN
    for an empty bin) and the count."""
    _check_n_bins(n_bins)
    conf = np.asarray(confidence, np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.digitize(conf, edges[1:-1], right=True)
    count = np.bincount(idx, minlength=n_bins)
    filled = count > 0
    mean_conf = np.full(n_bins, np.nan)
    mean_outcome = np.full(n_bins, np.nan)
    mean_conf[filled] = np.bincount(idx, weights=conf, minlength=n_bins)[filled] / count[filled]
    mean_outcome[filled] = (np.bincount(idx, weights=np.asarray(outcome, np.float64), minlength=n_bins)[filled]
                            / count[filled])
    return edges, mean_conf, mean_outcome, count


def classification_metrics(
    y_true: Any,
    probs: Any,
    class_names: Sequence[str] = CLASS_NAMES,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Diagnosis quality of class probabilities ``probs`` (N, K) against labels (N,).

    Returns a JSON-serialisable dict:

    - ``n``: number of samples.
    - ``auc_per_class``: {class name: one-vs-rest ROC AUC}; NaN for a class whose AUC is
      undefined because it is absent from ``y_true`` or is the only class present.
    - ``auc_macro``: mean of the defined per-class AUCs (NaN if none is defined).
    - ``auc_micro``: ROC AUC of all N·K one-hot labels against all probabilities
      (the released code's "AUC").
    - ``accuracy``: fraction of samples whose arg-max class is the label.
    - ``balanced_accuracy``: mean recall over the classes present in ``y_true``.
    - ``confusion_matrix``: K×K nested list of counts, rows = true class,
      columns = predicted (arg-max) class.
    - ``ece``: expected calibration error of the arg-max confidence, Σ_b (n_b / N)
      |accuracy_b − confidence_b| over ``n_bins`` equal-width bins (see
      ``reliability_curve``).
    """
    y, p = _check_classification_inputs(y_true, probs)
    names = list(class_names)
    n, k = p.shape
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names but probs has {k} columns")
    curve = reliability_curve(y, p, n_bins)

    one_hot = np.eye(k, dtype=np.int64)[y]
    auc_per_class: dict[str, float] = {}
    for c, name in enumerate(names):
        positives = int(one_hot[:, c].sum())
        if 0 < positives < n:
            auc_per_class[name] = float(roc_auc_score(one_hot[:, c], p[:, c]))
        else:
            auc_per_class[name] = float("nan")
    defined_aucs = [a for a in auc_per_class.values() if not np.isnan(a)]
    auc_macro = float(np.mean(defined_aucs)) if defined_aucs else float("nan")
    auc_micro = float(roc_auc_score(one_hot.ravel(), p.ravel()))

    pred = p.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(y, pred))
    filled = curve["count"] > 0
    ece = float(
        np.sum(
            curve["count"][filled]
            / n
            * np.abs(curve["accuracy"][filled] - curve["confidence"][filled])
        )
    )
    return {
        "n": int(n),
        "auc_per_class": auc_per_class,
        "auc_macro": auc_macro,
        "auc_micro": auc_micro,
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": balanced,
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(k))).tolist(),
        "ece": ece,
    }


# ------------------------------------------------------------------------- statistics


def paired_ttest(a: Any, b: Any) -> dict[str, float | int]:
    """Two-sided paired t-test of per-image scores ``a`` against ``b`` (same images, same
    order), e.g. the KL of two methods on a test split.

    Returns ``t``, ``p``, ``mean_diff`` (mean of a − b) and ``n``. When all differences
    are equal the t statistic is degenerate and is reported exactly instead of NaN:
    all differences zero → t = 0, p = 1 (no evidence of a difference); all equal and
    non-zero → t = ±inf, p = 0.
    """
    x = _to_float64(a, "a")
    z = _to_float64(b, "b")
    if x.ndim != 1 or z.ndim != 1:
        raise ValueError(f"a and b must be 1-D; got shapes {x.shape} and {z.shape}")
    _check_same_shape(x, z, "a", "b")
    if x.shape[0] < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs; got {x.shape[0]}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(z)):
        raise ValueError("a and b must not contain NaN or infinite values")
    diff = x - z
    mean_diff = float(np.mean(diff))
    if np.ptp(diff) == 0:
        if diff[0] == 0:
            t, p = 0.0, 1.0
        else:
            t, p = float(np.copysign(np.inf, diff[0])), 0.0
    else:
        res = stats.ttest_rel(x, z)
        t, p = float(res.statistic), float(res.pvalue)
    return {"t": t, "p": p, "mean_diff": mean_diff, "n": int(x.shape[0])}
