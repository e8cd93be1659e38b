"""Diagnosis quality: AUC, accuracy, confusion matrix and calibration of class probabilities."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

from gazecxr import CLASS_NAMES
from gazecxr.metrics._arrays import _to_float64

PROB_SUM_ATOL: float = 1e-3
"""Tolerance on the row sums of class probabilities given to the classification metrics."""


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
