"""Per-pixel gaze maps from a record's fixations (GazeGNN's gaze input)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from gazecxr.data.dataset import GazeCXRDataset


def fixation_duration_map(fixations: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 map: each fixation's duration at its (rounded) pixel, then log(map + 0.01)
    min-max scaled to [0, 1] (so unfixated pixels are 0). ``fixations`` (K, 3) holds x (column),
    y (row), duration in seconds; fixations off the canvas are ignored. All zeros without fixations.

    Differences from the released GazeGNN loader, which only worked on Windows paths (on POSIX it
    found no gaze at all): durations are the fixation durations stored by the converter
    (``FPOGD``), not the time since the previous fixation, and fixations sharing a pixel add up.
    """
    h, w = size
    grid = np.zeros((h, w), dtype=np.float64)
    fixations = np.asarray(fixations, dtype=np.float64).reshape(-1, 3)
    cols, rows = np.rint(fixations[:, 0]).astype(np.int64), np.rint(fixations[:, 1]).astype(np.int64)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    if not inside.any():
        return np.zeros((h, w), dtype=np.float32)
    np.add.at(grid, (rows[inside], cols[inside]), fixations[inside, 2])
    grid = np.log(grid + 0.01)
    span = grid.max() - grid.min()
    return ((grid - grid.min()) / span if span > 0 else np.zeros_like(grid)).astype(np.float32)


class GazeMapDataset(Dataset):
    """A split's records with their per-pixel gaze map as ``gaze`` (1, H, W), then ``transform``
    (a paired augmentation moves ``gaze`` with the image)."""

    def __init__(self, base: GazeCXRDataset, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        if base.transform is not None:
            raise ValueError("GazeMapDataset applies the transform itself; give it a dataset without one")
        if not base.has_fixations:
            raise ValueError(f"{base.h5_path}: the file stores no fixations (fixation_offsets/fixations); "
                             "re-convert it with this version's converter to train or evaluate GazeGNN")
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.base[i]
        gaze = fixation_duration_map(self.base.fixations(sample["index"]), self.base.canvas)
        sample["gaze"] = torch.from_numpy(gaze)[None]
        return self.transform(sample) if self.transform is not None else sample
