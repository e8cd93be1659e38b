"""Multi-label diagnosis metrics: per-finding AUROC, average precision, F1 at validation-chosen
thresholds and calibration, with macro and micro summaries.

Inputs are multi-hot labels ``y_true`` (N, F) of 0/1 and independent probabilities ``probs``
(N, F) in [0, 1] (sigmoids, one column per finding). A finding counts towards the summaries only
where it is defined on the split: average precision and F1 need at least one positive, AUROC a
positive and a negative; the per-finding values of the others are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)

from gazecxr.metrics._arrays import _to_float64
from gazecxr.metrics.classification import binned_means

__all__ = [
    "DEFAULT_THRESHOLD",
    "binary_reliability",
    "choose_thresholds",
    "apply_thresholds",
    "multilabel_metrics",
]

DEFAULT_THRESHOLD: float = 0.5
"""Decision threshold of a finding without positives in the validation split."""


def _check_multilabel(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as int64 (N, F) of 0/1 and ``probs`` as float64 (N, F) in [0, 1], validated."""
    y = _to_float64(y_true, "y_true")
    p = _to_float64(probs, "probs")
    if y.ndim != 2 or p.ndim != 2:
        raise ValueError(f"y_true and probs must be 2-D (N, F); got shapes {y.shape} and {p.shape}")
    if y.shape != p.shape:
        raise ValueError(f"y_true and probs must have the same shape; got {y.shape} and {p.shape}")
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"no samples or no findings: shape {y.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs must not contain NaN or infinite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must be multi-hot (values 0 or 1)")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probs must lie in [0, 1] (pass sigmoid probabilities, not logits)")
    return y.astype(np.int64), p


def _check_thresholds(thresholds: Any, n_findings: int) -> np.ndarray:
    t = _to_float64(thresholds, "thresholds")
    if t.shape != (n_findings,):
        raise ValueError(f"thresholds must have one value per finding, shape ({n_findings},); got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("thresholds must be finite")
    return t


def binary_reliability(y_true: Any, prob: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Calibration of one finding's probability: equal-width bins (lo, hi] over [0, 1] — the binning
    of ``gazecxr.metrics.reliability_curve`` — with per bin the mean predicted ``confidence``, the
    observed ``frequency`` of positives (both NaN for an empty bin) and the ``count``; plus ``ece``,
    Σ_b (n_b / N) |frequency_b − confidence_b|.
    """
    y, p = _check_multilabel(np.reshape(y_true, (-1, 1)), np.reshape(prob, (-1, 1)))
    edges, confidence, frequency, count = binned_means(p[:, 0], y[:, 0], n_bins)
    filled = count > 0
    ece = float(np.sum(count[filled] / p.shape[0] * np.abs(frequency[filled] - confidence[filled])))
    return {"bin_edges": edges, "confidence": confidence, "frequency": frequency, "count": count, "ece": ece}


def choose_thresholds(y_true: Any, probs: Any, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-finding decision thresholds (F,) that maximise F1 on a validation split.

    A finding is predicted present when its probability is ≥ its threshold. Candidates are the
    validation probabilities themselves; among equally good ones the highest is chosen (fewest
    false positives). A finding without positives in the split gets ``default``. NaN labels (unknown)
    are left out of their finding.
    """
    raw = _to_float64(y_true, "y_true")
    known = ~np.isnan(raw)
    y, p = _check_multilabel(np.nan_to_num(raw), probs)
    thresholds = np.full(y.shape[1], float(default))
    for f in range(y.shape[1]):
        if not y[known[:, f], f].any():
            continue
        precision, recall, candidates = precision_recall_curve(y[known[:, f], f], p[known[:, f], f])
        precision, recall = precision[:-1], recall[:-1]
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        best = np.flatnonzero(f1 == f1.max())
        thresholds[f] = candidates[best[-1]]
    return thresholds


def apply_thresholds(probs: Any, thresholds: Any) -> np.ndarray:
    """Findings present (N, F) bool: probability ≥ the finding's threshold."""
    p = _to_float64(probs, "probs")
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, F); got shape {p.shape}")
    return p >= _check_thresholds(thresholds, p.shape[1])


def _mean_defined(values: Sequence[float]) -> float:
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def multilabel_metrics(
    y_true: Any,
    probs: Any,
    finding_names: Sequence[str],
    thresholds: Any | None = None,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Diagnosis quality of independent finding probabilities ``probs`` (N, F) against multi-hot labels.

    Returns a JSON-serialisable dict (NaN where undefined):

    - ``n``; ``per_finding``: {name: {positives, auroc, average_precision, ece, and with
      ``thresholds``: threshold, f1}};
    - ``auroc_macro``: mean AUROC over findings with positives and negatives; ``auroc_micro``: AUROC
      of all their (sample, finding) entries pooled; ``ap_macro``: mean average precision over findings
      with positives; ``ece_mean``: mean per-finding ECE (``binary_reliability``);
    - with ``thresholds`` (chosen on validation by ``choose_thresholds``): ``f1_macro`` over findings
      with positives and ``f1_micro`` over their pooled decisions.

    NaN labels are unknown (e.g. CheXpert uncertain labels under the ``ignore`` policy): each finding is
    then scored on its known entries only, and its entry also counts the ``unknown`` ones.
    """
    if np.isnan(_to_float64(y_true, "y_true")).any():
        return _metrics_with_unknown(_to_float64(y_true, "y_true"), probs, finding_names, thresholds, n_bins)
    y, p = _check_multilabel(y_true, probs)
    names = list(finding_names)
    n, n_findings = y.shape
    if len(names) != n_findings:
        raise ValueError(f"finding_names has {len(names)} names but probs has {n_findings} columns")
    positives = y.sum(axis=0)
    has_pos = positives > 0
    has_both = has_pos & (positives < n)
    decisions = None if thresholds is None else apply_thresholds(p, thresholds)
    per_finding: dict[str, dict[str, Any]] = {}
    for f, name in enumerate(names):
        entry: dict[str, Any] = {
            "positives": int(positives[f]),
            "auroc": float(roc_auc_score(y[:, f], p[:, f])) if has_both[f] else float("nan"),
            "average_precision": float(average_precision_score(y[:, f], p[:, f])) if has_pos[f] else float("nan"),
            "ece": binary_reliability(y[:, f], p[:, f], n_bins)["ece"],
        }
        if decisions is not None:
            entry["threshold"] = float(np.asarray(thresholds, np.float64)[f])
            entry["f1"] = float(f1_score(y[:, f], decisions[:, f], zero_division=0)) if has_pos[f] else float("nan")
        per_finding[name] = entry
    out: dict[str, Any] = {
        "n": int(n),
        "per_finding": per_finding,
        "auroc_macro": _mean_defined([e["auroc"] for e in per_finding.values()]),
        "auroc_micro": float(roc_auc_score(y[:, has_both].ravel(), p[:, has_both].ravel()))
        if has_both.any() else float("nan"),
        "ap_macro": _mean_defined([e["average_precision"] for e in per_finding.values()]),
        "ece_mean": float(np.mean([e["ece"] for e in per_finding.values()])),
    }
    if decisions is not None:
        out["f1_macro"] = _mean_defined([e["f1"] for e in per_finding.values()])
        out["f1_micro"] = float(f1_score(y[:, has_pos].ravel(), decisions[:, has_pos].ravel(), zero_division=0)) \
            if has_pos.any() else float("nan")
    return out


def _metrics_with_unknown(y: np.ndarray, probs: Any, finding_names: Sequence[str], thresholds: Any | None,
                          n_bins: int) -> dict[str, Any]:
    """``multilabel_metrics`` of labels with NaN (unknown) entries: per finding on its known rows; micro
    summaries pooled over the known entries of the findings that count."""
    p = _to_float64(probs, "probs")
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"y_true and probs must be 2-D with the same shape; got {y.shape} and {p.shape}")
    names = list(finding_names)
    if len(names) != y.shape[1]:
        raise ValueError(f"finding_names has {len(names)} names but probs has {y.shape[1]} columns")
    t = None if thresholds is None else _check_thresholds(thresholds, y.shape[1])
    per_finding: dict[str, dict[str, Any]] = {}
    roc, f1 = ([], []), ([], [])
    for f, name in enumerate(names):
        known = ~np.isnan(y[:, f])
        if not known.any():
            entry = {"positives": 0, "auroc": float("nan"), "average_precision": float("nan"), "ece": float("nan")}
            if t is not None:
                entry.update(threshold=float(t[f]), f1=float("nan"))
        else:
            yk, pk = y[known, f:f + 1], p[known, f:f + 1]
            entry = multilabel_metrics(yk, pk, [name], None if t is None else t[f:f + 1], n_bins)["per_finding"][name]
            if not np.isnan(entry["auroc"]):
                roc[0].append(yk[:, 0])
                roc[1].append(pk[:, 0])
            if t is not None and entry["positives"] > 0:
                f1[0].append(yk[:, 0])
                f1[1].append(pk[:, 0] >= t[f])
        per_finding[name] = {**entry, "unknown": int((~known).sum())}
    out: dict[str, Any] = {
        "n": int(y.shape[0]),
        "per_finding": per_finding,
        "auroc_macro": _mean_defined([e["auroc"] for e in per_finding.values()]),
        "auroc_micro": float(roc_auc_score(np.concatenate(roc[0]), np.concatenate(roc[1]))) if roc[0] else float("nan"),
        "ap_macro": _mean_defined([e["average_precision"] for e in per_finding.values()]),
        "ece_mean": _mean_defined([e["ece"] for e in per_finding.values()]),
    }
    if t is not None:
        out["f1_macro"] = _mean_defined([e["f1"] for e in per_finding.values()])
        out["f1_micro"] = float(f1_score(np.concatenate(f1[0]), np.concatenate(f1[1]), zero_division=0)) \
            if f1[0] else float("nan")
    return out
