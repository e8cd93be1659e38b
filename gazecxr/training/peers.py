"""The paper's peer methods, trained on the same split as our model, each ending with a registry entry.

Every peer classifies for the run's ``task:`` like the three stages: its network has one output per
task output (``num_classes`` of ``peers.<method>.model`` is replaced by the task's: 3 for the EGD
classes, 1 for ``siim_pneumothorax``), its class loss is the task's (cross-entropy; BCE for findings,
with the training split's positive weights when ``positive_weights``) and its entry records the task.
Films without gaze (``has_gaze`` false, e.g. in CXR-P) train the classification of every peer; every
loss term that reads gaze and every saliency score skips them.

- ``mtunet``: MT-UNet, classification and saliency jointly with the uncertainty-weighted loss
  (`gazecxr.losses.UncertaintyWeightedLoss`, its KL over the films with gaze), Adam 1e-4,
  ReduceLROnPlateau(0.1) on the validation total loss and, as released, a reload of the best weights
  and optimiser at every learning-rate drop (``train.reload_best_on_lr_drop``); the best epoch by
  validation total loss.
- ``irnetv2``: Inception-ResNet-v2 (timm), the task's loss, trained like the stage-1 fine-tuning
  (``stage1.finetune.train`` settings, then ``peers.irnetv2.train``).
- ``gazegnn``: GazeGNN (`gazecxr.models.gazegnn`), the image resized to 224×224 and the
  fixations of each record as a log-duration map augmented with it; AdamW. It needs the
  radiologist's gaze at test time (an oracle): its entries carry the tag ``oracle=test-time-gaze``.
  A film without gaze has no fixations, so GazeGNN sees an all-zero gaze map for it, in training
  and at test time alike (what the oracle has to offer there: nothing).
  Its checkpoint is chosen on the validation split like every other method's (the released code
  chose it on the test split).
- ``gaze_token_mask``, ``gdvig``, ``gaze_mtl``: the field's gaze mechanisms
  (`gazecxr.training.mechanism_tasks`), which read gaze in their training loss only; their
  entries are served like any image classifier. Each is tagged with its gaze switch
  (``mask_probability=…``, ``gaze_guided=…``, ``aux_weight=…``): switched off, it is the same
  backbone trained without gaze.

Each entry records ``train_seconds`` (summed epoch wall times, over resumed runs too) and
``parameters`` in its metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gazecxr.config import deep_merge
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.gaze_maps import GazeMapDataset
from gazecxr.data.gaze_stats import GazeStatsDataset
from gazecxr.losses import UncertaintyWeightedLoss
from gazecxr.models.factory import create_model
from gazecxr.tasks import ExclusiveClasses, TaskSpec, task_record, with_outputs
from gazecxr.training.data import input_size, make_augment, make_dataset, make_loader
from gazecxr.training.distributed import DistContext
from gazecxr.training.engine import (
    Batch,
    FitResult,
    Outputs,
    Task,
    Trainer,
    TrainSettings,
)
from gazecxr.training.mechanism_tasks import GazeDistanceTask, GazeStatsTask, TokenMaskTask
from gazecxr.training.objectives import (
    ClassifierTask,
    classification_summary,
    saliency_scores,
    saliency_summary,
)
from gazecxr.training.registry import Entry, infer_mode
from gazecxr.training.runtime import seed_everything
from gazecxr.training.stages import (
    EpochCallback,
    _fit,
    _publish,
    _registry,
    _start,
    _tags,
    parameter_count,
    stage_task,
    train_seconds,
)

PEER_METHODS = ("mtunet", "gazegnn", "irnetv2", "gaze_token_mask", "gdvig", "gaze_mtl")
"""Peer methods, also the registry stage names of their entries."""

MECHANISM_METHODS = ("gaze_token_mask", "gdvig", "gaze_mtl")
"""The peer methods that are gaze mechanisms (gaze in the training loss only)."""

ORACLE_TAG = "oracle=test-time-gaze"
"""Tag of entries whose model needs the radiologist's gaze at test time (GazeGNN)."""


def peer_settings(config: Mapping[str, Any], method: str) -> TrainSettings:
    """``train`` defaults merged with the method's ``train`` section (IRNetv2: over ``stage1.finetune.train``)."""
    base = dict(config["train"])
    if method == "irnetv2":
        base = deep_merge(base, config["stage1"]["finetune"].get("train") or {})
    return TrainSettings.from_config(deep_merge(base, config["peers"][method].get("train") or {}))


def _sub_state(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


class MTUNetTask(Task):
    """MT-UNet and its loss weights trained jointly (the log-sigmas are trainable parameters): the
    class loss over every film, the saliency KL over the films with gaze (``has_gaze``)."""

    def __init__(self, net: nn.Module, loss: UncertaintyWeightedLoss, task: TaskSpec | None = None):
        self.trainable = nn.ModuleDict({"net": net, "loss": loss})
        self.net, self.weighting, self.task = net, loss, task

    def loss(self, batch: Batch) -> Tensor:
        out = self.net(batch["image"])
        return self.weighting(out["class_logits"], batch["label"], out["saliency_logits"], batch["heatmap"],
                              batch.get("has_gaze"))["total"]

    def outputs(self, batch: Batch) -> Outputs:
        out = self.net(batch["image"])
        logits, saliency = out["class_logits"].float(), out["saliency_logits"].float()
        has_gaze = batch.get("has_gaze")
        return {"logits": logits, "label": batch["label"], "kl_loss": film_kl(saliency, batch["heatmap"], has_gaze),
                **saliency_scores(saliency, batch["heatmap"], has_gaze)}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        """The task's classification metrics, the saliency means over the films with gaze, and the weighted
        validation total (its KL part 0 when no validation film has gaze, as for such a training batch)."""
        out = classification_summary(outputs["label"], outputs["logits"], self.task)
        ce = out["val_loss"]
        kl_loss = float(np.nanmean(outputs["kl_loss"].numpy())) if torch.isfinite(outputs["kl_loss"]).any() \
            else float("nan")
        with torch.no_grad():
            total = self.weighting.weigh(torch.tensor(ce), torch.tensor(kl_loss if np.isfinite(kl_loss) else 0.0))
        out.update(saliency_summary(outputs))
        out.update(val_total_loss=float(total), val_ce=ce, val_kl_loss=kl_loss,
                   sigma_class=float(self.weighting.log_sigma_class.exp()),
                   sigma_saliency=float(self.weighting.log_sigma_saliency.exp()))
        return out


def film_kl(saliency_logits: Tensor, heatmaps: Tensor, has_gaze: Tensor | None = None) -> Tensor:
    """Per-film training KL (N,) float64 on the CPU of saliency logits (N, 1, H, W) to heatmaps (N, 1, H, W),
    the mean of which is the loss's KL; NaN for the films whose ``has_gaze`` is false."""
    gaze = torch.ones(len(heatmaps), dtype=torch.bool) if has_gaze is None else has_gaze.cpu().to(torch.bool)
    values = torch.full((len(heatmaps),), float("nan"), dtype=torch.float64)
    if gaze.any():
        logits, target = saliency_logits.float().cpu()[gaze].flatten(1), heatmaps.float().cpu()[gaze].flatten(1)
        target = target / target.sum(dim=1, keepdim=True)
        values[gaze] = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="none").sum(1).double()
    return values


def _begin(config: Mapping[str, Any], method: str, run_dir: str | Path | None,
           resume: bool) -> tuple[DistContext, Path, dict[str, Any], TaskSpec, nn.Module]:
    """Run directory, stored config, the run's task and the seeded, freshly built network of ``method``
    (one output per task output)."""
    ctx, run_dir, config = _start(config, method, run_dir, resume)
    seed_everything(int(config["seed"]), bool(config["train"].get("deterministic")))
    task = stage_task(config)
    return ctx, run_dir, config, task, create_model(peer_model(config, method, task))


def peer_model(config: Mapping[str, Any], method: str, task: TaskSpec) -> dict[str, Any]:
    """``peers.<method>.model`` with ``num_classes`` = the task's number of outputs."""
    return with_outputs(config["peers"][method]["model"], task)


def _save(ctx: DistContext, config: Mapping[str, Any], run_dir: Path, method: str, task: TaskSpec,
          state: dict[str, Any], result: FitResult, net: nn.Module, architecture: Mapping[str, Any] | None = None,
          tags: Sequence[str] = ()) -> Entry:
    """Publish ``method``'s entry: its model section and canvas size, its task, best metrics, epochs,
    training time and parameter count."""
    registry = _registry(config)
    return _publish(ctx, registry, lambda: registry.save(
        state, stage=method, config=config,
        architecture={method: peer_model(config, method, task), **(architecture or {}),
                      "input_size": input_size(config), "task": task_record(task)},
        metrics={**result.best_metrics, "epochs": float(result.epochs_run), "train_seconds": train_seconds(result),
                 "parameters": float(parameter_count(net))},
        tags=_tags(config, [f"run={run_dir.name}", *tags]),
    ))


def _augment(config: Mapping[str, Any]) -> bool:
    return bool(config["data"]["augment"].get("enabled", True))


def run_mtunet(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
               progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """MT-UNet: class and saliency jointly (``peers.mtunet``); saves entry ``mtunet``."""
    ctx, run_dir, config, spec, net = _begin(config, "mtunet", run_dir, resume)
    section = config["peers"]["mtunet"]
    task = MTUNetTask(net, UncertaintyWeightedLoss(section["sigma_mode"], spec.loss), spec)
    result = _fit(task, config, peer_settings(config, "mtunet"), run_dir, section["monitor"], resume, progress,
                  "mtunet", on_epoch, ctx=ctx, augment=_augment(config))
    state = {"mtunet": _sub_state(result.best_state, "net."), "loss": _sub_state(result.best_state, "loss.")}
    return _save(ctx, config, run_dir, "mtunet", spec, state, result, net, {"sigma_mode": section["sigma_mode"]},
                 [f"sigma_mode={section['sigma_mode']}", *tags])


def run_irnetv2(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
                progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Inception-ResNet-v2 with the task's loss (``peers.irnetv2``); saves entry ``irnetv2``."""
    ctx, run_dir, config, spec, net = _begin(config, "irnetv2", run_dir, resume)
    result = _fit(ClassifierTask(net, spec), config, peer_settings(config, "irnetv2"), run_dir,
                  config["peers"]["irnetv2"]["monitor"], resume, progress, "irnetv2", on_epoch, ctx=ctx,
                  augment=_augment(config))
    return _save(ctx, config, run_dir, "irnetv2", spec, {"irnetv2": result.best_state}, result, net, tags=tags)


def gaze_dataset(config: Mapping[str, Any], split: str, augment: bool) -> GazeMapDataset:
    """One split's labelled records (`make_dataset`: the task's targets) with per-pixel gaze maps (all
    zero for a film without gaze), augmented (image and gaze together) when ``augment``."""
    augmentation = make_augment(config["data"]["augment"]) if augment else None
    return GazeMapDataset(make_dataset(config, split, augment=False, labelled_only=True), augmentation)


class GazeGNNTask(Task):
    """Training with ``task``'s loss of a classifier fed the batch's images and gaze maps (``gaze``)."""

    def __init__(self, net: nn.Module, task: TaskSpec | None = None):
        self.trainable, self.task = net, task or ExclusiveClasses()

    def logits(self, batch: Batch) -> Tensor:
        """Class logits of the batch."""
        return self.trainable(batch["image"], batch["gaze"]).float()

    def loss(self, batch: Batch) -> Tensor:
        return self.task.loss(self.logits(batch), batch["label"])

    def outputs(self, batch: Batch) -> Outputs:
        return {"logits": self.logits(batch), "label": batch["label"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return classification_summary(outputs["label"], outputs["logits"], self.task)


def run_gazegnn(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
                progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """GazeGNN on images and their fixations (``peers.gazegnn``); saves entry ``gazegnn`` tagged `ORACLE_TAG`."""
    ctx, run_dir, config, spec, net = _begin(config, "gazegnn", run_dir, resume)
    settings = peer_settings(config, "gazegnn")
    monitor = config["peers"]["gazegnn"]["monitor"]
    trainer = Trainer(GazeGNNTask(net, spec), settings, run_dir, monitor, infer_mode(monitor), seed=int(config["seed"]),
                      progress=progress, name="gazegnn", on_epoch=on_epoch, dist=ctx)
    train, val = (make_loader(config, split, settings.batch_size, is_train, trainer.device,
                              dataset=gaze_dataset(config, split, is_train and _augment(config)), dist=ctx)
                  for split, is_train in (("train", True), ("val", False)))
    result = trainer.fit(train, val, resume=resume and (run_dir / "state.pt").is_file())
    size = int(net.image_size)
    return _save(ctx, config, run_dir, "gazegnn", spec, {"gazegnn": result.best_state}, result, net,
                 {"model_input": [size, size]}, [ORACLE_TAG, *tags])


def task_options(section: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The ``keys`` given in a peer section (absent ones keep the task constructor's defaults)."""
    return {key: section[key] for key in keys if key in section}


def require_heatmaps(config: Mapping[str, Any], method: str) -> None:
    """Raise unless the training split carries gaze heatmaps (what ``method``'s loss reads)."""
    data = config["data"]
    if not GazeCXRDataset(data["h5"], "train").has_heatmap:
        raise ValueError(f"{data['h5']}: the file stores no gaze heatmaps; {method} trains on them")


def run_gaze_token_mask(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
                        progress: bool = True, tags: Sequence[str] = (),
                        on_epoch: EpochCallback | None = None) -> Entry:
    """EG-ViT's gaze token mask (``peers.gaze_token_mask``); saves entry ``gaze_token_mask``."""
    method = "gaze_token_mask"
    require_heatmaps(config, method)
    ctx, run_dir, config, spec, net = _begin(config, method, run_dir, resume)
    section = config["peers"][method]
    task = TokenMaskTask(net, **task_options(section, ("mask_probability", "keep_tokens", "label_smoothing")),
                         seed=int(config["seed"]), task=spec)
    result = _fit(task, config, peer_settings(config, method), run_dir, section["monitor"], resume, progress,
                  method, on_epoch, ctx=ctx, augment=_augment(config))
    return _save(ctx, config, run_dir, method, spec, {method: result.best_state}, result, net,
                 {"model_input": [net.img_size, net.img_size]},
                 [f"mask_probability={task.mask_probability}", *tags])


def run_gdvig(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
              progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """GD-ViG (``peers.gdvig``); saves entry ``gdvig``."""
    method = "gdvig"
    section = config["peers"][method]
    guided = bool(section["model"].get("gaze_guided", True))
    if guided:
        require_heatmaps(config, method)
    ctx, run_dir, config, spec, net = _begin(config, method, run_dir, resume)
    task = GazeDistanceTask(net, **task_options(section, ("map_weight",)), task=spec)
    result = _fit(task, config, peer_settings(config, method), run_dir, section["monitor"], resume, progress,
                  method, on_epoch, ctx=ctx, augment=_augment(config))
    return _save(ctx, config, run_dir, method, spec, {method: result.best_state}, result, net,
                 {"model_input": [net.image_size, net.image_size]}, [f"gaze_guided={str(guided).lower()}", *tags])


def gaze_stats_datasets(config: Mapping[str, Any], tasks: Sequence[str]) -> tuple[GazeStatsDataset, GazeStatsDataset]:
    """Training (augmented per ``data.augment``) and validation splits with Gaze-MTL's targets
    (``peers.gaze_mtl.grid``/``window``), the time normalised by the training split's."""
    section = config["peers"]["gaze_mtl"]
    options = {"tasks": tasks, **task_options(section, ("grid", "window"))}
    train = GazeStatsDataset(make_dataset(config, "train", _augment(config), labelled_only=True), **options)
    val = GazeStatsDataset(make_dataset(config, "val", False, labelled_only=True),
                           time_reference=train.time_reference, **options)
    return train, val


def run_gaze_mtl(config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
                 progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Gaze-MTL (``peers.gaze_mtl``), its targets from each record's fixations; saves entry ``gaze_mtl``."""
    method = "gaze_mtl"
    ctx, run_dir, config, spec, net = _begin(config, method, run_dir, resume)
    section = config["peers"][method]
    task = GazeStatsTask(net, **task_options(section, ("aux_weight",)), task=spec)
    settings = peer_settings(config, method)
    trainer = Trainer(task, settings, run_dir, section["monitor"], infer_mode(section["monitor"]),
                      seed=int(config["seed"]), progress=progress, name=method, on_epoch=on_epoch, dist=ctx)
    datasets = gaze_stats_datasets(config, net.aux_tasks) if task.aux_weight > 0 else \
        (make_dataset(config, "train", _augment(config), labelled_only=True),
         make_dataset(config, "val", False, labelled_only=True))
    train, val = (make_loader(config, split, settings.batch_size, is_train, trainer.device, dataset=dataset, dist=ctx)
                  for split, is_train, dataset in zip(("train", "val"), (True, False), datasets))
    result = trainer.fit(train, val, resume=resume and (run_dir / "state.pt").is_file())
    return _save(ctx, config, run_dir, method, spec, {method: result.best_state}, result, net,
                 tags=[f"aux_weight={task.aux_weight}", *tags])


PEERS = {"mtunet": run_mtunet, "gazegnn": run_gazegnn, "irnetv2": run_irnetv2,
         "gaze_token_mask": run_gaze_token_mask, "gdvig": run_gdvig, "gaze_mtl": run_gaze_mtl}


def run_peer(method: str, config: Mapping[str, Any], run_dir: str | Path | None = None, resume: bool = False,
             progress: bool = True, tags: Sequence[str] = (), on_epoch: EpochCallback | None = None) -> Entry:
    """Train peer ``method`` (one of `PEER_METHODS`) and return its registry entry."""
    if method not in PEERS:
        raise ValueError(f"unknown peer method {method!r}; valid methods: {sorted(PEERS)}")
    if not (config.get("peers") or {}).get(method):
        raise ValueError(f"the config has no peers.{method} section (the paper, demo and test presets have one)")
    return PEERS[method](config, run_dir=run_dir, resume=resume, progress=progress, tags=tags, on_epoch=on_epoch)
