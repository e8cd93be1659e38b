"""Evaluation metrics: saliency-map agreement (KL, CC, HS/SIM, NSS), diagnosis quality
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
    "classification_metrics",
    "reliability_curve",
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


def nss(pred: Any, fixations: Any) -> float | np.ndarray:
    """Normalised scanpath saliency: mean over fixated pixels of the prediction's z-score
    (P − mean P) / std P, with the population std over all pixels.

    ``pred`` may be any finite real-valued map (NSS is invariant to positive scaling and
    to shifts, so probabilities, unnormalised maps and logits give the same value).
    ``fixations`` is a binary map of the same shape with at least one fixated pixel per
    map. A constant prediction has no z-score; its NSS is reported as 0 (chance level),
    as pysaliency does.
    """
    p_arr = _to_float64(pred, "pred")
    f_arr = _to_float64(fixations, "fixations")
    _check_same_shape(p_arr, f_arr, "pred", "fixations")
    p, single = _as_map_batch(p_arr, "pred")
    f, _ = _as_map_batch(f_arr, "fixations")
    if not np.all((f == 0) | (f == 1)):
        raise ValueError("fixations must be a binary map (values 0 or 1)")
    fixated = f == 1
    counts = fixated.sum(axis=1)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"{_item(single, int(empty[0]), 'fixations')} has no fixated pixel; "
            "NSS is undefined"
        )
    std = p.std(axis=1, keepdims=True)
    constant = np.ptp(p, axis=1) == 0
    std[constant] = 1.0
    z = (p - p.mean(axis=1, keepdims=True)) / std
    z[constant] = 0.0
    return _result(np.sum(z * fixated, axis=1) / counts, single)


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
    _check_n_bins(n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.digitize(conf, edges[1:-1], right=True)
    count = np.bincount(idx, minlength=n_bins)
    filled = count > 0
    confidence = np.full(n_bins, np.nan)
    accuracy = np.full(n_bins, np.nan)
    confidence[filled] = np.bincount(idx, weights=conf, minlength=n_bins)[filled] / count[filled]
    accuracy[filled] = np.bincount(idx, weights=correct, minlength=n_bins)[filled] / count[filled]
    return {"bin_edges": edges, "confidence": confidence, "accuracy": accuracy, "count": count}


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
