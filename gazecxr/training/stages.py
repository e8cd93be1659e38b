"""The three training stages, each ending with a registry entry."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from gazecxr.config import config_hash, deep_merge, dump_config, parse_yaml
from gazecxr.losses import make_metric_loss
from gazecxr.models.cooperative import freeze
from gazecxr.models.factory import create_model
from gazecxr.registry import Entry, Registry
from gazecxr.training.checkpoint_io import load_encoder, load_saliency
from gazecxr.training.data import input_size, make_loader
from gazecxr.training.engine import FitResult, Task, Trainer, TrainSettings
from gazecxr.training.runtime import seed_everything
from gazecxr.training.tasks import ClassifierTask, ContrastiveTask, FusionTask, SaliencyTask

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
            raise FileNotFoundError(f"--resume: no earlier {stage} run under {root}")
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


def _fit(task: Task, config: Mapping[str, Any], settings: TrainSettings, run_dir: Path, monitor: str,
         resume: bool, progress: bool, name: str, on_epoch: EpochCallback | None = None) -> FitResult:
    mode = "min" if monitor.endswith(("loss", "kl", "ece")) else "max"
    trainer = Trainer(task, settings, run_dir, monitor, mode, seed=int(config["seed"]), progress=progress, name=name,
                      on_epoch=on_epoch)
    train = make_loader(config, "train", settings.batch_size, train=True, device=trainer.device)
    val = make_loader(config, "val", settings.batch_size, train=False, device=trainer.device)
    return trainer.fit(train, val, resume=resume and (run_dir / "state.pt").is_file())


def _registry(config: Mapping[str, Any]) -> Registry:
    return Registry(config["registry"]["root"])


def _tags(config: Mapping[str, Any], extra: Sequence[str]) -> list[str]:
    return [*config["registry"].get("tags", []), *extra]


def run_stage1(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Stage 1: triplet (or SupCon) pretraining of the DenseNet, then cross-entropy fine-tuning.

    Every stage runner saves its best model to the registry and returns the entry; ``on_epoch``
    receives the monitored phase's per-epoch validation metrics.
    """
    run_dir = run_dir_for(config, "stage1", run_dir, resume)
    config = _prepare_run(config, run_dir, resume)
    s1 = config["stage1"]
    train = config["train"]
    seed_everything(int(config["seed"]), bool(train.get("deterministic")))
    encoder = create_model(config["model"]["encoder"])
    metrics: dict[str, float] = {}
    contrastive = s1["contrastive"]
    if contrastive.get("enabled", True):
        options = {"name": contrastive["loss"]}
        if contrastive["loss"] == "triplet":
            options.update(margin=contrastive["margin"], miner=contrastive["miner"])
        else:
            options.update(temperature=contrastive["temperature"])
        result = _fit(ContrastiveTask(encoder, make_metric_loss(options)), config,
                      settings_for(config, "stage1", "contrastive"), run_dir / "contrastive", "val_loss",
                      resume, progress, "stage1/contrastive")
        encoder.load_state_dict(result.best_state)
        metrics["contrastive_val_loss"] = result.best_metrics["val_loss"]
        metrics["contrastive_epochs"] = float(result.epochs_run)
    result = _fit(ClassifierTask(encoder), config, settings_for(config, "stage1", "finetune"),
                  run_dir / "finetune", s1["monitor"], resume, progress, "stage1/finetune", on_epoch)
    metrics.update(result.best_metrics)
    metrics["finetune_epochs"] = float(result.epochs_run)
    return _registry(config).save(
        {"encoder": result.best_state}, stage="stage1", config=config,
        architecture={"encoder": config["model"]["encoder"], "input_size": input_size(config)}, metrics=metrics,
        tags=_tags(config, [f"run={run_dir.name}", *tags]),
    )


def run_stage2(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Stage 2: the saliency UNet (KL loss) with the stage-1 DenseNet frozen as second encoder.

    ``stage2.variant`` selects the baselines instead: ``resse`` (Res-SE UNet alone) or
    ``unet`` (standard UNet); they need no stage-1 entry.
    """
    variant = config["stage2"]["variant"]
    if variant not in SALIENCY_VARIANTS:
        raise ValueError(f"stage2.variant must be one of {sorted(SALIENCY_VARIANTS)}, got {variant!r}")
    stage = SALIENCY_VARIANTS[variant]
    run_dir = run_dir_for(config, stage, run_dir, resume)
    config = _prepare_run(config, run_dir, resume)
    seed_everything(int(config["seed"]), bool(config["train"].get("deterministic")))
    registry = _registry(config)
    encoder, parents = None, []
    if variant == "full":
        encoder, parent = load_encoder(registry, config["stage2"]["encoder"])
        freeze(encoder)
        parents = [parent.id]
        unet_section = {**config["model"]["unet"], "aux_channels": encoder.feature_channels}
    elif variant == "resse":
        unet_section = {**config["model"]["unet"], "aux_channels": 0}
    else:
        unet_section = dict(config["stage2"]["baseline_unet"])
    task = SaliencyTask(create_model(unet_section), encoder)
    snapshot = task.freeze_snapshot()
    result = _fit(task, config, settings_for(config, "stage2"), run_dir, config["stage2"]["monitor"],
                  resume, progress, stage, on_epoch)
    task.assert_unchanged(snapshot)
    architecture = {"unet": unet_section, "input_size": input_size(config)}
    if encoder is not None:
        architecture["encoder"] = registry.resolve(parents[0]).architecture["encoder"]
    return registry.save(
        {"unet": result.best_state}, stage=stage, config=config, architecture=architecture,
        parents=parents, metrics={**result.best_metrics, "epochs": float(result.epochs_run)},
        tags=_tags(config, [f"run={run_dir.name}", f"variant={variant}", *tags]),
    )


def run_stage3(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Stage 3: the fusion classifier on the frozen DenseNet and frozen saliency UNet."""
    run_dir = run_dir_for(config, "stage3", run_dir, resume)
    config = _prepare_run(config, run_dir, resume)
    seed_everything(int(config["seed"]), bool(config["train"].get("deterministic")))
    registry = _registry(config)
    unet, encoder, parent = load_saliency(registry, config["stage3"]["saliency"])
    if encoder is None:
        raise ValueError(f"stage 3 needs the full dual-encoder saliency model; {parent.id} is a {parent.stage}")
    freeze(encoder)
    freeze(unet)
    section = {**config["model"]["classifier"], "dense_channels": encoder.feature_channels,
               "decoder_channels": unet.decoder_channels}
    task = FusionTask(create_model(section), encoder, unet)
    snapshot = task.freeze_snapshot()
    result = _fit(task, config, settings_for(config, "stage3"), run_dir, config["stage3"]["monitor"],
                  resume, progress, "stage3", on_epoch)
    task.assert_unchanged(snapshot)
    return registry.save(
        {"classifier": result.best_state}, stage="stage3", config=config,
        architecture={"classifier": section, "input_size": input_size(config)}, parents=[parent.id],
        metrics={**result.best_metrics, "epochs": float(result.epochs_run)},
        tags=_tags(config, [f"run={run_dir.name}", *tags]),
    )


STAGES = {"stage1": run_stage1, "stage2": run_stage2, "stage3": run_stage3}
