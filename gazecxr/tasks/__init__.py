"""Task specifications — what the diagnosis head predicts and how it is trained and read — in one
registry (``create_task``, ``register_task``), as models are in ``gazecxr.models``."""

from gazecxr.tasks.specs import (
    DEFAULT_TASK,
    ExclusiveClasses,
    Findings,
    TaskSpec,
    available_tasks,
    create_task,
    register_task,
    task_from_record,
    task_of,
    task_record,
    with_outputs,
)
from gazecxr.tasks.public import CheXpert14, DatasetFindings, NIH14Findings, SIIMPneumothorax, VinDrFindings

__all__ = [
    "CheXpert14",
    "DatasetFindings",
    "NIH14Findings",
    "SIIMPneumothorax",
    "VinDrFindings",
    "DEFAULT_TASK",
    "ExclusiveClasses",
    "Findings",
    "TaskSpec",
    "available_tasks",
    "create_task",
    "register_task",
    "task_from_record",
    "task_of",
    "task_record",
    "with_outputs",
]
