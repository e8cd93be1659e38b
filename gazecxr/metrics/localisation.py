"""Localisation metrics: does a map (saliency, Grad-CAM, gaze, centre bias) fall on a finding's region?

Every metric takes a non-negative map ``(H, W)`` and a boolean region mask of the same shape
(returns a Python float), or batches ``(N, H, W)`` of both (returns a float64 array of N values).
Regions come from the finding's ellipses (``ellipse_mask``) or from anatomical masks.

Conventions shared by the threshold-based metrics (Diff, EHR-AUC, top-k IoU): the map is first
min–max normalised to [0, 1] (``normalise_maps``); pixels at the map's floor (value 0 after
normalisation) carry no heat. A constant map — uniform, or an all-zero Grad-CAM — has no location:
it normalises to 1 everywhere, and every metric then gives its chance value (the region's share of
the canvas for the pointing games, EHR-AUC and IoU; 0 for Diff).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from gazecxr.metrics._arrays import _as_map_batch, _to_float64, finite_rows, score_rows
from gazecxr.metrics.statistics import paired_ttest

__all__ = [
    "BOX_HIT",
    "EHR_THRESHOLDS",
    "IOU_THRESHOLDS",
    "LOCALISATION_METRICS",
    "THRESHOLD_METRICS",
    "TOP_K_PERCENT",
    "box_iobb",
    "box_iou",
    "compare_localisation",
    "diff_inside_outside",
    "ehr_auc",
    "ehr_curve",
    "ellipse_mask",
    "energy_pointing_game",
    "finding_regions",
    "largest_component_box",
    "localisation_scores",
    "normalise_maps",
    "pointing_game",
    "summarise",
    "threshold_scores",
    "thresholded_maps",
    "top_k_iou",
]

TOP_K_PERCENT: tuple[int, ...] = (5, 10, 20)
"""Sizes (percent of the canvas) of the map's top region scored by IoU against the finding's region."""

EHR_THRESHOLDS: int = 100
"""Number of equidistant thresholds j / n, j = 1 … n, over which the Effective Heat Ratio is integrated."""

LOCALISATION_METRICS: tuple[str, ...] = (
    "pointing_game", "energy_pointing_game", "diff", "ehr_auc", *(f"iou_top{k}" for k in TOP_K_PERCENT)
)
"""Keys of ``localisation_scores``; every one is higher-is-better."""


# ----------------------------------------------------------------------------- inputs


def ellipse_mask(boxes: Any, shape: tuple[int, int]) -> np.ndarray:
    """Union of the axis-aligned ellipses inscribed in ``boxes`` (K, 4) = xmin, ymin, xmax, ymax,
    rasterised on an ``(H, W)`` canvas.

    Coordinates are continuous canvas coordinates with pixel centres at integers (x = column,
    y = row, as ``Letterbox.to_canvas_coords`` gives them). A pixel belongs to an ellipse when its
    centre satisfies ((x − cx)/a)² + ((y − cy)/b)² ≤ 1, with centre (cx, cy) the box centre and
    semi-axes a, b half the box width and height, each at least 0.5 pixel so that even a degenerate
    box marks the pixel it lies on. Parts outside the canvas are cut off; zero boxes give an empty mask.
    """
    h, w = (int(v) for v in shape)
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive (H, W); got {shape}")
    b = _to_float64(boxes, "boxes")
    if b.size == 0:
        return np.zeros((h, w), bool)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) as xmin, ymin, xmax, ymax; got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes contain NaN or infinite coordinates")
    bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    if bad.size:
        raise ValueError(f"box {int(bad[0])} has xmax < xmin or ymax < ymin: {b[bad[0]].tolist()}")
    mask = np.zeros((h, w), bool)
    for xmin, ymin, xmax, ymax in b:
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        a, bb = max((xmax - xmin) / 2, 0.5), max((ymax - ymin) / 2, 0.5)
        r0, r1 = max(0, math.ceil(cy - bb)), min(h, math.floor(cy + bb) + 1)
        c0, c1 = max(0, math.ceil(cx - a)), min(w, math.floor(cx + a) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        y = (np.arange(r0, r1) - cy)[:, None] / bb
        x = (np.arange(c0, c1) - cx)[None, :] / a
        mask[r0:r1, c0:c1] |= x * x + y * y <= 1.0
    return mask


def finding_regions(boxes: Any, box_labels: Any, shape: tuple[int, int]) -> np.ndarray:
    """Per finding, the union of the ellipses labelled with it: (F, H, W) bool from ``boxes`` (K, 4)
    and ``box_labels`` (K, F) bool (an ellipse may carry several findings, as REFLACX's do)."""
    b = _to_float64(boxes, "boxes").reshape(-1, 4)
    labels = np.asarray(box_labels, bool)
    if labels.ndim != 2 or labels.shape[0] != b.shape[0]:
        raise ValueError(f"box_labels must have shape (K, F) with K = {b.shape[0]} boxes; got {labels.shape}")
    return np.stack([ellipse_mask(b[labels[:, f]], shape) for f in range(labels.shape[1])]) if labels.shape[1] \
        else np.zeros((0, *shape), bool)


class _Batch:
    """Validated maps (N, H*W) float64 non-negative and regions (N, H*W) bool non-empty, with the
    normalised maps and their per-row sort computed once for all metrics."""

    def __init__(self, maps: Any, regions: Any) -> None:
        m_arr = _to_float64(maps, "maps")
        r_arr = np.asarray(regions)
        if r_arr.dtype != bool:
            if not np.all((r_arr == 0) | (r_arr == 1)):
                raise ValueError("regions must be boolean masks (values 0 or 1)")
            r_arr = r_arr.astype(bool)
        if m_arr.shape != r_arr.shape:
            raise ValueError(f"maps and regions must have the same shape; got {m_arr.shape} and {r_arr.shape}")
        self.m, self.single = _as_map_batch(m_arr, "maps")
        self.r = r_arr.reshape(self.m.shape)
        negative = np.flatnonzero(self.m.min(axis=1) < 0)
        if negative.size:
            raise ValueError(f"map {int(negative[0])} has negative values; localisation needs a non-negative map")
        empty = np.flatnonzero(~self.r.any(axis=1))
        if empty.size:
            raise ValueError(f"region {int(empty[0])} is empty; localisation needs at least one region pixel")

    @cached_property
    def n(self) -> np.ndarray:
        """Min–max normalised maps; constant maps are 1 everywhere."""
        return _normalised(self.m)

    @cached_property
    def n_sorted(self) -> np.ndarray:
        """Each normalised map's values in ascending order."""
        return np.sort(self.n, axis=1)

    def result(self, values: np.ndarray) -> float | np.ndarray:
        return float(values[0]) if self.single else values


def _normalised(m: np.ndarray) -> np.ndarray:
    lo = m.min(axis=1, keepdims=True)
    span = m.max(axis=1, keepdims=True) - lo
    constant = span[:, 0] == 0
    span[constant] = 1.0
    out = m - lo
    out /= span
    out[constant] = 1.0
    return out


def normalise_maps(maps: Any) -> np.ndarray:
    """Min–max normalisation of each map to [0, 1]; a constant map becomes 1 everywhere."""
    arr = _to_float64(maps, "maps")
    m, _ = _as_map_batch(arr, "maps")
    return _normalised(m).reshape(arr.shape)


# ---------------------------------------------------------------------------- metrics


def _pointing(b: _Batch) -> np.ndarray:
    peaks = b.m == b.m.max(axis=1, keepdims=True)
    return (peaks & b.r).sum(axis=1) / peaks.sum(axis=1)


def pointing_game(maps: Any, regions: Any) -> float | np.ndarray:
    """Pointing game: 1 when the map's peak lies inside the region, else 0.

    Ties: when several pixels share the maximum, the score is the share of them inside the region —
    the expected hit of a peak chosen at random among them (a uniform map scores the region's area
    share). No tolerance margin around the region is applied.
    """
    b = _Batch(maps, regions)
    return b.result(_pointing(b))


def _energy(b: _Batch) -> np.ndarray:
    total = b.m.sum(axis=1)
    zero = total == 0
    inside = np.where(zero, b.r.sum(axis=1), np.sum(b.m, axis=1, where=b.r))
    return inside / np.where(zero, b.r.shape[1], total)


def energy_pointing_game(maps: Any, regions: Any) -> float | np.ndarray:
    """Energy-based pointing game: the share of the map's mass (raw values) inside the region.

    A constant map (including all zeros) scores the region's area share.
    """
    b = _Batch(maps, regions)
    return b.result(_energy(b))


def _diff(b: _Batch) -> np.ndarray:
    n_in = b.r.sum(axis=1)
    full = np.flatnonzero(n_in == b.r.shape[1])
    if full.size:
        raise ValueError(f"region {int(full[0])} covers the whole map; Diff needs pixels outside the region")
    inside = np.sum(b.n, axis=1, where=b.r)
    return inside / n_in - (b.n.sum(axis=1) - inside) / (b.r.shape[1] - n_in)


def diff_inside_outside(maps: Any, regions: Any) -> float | np.ndarray:
    """Diff (seeds/002, section 3.3.4): mean of the min–max normalised map inside the region minus
    its mean outside, in [−1, 1]; positive when the heat accumulates on the region. Normalising
    first (the seed scores Grad-CAMs in [0, 1]) makes maps of different scales comparable — a gaze
    distribution summing to 1 and a Grad-CAM would otherwise differ by orders of magnitude.

    The region must leave at least one pixel outside it.
    """
    b = _Batch(maps, regions)
    return b.result(_diff(b))


def _check_thresholds(n_thresholds: int) -> None:
    if isinstance(n_thresholds, bool) or not isinstance(n_thresholds, (int, np.integer)) or n_thresholds < 1:
        raise ValueError(f"n_thresholds must be a positive integer; got {n_thresholds!r}")


def _ehr(b: _Batch, n_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    _check_thresholds(n_thresholds)
    thresholds = np.arange(1, n_thresholds + 1) / n_thresholds
    ehr = np.empty((b.n.shape[0], n_thresholds))
    for i, (everything, row, inside) in enumerate(zip(b.n_sorted, b.n, b.r)):
        within = np.sort(row[inside])
        above_all = everything.size - np.searchsorted(everything, thresholds, side="left")
        above_in = within.size - np.searchsorted(within, thresholds, side="left")
        ehr[i] = above_in / above_all
    return thresholds, ehr


def ehr_curve(maps: Any, regions: Any, n_thresholds: int = EHR_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Effective Heat Ratio (seeds/002, section 3.3.4, after Wollek et al.) at each threshold.

    Returns ``thresholds`` (T,) = j / T for j = 1 … T and ``ehr`` ((T,) for one map, (N, T) for a
    batch): EHR(t) = |{p ∈ region : m̂(p) ≥ t}| / |{p : m̂(p) ≥ t}| with m̂ the min–max normalised
    map (DESIGN.md's definition). The thresholded area is never empty, since the peak has m̂ = 1, and
    never holds the map's floor (m̂ = 0).
    """
    b = _Batch(maps, regions)
    thresholds, ehr = _ehr(b, n_thresholds)
    return thresholds, (ehr[0] if b.single else ehr)


def ehr_auc(maps: Any, regions: Any, n_thresholds: int = EHR_THRESHOLDS) -> float | np.ndarray:
    """EHR-AUC (seeds/002, section 3.3.4): the area under the Effective Heat Ratio over thresholds
    t ∈ (0, 1], as the mean of ``ehr_curve`` over its T equidistant thresholds (the rectangle rule).
    The seed gives neither the normalisation nor the number of thresholds; min–max normalisation
    (Grad-CAM's convention, which its Diff values in [−1, 1] imply) and T = ``EHR_THRESHOLDS`` are ours.

    1 when all the map's heat lies inside the region, 0 when all of it lies outside, the region's
    area share for a constant map.
    """
    b = _Batch(maps, regions)
    return b.result(_ehr(b, n_thresholds)[1].mean(axis=1))


def _top_k(b: _Batch, k: float) -> np.ndarray:
    if not 0 < k <= 100:
        raise ValueError(f"k must be a percentage in (0, 100]; got {k!r}")
    count = math.ceil(k * b.n.shape[1] / 100)
    cutoff = b.n_sorted[:, -count:-count + 1 or None]
    top = (b.n >= cutoff) & (b.n > 0)
    return (top & b.r).sum(axis=1) / (top | b.r).sum(axis=1)


def top_k_iou(maps: Any, regions: Any, k: float) -> float | np.ndarray:
    """IoU of the map's top-``k`` % region with the region.

    The top region holds the pixels of the normalised map m̂ at least as hot as the ⌈k·H·W/100⌉-th
    hottest pixel (ties at the boundary are all included), excluding the map's floor (m̂ = 0): a map
    hot on fewer than k % of the pixels contributes only its hot pixels. A constant map's top region
    is the whole canvas.
    """
    b = _Batch(maps, regions)
    return b.result(_top_k(b, k))


def localisation_scores(maps: Any, regions: Any, n_thresholds: int = EHR_THRESHOLDS) -> dict[str, np.ndarray]:
    """Every metric of ``LOCALISATION_METRICS`` for a batch (N, H, W) of maps and regions, N values each."""
    if np.ndim(maps) != 3:
        raise ValueError(f"maps must be a batch (N, H, W); got shape {np.shape(maps)}")
    b = _Batch(maps, regions)
    scores = {"pointing_game": _pointing(b), "energy_pointing_game": _energy(b), "diff": _diff(b),
              "ehr_auc": _ehr(b, n_thresholds)[1].mean(axis=1)}
    scores.update({f"iou_top{k}": _top_k(b, k) for k in TOP_K_PERCENT})
    return scores


# --------------------------------------------------------------------------- comparison


def summarise(values: np.ndarray) -> dict[str, float | int]:
    """Mean, population std and count of the finite per-sample scores (NaN mean and std when there are none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": int(values.size)}


def compare_localisation(
    maps: Mapping[str, Any],
    regions: Any,
    findings: Sequence[str],
    reference: str | None = None,
    n_thresholds: int = EHR_THRESHOLDS,
) -> dict[str, Any]:
    """Score several methods' maps against the same findings' regions and compare them.

    ``maps`` maps a method name to its maps (N, H, W); row i of every method, of ``regions``
    (N, H, W) and of ``findings`` (N finding names) is one (image, finding) pair; a row of NaN means
    the method has no map for that pair (e.g. the gaze of a film read without an eye tracker): it scores
    NaN and is left out of the method's summaries and tests. Returns a
    JSON-serialisable dict:

    - ``n``, ``metrics`` (``LOCALISATION_METRICS``), ``findings`` (sorted distinct names);
    - ``methods``: {method: {metric: {"overall": {mean, std, n}, "per_finding": {finding: {mean, std, n}}}}};
    - ``tests``: paired two-sided t-tests (``gazecxr.metrics.paired_ttest``) of ``reference`` (default:
      the first method) against every other method, per metric, over all pairs (``finding`` None)
      and within each finding with at least two pairs both methods scored: records {a, b, metric, finding, t,
      p, mean_diff, n};
    - ``scores``: {method: {metric: [N per-pair values]}}.
    """
    if not maps:
        raise ValueError("no methods to compare: maps is empty")
    names = list(findings)
    scores: dict[str, dict[str, np.ndarray]] = {}
    for method, method_maps in maps.items():
        arr = _to_float64(method_maps, f"maps[{method!r}]")
        if arr.ndim != 3 or arr.shape[0] != len(names):
            raise ValueError(f"maps[{method!r}] must have shape (N, H, W) with N = {len(names)} findings; "
                             f"got {arr.shape}")
        try:
            region_arr = np.asarray(regions)
            scores[method] = score_rows(finite_rows(arr), lambda rows: localisation_scores(
                arr[rows], region_arr[rows], n_thresholds), LOCALISATION_METRICS)
        except ValueError as err:
            raise ValueError(f"method {method!r}: {err}") from err
    reference = next(iter(maps)) if reference is None else reference
    if reference not in scores:
        raise ValueError(f"reference method {reference!r} is not among {list(scores)}")
    labels = np.asarray(names, dtype=object)
    distinct = sorted(set(names))
    groups = {f: labels == f for f in distinct}
    methods = {
        method: {metric: {"overall": summarise(v), "per_finding": {f: summarise(v[sel]) for f, sel in groups.items()}}
                 for metric, v in by_metric.items()}
        for method, by_metric in scores.items()
    }
    tests = []
    for other in scores:
        if other == reference:
            continue
        for metric in LOCALISATION_METRICS:
            a, b = scores[reference][metric], scores[other][metric]
            both = np.isfinite(a) & np.isfinite(b)
            subsets = [(None, both)] + [(f, sel & both) for f, sel in groups.items()]
            tests += [{"a": reference, "b": other, "metric": metric, "finding": f, **paired_ttest(a[sel], b[sel])}
                      for f, sel in subsets if sel.sum() >= 2]
    return {
        "n": len(names),
        "metrics": list(LOCALISATION_METRICS),
        "findings": distinct,
        "methods": methods,
        "tests": tests,
        "scores": {method: {metric: v.tolist() for metric, v in by_metric.items()}
                   for method, by_metric in scores.items()},
    }


# ------------------------------------------------------------------ thresholded maps and boxes

IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
"""Thresholds t of the min–max normalised map at which its region {m̂ > t} is compared with the ground
truth (Li et al. 2018, as NIH ChestX-ray14 localisation papers report them)."""

BOX_HIT: float = 0.5
"""A CAM box counts as a hit when its IoU (T(IoU)), or its IoBB (T(IoBB)), with a ground-truth box is ≥ this."""

THRESHOLD_METRICS: tuple[str, ...] = ("iou", "dice", "box_iou", "iobb", "box_hit", "iobb_hit")
"""Keys of ``threshold_scores``: (N, T) arrays, one column per threshold; the box ones need ground-truth boxes."""


def thresholded_maps(maps: Any, threshold: float) -> np.ndarray:
    """Boolean regions {m̂ > ``threshold``} of min–max normalised maps (the NIH papers' T(x, a): a pixel is in
    the localisation when its value exceeds a·max; strict, so t = 1 gives empty regions). A constant map
    (normalised to 1 everywhere) is all in for t < 1."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1]; got {threshold!r}")
    return normalise_maps(maps) > threshold


def _union_iou_dice(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inter = (a & b).sum(axis=1).astype(np.float64)
    union = (a | b).sum(axis=1)
    total = a.sum(axis=1) + b.sum(axis=1)
    return inter / np.maximum(union, 1), 2 * inter / np.maximum(total, 1)


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU of boxes ``a`` (K, 4) and ``b`` (M, 4) as xmin, ymin, xmax, ymax (continuous coordinates): (K, M)."""
    a, b = _to_float64(a, "boxes").reshape(-1, 4), _to_float64(b, "boxes").reshape(-1, 4)
    inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_iobb(pred: Any, truth: Any) -> np.ndarray:
    """Intersection over the predicted box's area (IoBB, Wang et al. 2017) of ``pred`` (K, 4) against
    ``truth`` (M, 4): (K, M); 0 for an empty predicted box."""
    p, t = _to_float64(pred, "boxes").reshape(-1, 4), _to_float64(truth, "boxes").reshape(-1, 4)
    area = _area(p)
    return np.where(area[:, None] > 0, _intersection(p, t) / np.where(area > 0, area, 1)[:, None], 0.0)


def _area(x: np.ndarray) -> np.ndarray:
    return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def largest_component_box(mask: Any) -> np.ndarray | None:
    """Bounding box [xmin, ymin, xmax, ymax] in pixel-edge coordinates (a pixel (r, c) spans
    [c, c + 1] × [r, r + 1]) of the largest 8-connected component of a boolean (H, W) mask (the
    first in scan order among equally large ones); None for an empty mask."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {m.shape}")
    labels, count = ndimage.label(m, structure=np.ones((3, 3), int))
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float64)


def threshold_scores(maps: Any, regions: Any, boxes: Sequence[Any] | None = None,
                     thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, np.ndarray]:
    """Per (map, threshold) overlap of the thresholded map with the ground truth, (N, T) arrays:

    - ``iou``, ``dice``: of the region {m̂ > t} with the ground-truth ``regions`` (N, H, W) (seed 003's IoU);
    - with ``boxes`` (N sequences of (K, 4) ground-truth boxes, pixel-edge coordinates of the same canvas):
      ``box_iou`` and ``iobb`` of the box around the largest connected component of {m̂ > t} with the best
      matching ground-truth box, and the hit rates ``box_hit`` (IoU ≥ `BOX_HIT`, T(IoU)) and ``iobb_hit``
      (IoBB ≥ `BOX_HIT`, T(IoBB)). An empty thresholded map scores 0. Without boxes they are NaN.

    One map (H, W) gives (T,) arrays; its ``boxes`` is then a one-element sequence.
    """
    b = _Batch(maps, regions)
    t = [float(v) for v in thresholds]
    if not t:
        raise ValueError("thresholds must not be empty")
    n, shape = b.n.shape[0], np.shape(maps)[-2:]
    if boxes is not None and len(boxes) != n:
        raise ValueError(f"boxes must hold one (K, 4) array per map: {n} maps, {len(boxes)} box sets")
    out = {key: np.full((n, len(t)), np.nan) for key in THRESHOLD_METRICS}
    for j, threshold in enumerate(t):
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must lie in [0, 1]; got {threshold!r}")
        above = b.n > threshold
        out["iou"][:, j], out["dice"][:, j] = _union_iou_dice(above, b.r)
        if boxes is None:
            continue
        for i in range(n):
            truth = _to_float64(boxes[i], f"boxes[{i}]").reshape(-1, 4)
            if not len(truth):
                raise ValueError(f"boxes[{i}] is empty; every scored pair needs a ground-truth box")
            box = largest_component_box(above[i].reshape(shape))
            iou = 0.0 if box is None else float(box_iou(box, truth).max())
            iobb = 0.0 if box is None else float(box_iobb(box, truth).max())
            out["box_iou"][i, j], out["iobb"][i, j] = iou, iobb
            out["box_hit"][i, j], out["iobb_hit"][i, j] = float(iou >= BOX_HIT), float(iobb >= BOX_HIT)
    return {key: (v[0] if b.single else v) for key, v in out.items()}
