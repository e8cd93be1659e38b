"""Finding tasks of the public chest X-ray datasets: NIH ChestX-ray14, SIIM-ACR, CheXpert, VinDr-CXR.

Each reads the ``findings`` a converter stored (``gazecxr.data.sources``) and trains independent
sigmoid outputs with binary cross-entropy, as ``reflacx_findings`` does. Targets may hold NaN —
unknown entries (CheXpert uncertain labels under the ``ignore`` policy): they are left out of the
loss (and out of the per-finding metrics), a record is only dropped when all its targets are unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gazecxr.config.errors import ConfigError
from gazecxr.data.sources.chexpert import FINDINGS as CHEXPERT_FINDINGS
from gazecxr.data.sources.chexpert import UNCERTAINTY_POLICIES, apply_uncertainty
from gazecxr.data.sources.nih14 import FINDINGS as NIH_FINDINGS
from gazecxr.data.sources.siim import FINDINGS as SIIM_FINDINGS
from gazecxr.data.sources.vindr import LOCAL_FINDINGS
from gazecxr.tasks.specs import Findings, TaskSpec, checked_pos_weight, register_task, task_columns

__all__ = ["DatasetFindings", "NIH14Findings", "SIIMPneumothorax", "CheXpert14", "VinDrFindings"]


@dataclass(frozen=True)
class DatasetFindings(TaskSpec):
    """A public dataset's findings as independent binary outputs (sigmoid + BCE, unknown targets masked).

    A stored value ≥ ``present_at`` is a positive. ``pos_weight`` (one per finding) weights the positive
    term of the BCE; with ``positive_weights`` the training stage fits it on the training prevalence.
    """

    positive_weights: bool = False
    pos_weight: tuple[float, ...] | None = None

    multilabel: ClassVar[bool] = True
    present_at: ClassVar[float] = 0.5
    labels: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "pos_weight", checked_pos_weight(self.pos_weight, self.names))

    @property
    def names(self) -> tuple[str, ...]:
        return self.labels

    def stored_values(self, values: np.ndarray) -> np.ndarray:
        """The stored values of the task's columns before thresholding (a policy may map them)."""
        return values

    def targets_from_certainties(self, certainties: Any, label_names: Sequence[str]) -> np.ndarray:
        """Targets (N, F) float32 — 1, 0 or NaN (unknown) — from a converted file's ``findings`` (N, L)
        whose columns are ``label_names``."""
        values = self.stored_values(task_columns(self, certainties, label_names, "findings"))
        return np.where(np.isnan(values), np.nan, values >= self.present_at).astype(np.float32)

    def fit_positive_weights(self, targets: Any) -> DatasetFindings:
        """This task with ``pos_weight`` = known negatives / known positives per finding of the training
        targets (N, F); 1 for a finding without positives or without negatives."""
        t = np.asarray(targets, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != len(self.names):
            raise ValueError(f"targets must have shape (N, {len(self.names)}); got {t.shape}")
        pos = np.nansum(t, axis=0)
        neg = (~np.isnan(t)).sum(axis=0) - pos
        weights = np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)
        return replace(self, pos_weight=tuple(float(w) for w in weights))

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean BCE over the known (non-NaN) entries; equal to the plain batch-mean BCE without NaN."""
        targets = targets.float()
        known = ~torch.isnan(targets)
        weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        per = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(targets), pos_weight=weight,
                                                 reduction="none")
        return (per * known).sum() / known.sum().clamp_min(1)

    probabilities = Findings.probabilities
    findings = Findings.findings
    metric_loss = Findings.metric_loss


@register_task("nih14_findings")
@dataclass(frozen=True)
class NIH14Findings(DatasetFindings):
    """NIH ChestX-ray14's 14 findings, in torchxrayvision's order (``gazecxr.data.sources.nih14.FINDINGS``)."""

    labels: ClassVar[tuple[str, ...]] = NIH_FINDINGS


@register_task("siim_pneumothorax")
@dataclass(frozen=True)
class SIIMPneumothorax(DatasetFindings):
    """SIIM-ACR: pneumothorax present (one output; a mask in ``train-rle.csv``) or not."""

    labels: ClassVar[tuple[str, ...]] = SIIM_FINDINGS


@register_task("chexpert14")
@dataclass(frozen=True)
class CheXpert14(DatasetFindings):
    """CheXpert's 14 observations with an uncertainty policy of the CheXpert paper for the -1 labels:
    ``ignore`` (unknown, masked out of the loss), ``zeros``, ``ones`` or ``mixed`` (ones for Atelectasis
    and Edema, zeros otherwise). Files converted with a policy already hold mapped values, which pass
    unchanged."""

    uncertainty: str = "mixed"
    labels: ClassVar[tuple[str, ...]] = CHEXPERT_FINDINGS

    def __post_init__(self) -> None:
        if self.uncertainty not in UNCERTAINTY_POLICIES:
            raise ConfigError(f"task.uncertainty must be one of {list(UNCERTAINTY_POLICIES)}; got {self.uncertainty!r}")
        super().__post_init__()

    def stored_values(self, values: np.ndarray) -> np.ndarray:
        return apply_uncertainty(values, self.uncertainty, self.names)


@register_task("vindr_findings")
@dataclass(frozen=True)
class VinDrFindings(DatasetFindings):
    """VinDr-CXR findings: present when at least ``min_fraction`` of the image's readers marked it (the
    stored value is that fraction; the test consensus is 0/1). ``label_set`` names the findings (default:
    the 14 local findings of the VinBigData release, ``gazecxr.data.sources.vindr.LOCAL_FINDINGS``)."""

    min_fraction: float = 0.5
    label_set: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_fraction <= 1:
            raise ConfigError(f"task.min_fraction must lie in (0, 1]; got {self.min_fraction!r}")
        if self.label_set is not None:
            object.__setattr__(self, "label_set", tuple(str(n) for n in self.label_set))
        super().__post_init__()

    @property
    def names(self) -> tuple[str, ...]:
        return self.label_set or LOCAL_FINDINGS

    def stored_values(self, values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), np.nan, values >= self.min_fraction - 1e-6).astype(np.float64)
