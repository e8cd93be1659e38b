"""The training engine shared by all stages: one loop, early stopping, logging, resume."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from gazecxr.config.errors import ConfigError, InputError, InputNotFoundError, OutputExistsError
from gazecxr.training.distributed import (
    SINGLE,
    DistContext,
    all_gather_objects,
    barrier,
    broadcast_object,
    device_for,
    gather_outputs,
    sum_across,
    sync_buffers,
)
from gazecxr.training.feature_cache import CACHE_MODES
from gazecxr.training.runtime import (
    amp_dtype,
    autocast,
    rng_state,
    seed_everything,
    set_rng_state,
)

Batch = dict[str, Any]
Outputs = dict[str, Tensor]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
FALLBACK_MONITOR = "val_loss"
"""Monitored (minimised) instead of a metric that is undefined (NaN) on the validation split."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training phase (the ``train`` config section).

    ``feature_cache`` (auto | memory | disk | off) and ``feature_cache_memory_mb`` control the
    frozen-feature cache of stages 2 and 3 (:mod:`gazecxr.training.feature_cache`);
    ``sync_batchnorm`` converts the trainable module's batch norms to SyncBatchNorm under
    torchrun (CUDA only; batch statistics then span all ranks' batches). ``optimizer`` is
    ``adam``, ``adamw`` (decoupled weight decay) or ``sgd`` (plain, no momentum: the explanation study's
    ViT recipe); with ``reload_best_on_lr_drop`` every
    ReduceLROnPlateau drop (``plateau``) restarts from the best epoch's weights, optimiser and
    scheduler state at the new learning rate (MT-UNet's released recipe).
    """

    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    max_epochs: int = 50
    patience: int | None = 10
    plateau: Mapping[str, float] | None = None
    grad_clip: float | None = None
    amp: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    device: str = "auto"
    feature_cache: str = "auto"
    feature_cache_memory_mb: float = 2048.0
    sync_batchnorm: bool = False
    optimizer: str = "adam"
    reload_best_on_lr_drop: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.feature_cache not in CACHE_MODES:
            raise ConfigError(f"feature_cache must be one of {list(CACHE_MODES)}, got {self.feature_cache!r}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "TrainSettings":
        """Settings from a config section; unknown keys are an error naming the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - valid)
        if unknown:
            raise ConfigError(f"unknown train setting(s) {unknown}; valid: {sorted(valid)}")
        return cls(**section)


class Task(ABC):
    """What a phase trains: its trainable module, the loss of a batch and validation metrics.

    ``frozen`` lists modules the task runs but never trains (moved to the device with it).
    Validation is split in two so that it can run sharded over processes: ``outputs`` gives
    per-sample values of one batch, ``metrics`` turns the outputs of a whole split into numbers.
    """

    trainable: nn.Module
    frozen: list[nn.Module] = []
    unused_parameters: bool = False
    """True when ``loss`` leaves some trainable parameters unused (DistributedDataParallel must know)."""

    @abstractmethod
    def loss(self, batch: Batch) -> Tensor:
        """Scalar training loss of a prepared batch (tensors on the device)."""

    @abstractmethod
    def outputs(self, batch: Batch) -> Outputs:
        """Per-sample validation outputs of a prepared batch (first dimension = batch size)."""

    @abstractmethod
    def metrics(self, outputs: Outputs) -> dict[str, float]:
        """Validation metrics from the per-sample outputs of a whole split."""

    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Validation metrics over prepared batches (call under ``torch.no_grad``)."""
        return self.metrics(concat_outputs([self.outputs(batch) for batch in batches]))

    def train(self) -> None:
        """Switch to training mode (frozen parts stay in eval mode)."""
        self.trainable.train()

    def eval(self) -> None:
        """Switch to evaluation mode."""
        self.trainable.eval()


def concat_outputs(parts: list[Outputs]) -> Outputs:
    """Per-batch outputs joined along the sample dimension, on the CPU."""
    if not parts:
        raise InputError("no validation batches")
    return {key: torch.cat([part[key].detach().cpu() for part in parts]) for key in parts[0]}


class _TaskLoss(nn.Module):
    """A task's training loss as a module owning only the trainable part (what DDP wraps)."""

    def __init__(self, task: Task):
        super().__init__()
        self.trainable = task.trainable
        self.task = task

    def forward(self, batch: Batch) -> Tensor:
        return self.task.loss(batch)


@dataclass
class FitResult:
    """Outcome of ``Trainer.fit``: best epoch and metrics, and the per-epoch history."""

    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, Tensor] = field(default_factory=dict, repr=False)


TENSORBOARD_MISSING = ("note: TensorBoard logging is off: the tensorboard package is not installed "
                       "(pip install 'gazecxr[tensorboard]'); the per-epoch log is in log.jsonl")


@functools.cache
def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(TENSORBOARD_MISSING, file=sys.stderr)
        return None
    return SummaryWriter


def tensorboard_writer(log_dir: Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or None (`TENSORBOARD_MISSING` is
    printed once to stderr) when the optional ``tensorboard`` extra is not installed."""
    writer_class = _summary_writer_class()
    return None if writer_class is None else writer_class(str(log_dir))


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class Trainer:
    """Adam (or AdamW) training of ``task.trainable`` with early stopping on ``monitor``.

    Every epoch writes ``state.pt`` (model, optimiser, scheduler, scaler, RNG states, epoch,
    best-so-far) atomically into ``run_dir``, appends to ``log.jsonl`` and TensorBoard, and
    keeps the best weights in ``best.pt``; ``fit(resume=True)`` continues a killed run exactly
    where its last completed epoch left it. ``done.json`` marks a finished run. ``on_epoch``
    is called with each epoch's validation metrics after they are saved (e.g. to report to a
    hyperparameter search, which may stop the run by raising).

    Under ``torchrun`` (``dist`` with several ranks) the trainable module is wrapped in
    DistributedDataParallel (frozen modules are not), validation outputs are gathered from all
    ranks so every rank computes the same metrics over the full split (``on_epoch`` runs on
    every rank with them), and only rank 0 writes files; ``run_dir`` must be visible to every
    rank (one node, or a shared filesystem).
    """

    def __init__(
        self,
        task: Task,
        settings: TrainSettings,
        run_dir: str | Path,
        monitor: str,
        mode: str = "max",
        seed: int = 0,
        progress: bool = True,
        name: str = "train",
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        dist: DistContext = SINGLE,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.task, self.settings, self.monitor, self.mode = task, settings, monitor, mode
        self.run_dir, self.seed, self.name = Path(run_dir), seed, name
        self.dist = dist
        self.progress = progress and dist.is_main
        self.on_epoch = on_epoch
        self.device = device_for(settings.device, dist)
        self.dtype = amp_dtype(settings.amp, self.device)
        self.channels_last = settings.channels_last and self.device.type == "cuda"
        if settings.sync_batchnorm and dist.enabled:
            if self.device.type != "cuda":
                raise ConfigError("sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel)")
            task.trainable = nn.SyncBatchNorm.convert_sync_batchnorm(task.trainable)
        for module in (task.trainable, *task.frozen):
            module.to(self.device)
            if self.channels_last:
                module.to(memory_format=torch.channels_last)
        params = [p for p in task.trainable.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{name}: the task has no trainable parameters")
        self.optimizer = OPTIMIZERS[settings.optimizer](params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode=mode, **dict(settings.plateau))
            if settings.plateau else None
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self._ddp: DistributedDataParallel | None = None
        if dist.enabled:
            self._ddp = DistributedDataParallel(
                _TaskLoss(task), device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=task.unused_parameters,
            )
            seed_everything(seed + 1009 * dist.rank, settings.deterministic)

    def prepare(self, batch: Batch) -> Batch:
        """Move a batch's tensors to the device (image-like 4-D tensors channels-last on CUDA)."""
        out = {}
        for key, value in batch.items():
            if isinstance(value, Tensor):
                value = value.to(self.device, non_blocking=True)
                if self.channels_last and value.ndim == 4 and value.is_floating_point():
                    value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    def _fall_back(self, metrics: Mapping[str, float]) -> float:
        """Switch early stopping and the best epoch to `FALLBACK_MONITOR` (minimised), with a warning saying
        why, when the monitored metric is undefined (NaN) at the first epoch and the validation loss is
        not; returns the value now monitored (NaN: nothing to fall back to)."""
        fallback = metrics.get(FALLBACK_MONITOR, math.nan)
        if self.monitor == FALLBACK_MONITOR or math.isnan(fallback):
            return math.nan
        if self.dist.is_main:
            print(f"warning: {self.name}: the monitored metric {self.monitor} is undefined (NaN) on the validation "
                  "split (an AUC needs positives and negatives: a split with one class only, e.g. a small file, "
                  f"has none); early stopping and the best epoch use {FALLBACK_MONITOR} instead", file=sys.stderr)
        self.monitor, self.mode = FALLBACK_MONITOR, "min"
        if self.scheduler is not None:  # it has seen no defined value yet: start it again, minimising
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min",
                                                                        **dict(self.settings.plateau or {}))
        return fallback

    def _improved(self, value: float, best: float | None) -> bool:
        if math.isnan(value):
            return False
        return best is None or (value > best if self.mode == "max" else value < best)

    def _epoch_seed(self, loader: DataLoader, epoch: int) -> None:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed((self.seed * 100_003 + epoch) * self.dist.world_size + self.dist.rank)

    def _train_epoch(self, loader: DataLoader, epoch: int) -> float:
        self.task.train()
        self._epoch_seed(loader, epoch)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"{self.name} epoch {epoch}", leave=False, disable=not self.progress,
                   unit="batch", dynamic_ncols=True)
        for batch in bar:
            batch = self.prepare(batch)
            with autocast(self.device, self.dtype):
                loss = self._ddp(batch) if self._ddp is not None else self.task.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.settings.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.task.trainable.parameters(), self.settings.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = len(batch["label"])
            total += float(loss.detach()) * n
            count += n
            bar.set_postfix(loss=f"{total / count:.4f}")
        total, count = sum_across([total, count], self.dist)
        return total / max(count, 1)

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Validation metrics of the current weights over the loader's whole split (all ranks)."""
        sync_buffers(self.task.trainable, self.dist)
        self.task.eval()
        parts = []
        for batch in loader:
            batch = self.prepare(batch)
            with autocast(self.device, self.dtype):
                outputs = self.task.outputs(batch)
            if isinstance(batch.get("index"), Tensor):
                outputs = {**outputs, "index": batch["index"]}
            parts.append(outputs)
        outputs = gather_outputs(concat_outputs(parts), self.dist)
        metrics = {k: float(v) for k, v in self.task.metrics(outputs).items()}
        return broadcast_object(metrics, self.dist)

    def _state(self, epoch: int, best: dict[str, Any], bad_epochs: int, history: list,
               stopped: bool, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        state = {"stopped_early": stopped,
            "epoch": epoch, "model": _cpu_state(self.task.trainable),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(), "rng": rngs[0], "best": best,
            "bad_epochs": bad_epochs, "history": history, "settings": asdict(self.settings),
        }
        if self.dist.enabled:
            state["rank_rng"] = rngs
        return state

    def _restore(self) -> tuple[int, dict[str, Any], int, list, bool]:
        path = self.run_dir / "state.pt"
        if not path.is_file():
            raise InputNotFoundError(f"{path}: nothing to resume (no per-epoch state in {self.run_dir})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.task.trainable.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        per_rank = state.get("rank_rng") or []
        set_rng_state(per_rank[self.dist.rank] if len(per_rank) == self.dist.world_size else state["rng"])
        return state["epoch"], state["best"], state["bad_epochs"], state["history"], state["stopped_early"]

    def _optim_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def _reload_best(self) -> None:
        """Back to the best epoch's weights, optimiser and scheduler state, keeping the current learning rates."""
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.task.trainable.load_state_dict(torch.load(self.run_dir / "best.pt", map_location="cpu",
                                                       weights_only=True))
        saved = torch.load(self.run_dir / "best_optim.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr

    def _log(self, history: list[dict[str, Any]], writer: Any) -> None:
        record = history[-1]
        lines = "".join(json.dumps(r) + "\n" for r in history)
        tmp = self.run_dir / ".log.jsonl.tmp"
        tmp.write_text(lines)
        os.replace(tmp, self.run_dir / "log.jsonl")
        if writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                writer.add_scalar(f"{self.name}/{key}", value, record["epoch"])
        writer.flush()

    def fit(self, train_loader: DataLoader, val_loader: DataLoader, resume: bool = False) -> FitResult:
        """Train until ``max_epochs`` or early stopping; returns the best epoch's metrics and weights."""
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        start, best, bad_epochs, history, stopped_early = 0, {"value": None, "epoch": 0, "metrics": {}}, 0, [], False
        if resume and (self.run_dir / "state.pt").is_file():
            start, best, bad_epochs, history, stopped_early = self._restore()
            if best.get("monitor", self.monitor) != self.monitor:  # the run fell back to FALLBACK_MONITOR
                self.monitor, self.mode = best["monitor"], best["mode"]
        elif not resume and (self.run_dir / "state.pt").is_file():
            raise OutputExistsError(f"{self.run_dir} already holds a run; resume it or choose another run dir")
        barrier(self.dist)
        writer = tensorboard_writer(self.run_dir / "tb") if main else None
        try:
            for epoch in range(start + 1, self.settings.max_epochs + 1):
                if stopped_early:
                    break
                tic = time.perf_counter()
                train_loss = self._train_epoch(train_loader, epoch)
                metrics = self.validate(val_loader)
                if self.monitor not in metrics:
                    raise ConfigError(f"{self.name}: the monitored metric {self.monitor!r} is not among the "
                                      f"validation metrics {sorted(metrics)}")
                value = metrics[self.monitor]
                if math.isnan(value) and best["value"] is None:
                    value = self._fall_back(metrics)
                lr_before = self.optimizer.param_groups[0]["lr"]
                if self.scheduler is not None:
                    self.scheduler.step(value)
                if self._improved(value, best["value"]):
                    best = {"value": value, "epoch": epoch, "metrics": metrics, "monitor": self.monitor,
                            "mode": self.mode}
                    bad_epochs = 0
                    if main:
                        _atomic_save(_cpu_state(self.task.trainable), self.run_dir / "best.pt")
                        if self.settings.reload_best_on_lr_drop:
                            _atomic_save(self._optim_state(), self.run_dir / "best_optim.pt")
                else:
                    bad_epochs += 1
                    if self.settings.reload_best_on_lr_drop and self.optimizer.param_groups[0]["lr"] < lr_before:
                        barrier(self.dist)
                        self._reload_best()
                stopped_early = self.settings.patience is not None and bad_epochs >= self.settings.patience
                record = {"epoch": epoch, "train_loss": train_loss, **{f"{k}": v for k, v in metrics.items()},
                          "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tic}
                history.append(record)
                rngs = all_gather_objects(rng_state(), self.dist)
                if main:
                    _atomic_save(self._state(epoch, best, bad_epochs, history, stopped_early, rngs),
                                 self.run_dir / "state.pt")
                    self._log(history, writer)
                if self.on_epoch is not None:
                    self.on_epoch(epoch, metrics)
                if self.progress:
                    shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
                    tqdm.write(f"[{self.name}] epoch {epoch}: {shown}")
        finally:
            if writer is not None:
                writer.close()
        if best["value"] is None and history:
            raise InputError(f"{self.name}: the monitored metric {self.monitor} and {FALLBACK_MONITOR} were undefined "
                             f"(NaN) in all {len(history)} epochs run: the training diverged (try a lower train.lr) "
                             "or the validation split cannot be scored")
        if best["value"] is None:
            raise RuntimeError(f"{self.name}: no epoch was run (max_epochs={self.settings.max_epochs})")
        barrier(self.dist)
        best_state = torch.load(self.run_dir / "best.pt", map_location="cpu", weights_only=True)
        result = FitResult(best["epoch"], best["metrics"], len(history), stopped_early, history, best_state)
        if main:
            (self.run_dir / "done.json").write_text(json.dumps(
                {"best_epoch": result.best_epoch, "best_metrics": result.best_metrics,
                 "epochs_run": result.epochs_run, "stopped_early": stopped_early}, indent=2))
        return result
