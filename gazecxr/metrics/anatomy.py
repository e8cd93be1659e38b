"""Where maps put their mass anatomically: share of each map in the lungs, the heart/mediastinum and
elsewhere, per diagnosis class and method (does the model look at the heart in CHF like the radiologist?).

The regions are the canvas masks a converted EGD-CXR file stores (``gazecxr.data.convert.MASK_GROUPS``:
``lung_mask`` = left ∪ right lung, ``heart_mask`` = mediastinum), as ``GazeCXRDataset(masks=True)``
yields them. Records whose masks are missing (all False) are left out and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gazecxr import CLASS_NAMES
from gazecxr.metrics._arrays import _to_float64
from gazecxr.metrics.localisation import energy_pointing_game, summarise
from gazecxr.metrics.statistics import paired_ttest

__all__ = ["ELSEWHERE", "mass_shares", "anatomy_by_class"]

ELSEWHERE = "elsewhere"
"""Key of the share of a map's mass outside every given region."""


def _mask_batch(masks: Mapping[str, Any], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    if not masks:
        raise ValueError("no anatomical regions given: masks is empty")
    if ELSEWHERE in masks:
        raise ValueError(f"{ELSEWHERE!r} is reserved for the share outside every region; rename that mask")
    out = {}
    for name, mask in masks.items():
        arr = np.asarray(mask)
        if arr.shape != shape:
            raise ValueError(f"mask {name!r} has shape {arr.shape}; the maps have shape {shape}")
        if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"mask {name!r} must be boolean (values 0 or 1)")
        out[name] = arr.astype(bool)
    return out


def mass_shares(maps: Any, masks: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Share of each map's mass inside each region, and ``ELSEWHERE`` (outside all of them).

    ``maps`` (N, H, W) non-negative; ``masks`` {region: (N, H, W) bool}. Returns {region: (N,)}
    float64 plus ``ELSEWHERE``; a record with an empty mask has NaN everywhere. A constant map
    (uniform or all zero) is spread evenly, so its shares are the regions' area shares. Overlapping
    regions share the mass they overlap on; ``ELSEWHERE`` + the share of the regions' union is 1.
    """
    m = _to_float64(maps, "maps")
    if m.ndim != 3:
        raise ValueError(f"maps must be a batch (N, H, W); got shape {m.shape}")
    regions = _mask_batch(masks, m.shape)
    valid = np.all([r.reshape(len(m), -1).any(axis=1) for r in regions.values()], axis=0)
    out = {name: np.full(len(m), np.nan) for name in (*regions, ELSEWHERE)}
    if valid.any():
        for name, region in regions.items():
            out[name][valid] = energy_pointing_game(m[valid], region[valid])
        union = np.logical_or.reduce(list(regions.values()))
        out[ELSEWHERE][valid] = 1.0 - energy_pointing_game(m[valid], union[valid])
    return out


def anatomy_by_class(
    maps: Mapping[str, Any],
    masks: Mapping[str, Any],
    labels: Any,
    class_names: Sequence[str] = CLASS_NAMES,
    reference: str | None = None,
) -> dict[str, Any]:
    """Mass shares of several methods' maps per anatomical region, per class and over all records.

    ``maps`` {method: (N, H, W)} over the same records (e.g. "gaze", "full", "gradcam"); ``masks`` as
    in ``mass_shares``; ``labels`` (N,) class indices into ``class_names``. Returns a JSON-serialisable dict:

    - ``n`` (records scored), ``skipped`` (records without masks), ``regions`` (with ``ELSEWHERE``), ``classes``;
    - ``methods``: {method: {class or "all": {region: {mean, std, n}}}};
    - ``tests``: paired t-tests (``gazecxr.metrics.paired_ttest``) of ``reference`` (default "gaze" when
      present, else the first method) against every other method, per region, within each class with at
      least two records (``class``) and over all records (``class`` None): {a, b, region, class, t, p, mean_diff, n}.
    """
    if not maps:
        raise ValueError("no methods given: maps is empty")
    y = _to_float64(labels, "labels")
    names = list(class_names)
    if y.ndim != 1 or not np.all(y == np.round(y)) or (y.size and (y.min() < 0 or y.max() >= len(names))):
        raise ValueError(f"labels must be a 1-D array of class indices in [0, {len(names) - 1}]")
    shares: dict[str, dict[str, np.ndarray]] = {}
    for method, method_maps in maps.items():
        arr = _to_float64(method_maps, f"maps[{method!r}]")
        if arr.ndim != 3 or arr.shape[0] != y.size:
            raise ValueError(f"maps[{method!r}] must have shape (N, H, W) with N = {y.size} labels; got {arr.shape}")
        try:
            shares[method] = mass_shares(arr, masks)
        except ValueError as err:
            raise ValueError(f"method {method!r}: {err}") from err
    if reference is None:
        reference = "gaze" if "gaze" in shares else next(iter(shares))
    if reference not in shares:
        raise ValueError(f"reference method {reference!r} is not among {list(shares)}")
    first = next(iter(shares.values()))
    regions = list(first)
    valid = ~np.isnan(first[ELSEWHERE])
    groups = {"all": valid, **{c: valid & (y == k) for k, c in enumerate(names)}}
    methods = {method: {group: {region: summarise(v[sel]) for region, v in by_region.items()}
                        for group, sel in groups.items()}
               for method, by_region in shares.items()}
    tests = [{"a": reference, "b": other, "region": region, "class": None if group == "all" else group,
              **paired_ttest(shares[reference][region][sel], shares[other][region][sel])}
             for other in shares if other != reference
             for group, sel in groups.items() if sel.sum() >= 2
             for region in regions]
    return {"n": int(valid.sum()), "skipped": int((~valid).sum()), "regions": regions, "classes": names,
            "methods": methods, "tests": tests}
