import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from gazecxr.models.factory import create_model
from gazecxr.training.data import make_loader
from gazecxr.training.engine import Trainer, TrainSettings
from gazecxr.training.runtime import seed_everything
from gazecxr.training.objectives import ClassifierTask

ENCODER = {"name": "densenet", "arch": "custom", "growth_rate": 4, "block_config": [1, 1, 1, 1],
           "num_init_features": 8}


class Interrupt(Exception):
    pass


def _trainer(config, run_dir, epochs, **kw):
    seed_everything(0)
    task = ClassifierTask(create_model(ENCODER))
    kw.setdefault("patience", None)
    settings = TrainSettings(batch_size=8, max_epochs=epochs, device="cpu", **kw)
    return Trainer(task, settings, run_dir, "val_auc_macro", "max", seed=0, progress=False)


def _loaders(config, batch=8):
    return (make_loader(config, "train", batch, train=True), make_loader(config, "val", batch, train=False))


def _final_weights(run_dir):
    return torch.load(run_dir / "state.pt", weights_only=True)["model"]


def test_resume_after_kill_gives_identical_weights(tiny_config, tmp_path):
    straight = tmp_path / "straight"
    _trainer(tiny_config, straight, 2).fit(*_loaders(tiny_config))

    killed = tmp_path / "killed"
    _trainer(tiny_config, killed, 1).fit(*_loaders(tiny_config))
    trainer = _trainer(tiny_config, killed, 2)
    original, calls = trainer.task.loss, itertools.count()

    def dies_mid_epoch(batch):  # the process is killed during epoch 2, after two optimiser steps
        if next(calls) == 2:
            raise Interrupt
        return original(batch)

    trainer.task.loss = dies_mid_epoch
    with pytest.raises(Interrupt):
        trainer.fit(*_loaders(tiny_config), resume=True)
    # a fresh process: new RNG state, new model, resumed from the last completed epoch
    torch.manual_seed(12345)
    result = _trainer(tiny_config, killed, 2).fit(*_loaders(tiny_config), resume=True)
    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert result.epochs_run == 2
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


def test_training_changes_weights_and_logs_every_epoch(tiny_config, tmp_path):
    trainer = _trainer(tiny_config, tmp_path / "run", 2)
    before = {k: v.clone() for k, v in trainer.task.trainable.state_dict().items()}
    result = trainer.fit(*_loaders(tiny_config))
    after = trainer.task.trainable.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and {"train_loss", "val_auc_macro", "lr", "seconds"} <= set(log[0])
    assert result.best_metrics["val_auc_macro"] == max(r["val_auc_macro"] for r in log)
    assert (tmp_path / "run" / "done.json").is_file() and any((tmp_path / "run" / "tb").iterdir())


def test_early_stopping_and_existing_run_guard(tiny_config, tmp_path):
    result = _trainer(tiny_config, tmp_path / "run", 30, lr=0.0, patience=2).fit(*_loaders(tiny_config))
    assert result.stopped_early and result.epochs_run == result.best_epoch + 2 < 30
    with pytest.raises(FileExistsError):
        _trainer(tiny_config, tmp_path / "run", 2).fit(*_loaders(tiny_config))


def test_unknown_train_setting_is_rejected():
    with pytest.raises(ValueError, match="unknown train setting"):
        TrainSettings.from_config({"lr": 1e-3, "epochs": 3})


def test_an_undefined_monitor_falls_back_to_the_validation_loss_and_resumes_so(tiny_config, tmp_path, capsys):
    """A validation split of one class: its AUC is NaN every epoch, so the best epoch is the lowest val_loss."""
    train, val = _loaders(tiny_config)
    labels = val.dataset.labels
    one_class = make_loader(tiny_config, "val", 8, train=False,
                            dataset=Subset(val.dataset, np.flatnonzero(labels == labels[0]).tolist()))
    run = tmp_path / "run"
    plateau = {"factor": 0.5, "patience": 0}
    result = _trainer(tiny_config, run, 3, plateau=plateau).fit(train, one_class)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(math.isnan(r["val_auc_macro"]) for r in log)
    losses = [r["val_loss"] for r in log]
    assert result.best_epoch == 1 + int(np.argmin(losses)) and result.best_metrics["val_loss"] == min(losses)
    err = capsys.readouterr().err
    assert "the monitored metric val_auc_macro is undefined (NaN) on the validation split" in err
    assert "use val_loss instead" in err and "no epoch was run" not in err
    resumed = _trainer(tiny_config, run, 4, plateau=plateau)
    result = resumed.fit(train, one_class, resume=True)
    assert resumed.monitor == "val_loss" and resumed.scheduler.mode == "min" and result.epochs_run == 4
    assert result.best_metrics["val_loss"] == min(json.loads(line)["val_loss"]
                                                  for line in (run / "log.jsonl").read_text().splitlines())
    assert "undefined (NaN)" not in capsys.readouterr().err
