"""The training engine shared by all stages: one loop, early stopping, logging, resume."""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from gazecxr.training.runtime import amp_dtype, autocast, resolve_device, rng_state, set_rng_state

Batch = dict[str, Any]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training phase (the ``train`` config section)."""

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

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "TrainSettings":
        """Settings from a config section; unknown keys are an error naming the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - valid)
        if unknown:
            raise ValueError(f"unknown train setting(s) {unknown}; valid: {sorted(valid)}")
        return cls(**section)


class Task(ABC):
    """What a phase trains: its trainable module, the loss of a batch and validation metrics.

    ``frozen`` lists modules the task runs but never trains (moved to the device with it).
    """

    trainable: nn.Module
    frozen: list[nn.Module] = []

    @abstractmethod
    def loss(self, batch: Batch) -> Tensor:
        """Scalar training loss of a prepared batch (tensors on the device)."""

    @abstractmethod
    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Validation metrics over prepared batches (called under ``torch.no_grad``)."""

    def train(self) -> None:
        """Switch to training mode (frozen parts stay in eval mode)."""
        self.trainable.train()

    def eval(self) -> None:
        """Switch to evaluation mode."""
        self.trainable.eval()


@dataclass
class FitResult:
    """Outcome of ``Trainer.fit``: best epoch and metrics, and the per-epoch history."""

    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, Tensor] = field(default_factory=dict, repr=False)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class Trainer:
    """Adam training of ``task.trainable`` with early stopping on ``monitor``.

    Every epoch writes ``state.pt`` (model, optimiser, scheduler, scaler, RNG states, epoch,
    best-so-far) atomically into ``run_dir``, appends to ``log.jsonl`` and TensorBoard, and
    keeps the best weights in ``best.pt``; ``fit(resume=True)`` continues a killed run exactly
    where its last completed epoch left it. ``done.json`` marks a finished run. ``on_epoch``
    is called with each epoch's validation metrics after they are saved (e.g. to report to a
    hyperparameter search, which may stop the run by raising).
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
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.task, self.settings, self.monitor, self.mode = task, settings, monitor, mode
        self.run_dir, self.seed, self.progress, self.name = Path(run_dir), seed, progress, name
        self.on_epoch = on_epoch
        self.device = resolve_device(settings.device)
        self.dtype = amp_dtype(settings.amp, self.device)
        self.channels_last = settings.channels_last and self.device.type == "cuda"
        for module in (task.trainable, *task.frozen):
            module.to(self.device)
            if self.channels_last:
                module.to(memory_format=torch.channels_last)
        params = [p for p in task.trainable.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{name}: the task has no trainable parameters")
        self.optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode=mode, **dict(settings.plateau))
            if settings.plateau else None
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def prepare(self, batch: Batch) -> Batch:
        """Move a batch's tensors to the device (images channels-last on CUDA)."""
        out = {}
        for key, value in batch.items():
            if isinstance(value, Tensor):
                value = value.to(self.device, non_blocking=True)
                if self.channels_last and value.ndim == 4 and key == "image":
                    value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    def _improved(self, value: float, best: float | None) -> bool:
        if math.isnan(value):
            return False
        return best is None or (value > best if self.mode == "max" else value < best)

    def _epoch_seed(self, loader: DataLoader, epoch: int) -> None:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed(self.seed * 100_003 + epoch)

    def _train_epoch(self, loader: DataLoader, epoch: int) -> float:
        self.task.train()
        self._epoch_seed(loader, epoch)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"{self.name} epoch {epoch}", leave=False, disable=not self.progress,
                   unit="batch", dynamic_ncols=True)
        for batch in bar:
            batch = self.prepare(batch)
            with autocast(self.device, self.dtype):
                loss = self.task.loss(batch)
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
        return total / max(count, 1)

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Validation metrics of the current weights."""
        self.task.eval()

        def batches() -> Iterable[Batch]:
            for batch in loader:
                with autocast(self.device, self.dtype):
                    yield self.prepare(batch)

        return {k: float(v) for k, v in self.task.evaluate(batches()).items()}

    def _state(self, epoch: int, best: dict[str, Any], bad_epochs: int, history: list,
               stopped: bool) -> dict[str, Any]:
        return {"stopped_early": stopped,
            "epoch": epoch, "model": _cpu_state(self.task.trainable),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "best": best,
            "bad_epochs": bad_epochs, "history": history, "settings": asdict(self.settings),
        }

    def _restore(self) -> tuple[int, dict[str, Any], int, list, bool]:
        path = self.run_dir / "state.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: nothing to resume (no per-epoch state in {self.run_dir})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.task.trainable.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        return state["epoch"], state["best"], state["bad_epochs"], state["history"], state["stopped_early"]

    def _log(self, record: dict[str, Any], history: list[dict[str, Any]], writer: Any) -> None:
        history.append(record)
        lines = "".join(json.dumps(r) + "\n" for r in history)
        tmp = self.run_dir / ".log.jsonl.tmp"
        tmp.write_text(lines)
        os.replace(tmp, self.run_dir / "log.jsonl")
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                writer.add_scalar(f"{self.name}/{key}", value, record["epoch"])
        writer.flush()

    def fit(self, train_loader: DataLoader, val_loader: DataLoader, resume: bool = False) -> FitResult:
        """Train until ``max_epochs`` or early stopping; returns the best epoch's metrics and weights."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        done = self.run_dir / "done.json"
        start, best, bad_epochs, history, stopped_early = 0, {"value": None, "epoch": 0, "metrics": {}}, 0, [], False
        if resume and (self.run_dir / "state.pt").is_file():
            start, best, bad_epochs, history, stopped_early = self._restore()
        elif not resume and (self.run_dir / "state.pt").is_file():
            raise FileExistsError(f"{self.run_dir} already holds a run; resume it or choose another run dir")
        writer = SummaryWriter(str(self.run_dir / "tb"))
        try:
            for epoch in range(start + 1, self.settings.max_epochs + 1):
                if stopped_early:
                    break
                tic = time.perf_counter()
                train_loss = self._train_epoch(train_loader, epoch)
                metrics = self.validate(val_loader)
                if self.monitor not in metrics:
                    raise KeyError(f"monitor {self.monitor!r} not among validation metrics {sorted(metrics)}")
                value = metrics[self.monitor]
                if self.scheduler is not None:
                    self.scheduler.step(value)
                if self._improved(value, best["value"]):
                    best = {"value": value, "epoch": epoch, "metrics": metrics}
                    bad_epochs = 0
                    _atomic_save(_cpu_state(self.task.trainable), self.run_dir / "best.pt")
                else:
                    bad_epochs += 1
                stopped_early = self.settings.patience is not None and bad_epochs >= self.settings.patience
                record = {"epoch": epoch, "train_loss": train_loss, **{f"{k}": v for k, v in metrics.items()},
                          "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tic}
                _atomic_save(self._state(epoch, best, bad_epochs, [*history, record], stopped_early),
                             self.run_dir / "state.pt")
                self._log(record, history, writer)
                if self.on_epoch is not None:
                    self.on_epoch(epoch, metrics)
                if self.progress:
                    shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
                    tqdm.write(f"[{self.name}] epoch {epoch}: {shown}")
        finally:
            writer.close()
        if best["value"] is None:
            raise RuntimeError(f"{self.name}: no epoch was run (max_epochs={self.settings.max_epochs})")
        best_state = torch.load(self.run_dir / "best.pt", map_location="cpu", weights_only=True)
        result = FitResult(best["epoch"], best["metrics"], len(history), stopped_early, history, best_state)
        done.write_text(json.dumps({"best_epoch": result.best_epoch, "best_metrics": result.best_metrics,
                                    "epochs_run": result.epochs_run, "stopped_early": stopped_early}, indent=2))
        return result
