"""Statistics of every report: the test the field uses for each compared quantity, intervals for every
table cell, and multiplicity control.

- Per-image scores (saliency KL, CC, HS, NSS, AUC-Judd, sAUC; localisation scores): paired two-sided
  t-test (`paired_ttest`) and Wilcoxon signed-rank test (`wilcoxon_signed_rank`), reported both
  (`paired_score_tests`).
- ROC AUCs of two classifiers on the same images: DeLong's test with the fast algorithm of Sun & Xu
  (2014) (`delong_test`), the DeLong 95 % interval of each AUC (`delong_interval`), one-vs-rest per class
  and the macro AUC of a K-class task (`delong_one_vs_rest`), per finding and macro for a multi-label task
  (`delong_multilabel`). The macro AUC is tested in closed form: the mean of the per-class AUC differences,
  with the joint covariance of the per-class AUCs estimated from each image's DeLong structural components
  (`auc_influence`; for one class this is exactly DeLong's variance). The micro AUC, which pools the
  (image, class) entries of an image and has no DeLong form, is compared by the paired patient bootstrap
  (`bootstrap_paired_difference`).
- Paired accuracy: McNemar's exact test on the discordant pairs (`mcnemar_exact`, a binomial test).
- Intervals of any cell: bootstrap resampling *patients* (a patient's images move together),
  vectorised as per-image integer weights (`patient_bootstrap_weights`), percentile or BCa
  (`bootstrap_interval`; `PatientBootstrap` shares one set of resamples across a report's cells), seeded
  and reproducible; ``n_resamples = 0`` turns it off.
- Multiplicity: Holm–Bonferroni step-down adjustment within a family (`holm_bonferroni`, `adjust_family`).
- Over seeds: mean ± sample std and the t interval of the mean (`seed_summary`).
- Several models at once (explanation study): one-way ANOVA (`one_way_anova`) and Tukey's HSD
  (`tukey_hsd`).

Every result is a JSON-ready dict that names its ``method``; intervals are ``[low, high]`` lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from gazecxr.metrics._arrays import _check_same_shape, _to_float64

CONFIDENCE: float = 0.95
"""Confidence level of every interval."""

DEFAULT_RESAMPLES: int = 2000
"""Bootstrap resamples of a report (``--bootstrap N``; 0 turns the bootstrap off)."""

DEFAULT_SEED: int = 0
"""Seed of the bootstrap resampling (the same seed gives the same patient resamples for every cell,
so intervals of different cells and methods are computed on the same resamples)."""

BOOTSTRAP_METHODS: tuple[str, ...] = ("percentile", "bca")
"""Bootstrap interval methods: percentile, or bias-corrected and accelerated (BCa, jackknife over
patients for the acceleration)."""

_CHUNK = 128
"""Resamples per block of the vectorised AUC."""

Statistic = Callable[[np.ndarray], np.ndarray]
"""A weighted statistic: per-element weights (B, N) → B values (or (B, K) for K statistics at once);
row b of the weights is one bootstrap resample (integer multiplicities), a row of ones the sample itself."""

__all__ = [
    "BOOTSTRAP_METHODS",
    "CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "PatientBootstrap",
    "Statistic",
    "adjust_family",
    "auc_influence",
    "bootstrap_interval",
    "bootstrap_paired_difference",
    "delong_class_intervals",
    "delong_covariance",
    "delong_finding_intervals",
    "delong_interval",
    "delong_multilabel",
    "delong_one_vs_rest",
    "delong_test",
    "format_interval",
    "holm_bonferroni",
    "interval_cell",
    "jackknife_weights",
    "mcnemar_exact",
    "mean_interval",
    "one_way_anova",
    "paired_score_tests",
    "paired_ttest",
    "patient_bootstrap_weights",
    "seed_summary",
    "tukey_hsd",
    "weighted_accuracy",
    "weighted_auc",
    "weighted_ece",
    "weighted_macro_auc",
    "weighted_mean",
    "weighted_micro_auc",
    "wilcoxon_signed_rank",
]


# ----------------------------------------------------------------------------- inputs


def _paired(a: Any, b: Any, minimum: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as finite 1-D float64 arrays of the same length (at least ``minimum``)."""
    x, z = _to_float64(a, "a"), _to_float64(b, "b")
    if x.ndim != 1 or z.ndim != 1:
        raise ValueError(f"a and b must be 1-D; got shapes {x.shape} and {z.shape}")
    _check_same_shape(x, z, "a", "b")
    if x.shape[0] < minimum:
        raise ValueError(f"{what} needs at least {minimum} pairs; got {x.shape[0]}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(z)):
        raise ValueError("a and b must not contain NaN or infinite values")
    return x, z


def _binary_labels(y_true: Any, n: int | None = None) -> np.ndarray:
    """``y_true`` as a bool array (N,) of 0/1 labels with both classes present."""
    y = _to_float64(y_true, "y_true")
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D (N,); got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"y_true has {y.shape[0]} labels but the scores have {n}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must hold binary labels 0/1")
    positives = int(y.sum())
    if positives == 0 or positives == y.shape[0]:
        raise ValueError(f"an AUC needs positives and negatives; y_true has {positives} positives of {y.shape[0]}")
    return y == 1


def _score_rows(scores: Any) -> np.ndarray:
    """``scores`` (N,) or (M, N) as finite float64 (M, N)."""
    s = _to_float64(scores, "scores")
    s = s[None] if s.ndim == 1 else s
    if s.ndim != 2:
        raise ValueError(f"scores must be (N,) or (M, N); got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must not contain NaN or infinite values")
    return s


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


# ----------------------------------------------------------------------------- per-image scores


def paired_ttest(a: Any, b: Any) -> dict[str, Any]:
    """Two-sided paired t-test of per-image scores ``a`` against ``b`` (same images, same
    order), e.g. the KL of two methods on a test split.

    Returns ``t``, ``p``, ``mean_diff`` (mean of a − b) and ``n``. When all differences
    are equal the t statistic is degenerate and is reported exactly instead of NaN:
    all differences zero → t = 0, p = 1 (no evidence of a difference); all equal and
    non-zero → t = ±inf, p = 0.
    """
    x, z = _paired(a, b, 2, "a paired t-test")
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


def wilcoxon_signed_rank(a: Any, b: Any) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of per-image scores ``a`` against ``b`` (``scipy.stats.wilcoxon``,
    zero differences dropped — Wilcoxon's convention —, exact distribution for small samples without ties,
    normal approximation otherwise).

    Returns ``w`` (the statistic), ``p``, ``median_diff`` (median of a − b), ``n`` (pairs) and ``method``.
    All differences zero → w = 0, p = 1.
    """
    x, z = _paired(a, b, 1, "a Wilcoxon signed-rank test")
    diff = x - z
    median = float(np.median(diff))
    if not np.any(diff != 0):
        w, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(x, z, zero_method="wilcox", alternative="two-sided")
        w, p = float(res.statistic), float(res.pvalue)
    return {"w": w, "p": p, "median_diff": median, "n": int(x.shape[0]), "method": "Wilcoxon signed-rank"}


def paired_score_tests(a: Any, b: Any) -> dict[str, Any]:
    """Both tests of per-image scores ``a`` against ``b`` over the images where both are finite, as one flat
    record: ``n``, ``mean_diff``, ``t``, ``p`` (t-test), ``median_diff``, ``wilcoxon_w``, ``wilcoxon_p`` and
    ``test`` (the tests' names). Needs at least 2 such images."""
    x, z = _to_float64(a, "a").ravel(), _to_float64(b, "b").ravel()
    _check_same_shape(x, z, "a", "b")
    both = np.isfinite(x) & np.isfinite(z)
    t = paired_ttest(x[both], z[both])
    w = wilcoxon_signed_rank(x[both], z[both])
    return {"n": t["n"], "mean_diff": t["mean_diff"], "t": t["t"], "p": t["p"], "median_diff": w["median_diff"],
            "wilcoxon_w": w["w"], "wilcoxon_p": w["p"], "test": "paired t-test; Wilcoxon signed-rank"}


# ----------------------------------------------------------------------------- DeLong


def _midranks(x: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties get the mean of their ranks) of each row of ``x`` (M, L)."""
    return stats.rankdata(x, method="average", axis=-1)


def _placements(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sun & Xu's fast DeLong: AUCs (M,) and the structural components V10 (M, m) of the positives and
    V01 (M, n) of the negatives, from midranks of the positives, negatives and both."""
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tz = _midranks(np.concatenate([pos, neg], axis=1))
    tx, ty = _midranks(pos), _midranks(neg)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(axis=1)
    return aucs, v10, v01


def delong_covariance(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (M,) of M score rows ``scores`` (M, N) (or one row (N,)) on the same binary labels (N,) and
    DeLong's covariance matrix (M, M) of them: S10/m + S01/n, with S10 and S01 the sample covariances
    (ddof = 1) of the structural components over the m positives and the n negatives (Sun & Xu 2014).
    Ties count one half."""
    s = _score_rows(scores)
    y = _binary_labels(y_true, s.shape[1])
    aucs, v10, v01 = _placements(y, s)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((len(s), len(s)))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n > 1 else np.zeros((len(s), len(s)))
    return aucs, s10 / m + s01 / n


def auc_influence(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (M,) and per-image DeLong influence values (M, N): (V10 − AUC)/√(m(m−1)) for a positive image,
    (V01 − AUC)/√(n(n−1)) for a negative one, so that ``phi @ phi.T`` is exactly `delong_covariance`.

    Summing products over images of influence values of *different* labellings of the same images (the
    one-vs-rest problems of the classes, or the findings of a multi-label task) estimates the covariance of
    their AUCs, which is what the macro AUC's closed-form test uses."""
    s = _score_rows(scores)
    y = _binary_labels(y_true, s.shape[1])
    aucs, v10, v01 = _placements(y, s)
    m, n = v10.shape[1], v01.shape[1]
    phi = np.zeros(s.shape)
    phi[:, y] = (v10 - aucs[:, None]) / math.sqrt(m * (m - 1)) if m > 1 else 0.0
    phi[:, ~y] = (v01 - aucs[:, None]) / math.sqrt(n * (n - 1)) if n > 1 else 0.0
    return aucs, phi


def _interval(value: float, variance: float, confidence: float) -> list[float]:
    half = _z(confidence) * math.sqrt(max(variance, 0.0))
    return [max(0.0, value - half), min(1.0, value + half)]


def delong_interval(y_true: Any, scores: Any, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """DeLong interval of one ROC AUC: AUC ± z·√var (normal approximation), clipped to [0, 1].

    Returns ``value``, ``ci`` [low, high], ``se`` and ``method``."""
    aucs, cov = delong_covariance(y_true, scores)
    if len(aucs) != 1:
        raise ValueError(f"delong_interval takes one score row; got {len(aucs)}")
    value, variance = float(aucs[0]), float(cov[0, 0])
    return {"value": value, "ci": _interval(value, variance, confidence), "se": math.sqrt(max(variance, 0.0)),
            "method": "DeLong"}


def _z_test(diff: float, variance: float) -> tuple[float, float]:
    """z and two-sided p of a difference with its variance (z = 0, p = 1 for a zero difference of zero
    variance; ±inf, 0 for a non-zero one)."""
    if variance <= 0:
        return (0.0, 1.0) if diff == 0 else (float(np.copysign(np.inf, diff)), 0.0)
    z = diff / math.sqrt(variance)
    return float(z), float(2 * stats.norm.sf(abs(z)))


def delong_test(y_true: Any, scores_a: Any, scores_b: Any, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """DeLong's two-sided test of two correlated ROC AUCs on the same images (Sun & Xu's fast algorithm).

    Returns ``auc_a``, ``auc_b``, ``diff`` (a − b) with its ``ci`` (normal, not clipped), ``se``, ``z``, ``p``,
    ``n`` (images), ``positives`` and ``method``."""
    y = _binary_labels(y_true)
    aucs, cov = delong_covariance(y, np.stack([_to_float64(scores_a, "scores_a"), _to_float64(scores_b, "scores_b")]))
    diff = float(aucs[0] - aucs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z, p = _z_test(diff, variance)
    half = _z(confidence) * math.sqrt(max(variance, 0.0))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "ci": [diff - half, diff + half],
            "se": math.sqrt(max(variance, 0.0)), "z": z, "p": p, "n": int(len(y)), "positives": int(y.sum()),
            "method": "DeLong"}


def _macro_test(targets: np.ndarray, a: np.ndarray, b: np.ndarray, names: Sequence[str],
                confidence: float) -> dict[str, Any]:
    """Per-column DeLong tests of binary ``targets`` (N, K) with scores ``a``/``b`` (N, K), and the macro
    (mean over the defined columns) test with the joint covariance from the influence values."""
    per: dict[str, Any] = {}
    phis = []
    aucs_a, aucs_b = [], []
    for k, name in enumerate(names):
        y = targets[:, k]
        if y.min() == y.max():
            per[name] = None
            continue
        per[name] = delong_test(y, a[:, k], b[:, k], confidence)
        auc, phi = auc_influence(y, np.stack([a[:, k], b[:, k]]))
        aucs_a.append(auc[0])
        aucs_b.append(auc[1])
        phis.append(phi[0] - phi[1])
    if not phis:
        return {"per_class": per, "macro": None}
    diff = float(np.mean(aucs_a) - np.mean(aucs_b))
    variance = float(np.sum(np.mean(phis, axis=0) ** 2))
    z, p = _z_test(diff, variance)
    half = _z(confidence) * math.sqrt(max(variance, 0.0))
    macro = {"auc_a": float(np.mean(aucs_a)), "auc_b": float(np.mean(aucs_b)), "diff": diff,
             "ci": [diff - half, diff + half], "se": math.sqrt(max(variance, 0.0)), "z": z, "p": p,
             "n": int(len(targets)), "classes": len(phis),
             "method": "DeLong, macro: mean of per-class AUC differences, joint covariance from per-image "
                       "structural components"}
    return {"per_class": per, "macro": macro}


def _macro_interval(targets: np.ndarray, p: np.ndarray, confidence: float) -> dict[str, Any] | None:
    aucs, phis = [], []
    for k in range(targets.shape[1]):
        y = targets[:, k]
        if y.min() == y.max():
            continue
        auc, phi = auc_influence(y, p[:, k])
        aucs.append(auc[0])
        phis.append(phi[0])
    if not aucs:
        return None
    value = float(np.mean(aucs))
    variance = float(np.sum(np.mean(phis, axis=0) ** 2))
    return {"value": value, "ci": _interval(value, variance, confidence), "se": math.sqrt(variance),
            "method": "DeLong (macro: joint covariance of the per-class AUCs)"}


def delong_one_vs_rest(labels: Any, probs_a: Any, probs_b: Any, class_names: Sequence[str],
                       confidence: float = CONFIDENCE) -> dict[str, Any]:
    """DeLong tests of two K-class classifiers (probabilities (N, K)) on the same images with labels (N,):
    ``per_class`` {name: one-vs-rest `delong_test`, None for a class absent or alone in ``labels``} and
    ``macro`` (the macro AUC's closed-form test: mean of per-class differences, joint covariance)."""
    y = _to_float64(labels, "labels").astype(np.int64)
    a, b = _to_float64(probs_a, "probs_a"), _to_float64(probs_b, "probs_b")
    _check_same_shape(a, b, "probs_a", "probs_b")
    if a.ndim != 2 or a.shape != (len(y), len(class_names)):
        raise ValueError(f"probabilities must be (N, K) = ({len(y)}, {len(class_names)}); got {a.shape}")
    targets = np.eye(len(class_names))[y]
    return _macro_test(targets, a, b, list(class_names), confidence)


def delong_multilabel(targets: Any, probs_a: Any, probs_b: Any, names: Sequence[str],
                      confidence: float = CONFIDENCE) -> dict[str, Any]:
    """DeLong tests of two multi-label classifiers (probabilities (N, F)) against multi-hot ``targets``
    (N, F): ``per_class`` {finding: `delong_test` or None without positives and negatives} and ``macro``
    as in `delong_one_vs_rest`."""
    t = _to_float64(targets, "targets")
    a, b = _to_float64(probs_a, "probs_a"), _to_float64(probs_b, "probs_b")
    _check_same_shape(a, b, "probs_a", "probs_b")
    _check_same_shape(t, a, "targets", "probs_a")
    return _macro_test((t > 0.5).astype(np.float64), a, b, list(names), confidence)


def delong_class_intervals(labels: Any, probs: Any, class_names: Sequence[str],
                           confidence: float = CONFIDENCE) -> dict[str, Any]:
    """DeLong intervals of a K-class classifier's one-vs-rest AUCs: ``per_class`` {name: `delong_interval`
    or None} and ``macro`` (interval of the mean per-class AUC with the joint covariance)."""
    y = _to_float64(labels, "labels").astype(np.int64)
    p = _to_float64(probs, "probs")
    targets = np.eye(len(class_names))[y]
    return _intervals_of(targets, p, class_names, confidence)


def delong_finding_intervals(targets: Any, probs: Any, names: Sequence[str],
                             confidence: float = CONFIDENCE) -> dict[str, Any]:
    """`delong_class_intervals` for multi-hot ``targets`` (N, F) of a multi-label task."""
    t = (_to_float64(targets, "targets") > 0.5).astype(np.float64)
    return _intervals_of(t, _to_float64(probs, "probs"), names, confidence)


def _intervals_of(targets: np.ndarray, p: np.ndarray, names: Sequence[str], confidence: float) -> dict[str, Any]:
    per = {name: (delong_interval(targets[:, k], p[:, k], confidence) if targets[:, k].min() < targets[:, k].max()
                  else None) for k, name in enumerate(names)}
    return {"per_class": per, "macro": _macro_interval(targets, p, confidence)}


# ----------------------------------------------------------------------------- McNemar


def mcnemar_exact(correct_a: Any, correct_b: Any) -> dict[str, Any]:
    """McNemar's exact two-sided test of paired accuracy: a binomial test (``scipy.stats.binomtest``,
    p = 1/2) of the discordant pairs, images that exactly one of the two classifiers gets right.

    ``correct_a``/``correct_b`` are per-image 0/1 (or bool) correctness. Returns ``a_only`` (a right, b
    wrong), ``b_only``, ``discordant``, ``accuracy_a``, ``accuracy_b``, ``diff`` (a − b), ``p`` (1 without
    discordant pairs), ``n`` and ``method``."""
    x, z = _paired(correct_a, correct_b, 1, "McNemar's test")
    if not (np.all((x == 0) | (x == 1)) and np.all((z == 0) | (z == 1))):
        raise ValueError("McNemar's test takes per-image correctness (0/1)")
    a_only = int(np.sum((x == 1) & (z == 0)))
    b_only = int(np.sum((x == 0) & (z == 1)))
    discordant = a_only + b_only
    p = float(stats.binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    return {"a_only": a_only, "b_only": b_only, "discordant": discordant, "accuracy_a": float(x.mean()),
            "accuracy_b": float(z.mean()), "diff": float(x.mean() - z.mean()), "p": p, "n": int(len(x)),
            "method": "McNemar exact (binomial test of discordant pairs)"}


# ----------------------------------------------------------------------------- multiplicity


def holm_bonferroni(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni step-down adjusted p-values, in the input order: the k-th smallest of the m defined
    p-values becomes max over j ≤ k of min(1, (m − j + 1)·p_(j)). Undefined entries (None or NaN) stay None
    and do not count in m."""
    values = [None if p is None or not math.isfinite(float(p)) else float(p) for p in p_values]
    defined = [i for i, p in enumerate(values) if p is not None]
    if any(not 0 <= values[i] <= 1 for i in defined):
        raise ValueError(f"p-values must lie in [0, 1]; got {[values[i] for i in defined]}")
    m = len(defined)
    order = sorted(defined, key=lambda i: values[i])
    adjusted: list[float | None] = [None] * len(values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted


def adjust_family(tests: Sequence[dict[str, Any]], key: str = "p", out: str | None = None) -> list[dict[str, Any]]:
    """The ``tests`` (one family) with Holm-adjusted ``tests[i][key]`` added under ``out`` (default
    ``key + "_holm"``), in place; tests without ``key`` or with an undefined one get None."""
    out = out or f"{key}_holm"
    for test, adjusted in zip(tests, holm_bonferroni([t.get(key) for t in tests])):
        test[out] = adjusted
    return list(tests)


# ----------------------------------------------------------------------------- bootstrap


def _groups_index(groups: Any) -> tuple[np.ndarray, int]:
    """Group number (N,) of each element and the number of groups."""
    values = np.asarray(groups)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"groups must be a non-empty 1-D array (one patient id per element); got shape {values.shape}")
    _, inverse = np.unique(values.astype(str), return_inverse=True)
    return inverse.ravel(), int(inverse.max()) + 1


def patient_bootstrap_weights(groups: Any, n_resamples: int = DEFAULT_RESAMPLES,
                              seed: int = DEFAULT_SEED) -> np.ndarray:
    """Patient-grouped bootstrap resamples as per-element weights (n_resamples, N) float64.

    Each resample draws G patients with replacement from the G distinct ``groups`` (one patient id per
    element: image, or (image, reader) / (image, finding) pair); an element's weight is how often its patient
    was drawn, so all elements of a patient move together and no patient is ever split. Deterministic for
    a given ``seed`` (numpy ``default_rng``)."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples!r}")
    index, g = _groups_index(groups)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, g, size=(int(n_resamples), g))
    rows = np.arange(int(n_resamples))[:, None] * g
    counts = np.bincount((rows + draws).ravel(), minlength=int(n_resamples) * g).reshape(int(n_resamples), g)
    return counts[:, index].astype(np.float64)


def jackknife_weights(groups: Any) -> np.ndarray:
    """Leave-one-patient-out weights (G, N): row g is 0 on patient g's elements and 1 elsewhere."""
    index, g = _groups_index(groups)
    return (index[None, :] != np.arange(g)[:, None]).astype(np.float64)


def _as_rows(values: np.ndarray, b: int) -> np.ndarray:
    out = np.asarray(values, np.float64)
    return out.reshape(b, -1)


def bootstrap_interval(statistic: Statistic, groups: Any, n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE,
                       method: str = "percentile") -> list[dict[str, Any]] | None:
    """Patient-bootstrap intervals of the K statistics computed by ``statistic`` (see `Statistic`) on the
    elements grouped by patient ``groups``: one `interval_cell` per statistic (``value`` on the sample,
    ``ci`` [low, high] over the resamples where it is defined — an AUC is undefined on a resample without
    positives —, None when never defined; ``method``). ``method`` is ``percentile`` or ``bca``. Returns
    None when ``n_resamples`` is 0 (bootstrap off)."""
    if n_resamples == 0:
        return None
    return PatientBootstrap(groups, n_resamples, seed, method, confidence).interval(statistic)


def _bca_levels(theta: np.ndarray, value: float, jack: np.ndarray, alpha: float) -> list[float]:
    """BCa quantile levels (Efron 1987): bias correction z0 from the share of resamples below the sample
    value (ties half), acceleration from the leave-one-patient-out jackknife."""
    share = (np.sum(theta < value) + 0.5 * np.sum(theta == value)) / theta.size
    share = min(max(share, 0.5 / theta.size), 1 - 0.5 / theta.size)
    z0 = stats.norm.ppf(share)
    jack = jack[np.isfinite(jack)]
    d = jack.mean() - jack if jack.size else np.zeros(1)
    denominator = 6.0 * np.sum(d ** 2) ** 1.5
    a = float(np.sum(d ** 3) / denominator) if denominator > 0 else 0.0
    levels = []
    for q in (alpha, 1 - alpha):
        zq = stats.norm.ppf(q)
        levels.append(float(stats.norm.cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq)))))
    return levels


def bootstrap_paired_difference(statistic_a: Statistic, statistic_b: Statistic, groups: Any,
                                n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                                confidence: float = CONFIDENCE) -> dict[str, Any] | None:
    """Paired patient-bootstrap comparison of one statistic of two methods on the same elements (used where no
    closed-form test exists, e.g. the micro AUC): ``diff`` (a − b on the sample), percentile ``ci`` of the
    difference over the same resamples, ``p`` (two-sided: twice the smaller share of resampled differences
    on either side of 0, at least 1/(resamples+1)), ``method`` and ``resamples``; None when ``n_resamples``
    is 0."""
    if n_resamples == 0:
        return None
    weights = patient_bootstrap_weights(groups, n_resamples, seed)
    return _paired_difference(statistic_a, statistic_b, len(np.asarray(groups)), weights, confidence,
                              f"paired patient bootstrap ({n_resamples} resamples, seed {seed})")


def _paired_difference(statistic_a: Statistic, statistic_b: Statistic, n: int, weights: np.ndarray,
                       confidence: float, label: str) -> dict[str, Any]:
    ones = np.ones((1, n))
    diff = float(_as_rows(statistic_a(ones), 1)[0, 0] - _as_rows(statistic_b(ones), 1)[0, 0])
    d = _as_rows(statistic_a(weights), len(weights))[:, 0] - _as_rows(statistic_b(weights), len(weights))[:, 0]
    d = d[np.isfinite(d)]
    if not d.size or not math.isfinite(diff):
        return {"diff": diff if math.isfinite(diff) else None, "ci": None, "p": None, "method": label, "resamples": 0}
    alpha = (1 - confidence) / 2
    tail = min(np.mean(d <= 0), np.mean(d >= 0))
    p = float(min(1.0, max(2 * tail, 1.0 / (d.size + 1))))
    return {"diff": diff, "ci": [float(v) for v in np.quantile(d, [alpha, 1 - alpha])], "p": p, "method": label,
            "resamples": int(d.size)}


class PatientBootstrap:
    """One set of seeded patient resamples shared by every cell of a report, so that intervals of different
    methods and metrics come from the same resamples (and paired differences are paired). ``n_resamples``
    0 turns it off: `interval` and `mean` then return cells without an interval."""

    def __init__(self, groups: Any, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                 method: str = "percentile", confidence: float = CONFIDENCE) -> None:
        if method not in BOOTSTRAP_METHODS:
            raise ValueError(f"bootstrap method must be one of {BOOTSTRAP_METHODS}; got {method!r}")
        if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 0:
            raise ValueError(f"n_resamples must be a non-negative integer (0 = off); got {n_resamples!r}")
        self.groups = np.asarray(groups)
        self.n_resamples, self.seed, self.method, self.confidence = int(n_resamples), seed, method, confidence
        self._weights: np.ndarray | None = None
        self._jackknife: np.ndarray | None = None

    @property
    def enabled(self) -> bool:
        """Whether intervals are computed (``n_resamples`` > 0)."""
        return self.n_resamples > 0

    @property
    def label(self) -> str:
        """The method text stored with every interval."""
        if not self.enabled:
            return "no bootstrap (--bootstrap 0)"
        return (f"patient bootstrap ({self.method}, {self.n_resamples} resamples, seed {self.seed}, "
                f"{len(np.unique(self.groups.astype(str)))} patients)")

    @property
    def weights(self) -> np.ndarray:
        """The resamples as per-element weights (n_resamples, N) (`patient_bootstrap_weights`)."""
        if self._weights is None:
            self._weights = patient_bootstrap_weights(self.groups, self.n_resamples, self.seed)
        return self._weights

    def interval(self, statistic: Statistic) -> list[dict[str, Any]]:
        """`interval_cell` of each output of ``statistic``: its value on the sample and, when enabled, its
        patient-bootstrap interval (None where undefined)."""
        n = len(self.groups)
        value = _as_rows(statistic(np.ones((1, n))), 1)[0]
        if not self.enabled:
            return [interval_cell(v if math.isfinite(v) else None, None, self.label) for v in value]
        boot = _as_rows(statistic(self.weights), self.n_resamples)
        jack = None
        if self.method == "bca":
            if self._jackknife is None:
                self._jackknife = jackknife_weights(self.groups)
            jack = _as_rows(statistic(self._jackknife), len(self._jackknife))
        alpha = (1 - self.confidence) / 2
        cells = []
        for k in range(boot.shape[1]):
            theta = boot[:, k][np.isfinite(boot[:, k])]
            ci = None
            if theta.size and math.isfinite(value[k]):
                levels = [alpha, 1 - alpha] if jack is None else _bca_levels(theta, float(value[k]), jack[:, k], alpha)
                ci = [float(v) for v in np.quantile(theta, levels)]
            cells.append(interval_cell(value[k] if math.isfinite(value[k]) else None, ci, self.label))
        return cells

    def mean(self, values: Any) -> dict[str, Any]:
        """`interval_cell` of the mean of the finite per-element ``values``."""
        return self.interval(weighted_mean(values))[0]

    def paired_difference(self, statistic_a: Statistic, statistic_b: Statistic) -> dict[str, Any] | None:
        """`bootstrap_paired_difference` on these resamples (None when disabled)."""
        if not self.enabled:
            return None
        return _paired_difference(statistic_a, statistic_b, len(self.groups), self.weights, self.confidence,
                                  self.label)


# ----------------------------------------------------------------------------- weighted statistics


def weighted_mean(values: Any) -> Statistic:
    """The weighted mean of per-element ``values`` over the finite ones: (N,) → B values, or (N, K) → (B, K)
    (K means from one matrix product; NaN where no weight falls on a finite value)."""
    v = _to_float64(values, "values")
    if v.ndim not in (1, 2):
        raise ValueError(f"values must be (N,) or (N, K); got shape {v.shape}")
    finite = np.isfinite(v)
    v0, count = np.where(finite, v, 0.0), finite.astype(np.float64)

    def statistic(w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, np.float64)
        total = w @ count
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (w @ v0) / np.where(total > 0, total, 1.0), np.nan)

    return statistic


def weighted_accuracy(labels: Any, probs: Any) -> Statistic:
    """The weighted share of elements whose arg-max class of ``probs`` (N, K) is ``labels`` (N,)."""
    p = _to_float64(probs, "probs")
    return weighted_mean((p.argmax(axis=1) == np.asarray(labels)).astype(np.float64))


def weighted_auc(y_true: Any, scores: Any) -> Statistic:
    """The ROC AUC (ties one half) of ``scores`` (N,) for binary ``y_true`` (N,) with per-element weights
    (each resample counts an element as often as its weight); NaN where a resample has no positive or no
    negative. Vectorised: one sort, then cumulative weighted counts of negatives per resample (in chunks
    of `_CHUNK` resamples, to stay in cache)."""
    y = _to_float64(y_true, "y_true").ravel() > 0.5
    s = _to_float64(scores, "scores").ravel()
    _check_same_shape(y, s, "y_true", "scores")
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    pos, neg = y[order].astype(np.float64), (~y[order]).astype(np.float64)
    new_value = np.concatenate([[True], sorted_s[1:] != sorted_s[:-1]])
    ties = not new_value.all()
    starts, tie_of = np.flatnonzero(new_value), np.cumsum(new_value) - 1

    def chunk(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        wneg = ws * neg
        if ties:  # negatives strictly below each value, plus half of those tied with it
            per_value = np.add.reduceat(wneg, starts, axis=1)
            credit = (np.cumsum(per_value, axis=1) - 0.5 * per_value)[:, tie_of]
        else:  # a positive's credit is every negative before it in the sorted order
            credit = np.cumsum(wneg, axis=1)
        wpos = ws * pos
        total_pos, total_neg = wpos.sum(axis=1), wneg.sum(axis=1)
        num = np.einsum("ij,ij->i", wpos, credit)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((total_pos > 0) & (total_neg > 0), num / (total_pos * total_neg), np.nan)

    def statistic(w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, np.float64)
        return np.concatenate([chunk(w[i:i + _CHUNK]) for i in range(0, len(w), _CHUNK)]) if len(w) else np.zeros(0)

    return statistic


def weighted_macro_auc(targets: Any, probs: Any) -> Statistic:
    """Per-column AUCs of ``probs`` (N, K) against binary ``targets`` (N, K) (or integer labels (N,)), and
    their mean over the columns defined in the resample; returns (B, K + 1): the K AUCs, then the macro."""
    p = _to_float64(probs, "probs")
    t = _to_float64(targets, "targets")
    t = np.eye(p.shape[1])[t.astype(np.int64)] if t.ndim == 1 else (t > 0.5).astype(np.float64)
    columns = [weighted_auc(t[:, k], p[:, k]) for k in range(p.shape[1])]

    def statistic(w: np.ndarray) -> np.ndarray:
        per = np.stack([c(w) for c in columns], axis=1)
        defined = np.isfinite(per)
        count = defined.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            macro = np.where(count > 0, np.where(defined, per, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
        return np.concatenate([per, macro[:, None]], axis=1)

    return statistic


def weighted_micro_auc(targets: Any, probs: Any) -> Statistic:
    """The micro AUC: the AUC of all (element, class) entries of ``probs`` (N, K) against one-hot labels (N,)
    or binary ``targets`` (N, K), an element's K entries sharing its weight."""
    p = _to_float64(probs, "probs")
    t = _to_float64(targets, "targets")
    t = np.eye(p.shape[1])[t.astype(np.int64)] if t.ndim == 1 else (t > 0.5).astype(np.float64)
    k = p.shape[1]
    inner = weighted_auc(t.ravel(), p.ravel())
    return lambda w: inner(np.repeat(np.asarray(w, np.float64), k, axis=1))


def weighted_ece(labels: Any, probs: Any, n_bins: int = 10) -> Statistic:
    """Expected calibration error of the arg-max confidence (equal-width bins (lo, hi] over [0, 1], as
    ``classification_metrics``) with per-element weights."""
    p = _to_float64(probs, "probs")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    onehot = np.eye(n_bins)[np.digitize(confidence, edges[1:-1], right=True)]

    def statistic(w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, np.float64)
        gap = w @ (onehot * (correct - confidence)[:, None])
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, np.abs(gap).sum(axis=1) / total, np.nan)

    return statistic


# ----------------------------------------------------------------------------- cells


def interval_cell(value: float | None, ci: Sequence[float] | None, method: str) -> dict[str, Any]:
    """One table cell as metrics.json stores it: ``value``, ``ci`` [low, high] (None when not computed) and
    the ``method`` of the interval."""
    return {"value": None if value is None else float(value),
            "ci": None if ci is None else [float(ci[0]), float(ci[1])], "method": method}


def mean_interval(values: Any, groups: Any, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                  method: str = "percentile", confidence: float = CONFIDENCE) -> dict[str, Any]:
    """`interval_cell` of the mean of the finite per-element ``values`` with its patient-bootstrap interval
    (``ci`` None when ``n_resamples`` is 0)."""
    return PatientBootstrap(groups, n_resamples, seed, method, confidence).mean(values)


def format_interval(cell: Mapping[str, Any] | None, digits: int = 3, missing: str = "—") -> str:
    """A cell as text: ``0.925 [0.880, 0.960]``, the value alone without an interval, ``missing`` without a
    value."""
    if cell is None or cell.get("value") is None or not math.isfinite(cell["value"]):
        return missing
    text = f"{cell['value']:.{digits}f}"
    ci = cell.get("ci")
    if ci is not None and all(c is not None and math.isfinite(c) for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


# ----------------------------------------------------------------------------- seeds


def seed_summary(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Per-seed values summarised: ``mean``, sample ``std`` (ddof = 1; None for one seed), ``per_seed``, and
    ``ci``, the Student-t interval of the mean over seeds (None for one seed), with its ``method``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"seed_summary needs a non-empty 1-D sequence of per-seed values; got shape {array.shape}")
    mean = float(np.mean(array))
    std = float(np.std(array, ddof=1)) if array.size > 1 else None
    ci = None
    if std is not None:
        half = float(stats.t.ppf(0.5 + confidence / 2, array.size - 1)) * std / math.sqrt(array.size)
        ci = [mean - half, mean + half]
    return {"mean": mean, "std": std, "per_seed": [float(v) for v in array], "ci": ci,
            "method": f"t interval of the mean over {array.size} seeds"}


# ----------------------------------------------------------------------------- several models


def _named_samples(samples: Mapping[str, Any]) -> tuple[list[str], list[np.ndarray]]:
    names = list(samples)
    arrays = [_to_float64(samples[n], n).ravel() for n in names]
    arrays = [a[np.isfinite(a)] for a in arrays]
    if len(names) < 2 or any(a.size < 2 for a in arrays):
        raise ValueError("one-way ANOVA and Tukey's HSD need at least 2 groups of at least 2 finite values; got "
                         + ", ".join(f"{n}: {a.size}" for n, a in zip(names, arrays)))
    return names, arrays


def one_way_anova(samples: Mapping[str, Any]) -> dict[str, Any]:
    """One-way ANOVA (``scipy.stats.f_oneway``) of per-element scores of several models (name → scores;
    NaNs dropped): ``F``, ``p``, ``df_between``, ``df_within``, ``groups`` and ``method``. It treats the
    groups as independent samples (the explanation study's convention)."""
    names, arrays = _named_samples(samples)
    res = stats.f_oneway(*arrays)
    n = sum(a.size for a in arrays)
    return {"F": float(res.statistic), "p": float(res.pvalue), "df_between": len(arrays) - 1,
            "df_within": n - len(arrays), "groups": names, "method": "one-way ANOVA"}


def tukey_hsd(samples: Mapping[str, Any], confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Tukey's honestly significant difference test (``scipy.stats.tukey_hsd``) of every pair of models
    (name → scores; NaNs dropped): per pair ``a``, ``b``, ``diff`` (mean a − mean b), its simultaneous
    ``ci`` and the family-wise adjusted ``p``, and ``method``."""
    names, arrays = _named_samples(samples)
    res = stats.tukey_hsd(*arrays)
    ci = res.confidence_interval(confidence_level=confidence)
    return [{"a": names[i], "b": names[j], "diff": float(res.statistic[i, j]),
             "ci": [float(ci.low[i, j]), float(ci.high[i, j])], "p": float(res.pvalue[i, j]),
             "method": "Tukey HSD"}
            for i in range(len(names)) for j in range(i + 1, len(names))]
