"""Optuna studies over one training stage: storage, the objective, resuming, and export of the
best trial as a runnable config."""

from __future__ import annotations

import gc
import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch
import yaml

from gazecxr.config.errors import InputError
from gazecxr.evaluation.artifacts import write_text_atomic
from gazecxr.training import stages
from gazecxr.training.registry import Entry, Registry, infer_mode
from gazecxr.training.tuning.space import SearchSpace, apply_params, check_space

logger = logging.getLogger(__name__)

PARENT_REFS: dict[int, tuple[str, str, str]] = {2: ("stage2", "encoder", "stage1"), 3: ("stage3", "saliency", "stage2")}
"""Stage → (config section, key, registry stage) of the entry it builds on, pinned once per study."""

STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

HEARTBEAT_S = 60
"""Seconds between a running trial's heartbeats; a trial silent for ``GRACE_S`` (its worker died)
is marked FAIL by the next worker that starts a trial."""
GRACE_S = 300


@dataclass(frozen=True)
class TuneResult:
    """Outcome of a ``tune`` call: the study's trial counts by state and its best trial so far."""

    study_name: str
    storage: str
    metric: str
    direction: str
    states: dict[str, int]
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    export_path: Path | None


def default_storage(config: Mapping[str, Any]) -> str:
    """``sqlite:///<registry.root>/optuna.db`` (absolute path; the directory is created)."""
    root = Path(config["registry"]["root"]).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'optuna.db'}"


def default_study_name(stage: int, config_path: str | Path) -> str:
    """``stage<N>-<config file stem>``, e.g. ``stage1-paper``."""
    return f"stage{stage}-{Path(config_path).stem}"


def objective_metric(config: Mapping[str, Any], stage: int) -> tuple[str, str]:
    """The stage's monitored validation metric and the optuna direction that improves it."""
    metric = config[f"stage{stage}"]["monitor"]
    return metric, "minimize" if infer_mode(metric) == "min" else "maximize"


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage for any SQLAlchemy URL, with heartbeats so trials of dead workers become FAIL."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              engine_kwargs=engine_kwargs)
    except (sqlalchemy.exc.ArgumentError, ImportError) as err:
        raise InputError(f"storage {url!r} is not usable ({err}); give an SQLAlchemy URL such as "
                         "sqlite:////abs/path/optuna.db or postgresql://user:password@host/db "
                         "(with its driver installed)") from err


def open_study(name: str, storage: str, stage: int, metric: str, direction: str, space: SearchSpace,
               sampler_seed: int) -> optuna.Study:
    """Create the study or load it from ``storage``; its sampler is seeded with ``sampler_seed`` plus the
    number of trials it already holds, so a resumed study does not repeat its first suggestions."""
    if not STUDY_NAME_RE.match(name):
        raise InputError(f"study name {name!r}: use letters, digits, '.', '_' and '-' only")
    rdb = make_storage(storage)
    study = optuna.create_study(storage=rdb, study_name=name, direction=direction, pruner=space.make_pruner(),
                                load_if_exists=True)
    recorded = study.user_attrs.get("stage")
    if recorded is not None and recorded != stage:
        raise InputError(f"study {name!r} in {storage} tunes stage {recorded}, not stage {stage}")
    if recorded is None:
        study.set_user_attr("stage", stage)
        study.set_user_attr("metric", metric)
    study.sampler = space.make_sampler(sampler_seed + len(study.trials))
    return study


def pin_parent(study: optuna.Study, config: Mapping[str, Any], stage: int) -> dict[str, Any]:
    """``config`` with the entry stage 2/3 builds on (stage2.encoder / stage3.saliency) fixed to one id for
    the whole study: the study's recorded id, or the config's reference resolved now and recorded."""
    if stage not in PARENT_REFS or (stage == 2 and config["stage2"]["variant"] != "full"):
        return dict(config)
    section, key, parent_stage = PARENT_REFS[stage]
    dotted = f"{section}.{key}"
    pinned = study.user_attrs.get(dotted)
    if pinned is None:
        pinned = Registry(config["registry"]["root"]).resolve(config[section][key], stage=parent_stage).id
        study.set_user_attr(dotted, pinned)
    elif pinned != config[section][key]:
        logger.info("study %s: every trial uses %s=%s", study.study_name, dotted, pinned)
    return apply_params(config, {dotted: pinned})


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_objective(config: Mapping[str, Any], stage: int, space: SearchSpace, study_name: str, metric: str,
                   progress: bool) -> Callable[[optuna.Trial], float]:
    """The objective: train the stage with the trial's parameters (reporting every epoch's ``metric`` for
    pruning) and return the best epoch's ``metric`` from the saved registry entry."""
    runner = stages.STAGES[f"stage{stage}"]

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        run_dir = Path(config["runs"]["root"]) / "tune" / study_name / f"trial-{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(float(metrics[metric]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric}={metrics[metric]:.4g})")

        try:
            entry: Entry = runner(apply_params(config, params), run_dir=run_dir, progress=progress,
                                  tags=(f"study={study_name}", f"trial={trial.number}"), on_epoch=on_epoch)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr("error", message)
            logger.warning("study %s, trial %d failed: %s", study_name, trial.number, message)
            _release_memory()
            raise
        trial.set_user_attr("entry_id", entry.id)
        return float(entry.metrics[metric])

    return objective


def export_best(study: optuna.Study, config: Mapping[str, Any], stage: int, export_dir: str | Path) -> Path | None:
    """Write the best trial's fully resolved config (``config`` + its params, no ``inherit``) to
    ``export_dir/<study>.yaml``; None when no trial has completed."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    best = study.best_trial
    tuned = apply_params(config, best.params)
    path = Path(export_dir) / f"{study.study_name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Tuned config: best trial of optuna study {study.study_name!r} (python -m stages.tune --stage {stage}).",
        f"# trial {best.number}: {study.user_attrs.get('metric', 'value')} = {best.value:.6g}"
        + (f", registry entry {best.user_attrs['entry_id']}" if "entry_id" in best.user_attrs else ""),
        f"# params: {json.dumps(best.params)}",
        f"# Fully resolved (inherits nothing); train with: python -m stages.stage{stage} --config {path}",
    ]
    write_text_atomic(path, "\n".join(header) + "\n" + yaml.safe_dump(tuned, sort_keys=False))
    return path


def tune(config: Mapping[str, Any], stage: int, space: SearchSpace, n_trials: int, study_name: str,
         storage: str | None = None, timeout: float | None = None, export_dir: str | Path = "configs/tuned",
         sampler_seed: int | None = None, progress: bool = True) -> TuneResult:
    """Run ``n_trials`` more trials of the study ``study_name`` (created, or resumed from ``storage``;
    default: the SQLite file under the registry root) tuning ``stage``, then export its best trial.

    Failed trials (any exception) are recorded as FAIL with their error as user attr ``error`` and the
    study goes on; pruned trials stop at the epoch the pruner decides.
    """
    if stage not in (1, 2, 3):
        raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")
    check_space(space, config, stage)
    storage = storage or default_storage(config)
    metric, direction = objective_metric(config, stage)
    seed = int(config["seed"]) if sampler_seed is None else sampler_seed
    study = open_study(study_name, storage, stage, metric, direction, space, seed)
    config = pin_parent(study, config, stage)
    objective = make_objective(config, stage, space, study_name, metric, progress)
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,), gc_after_trial=True)
    export = export_best(study, config, stage, export_dir)
    states = Counter(t.state.name for t in study.trials)
    best = study.best_trial if export is not None else None
    return TuneResult(
        study_name=study_name, storage=storage, metric=metric, direction=direction, states=dict(states),
        best_number=None if best is None else best.number, best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params), export_path=export,
    )
