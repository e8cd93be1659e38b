"""Per-image results of an evaluation pass over a split, and their mean/std summaries."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SplitOutputs:
    """Per-image results of a pass over a split, in the split's order."""

    labels: np.ndarray
    """True classes (N,), or multi-hot finding targets (N, F) of a multi-label task (examples' label -1)."""
    dicom_ids: list[str]
    probs: dict[str, np.ndarray]
    """Class probabilities (N, K) by classification method."""
    scores: dict[str, dict[str, np.ndarray]]
    """Per-image scores (N,) by saliency method, then metric (kl, cc, hs, nss)."""
    examples: list[dict[str, Any]]
    """The kept images: ``position``, ``label``, ``dicom_id``, ``image`` and ``heatmap`` (H, W) and
    every saliency method's map (H, W) under its name."""
    fixations: dict[str, Any] = field(default_factory=dict)
    """What the fixation metrics were scored on: ``source`` (recorded | approximated) and counts."""

    def labelled(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """True classes and class probabilities of the images that carry a class label (records of a
        dataset without the task's classes, e.g. REFLACX in a joint evaluation, have label -1)."""
        keep = self.labels >= 0
        return self.labels[keep], {name: p[keep] for name, p in self.probs.items()}


def mean_std(values: np.ndarray) -> dict[str, float]:
    """Mean and population std of the finite ``values`` (NaN for none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite))}


def summarise_saliency(scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and population std over images (those with a value) of every saliency method's scores."""
    return {name: {m: mean_std(v) for m, v in by_metric.items()} for name, by_metric in scores.items()}
