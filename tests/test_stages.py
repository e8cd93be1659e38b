import subprocess
import sys

import pytest
import torch

from gazecxr.models.factory import create_model
from gazecxr.training.registry import Registry
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.engine import TrainSettings, Trainer
from gazecxr.training.stages import run_stage1, run_stage2, run_stage3
from gazecxr.training.objectives import SaliencyTask
from tests_paths import ROOT


@pytest.fixture
def pipeline(tiny_config):
    e1 = run_stage1(tiny_config, progress=False)
    e2 = run_stage2(tiny_config, progress=False)
    e3 = run_stage3(tiny_config, progress=False)
    return tiny_config, e1, e2, e3


def test_three_stages_chain_in_the_registry(pipeline):
    config, e1, e2, e3 = pipeline
    registry = Registry(config["registry"]["root"])
    assert [e.id for e in registry.lineage(e3.id)] == [e3.id, e2.id, e1.id]
    assert (e1.stage, e2.stage, e3.stage) == ("stage1", "stage2", "stage3")
    assert e2.parents == [e1.id] and e3.parents == [e2.id]
    assert {"contrastive_val_loss", "val_auc_macro", "val_accuracy"} <= set(e1.metrics)
    assert {"val_kl", "val_cc", "val_hs"} <= set(e2.metrics)
    assert e3.config["model"]["unet"]["width"] == config["model"]["unet"]["width"]
    assert registry.verify() == []
    assert registry.resolve("best", stage="stage2").id == e2.id


def test_assembled_model_outputs_and_frozen_stage1_weights(pipeline):
    config, e1, _, e3 = pipeline
    registry = Registry(config["registry"]["root"])
    model, lineage = load_full_model(registry, e3.id)
    out = model(torch.rand(2, 1, 64, 64))
    assert out["saliency_logits"].shape == (2, 1, 64, 64) and out["class_logits"].shape == (2, 3)
    stage1_state, _ = registry.load(e1.id)
    for key, value in stage1_state["encoder"].items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    assert not any(p.requires_grad for p in model.parameters())


def test_frozen_encoder_gets_no_gradient_and_stays_identical(tiny_config, tmp_path):
    encoder = create_model(tiny_config["model"]["encoder"]).requires_grad_(False).eval()
    unet = create_model({**tiny_config["model"]["unet"], "aux_channels": encoder.feature_channels})
    task = SaliencyTask(unet, encoder)
    snapshot = task.freeze_snapshot()
    trainer = Trainer(task, TrainSettings(batch_size=4, max_epochs=1, device="cpu"), tmp_path, "val_kl", "min",
                      progress=False)
    batch = {"image": torch.rand(4, 1, 64, 64), "heatmap": torch.softmax(torch.rand(4, 4096), 1).view(4, 1, 64, 64),
             "label": torch.zeros(4, dtype=torch.long)}
    task.train()
    loss = task.loss(batch)
    loss.backward()
    trainer.optimizer.step()
    assert all(p.grad is None for p in encoder.parameters())
    assert any(p.grad is not None for p in unet.parameters())
    assert not encoder.training
    task.assert_unchanged(snapshot)
    with torch.no_grad():
        next(encoder.parameters()).add_(1e-3)
    with pytest.raises(RuntimeError, match="frozen weights changed"):
        task.assert_unchanged(snapshot)


def test_baseline_variants_need_no_encoder(tiny_config):
    resse = run_stage2({**tiny_config, "stage2": {**tiny_config["stage2"], "variant": "resse"}}, progress=False)
    unet = run_stage2({**tiny_config, "stage2": {**tiny_config["stage2"], "variant": "unet"}}, progress=False)
    assert resse.stage == "baseline_resse" and unet.stage == "baseline_unet"
    assert resse.parents == [] and resse.architecture["unet"]["aux_channels"] == 0


def test_stage_cli_help_and_clear_errors(tiny_config, tmp_path):
    out = subprocess.run([sys.executable, "-m", "stages.stage2", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "--resume" in out.stdout and "KL" in out.stdout
    out = subprocess.run([sys.executable, "-m", "stages.stage2", "--config", str(ROOT / "configs" / "test.yaml"),
                          "--set", f"data.h5={tiny_config['data']['h5']}", "--set", f"registry.root={tmp_path}",
                          "--set", f"runs.root={tmp_path / 'runs'}"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "stage1" in out.stderr
