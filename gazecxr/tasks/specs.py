"""Task specifications: what the diagnosis head predicts and how it is trained and read.

A task names its outputs (classes or findings), turns logits into probabilities, gives the
supervised loss and the contrastive loss of stage 1, and turns stored labels into targets. Built
from the ``task:`` config section by ``create_task`` (``{"name": ..., **options}``; default
``egd_3class``). Tasks register themselves with ``register_task``, as models do in
``gazecxr.models.factory``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gazecxr import CLASS_NAMES
from gazecxr.config.errors import ConfigError, InputError
from gazecxr.data.sources.reflacx_format import LABELS, PRESENT_CERTAINTY
from gazecxr.losses import make_metric_loss
from gazecxr.losses.multilabel import JaccardSupConLoss
from gazecxr.metrics.multilabel import apply_thresholds

__all__ = [
    "DEFAULT_TASK",
    "TaskSpec",
    "ExclusiveClasses",
    "Findings",
    "register_task",
    "available_tasks",
    "create_task",
    "task_of",
    "with_outputs",
    "task_record",
    "task_from_record",
]

DEFAULT_TASK = "egd_3class"

TaskT = TypeVar("TaskT", bound=type)
_REGISTRY: dict[str, type[TaskSpec]] = {}


def register_task(name: str) -> Callable[[TaskT], TaskT]:
    """Class decorator making a task available to ``create_task`` as ``name``."""

    def decorator(cls: TaskT) -> TaskT:
        if name in _REGISTRY:
            raise ValueError(f"task name {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorator


def available_tasks() -> list[str]:
    """Names accepted by ``create_task``, sorted."""
    return sorted(_REGISTRY)


def create_task(section: Mapping[str, Any] | None = None) -> TaskSpec:
    """The task of a config's ``task:`` section; ``None`` or a section without ``name`` gives the default.

    Raises ValueError naming the valid choices for an unknown task or option.
    """
    kwargs = dict(section or {})
    name = kwargs.pop("name", DEFAULT_TASK)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown task {name!r}; valid names: {available_tasks()}")
    cls = _REGISTRY[name]
    valid = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for task {name!r}; valid options: {['name', *valid]}")
    return cls(**kwargs)


def task_of(config: Mapping[str, Any]) -> TaskSpec:
    """The task of a run configuration (its ``task:`` section; the default task when absent)."""
    return create_task(config.get("task"))


def with_outputs(section: Mapping[str, Any], task: TaskSpec) -> dict[str, Any]:
    """A classifier's model section (DenseNet or fusion head) with one logit per task output."""
    return {**section, "num_classes": task.num_outputs}


def task_record(task: TaskSpec, thresholds: Any | None = None) -> dict[str, Any]:
    """What a registry entry stores of its task: ``create_task``'s section (fitted options included)
    plus, for a multi-label task, the per-finding decision ``thresholds`` chosen on validation."""
    record: dict[str, Any] = {"name": task.name}
    if is_dataclass(task):
        record.update({f.name: getattr(task, f.name) for f in fields(task)})
    if thresholds is not None:
        record["thresholds"] = [float(t) for t in thresholds]
    return record


def task_from_record(record: Mapping[str, Any] | None) -> tuple[TaskSpec, np.ndarray | None]:
    """The task and decision thresholds (None when not stored) of a registry entry's ``task`` record;
    an entry without one (older EGD entries) has the default task."""
    section = dict(record or {})
    thresholds = section.pop("thresholds", None)
    for key, value in section.items():
        if isinstance(value, list):
            section[key] = tuple(value)
    return create_task(section), None if thresholds is None else np.asarray(thresholds, np.float64)


class TaskSpec(ABC):
    """What the diagnosis head predicts: ``names`` (one logit each) and how to train and read it."""

    name: ClassVar[str]
    multilabel: ClassVar[bool]

    @property
    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """Output names, in logit order."""

    @abstractmethod
    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Batch-mean supervised loss of logits (N, K) against the task's targets."""

    @abstractmethod
    def probabilities(self, logits: Tensor) -> Tensor:
        """Probabilities (N, K) from logits (N, K)."""

    @abstractmethod
    def metric_loss(self, options: Mapping[str, Any]) -> nn.Module:
        """Stage 1's contrastive loss from ``{"name": ..., **kwargs}``, called as ``loss(embeddings, targets)``."""

    @property
    def num_outputs(self) -> int:
        """Number of logits of the diagnosis head."""
        return len(self.names)


@register_task("egd_3class")
@dataclass(frozen=True)
class ExclusiveClasses(TaskSpec):
    """EGD-CXR's three exclusive classes (``CLASS_NAMES``): softmax, cross-entropy, integer labels."""

    multilabel: ClassVar[bool] = False

    @property
    def names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), targets.long())

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits.float(), dim=1)

    def metric_loss(self, options: Mapping[str, Any]) -> nn.Module:
        """``gazecxr.losses.make_metric_loss``: triplet or SupCon on the class labels."""
        return make_metric_loss(options)


def task_columns(task: TaskSpec, stored: Any, label_names: Sequence[str], what: str) -> np.ndarray:
    """The columns of ``stored`` (N, L), named by ``label_names``, that ``task`` predicts, in its order;
    ValueError naming ``what`` when the shape or a label does not fit."""
    values = np.asarray(stored, dtype=np.float64)
    columns = list(label_names)
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise ValueError(f"{what} must have shape (N, {len(columns)}) for {len(columns)} label names; "
                         f"got {values.shape}")
    missing = [n for n in task.names if n not in columns]
    if missing:
        raise InputError(f"labels {missing} of task {task.name!r} are not among the stored labels {columns}")
    return values[:, [columns.index(n) for n in task.names]]


def checked_pos_weight(pos_weight: Sequence[float] | None, names: Sequence[str]) -> tuple[float, ...] | None:
    """``pos_weight`` as a tuple of one positive finite number per finding of ``names`` (None stays None)."""
    if pos_weight is None:
        return None
    weights = tuple(float(w) for w in pos_weight)
    if len(weights) != len(names) or not all(np.isfinite(w) and w > 0 for w in weights):
        raise ConfigError(f"task.pos_weight must hold {len(names)} positive numbers, one per finding "
                         f"{list(names)}; got {list(pos_weight)}")
    return weights


@register_task("reflacx_findings")
@dataclass(frozen=True)
class Findings(TaskSpec):
    """REFLACX findings as independent binary outputs: sigmoids and binary cross-entropy.

    The findings are the phase-2/3 label set (``gazecxr.data.sources.reflacx_format.LABELS``) without ``Other``
    (free text), and without ``Support devices`` unless ``support_devices``. A finding is present when
    its certainty (0–5; True/False labels are stored as 5/0) is ≥ ``threshold``. ``pos_weight`` (one per
    finding) weights the positive term of the BCE; with ``positive_weights`` true the training stage
    sets it from the training prevalence with ``fit_positive_weights``.
    """

    threshold: float = PRESENT_CERTAINTY
    support_devices: bool = False
    positive_weights: bool = False
    pos_weight: tuple[float, ...] | None = None

    multilabel: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 5:
            raise ConfigError(f"task.threshold must be a certainty in (0, 5]; got {self.threshold!r}")
        object.__setattr__(self, "pos_weight", checked_pos_weight(self.pos_weight, self.names))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in LABELS if n != "Other" and (self.support_devices or n != "Support devices"))

    def targets_from_certainties(self, certainties: Any, label_names: Sequence[str]) -> np.ndarray:
        """Multi-hot targets (N, F) float32 from certainties (N, L) whose columns are ``label_names``
        (as a converted file's ``findings`` dataset and its ``label_names`` attribute store them)."""
        return (task_columns(self, certainties, label_names, "certainties") >= self.threshold).astype(np.float32)

    def fit_positive_weights(self, targets: Any) -> Findings:
        """This task with ``pos_weight`` = negatives / positives per finding of the training targets (N, F);
        1 for a finding without positives or without negatives."""
        t = np.asarray(targets, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != len(self.names):
            raise ValueError(f"targets must have shape (N, {len(self.names)}); got {t.shape}")
        pos = t.sum(axis=0)
        neg = t.shape[0] - pos
        weights = np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)
        return replace(self, pos_weight=tuple(float(w) for w in weights))

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=weight)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits.float())

    def findings(self, probabilities: Any, thresholds: Any) -> list[list[str]]:
        """Per image, the names of the findings whose probability is ≥ their threshold."""
        present = apply_thresholds(probabilities, thresholds)
        return [[n for n, on in zip(self.names, row) if on] for row in present]

    def metric_loss(self, options: Mapping[str, Any]) -> nn.Module:
        """``supcon`` only: ``JaccardSupConLoss``, SupCon with positives weighted by label-set overlap."""
        kwargs = dict(options)
        name = kwargs.pop("name", "supcon")
        if name != "supcon":
            raise ConfigError(f"contrastive loss {name!r} is not defined for multi-label task {self.name!r}; "
                             "use 'supcon' (Jaccard-weighted supervised contrastive)")
        try:
            return JaccardSupConLoss(**kwargs)
        except TypeError as err:
            raise ConfigError(f"bad options {sorted(kwargs)} for contrastive loss 'supcon': {err}") from err
