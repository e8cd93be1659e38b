"""The recorded fixations of a split as canvas-pixel targets of the fixation metrics (NSS, AUC-Judd, sAUC)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.metrics import fixation_pixels

SAUC_NEGATIVES = (
    "sAUC negatives: every recorded fixation of the split's other images (records of another dicom_id), each "
    "counted once at its canvas pixel, so pixels fixated often elsewhere weigh more; no sampling, so the value "
    "is deterministic (the MIT code draws random subsets of them; pysaliency's 'shuffled' AUC uses them all)."
)
PIXEL_RULE = (
    "Fixation pixels: a fixation at canvas coordinates (x, y) (pixel centres at integers) falls on pixel "
    "(floor(y + 0.5), floor(x + 0.5)), clipped onto the canvas; several fixations on one pixel make one fixated "
    "pixel for NSS and AUC-Judd (the MIT benchmark's binary fixation map)."
)


class SplitFixations:
    """Every record's fixated canvas pixels in one split of a dataset with fixations, and the split-wide
    fixation counts used as sAUC negatives."""

    def __init__(self, dataset: GazeCXRDataset):
        if not dataset.has_fixations:
            raise InputError(f"{dataset.h5_path}: the file stores no fixations (re-convert it to add them)")
        self.shape: tuple[int, int] = tuple(dataset.canvas)
        size = self.shape[0] * self.shape[1]
        self.pixels: dict[int, np.ndarray] = {}
        self.image_of: dict[int, str] = {}
        self.total = np.zeros(size, np.int64)
        for row, dicom_id in zip(dataset.indices, dataset.dicom_ids):
            row = int(row)
            try:
                rows, cols = fixation_pixels(dataset.fixations(row), self.shape)
            except ValueError as err:
                raise InputError(f"{dataset.h5_path}, record {row} ({dicom_id}): {err}") from err
            self.pixels[row] = rows * self.shape[1] + cols
            self.image_of[row] = str(dicom_id)
            self.total += np.bincount(self.pixels[row], minlength=size)
        self._rows_of_image: dict[str, list[int]] = {}
        for row, image in self.image_of.items():
            self._rows_of_image.setdefault(image, []).append(row)

    @property
    def n_fixations(self) -> int:
        """Number of fixations in the split."""
        return int(self.total.sum())

    @property
    def records_with_fixations(self) -> int:
        """Number of records with at least one fixation."""
        return sum(1 for p in self.pixels.values() if p.size)

    def targets(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """For the records at file rows ``indices``: binary fixation maps (N, H, W) (all False for a record
        without fixations) and the counts (N, H, W) of the fixations of the split's other images."""
        size = self.shape[0] * self.shape[1]
        fixated = np.zeros((len(indices), size), bool)
        others = np.empty((len(indices), size), np.float64)
        for i, row in enumerate(int(r) for r in indices):
            if row not in self.pixels:
                raise KeyError(f"record {row} is not in this split")
            fixated[i, self.pixels[row]] = True
            same_image = np.concatenate([self.pixels[r] for r in self._rows_of_image[self.image_of[row]]])
            others[i] = self.total - np.bincount(same_image, minlength=size)
        return fixated.reshape(-1, *self.shape), others.reshape(-1, *self.shape)

    def summary(self) -> dict[str, Any]:
        """Counts for the report: records, records with fixations, fixations."""
        return {"records": len(self.pixels), "records_with_fixations": self.records_with_fixations,
                "fixations": self.n_fixations}
