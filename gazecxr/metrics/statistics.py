"""Significance tests for paired comparisons of methods on the same test images."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from gazecxr.metrics._arrays import _check_same_shape, _to_float64


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
