"""The three training stages, each ending with a registry entry.

Each runner also works under ``torchrun --nproc_per_node=N`` (see
:mod:`gazecxr.training.distributed`): rank 0 picks the run directory, writes the run's files
and the registry entry, and every rank returns that same entry. Frozen features are cached
(:mod:`gazecxr.training.feature_cache`, ``train.feature_cache``) for every split whose inputs
are not augmented: stage 3 always (it trains on features of un-augmented images), stage 2's
validation split, and its training split too when ``data.augment.enabled`` is false.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from gazecxr.config import config_hash, deep_merge, dump_config, parse_yaml
from gazecxr.config.errors import ConfigError, InputError, InputNotFoundError
from gazecxr.metrics.multilabel import choose_thresholds
from gazecxr.models.cooperative import freeze
from gazecxr.models.factory import create_model
from gazecxr.tasks import TaskSpec, task_of, task_record, with_outputs
from gazecxr.training.checkpoint_io import load_encoder, load_saliency
from gazecxr.training.data import input_size, make_dataset, make_loader
from gazecxr.training.distributed import DistContext, broadcast_object, setup
from gazecxr.training.engine import FitResult, Task, Trainer, TrainSettings
from gazecxr.training.feature_cache import (
    CacheKey,
    FeatureDataset,
    MemoryBudget,
    WithFeatures,
    data_identity,
    load_or_build,
    precision_name,
)
from gazecxr.training.objectives import (
    ClassifierTask,
    ContrastiveTask,
    FusionTask,
    SaliencyTask,
)
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import seed_everything

SALIENCY_VARIANTS = {"full": "stage2", "resse": "baseline_resse", "unet": "baseline_unet"}
"""stage2.variant → registry stage name of its entries."""


def settings_for(config: Mapping[str, Any], *path: str) -> TrainSettings:
    """``train`` defaults merged with the ``train`` section at ``config[path...]``."""
    section = config
    for key in path:
        section = section[key]
    return TrainSettings.from_config(deep_merge(config["train"], section.get("train") or {}))


def run_dir_for(config: Mapping[str, Any], stage: str, run_dir: str | Path | None, resume: bool) -> Path:
    """The run directory: given, the latest of ``stage`` when resuming, else a new one."""
    if run_dir is not None:
        return Path(run_dir)
    root = Path(config["runs"]["root"]) / stage
    if resume:
        runs = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
        if not runs:
            raise InputNotFoundError(f"--resume: no earlier {stage} run under {root}")
        return runs[-1]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return root / f"{stamp}-{config_hash(config)}"


def _prepare_run(config: Mapping[str, Any], run_dir: Path, resume: bool) -> dict[str, Any]:
    """Store the config in a new run, or read back the stored one when resuming."""
    stored = run_dir / "config.yaml"
    if resume and stored.is_file():
        saved = parse_yaml(stored.read_text())
        if config_hash(saved) != config_hash(config):
            print(f"note: resuming {run_dir} with the config stored there, not the one given", file=sys.stderr)
        return saved
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, stored)
    return copy.deepcopy(dict(config))


EpochCallback = Callable[[int, dict[str, float]], None]


def _start(config: Mapping[str, Any], stage: str, run_dir: str | Path | None,
           resume: bool) -> tuple[DistContext, Path, dict[str, Any]]:
    """Join the process group (under torchrun), then rank 0's run directory and config on every rank."""
    ctx = setup(str(config["train"].get("device", "auto")))
    chosen = None
    if ctx.is_main:
        directory = run_dir_for(config, stage, run_dir, resume)
        chosen = (str(directory), _prepare_run(config, directory, resume))
    directory, config = broadcast_object(chosen, ctx)
    return ctx, Path(directory), config


def _publish(ctx: DistContext, registry: Registry, save: Callable[[], Entry]) -> Entry:
    """Rank 0 saves the entry; every rank returns it."""
    entry = save() if ctx.is_main else None
    entry_id = broadcast_object(entry.id if entry is not None else None, ctx)
    return entry if entry is not None else registry.resolve(entry_id)


@dataclass(frozen=True)
class FeatureCacheSpec:
    """What a stage caches: ``task.frozen_features`` of the frozen ``entries`` (newest first),
    described by ``features``; ``with_images`` keeps the images in the batches (stage 2)."""

    stage: str
    entries: tuple[Entry, ...]
    features: Mapping[str, Any]
    with_images: bool


def _cache_key(spec: FeatureCacheSpec, config: Mapping[str, Any], split: str, trainer: Trainer) -> CacheKey:
    return CacheKey(
        stage=spec.stage, split=split, checkpoints=tuple(e.sha256 for e in spec.entries),
        architecture={e.stage: e.architecture for e in spec.entries}, features=spec.features,
        data=data_identity(config["data"]["h5"]), geometry=tuple(input_size(config)),
        precision=precision_name(trainer.device, trainer.dtype),
    )


def stage_loaders(task: Task, config: Mapping[str, Any], settings: TrainSettings, trainer: Trainer,
                  augment: bool, cache: FeatureCacheSpec | None) -> list[DataLoader]:
    """Train and val loaders of a stage (train augmented when ``augment``); a split without
    augmentation reads ``cache``'s frozen features when ``settings.feature_cache`` is not off."""
    budget = MemoryBudget.megabytes(settings.feature_cache_memory_mb)
    labelled = bool(getattr(task, "uses_class_labels", True))
    loaders = []
    for split, train in (("train", True), ("val", False)):
        augmented = train and augment
        dataset = None
        if cache is not None and settings.feature_cache != "off" and not augmented:
            base = make_dataset(config, split, augment=False, labelled_only=labelled)
            store = load_or_build(
                _cache_key(cache, config, split, trainer), base, task.frozen_features,
                mode=settings.feature_cache, root=Path(config["runs"]["root"]) / "cache", budget=budget,
                device=trainer.device, dtype=trainer.dtype, channels_last=trainer.channels_last,
                batch_size=settings.batch_size, num_workers=int(config["data"].get("num_workers", 0)),
                ctx=trainer.dist, progress=trainer.progress,
            )
            dataset = WithFeatures(base, store) if cache.with_images else FeatureDataset(store)
        loaders.append(make_loader(config, split, settings.batch_size, train, trainer.device, augment=augmented,
                                   dataset=dataset, dist=trainer.dist, labelled_only=labelled))
    return loaders


def _fit(task: Task, config: Mapping[str, Any], settings: TrainSettings, run_dir: Path, monitor: str,
         resume: bool, progress: bool, name: str, on_epoch: EpochCallback | None = None, *,
         ctx: DistContext, augment: bool = True, cache: FeatureCacheSpec | None = None) -> FitResult:
    mode = "min" if monitor.endswith(("loss", "kl", "ece")) else "max"
    trainer = Trainer(task, settings, run_dir, monitor, mode, seed=int(config["seed"]), progress=progress, name=name,
                      on_epoch=on_epoch, dist=ctx)
    train, val = stage_loaders(task, config, settings, trainer, augment, cache)
    return trainer.fit(train, val, resume=resume and (run_dir / "state.pt").is_file())


def train_seconds(*results: FitResult) -> float:
    """Wall time of the epochs of ``results`` (summed per-epoch ``seconds``, resumed runs included)."""
    return float(sum(record.get("seconds", 0.0) for result in results for record in result.history))


def parameter_count(module: nn.Module) -> int:
    """Number of parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def _registry(config: Mapping[str, Any]) -> Registry:
    return Registry(config["registry"]["root"])


def _tags(config: Mapping[str, Any], extra: Sequence[str]) -> list[str]:
    return [*config["registry"].get("tags", []), *extra]


def stage_task(config: Mapping[str, Any]) -> TaskSpec:
    """The run's task; a multi-label task with ``positive_weights`` gets its BCE positive weights
    from the training split's prevalence (unless ``pos_weight`` is given)."""
    task = task_of(config)
    if task.multilabel and getattr(task, "positive_weights", False) and task.pos_weight is None:
        task = task.fit_positive_weights(make_dataset(config, "train", augment=False, labelled_only=True).targets)
    return task


def validation_thresholds(task: FusionTask, config: Mapping[str, Any], batch_size: int) -> np.ndarray:
    """Per-finding decision thresholds of the fusion classifier that maximise F1 on the validation split."""
    device = next(task.trainable.parameters()).device
    logits, targets = [], []
    for module in (task.trainable, *task.frozen):
        module.eval()
    with torch.no_grad():
        for batch in make_loader(config, "val", batch_size, train=False, labelled_only=True):
            logits.append(task.trainable(*task.features(batch["image"].to(device))).float().cpu())
            targets.append(batch["label"])
    return choose_thresholds(torch.cat(targets).numpy(), task.task.probabilities(torch.cat(logits)).numpy())


def run_stage1(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Stage 1: triplet (or SupCon) pretraining of the DenseNet, then fine-tuning with the task's loss
    (cross-entropy; for multi-label findings BCE, after Jaccard-weighted SupCon pretraining).

    Every stage runner saves its best model to the registry and returns the entry; ``on_epoch``
    receives the monitored phase's per-epoch validation metrics.
    """
    ctx, run_dir, config = _start(config, "stage1", run_dir, resume)
    s1 = config["stage1"]
    train = config["train"]
    seed_everything(int(config["seed"]), bool(train.get("deterministic")))
    task = stage_task(config)
    encoder_section = with_outputs(config["model"]["encoder"], task)
    encoder = create_model(encoder_section)
    metrics: dict[str, float] = {}
    phases: list[FitResult] = []
    contrastive = s1["contrastive"]
    if contrastive.get("enabled", True):
        options = {"name": contrastive["loss"]}
        if contrastive["loss"] == "triplet":
            options.update(margin=contrastive["margin"], miner=contrastive["miner"])
        else:
            options.update(temperature=contrastive["temperature"])
        result = _fit(ContrastiveTask(encoder, task.metric_loss(options)), config,
                      settings_for(config, "stage1", "contrastive"), run_dir / "contrastive", "val_loss",
                      resume, progress, "stage1/contrastive", ctx=ctx)
        encoder.load_state_dict(result.best_state)
        phases.append(result)
        metrics["contrastive_val_loss"] = result.best_metrics["val_loss"]
        metrics["contrastive_epochs"] = float(result.epochs_run)
    result = _fit(ClassifierTask(encoder, task), config, settings_for(config, "stage1", "finetune"),
                  run_dir / "finetune", s1["monitor"], resume, progress, "stage1/finetune", on_epoch, ctx=ctx)
    metrics.update(result.best_metrics)
    metrics["finetune_epochs"] = float(result.epochs_run)
    metrics.update(train_seconds=train_seconds(*phases, result), parameters=float(parameter_count(encoder)))
    registry = _registry(config)
    return _publish(ctx, registry, lambda: registry.save(
        {"encoder": result.best_state}, stage="stage1", config=config,
        architecture={"encoder": encoder_section, "input_size": input_size(config), "task": task_record(task)},
        metrics=metrics,
        tags=_tags(config, [f"run={run_dir.name}", *tags]),
    ))


def run_stage2(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Stage 2: the saliency UNet (KL loss) with the stage-1 DenseNet frozen as second encoder.

    ``stage2.variant`` selects the baselines instead: ``resse`` (Res-SE UNet alone) or
    ``unet`` (standard UNet); they need no stage-1 entry.
    """
    variant = config["stage2"]["variant"]
    if variant not in SALIENCY_VARIANTS:
        raise ConfigError(f"stage2.variant must be one of {sorted(SALIENCY_VARIANTS)}, got {variant!r}")
    stage = SALIENCY_VARIANTS[variant]
    ctx, run_dir, config = _start(config, stage, run_dir, resume)
    seed_everything(int(config["seed"]), bool(config["train"].get("deterministic")))
    registry = _registry(config)
    encoder, parents, cache = None, [], None
    if variant == "full":
        encoder, parent = load_encoder(registry, config["stage2"]["encoder"])
        freeze(encoder)
        parents = [parent.id]
        cache = FeatureCacheSpec("stage2", (parent,), {"dense": "tap map"}, with_images=True)
        unet_section = {**config["model"]["unet"], "aux_channels": encoder.feature_channels}
    elif variant == "resse":
        unet_section = {**config["model"]["unet"], "aux_channels": 0}
    else:
        unet_section = dict(config["stage2"]["baseline_unet"])
    task = SaliencyTask(create_model(unet_section), encoder)
    snapshot = task.freeze_snapshot()
    augment = bool(config["data"]["augment"].get("enabled", True))
    result = _fit(task, config, settings_for(config, "stage2"), run_dir, config["stage2"]["monitor"],
                  resume, progress, stage, on_epoch, ctx=ctx, augment=augment, cache=cache)
    task.assert_unchanged(snapshot)
    architecture = {"unet": unet_section, "input_size": input_size(config)}
    if encoder is not None:
        architecture["encoder"] = registry.resolve(parents[0]).architecture["encoder"]
    return _publish(ctx, registry, lambda: registry.save(
        {"unet": result.best_state}, stage=stage, config=config, architecture=architecture,
        parents=parents, metrics={**result.best_metrics, "epochs": float(result.epochs_run),
                                  "train_seconds": train_seconds(result),
                                  "parameters": float(parameter_count(task.trainable))},
        tags=_tags(config, [f"run={run_dir.name}", f"variant={variant}", *tags]),
    ))


def run_stage3(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Stage 3: the fusion classifier on the frozen DenseNet and frozen saliency UNet.

    It trains on the features of un-augmented images, so they are computed once
    (``train.feature_cache``; the linear head only needs globally pooled features, the conv
    head maps at the DenseNet feature's resolution).
    """
    ctx, run_dir, config = _start(config, "stage3", run_dir, resume)
    seed_everything(int(config["seed"]), bool(config["train"].get("deterministic")))
    registry = _registry(config)
    unet, encoder, parent = load_saliency(registry, config["stage3"]["saliency"])
    if encoder is None:
        raise InputError(f"stage 3 needs the full dual-encoder saliency model; {parent.id} is a {parent.stage}")
    freeze(encoder)
    freeze(unet)
    spec = stage_task(config)
    section = {**with_outputs(config["model"]["classifier"], spec), "dense_channels": encoder.feature_channels,
               "decoder_channels": unet.decoder_channels}
    task = FusionTask(create_model(section), encoder, unet, spec)
    snapshot = task.freeze_snapshot()
    cache = FeatureCacheSpec("stage3", (parent, registry.resolve(parent.parents[0])),
                             {"dense": "tap", "decoder": "last decoder map", "head": section.get("head", "linear")},
                             with_images=False)
    result = _fit(task, config, settings_for(config, "stage3"), run_dir, config["stage3"]["monitor"],
                  resume, progress, "stage3", on_epoch, ctx=ctx, augment=False, cache=cache)
    task.assert_unchanged(snapshot)
    thresholds = None
    if spec.multilabel:
        task.trainable.load_state_dict(result.best_state)
        thresholds = validation_thresholds(task, config, settings_for(config, "stage3").batch_size)
    return _publish(ctx, registry, lambda: registry.save(
        {"classifier": result.best_state}, stage="stage3", config=config,
        architecture={"classifier": section, "input_size": input_size(config), "task": task_record(spec, thresholds)},
        parents=[parent.id],
        metrics={**result.best_metrics, "epochs": float(result.epochs_run), "train_seconds": train_seconds(result),
                 "parameters": float(parameter_count(task.trainable))},
        tags=_tags(config, [f"run={run_dir.name}", *tags]),
    ))


STAGES = {"stage1": run_stage1, "stage2": run_stage2, "stage3": run_stage3}
