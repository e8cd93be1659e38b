"""Anatomical and shuffled saliency baselines that a gaze model must beat.

- ``lung_prior``: uniform over the convex hull of the record's lung masks (both lungs; EGD-CXR ships
  left/right lung segmentations, stored as ``lung_mask``), blurred with the dataset's gaze σ (its
  ``sigma`` attribute, original pixels, brought to the canvas like the heatmaps) and confined to the image.
  On REFLACX the convex hull of the lungs agrees with a radiologist about as well as another radiologist
  does on dense metrics (NCC 0.637 vs 0.632 inter-observer), while shuffled metrics separate it from gaze.
- ``chest_box_prior``: uniform over the REFLACX chest bounding box of the record (mean over its readers).
- ``other_image_gaze``: the shuffled baseline, another test image's ground-truth map (a seeded
  derangement of the split) mapped into this image's letterboxed region by relative image coordinates.

Each is a predictor of the evaluation (`record_predictor`: it is given the batch's file rows); a record
without a lung mask or a chest box gets a NaN map, which the evaluation leaves out of that row (and says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.spatial import ConvexHull, QhullError
from torch import Tensor

from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.method_outputs import MethodOutputs, Predictor, uses_records

LUNG_PRIOR = "lung_prior"
CHEST_BOX_PRIOR = "chest_box_prior"
OTHER_IMAGE_GAZE = "other_image_gaze"
BASELINES: tuple[str, ...] = (OTHER_IMAGE_GAZE, LUNG_PRIOR, CHEST_BOX_PRIOR)
"""The record baselines, in table order (top to bottom)."""

TRUNCATE = 4.0
"""Gaussian truncation of the prior's blur, in σ."""

__all__ = ["BASELINES", "CHEST_BOX_PRIOR", "LUNG_PRIOR", "OTHER_IMAGE_GAZE", "baseline_predictors",
           "chest_box_prior_map", "convex_hull_mask", "derangement", "lung_prior_map", "map_into_region",
           "supported_baselines"]


# ----------------------------------------------------------------------------- maps


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Bool (H, W): the pixels whose centres lie in the convex hull of the True pixels of ``mask`` (each
    pixel taken as its unit square, so the hull of one pixel is that pixel); all False for an empty mask."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {mask.shape}")
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return np.zeros(mask.shape, bool)
    corners = np.concatenate([np.stack([rows + dr, cols + dc], axis=1)
                              for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)]).astype(np.float64)
    try:
        hull = ConvexHull(np.unique(corners, axis=0))
    except QhullError:  # pragma: no cover - unit squares are never degenerate
        return mask.copy()
    r0, c0 = rows.min(), cols.min()
    r1, c1 = rows.max() + 1, cols.max() + 1
    rr, cc = np.mgrid[r0:r1, c0:c1]
    points = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)
    inside = np.all(points @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
    out = np.zeros(mask.shape, bool)
    out[r0:r1, c0:c1] = inside.reshape(rr.shape)
    return out | mask


def _distribution(values: np.ndarray, region: np.ndarray | None) -> np.ndarray | None:
    """``values`` confined to ``region`` (True on the image; None: the whole canvas), summing to 1; None
    when nothing is left."""
    out = np.asarray(values, np.float64).copy()
    if region is not None:
        out[~np.asarray(region, bool)] = 0.0
    out = np.clip(out, 0.0, None)
    total = out.sum()
    return out / total if total > 0 else None


def lung_prior_map(lung_mask: np.ndarray, sigma: float | tuple[float, float],
                   region: np.ndarray | None = None) -> np.ndarray | None:
    """The lung prior of one record on its canvas: uniform over `convex_hull_mask` of ``lung_mask`` (H, W),
    blurred with a Gaussian of ``sigma`` canvas pixels (one value or (σ_row, σ_col); 0: no blur; zero
    outside the canvas), confined to the image ``region`` and normalised to sum 1. None for an empty mask."""
    hull = convex_hull_mask(lung_mask).astype(np.float64)
    if not hull.any():
        return None
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (2,))
    if np.any(sig < 0):
        raise ValueError(f"sigma must be non-negative; got {sigma}")
    if np.any(sig > 0):
        hull = gaussian_filter(hull, tuple(sig), mode="constant", truncate=TRUNCATE)
    return _distribution(hull, region)


def chest_box_prior_map(box: Sequence[float], shape: tuple[int, int],
                        region: np.ndarray | None = None) -> np.ndarray | None:
    """Uniform over the canvas pixels that overlap ``box`` (xmin, ymin, xmax, ymax in canvas coordinates,
    pixel centres at integers; a pixel spans ±0.5), confined to ``region``, summing to 1; None for a
    missing (NaN) or empty box."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    if not np.all(np.isfinite([xmin, ymin, xmax, ymax])):
        return None
    xmin, xmax = min(xmin, xmax), max(xmin, xmax)
    ymin, ymax = min(ymin, ymax), max(ymin, ymax)
    h, w = shape
    rows, cols = np.arange(h), np.arange(w)
    inside = ((rows + 0.5 > ymin) & (rows - 0.5 < ymax))[:, None] & ((cols + 0.5 > xmin) & (cols - 0.5 < xmax))[None]
    return _distribution(inside.astype(np.float64), region)


def map_into_region(source: np.ndarray, source_region: tuple[slice, slice], target_region: tuple[slice, slice],
                    shape: tuple[int, int]) -> np.ndarray | None:
    """The part of ``source`` (H, W) inside its image region, resized (bilinear) onto the target image region
    of an (H, W) canvas: the same relative image position in another letterboxed image. Sums to 1; None
    when the source has no mass on its image."""
    crop = np.asarray(source, np.float64)[source_region]
    th = target_region[0].stop - target_region[0].start
    tw = target_region[1].stop - target_region[1].start
    resized = np.asarray(Image.fromarray(crop.astype(np.float32)).resize((tw, th), Image.Resampling.BILINEAR),
                         np.float64)
    out = np.zeros(shape)
    out[target_region] = resized
    return _distribution(out, None)


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of range(n) without fixed points (n ≥ 2): a random cyclic shift of a random
    order, so every image is paired with another one."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements; got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    shift = int(rng.integers(1, n))
    out = np.empty(n, np.int64)
    out[order] = order[(np.arange(n) + shift) % n]
    return out


# ----------------------------------------------------------------------------- predictors


def _canvas_sigma(dataset: GazeCXRDataset, index: int) -> tuple[float, float]:
    """The file's gaze σ (original pixels, its ``sigma`` attribute) in canvas pixels for record ``index``."""
    k, _ = dataset._locate(index)
    sigma = float(dataset._h5(k).attrs.get("sigma", 0.0))
    box = dataset.letterbox(index)
    (nh, nw), (h, w) = box.resized, box.orig_size
    return sigma * nh / h, sigma * nw / w


def _stack(maps: Sequence[np.ndarray | None], shape: tuple[int, int]) -> Tensor:
    """Maps (None → a NaN map: no baseline for that record) as one (N, H, W) float64 tensor."""
    return torch.from_numpy(np.stack([np.full(shape, np.nan) if m is None else m for m in maps]))


def _lung_prior(dataset: GazeCXRDataset) -> Predictor:
    def maps(indices: Sequence[int]) -> list[np.ndarray | None]:
        out = []
        for index in indices:
            k, row = dataset._locate(int(index))
            f = dataset._h5(k)
            mask = f["lung_mask"][row] if "lung_mask" in f else np.zeros(dataset.canvas, bool)
            region = np.zeros(dataset.canvas, bool)
            region[dataset.letterbox(int(index)).region] = True
            out.append(lung_prior_map(mask, _canvas_sigma(dataset, int(index)), region))
        return out

    return _record_predictor(LUNG_PRIOR, maps, dataset.canvas)


def chest_boxes(dataset: GazeCXRDataset) -> dict[int, np.ndarray]:
    """The chest box (xmin, ymin, xmax, ymax, canvas coordinates) of every record of ``dataset``'s files that
    has one, by global record index: the mean over the record's readings with a box."""
    out: dict[int, np.ndarray] = {}
    for k in range(len(dataset.h5_paths)):
        f = dataset._h5(k)
        if "reading_chest_box" not in f:
            continue
        boxes, records = f["reading_chest_box"][:].astype(np.float64), f["reading_record"][:]
        finite = np.all(np.isfinite(boxes), axis=1)
        for row in np.unique(records[finite]):
            out[int(dataset._offsets[k] + row)] = boxes[finite & (records == row)].mean(axis=0)
    return out


def _chest_box_prior(dataset: GazeCXRDataset) -> Predictor:
    boxes = chest_boxes(dataset)

    def maps(indices: Sequence[int]) -> list[np.ndarray | None]:
        out = []
        for index in indices:
            region = np.zeros(dataset.canvas, bool)
            region[dataset.letterbox(int(index)).region] = True
            box = boxes.get(int(index))
            out.append(None if box is None else chest_box_prior_map(box, dataset.canvas, region))
        return out

    return _record_predictor(CHEST_BOX_PRIOR, maps, dataset.canvas)


def _other_image_gaze(dataset: GazeCXRDataset, seed: int) -> Predictor:
    position = {int(index): p for p, index in enumerate(dataset.indices)}
    partner = derangement(len(dataset), seed)

    def maps(indices: Sequence[int]) -> list[np.ndarray | None]:
        out = []
        for index in indices:
            other = int(partner[position[int(index)]])
            source = dataset[other]["heatmap"][0].double().numpy()
            out.append(map_into_region(source, dataset.letterbox(int(dataset.indices[other])).region,
                                       dataset.letterbox(int(index)).region, dataset.canvas))
        return out

    return _record_predictor(OTHER_IMAGE_GAZE, maps, dataset.canvas)


def _record_predictor(name: str, maps: Callable[[Sequence[int]], list[np.ndarray | None]],
                      shape: tuple[int, int]) -> Predictor:
    @uses_records
    def predict(images: Tensor, regions: Tensor, indices: Sequence[int] = ()) -> MethodOutputs:
        return MethodOutputs(saliency={name: _stack(maps(indices), shape).to(images.device)})

    return predict


def supported_baselines(dataset: GazeCXRDataset, names: Sequence[str] = BASELINES) -> tuple[tuple[str, ...], list[str]]:
    """The record baselines of ``names`` that ``dataset``'s files can have (in `BASELINES` order), and a
    note for each one left out: ``lung_prior`` needs lung masks (EGD-CXR), ``chest_box_prior`` the REFLACX
    chest boxes, ``other_image_gaze`` at least 2 images. The one place that decides which baseline rows a
    report (evaluation or ablation) has."""
    files = [dataset._h5(k) for k in range(len(dataset.h5_paths))]
    paths = [str(p) for p in dataset.h5_paths]
    why_not = {
        OTHER_IMAGE_GAZE: None if len(dataset) >= 2 else "the split has fewer than 2 images",
        LUNG_PRIOR: None if any("lung_mask" in f for f in files)
        else f"no lung masks in {paths} (EGD-CXR ships them; REFLACX does not)",
        CHEST_BOX_PRIOR: None if any("reading_chest_box" in f for f in files)
        else f"no chest bounding boxes in {paths} (REFLACX readings only)",
    }
    wanted = [name for name in BASELINES if name in names]
    return (tuple(name for name in wanted if why_not[name] is None),
            [f"{name} left out: {why_not[name]}" for name in wanted if why_not[name] is not None])


def baseline_predictors(dataset: GazeCXRDataset, seed: int = 0,
                        names: Sequence[str] = BASELINES) -> tuple[list[Predictor], list[str]]:
    """The predictors of the record baselines ``names`` that ``dataset`` supports (`supported_baselines`),
    and a note for each one left out."""
    supported, notes = supported_baselines(dataset, names)
    makers: dict[str, Callable[[], Predictor]] = {
        OTHER_IMAGE_GAZE: lambda: _other_image_gaze(dataset, seed),
        LUNG_PRIOR: lambda: _lung_prior(dataset),
        CHEST_BOX_PRIOR: lambda: _chest_box_prior(dataset),
    }
    return [makers[name]() for name in supported], notes
