"""Per-film gaze statistics, the auxiliary targets of Gaze-MTL (Saab et al., MICCAI 2021).

As in the released code (HazyResearch/observational ``utils.py``, ``load_helper_task_labels``):

- ``time``: how long the reader looked at the film, divided by mean + 2·std of the training
  split's values and capped at 1 (`time_targets`). The released code counts the merged gaze
  samples of CXR-P (≈ 1/60 s each); here it is the summed fixation duration in seconds
  (`viewing_time`) or, for a map of dwell time per pixel, the map's total (`map_time`).
- ``diffusivity``: the gaze time binned on a 10×10 grid of the film, normalised to sum 1, and the
  largest share of it inside any 2×2 window of cells (stride 1) (`diffusivity`). High values mean
  a concentrated gaze, low ones a diffuse one.

Gaze-MTL's third target, ``loc`` (the most-viewed cell of a 3×3 grid, set to 0 for every
negative film), is derived from the label and is deliberately not provided.

A film without gaze has no target: `GazeStatsDataset` gives a film without fixations NaN for both
statistics (not a viewing time of 0 s; `diffusivity` is NaN for an all-zero grid anyway), the time
normaliser ignores it and the losses skip non-finite targets (the released loader put a centre
fixation there instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gazecxr.data.dataset import GazeCXRDataset

GAZE_STATISTICS = ("time", "diffusivity")
"""The auxiliary statistics, in head order."""

GRID, WINDOW = 10, 2
"""Gaze-MTL's diffusivity grid (10×10 cells) and window (2×2 cells)."""


def map_grid(gaze_map: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(grid, grid) sums of an (H, W) map over a grid×grid partition of the film (cell of pixel
    (r, c): (⌊r·grid/H⌋, ⌊c·grid/W⌋))."""
    gaze_map = np.asarray(gaze_map, dtype=np.float64)
    if gaze_map.ndim != 2:
        raise ValueError(f"a gaze map must be (H, W), got shape {gaze_map.shape}")
    h, w = gaze_map.shape
    rows = np.arange(h) * grid // h
    cols = np.arange(w) * grid // w
    out = np.zeros((grid, grid), np.float64)
    np.add.at(out, (rows[:, None], cols[None, :]), gaze_map)
    return out


def fixation_grid(fixations: np.ndarray, size: tuple[int, int], grid: int = GRID) -> np.ndarray:
    """(grid, grid) fixation time per cell of an (H, W) canvas; ``fixations`` (K, 3) hold x
    (column), y (row), duration in seconds; fixations off the canvas are dropped."""
    h, w = size
    fixations = np.asarray(fixations, dtype=np.float64).reshape(-1, 3)
    x, y, t = fixations.T
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    out = np.zeros((grid, grid), np.float64)
    rows = np.minimum((y[inside] * grid / h).astype(np.int64), grid - 1)
    cols = np.minimum((x[inside] * grid / w).astype(np.int64), grid - 1)
    np.add.at(out, (rows, cols), t[inside])
    return out


def diffusivity(grid_map: np.ndarray, window: int = WINDOW) -> float:
    """The largest share of the total in any window×window block of cells (stride 1); NaN when the
    grid holds nothing."""
    grid_map = np.asarray(grid_map, dtype=np.float64)
    total = grid_map.sum()
    if not total > 0:
        return float("nan")
    blocks = np.lib.stride_tricks.sliding_window_view(grid_map / total, (window, window))
    return float(blocks.sum(axis=(-2, -1)).max())


def viewing_time(fixations: np.ndarray) -> float:
    """Summed duration (s) of fixations (K, 3)."""
    return float(np.asarray(fixations, dtype=np.float64).reshape(-1, 3)[:, 2].sum())


def map_time(gaze_map: np.ndarray) -> float:
    """Total of a map of dwell time per pixel (the viewing time; 1 for a normalised heatmap)."""
    return float(np.asarray(gaze_map, dtype=np.float64).sum())


def time_scale(reference: Sequence[float] | np.ndarray) -> float:
    """Gaze-MTL's time normaliser: mean + 2·std of the reference (training) viewing times."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        raise ValueError("no finite reference viewing times to normalise the time target")
    return float(values.mean() + 2 * values.std())


def time_targets(times: Sequence[float] | np.ndarray, scale: float) -> np.ndarray:
    """min(time / scale, 1) per film (NaN everywhere when ``scale`` is not positive)."""
    times = np.asarray(times, dtype=np.float64)
    if not scale > 0:
        return np.full(times.shape, np.nan)
    return np.minimum(times / scale, 1.0)


def map_statistics(maps: np.ndarray, times: np.ndarray | None, scale: float | None,
                   tasks: Sequence[str] = GAZE_STATISTICS, grid: int = GRID,
                   window: int = WINDOW) -> np.ndarray:
    """(N, len(tasks)) targets of gaze maps (N, H, W): ``times`` (N,) or, when None, each map's
    total (`map_time`); ``scale`` = `time_scale` of the training split (these maps' own when None)."""
    maps = np.asarray(maps)
    columns = []
    for task in tasks:
        if task == "time":
            raw = np.array([map_time(m) for m in maps]) if times is None else np.asarray(times, np.float64)
            columns.append(time_targets(raw, time_scale(raw) if scale is None else scale))
        elif task == "diffusivity":
            columns.append(np.array([diffusivity(map_grid(m, grid), window) for m in maps]))
        else:
            raise ValueError(f"unknown gaze statistic {task!r}; valid: {list(GAZE_STATISTICS)}")
    return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(maps), 0), np.float32)


class GazeStatsDataset(Dataset):
    """A split's records with their Gaze-MTL targets as ``gaze_stats`` (len(tasks),) float32, from
    each record's fixations (NaN for a record without any); ``time_reference`` is `time_scale` of the
    training split's records with fixations (this split's own when None)."""

    def __init__(self, base: GazeCXRDataset, tasks: Sequence[str] = GAZE_STATISTICS, grid: int = GRID,
                 window: int = WINDOW, time_reference: float | None = None):
        if not base.has_fixations:
            raise ValueError(f"{base.h5_path}: the file stores no fixations (fixation_offsets/fixations); "
                             "Gaze-MTL's targets are computed from them: re-convert it with this version's converter")
        unknown = sorted(set(tasks) - set(GAZE_STATISTICS))
        if unknown:
            raise ValueError(f"unknown gaze statistic(s) {unknown}; valid: {list(GAZE_STATISTICS)}")
        self.base, self.tasks = base, tuple(tasks)
        fixations = [base.fixations(int(i)) for i in base.indices]
        times = np.array([viewing_time(f) if len(f) else np.nan for f in fixations])
        self.time_reference = time_scale(times) if time_reference is None else float(time_reference)
        columns = {"time": time_targets(times, self.time_reference),
                   "diffusivity": np.array([diffusivity(fixation_grid(f, base.canvas, grid), window)
                                            for f in fixations])}
        self.targets = (np.stack([columns[t] for t in self.tasks], axis=1) if self.tasks
                        else np.zeros((len(base), 0))).astype(np.float32)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.base[i]
        sample["gaze_stats"] = torch.from_numpy(self.targets[i])
        return sample
