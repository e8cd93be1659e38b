"""Hyperparameter search over the training stages with optuna: search spaces declared in YAML,
per-epoch median pruning, studies shared through any SQLAlchemy storage, export of the best
trial as a runnable config."""

from gazecxr.training.tuning.space import (
    SearchSpace,
    apply_params,
    load_space,
    parse_space,
)
from gazecxr.training.tuning.study import (
    TuneResult,
    default_storage,
    default_study_name,
    export_best,
    tune,
)

__all__ = [
    "SearchSpace",
    "TuneResult",
    "apply_params",
    "default_storage",
    "default_study_name",
    "export_best",
    "load_space",
    "parse_space",
    "tune",
]
