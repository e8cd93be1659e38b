"""Input checks shared by the metrics: float64 conversion, map batches, distributions, and the scoring of
a batch's rows that have a map."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

EPS: float = 2.2204e-16
"""Regulariser of the KL divergence (MIT saliency benchmark value)."""


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


def finite_rows(maps: Any) -> np.ndarray:
    """Boolean (N,): which maps of a batch (N, ...) hold no NaN or infinity."""
    arr = np.asarray(maps)
    return np.isfinite(arr).reshape(len(arr), -1).all(axis=1)


def score_rows(keep: np.ndarray, score: Callable[[np.ndarray], dict[str, np.ndarray]],
               keys: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """``score(rows)`` (per-row values of the rows ``rows``) for the rows where ``keep`` is true, NaN in
    the others; ``keys`` are present (all NaN) even when no row is kept."""
    rows = np.flatnonzero(keep)
    scored = score(rows) if rows.size else {}
    out = {key: np.full(len(keep), np.nan) for key in (*keys, *scored)}
    for key, values in scored.items():
        out[key][rows] = values
    return out
