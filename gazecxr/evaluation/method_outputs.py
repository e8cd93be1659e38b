"""What an evaluated method returns for a batch, and how a method that needs test-time gaze is called."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor


@dataclass
class MethodOutputs:
    """One batch's outputs: ``saliency`` maps (N, H, W) and class ``probs`` (N, K), by method name."""

    saliency: dict[str, Tensor] = field(default_factory=dict)
    probs: dict[str, Tensor] = field(default_factory=dict)


Predictor = Callable[[Tensor, Tensor], MethodOutputs]
"""(images (N, 1, H, W), image regions (N, H, W) bool) → named outputs of one or more methods.

A predictor that needs the radiologist's gaze at test time (an oracle, e.g. GazeGNN) is marked with
`uses_gaze`; it is then also called with ``fixations=``, a list of N arrays (K, 3) of canvas x, y and
duration in seconds (`GazeCXRDataset.fixations`)."""


def uses_gaze(predictor: Callable[..., MethodOutputs]) -> Callable[..., MethodOutputs]:
    """Mark ``predictor`` as needing test-time gaze: it is called as
    ``predictor(images, regions, fixations=...)``."""
    predictor.uses_gaze = True
    return predictor


def uses_records(predictor: Callable[..., MethodOutputs]) -> Callable[..., MethodOutputs]:
    """Mark ``predictor`` as built from the records themselves (their lung masks, chest box, or another
    record's gaze: `gazecxr.evaluation.baselines`): it is called as ``predictor(images, regions, indices=...)``
    with the batch's file rows."""
    predictor.uses_records = True
    return predictor


def predict_batch(predictor: Callable[..., MethodOutputs], images: Tensor, regions: Tensor,
                  fixations: Callable[[], list[np.ndarray]], indices: Sequence[int] = ()) -> MethodOutputs:
    """Call ``predictor`` on a batch, passing the batch's ``fixations()`` only to gaze predictors and its file
    rows ``indices`` only to record predictors."""
    if getattr(predictor, "uses_gaze", False):
        return predictor(images, regions, fixations=fixations())
    if getattr(predictor, "uses_records", False):
        return predictor(images, regions, indices=list(indices))
    return predictor(images, regions)
