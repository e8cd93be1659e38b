"""Peer methods: MT-UNet, IRNetv2 and GazeGNN networks, losses, training runners and predictors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from gazecxr.losses import UncertaintyWeightedLoss
from gazecxr.models import create_model
from gazecxr.models.mtunet import MTUNet
from gazecxr.training.registry import Registry
from gazecxr.training.engine import Task, Trainer, TrainSettings
from gazecxr.training.peers import parameter_count, run_peer


# ----------------------------------------------------------------------------- MT-UNet


def test_mtunet_width_one_has_released_parameter_count_and_shapes_at_640x512():
    assert parameter_count(MTUNet(width=1.0)) == 34_632_836  # "about 34.6 M" (released code)
    with torch.device("meta"):  # shapes at the paper's input size without computing anything
        out = MTUNet(width=1.0)(torch.empty(2, 1, 640, 512))
    assert out["class_logits"].shape == (2, 3)
    assert out["saliency_logits"].shape == (2, 1, 640, 512)
    assert out["decoder"].shape == (2, 64, 640, 512)


def test_mtunet_width_multiplier_and_input_check():
    net = create_model({"name": "mtunet", "width": 0.0625})
    assert net.filters == [4, 8, 16, 32, 64]
    assert net.classifier[0].in_features == 4 + 64  # cat(GAP(e5), GAP(d2))
    out = net(torch.rand(3, 1, 64, 48))
    assert out["class_logits"].shape == (3, 3) and out["saliency_logits"].shape == (3, 1, 64, 48)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 1, 40, 48))


def _loss_inputs():
    class_logits = torch.zeros(2, 3)  # CE = log 3
    labels = torch.tensor([0, 2])
    saliency = torch.zeros(2, 1, 2, 2)  # P uniform over 4 pixels
    heat = torch.tensor([0.5, 0.5, 0.0, 0.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)  # KL = log 2
    return class_logits, labels, saliency, heat


@pytest.mark.parametrize("mode, learned", [("learn_class", 1), ("learn_both", 2), ("fixed", 0)])
def test_uncertainty_loss_at_initial_sigmas_matches_hand_computation(mode, learned):
    loss = UncertaintyWeightedLoss(mode)
    assert len(list(loss.parameters())) == learned
    out = loss(*_loss_inputs())
    ce, kl = math.log(3), math.log(2)
    assert out["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert out["kl"].item() == pytest.approx(kl, rel=1e-6)
    # σc = σs = 1: CE/1 + log 2 + KL/2 + log 2
    assert out["total"].item() == pytest.approx(ce + math.log(2) + kl / 2 + math.log(2), rel=1e-6)


def test_uncertainty_loss_with_learned_sigmas_and_its_gradient():
    loss = UncertaintyWeightedLoss("learn_both")
    with torch.no_grad():
        loss.log_sigma_class.fill_(math.log(2.0))
        loss.log_sigma_saliency.fill_(math.log(0.5))
    total = loss(*_loss_inputs())["total"]
    ce, kl = math.log(3), math.log(2)
    assert total.item() == pytest.approx(ce / 4 + math.log(3) + kl / (2 * 0.25) + math.log(1.5), rel=1e-6)
    total.backward()
    # d/ds [CE e^(-2s) + log(e^s + 1)] = -2 CE e^(-2s) + e^s / (e^s + 1), at s = log 2
    assert loss.log_sigma_class.grad.item() == pytest.approx(-2 * ce / 4 + 2 / 3, rel=1e-5)
    assert loss.log_sigma_saliency.grad.item() == pytest.approx(-kl / 0.25 + 0.5 / 1.5, rel=1e-5)
    fixed = UncertaintyWeightedLoss("learn_class")
    assert fixed.log_sigma_saliency.requires_grad is False  # s_s stays 0 in the released recipe
    with pytest.raises(ValueError, match="valid modes"):
        UncertaintyWeightedLoss("learn_none")


def test_mtunet_learns_both_tasks_jointly():
    torch.manual_seed(0)
    images = torch.rand(6, 1, 16, 16)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    heat = torch.zeros(6, 1, 16, 16)
    for i in range(6):
        heat[i, 0, 2 * i:2 * i + 3, 4:10] = 1.0
    heat = heat / heat.sum(dim=(2, 3), keepdim=True)
    net, loss = MTUNet(width=0.0625, dropout=0.0), UncertaintyWeightedLoss("learn_both")
    optimizer = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=3e-3)
    first = None
    for _ in range(25):
        out = net(images)
        parts = loss(out["class_logits"], labels, out["saliency_logits"], heat)
        optimizer.zero_grad()
        parts["total"].backward()
        optimizer.step()
        first = first or {k: v.item() for k, v in parts.items()}
    assert parts["ce"].item() < 0.7 * first["ce"]
    assert parts["kl"].item() < 0.7 * first["kl"]
    assert loss.log_sigma_class.item() != 0.0 and loss.log_sigma_saliency.item() != 0.0


# ----------------------------------------------------------------------------- engine: reload on LR drop


class _ScriptedTask(Task):
    """A linear model whose 'validation metric' follows a script, to drive the plateau scheduler."""

    def __init__(self, script):
        self.trainable = nn.Linear(2, 3)
        self.script = list(script)

    def loss(self, batch):
        return nn.functional.cross_entropy(self.trainable(batch["x"]), batch["label"])

    def outputs(self, batch):
        return {"label": batch["label"]}

    def metrics(self, outputs):
        return {"val_loss": self.script.pop(0)}


def test_lr_drop_reloads_best_weights_and_optimizer(tmp_path):
    data = [{"x": torch.randn(2), "label": i % 3} for i in range(8)]
    loader = DataLoader(data, batch_size=4)
    settings = TrainSettings(max_epochs=2, patience=None, plateau={"factor": 0.1, "patience": 0},
                             reload_best_on_lr_drop=True, device="cpu", lr=0.1)
    trainer = Trainer(_ScriptedTask([1.0, 2.0]), settings, tmp_path, "val_loss", "min", progress=False)
    trainer.fit(loader, loader)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    for key, value in best.items():  # epoch 2 was worse and dropped the LR: back to epoch 1's weights
        assert torch.equal(state["model"][key], value)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)
    assert int(state["optimizer"]["state"][0]["step"]) == 2  # epoch 1's two Adam steps, not four

    plain = TrainSettings(max_epochs=2, patience=None, plateau={"factor": 0.1, "patience": 0}, device="cpu", lr=0.1)
    trainer = Trainer(_ScriptedTask([1.0, 2.0]), plain, tmp_path / "plain", "val_loss", "min", progress=False)
    trainer.fit(loader, loader)
    state = torch.load(tmp_path / "plain" / "state.pt", weights_only=True)
    assert int(state["optimizer"]["state"][0]["step"]) == 4
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainSettings(optimizer="rmsprop")


# ----------------------------------------------------------------------------- training runners


@pytest.fixture(scope="module")
def mtunet_entry(tiny_h5, tmp_path_factory):
    from gazecxr.config import load_config
    from tests_paths import ROOT

    root = tmp_path_factory.mktemp("peers")
    config = load_config(ROOT / "configs" / "test.yaml", [
        f"data.h5={tiny_h5}", f"registry.root={root / 'checkpoints'}", f"runs.root={root / 'runs'}",
        "peers.mtunet.train.max_epochs=1",
    ])
    return config, run_peer("mtunet", config, progress=False, tags=["peer-test"])


def test_mtunet_runner_publishes_entry_with_time_and_parameters(mtunet_entry):
    config, entry = mtunet_entry
    assert entry.stage == "mtunet"
    assert entry.architecture["input_size"] == [64, 64]
    assert entry.architecture["sigma_mode"] == "learn_class"
    assert entry.metrics["parameters"] == parameter_count(MTUNet(width=0.0625))
    assert entry.metrics["train_seconds"] > 0
    for key in ("val_total_loss", "val_auc_macro", "val_kl", "val_cc", "sigma_class"):
        assert math.isfinite(entry.metrics[key])
    assert entry.metrics["sigma_saliency"] == 1.0
    assert "peer-test" in entry.tags
    state, _ = Registry(config["registry"]["root"]).load(entry.id, stage="mtunet")
    assert set(state) == {"mtunet", "loss"} and set(state["loss"]) == {"log_sigma_class", "log_sigma_saliency"}
    with pytest.raises(ValueError, match="valid methods"):
        run_peer("resnet", config)


# ----------------------------------------------------------------------------- GazeGNN


def test_gaze_grid_on_hand_made_map():
    from gazecxr.models.gazegnn import gaze_grid

    gaze = torch.zeros(1, 16, 16)
    gaze[0, 5, 9] = 1.0   # inside windows i = 0..3 (rows 4i-7 … 4i+6), j = 1..3
    gaze[0, 15, 0] = 2.0  # last row: only i = 3; first column: j = 0, 1
    expected = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [2, 3, 1, 1]]) / 3
    assert torch.allclose(gaze_grid(gaze), expected)
    assert torch.equal(gaze_grid(torch.zeros(2, 8, 8)), torch.zeros(2, 2, 2))  # no gaze: left at 0
    assert gaze_grid(torch.rand(3, 224, 224)).shape == (3, 56, 56)
    with pytest.raises(ValueError, match="multiple of 4"):
        gaze_grid(torch.zeros(1, 10, 10))


def test_fixation_duration_map_on_hand_made_fixations():
    from gazecxr.data.gaze_maps import fixation_duration_map

    fixations = [[1.2, 2.0, 0.5], [4.4, 3.0, 0.09], [1.0, 2.0, 0.5], [7.0, 1.0, 3.0]]  # last one off the canvas
    got = fixation_duration_map(fixations, (4, 5))
    expected = np.zeros((4, 5))
    expected[2, 1] = 1.0  # 0.5 + 0.5 s, the longest: log(1.01) maps to 1
    expected[3, 4] = math.log(10) / math.log(101)  # (log 0.1 − log 0.01) / (log 1.01 − log 0.01)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not fixation_duration_map(np.zeros((0, 3)), (4, 5)).any()


def test_paired_augment_moves_gaze_map_with_image():
    from gazecxr.data.transforms import PairedAugment

    torch.manual_seed(0)
    pattern = torch.zeros(1, 32, 32)
    pattern[0, 8:12, 20:26] = 1.0
    heat = torch.full((1, 32, 32), 1 / 1024)
    augment = PairedAugment(rotation=20, translate=0.2, brightness=0.0, contrast=0.0)
    out = augment({"image": pattern.clone(), "heatmap": heat, "gaze": pattern.clone()})
    assert not torch.equal(out["gaze"], pattern)
    assert torch.allclose(out["gaze"], out["image"], atol=1e-6)


def test_vig_ti_and_gazegnn_parameter_counts_and_outputs():
    from gazecxr.models.gazegnn import GazeGNN
    from gazecxr.models.vig import PyramidViG

    # Pyramid ViG-Ti of the released code: 10.7 M parameters at 1000 classes (the fixed relative-position
    # tables, 1.77 M values, are buffers here); GazeGNN: 3 classes plus BatchNorm2d(1) for the gaze grid
    assert parameter_count(PyramidViG(num_classes=1000)) == 10_714_376
    net = GazeGNN()
    assert parameter_count(net) == 9_692_453
    assert sum(b.numel() for n, b in net.named_buffers() if n.endswith("relative_pos")) == 1_771_938
    tiny = create_model({"name": "gazegnn", "image_size": 32, "channels": [8, 16, 24, 32], "blocks": [1, 1, 1, 1],
                         "hidden": 32}).eval()
    image = torch.rand(2, 1, 64, 48)
    gaze = torch.zeros(2, 1, 64, 48)
    gaze[:, :, 10, 30] = 1.0
    with torch.no_grad():
        logits = tiny(image, gaze)
        assert logits.shape == (2, 3)
        assert not torch.allclose(tiny(image, torch.zeros_like(gaze)), logits)  # the gaze enters the model
    with pytest.raises(FileNotFoundError, match="no ViG weights can be downloaded"):
        GazeGNN(image_size=32, channels=[8, 16, 24, 32], blocks=[1, 1, 1, 1], pretrained="/nonexistent.pth")


def test_gazegnn_cli_trains_an_oracle_entry(tiny_h5, tmp_path, capsys):
    import json

    from gazecxr.training.cli import main
    from gazecxr.training.peers import ORACLE_TAG
    from tests_paths import ROOT

    code = main("peer", ["--method", "gazegnn", "--config", str(ROOT / "configs" / "test.yaml"), "--quiet",
                         "--set", f"data.h5={tiny_h5}", "--set", f"registry.root={tmp_path / 'ck'}",
                         "--set", f"runs.root={tmp_path / 'runs'}", "--set", "peers.gazegnn.train.max_epochs=1"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    entry = Registry(tmp_path / "ck").resolve(printed["id"])
    assert entry.stage == "gazegnn" and ORACLE_TAG in entry.tags
    assert entry.architecture["model_input"] == [32, 32] and entry.architecture["input_size"] == [64, 64]
    assert entry.metrics["train_seconds"] > 0 and entry.metrics["parameters"] > 0
    assert 0.0 <= entry.metrics["val_auc_micro"] <= 1.0


# ----------------------------------------------------------------------------- predictors, predict refusal


def test_mtunet_entry_predictor_gives_saliency_and_probabilities(mtunet_entry):
    from gazecxr.evaluation.saliency_methods import entry_predictor

    config, entry = mtunet_entry
    registry = Registry(config["registry"]["root"])
    predict = entry_predictor(registry, entry, "mtunet", torch.device("cpu"))
    images = torch.rand(3, 1, 64, 64)
    out = predict(images, torch.ones(3, 64, 64, dtype=torch.bool))
    assert out.saliency["mtunet"].shape == (3, 64, 64)
    assert torch.allclose(out.saliency["mtunet"].sum(dim=(1, 2)), torch.ones(3))
    assert out.probs["mtunet"].shape == (3, 3)
    state, _ = registry.load(entry.id)
    net = MTUNet(width=0.0625).eval()
    net.load_state_dict(state["mtunet"])
    with torch.no_grad():
        expected = torch.softmax(net(images)["class_logits"], 1)
    assert torch.allclose(out.probs["mtunet"], expected, atol=1e-6)


def test_gazegnn_predictor_uses_fixations_and_predict_refuses_it(tmp_path):
    from gazecxr.evaluation.method_outputs import predict_batch
    from gazecxr.evaluation.saliency_methods import entry_predictor
    from gazecxr.predict import load_predictor
    from gazecxr.training.checkpoint_io import load_full_model
    from gazecxr.training.peers import ORACLE_TAG

    section = {"name": "gazegnn", "image_size": 32, "channels": [8, 16, 24, 32], "blocks": [1, 1, 1, 1],
               "hidden": 32, "pretrained": "none"}
    torch.manual_seed(0)  # an untrained net can saturate the softmax; a fixed draw keeps the check meaningful
    registry = Registry(tmp_path / "ck")
    entry = registry.save({"gazegnn": create_model(section).state_dict()}, stage="gazegnn", config={},
                          architecture={"gazegnn": section, "input_size": [64, 64], "model_input": [32, 32]},
                          tags=[ORACLE_TAG])
    predict = entry_predictor(registry, entry, "gazegnn", torch.device("cpu"))
    assert predict.uses_gaze
    images, regions = torch.rand(2, 1, 64, 64), torch.ones(2, 64, 64, dtype=torch.bool)
    looked = [np.array([[10.0, 20.0, 0.4], [40.0, 50.0, 1.2]]), np.array([[30.0, 30.0, 0.8]])]
    elsewhere = [np.array([[60.0, 5.0, 0.4]]), np.array([[3.0, 60.0, 2.0]])]
    probs = predict_batch(predict, images, regions, lambda: looked).probs["gazegnn"]
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2))
    assert not torch.allclose(predict_batch(predict, images, regions, lambda: elsewhere).probs["gazegnn"], probs)
    with pytest.raises(ValueError, match="needs the radiologist's gaze at test time"):
        load_full_model(registry, entry.id)
    with pytest.raises(ValueError, match="does not serve it"):
        load_predictor(tmp_path / "ck", run=entry.id)


def test_models_summary_counts_every_network(capsys):
    import json

    from gazecxr.models.__main__ import main
    from tests_paths import ROOT

    assert main(["summary", "--config", str(ROOT / "configs" / "test.yaml"), "--json"]) == 0
    rows = {row["name"]: row["parameters"] for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"densenet", "resse_unet", "fusion", "full", "resse_unet_only", "standard_unet",
                         "mtunet", "irnetv2", "gazegnn", "gaze_token_mask", "gdvig", "gaze_mtl"}
    assert rows["full"] == rows["densenet"] + rows["resse_unet"] + rows["fusion"]
    assert rows["mtunet"] == parameter_count(MTUNet(width=0.0625))
    assert rows["irnetv2"] == 54_310_499  # timm inception_resnet_v2, 1 input channel, 3 classes
    assert main(["summary", "--config", "/nonexistent.yaml"]) == 2


def test_gaze_dataset_needs_fixations_and_gives_maps(tiny_h5, tmp_path):
    import shutil

    import h5py

    from gazecxr.data.dataset import GazeCXRDataset
    from gazecxr.data.gaze_maps import GazeMapDataset, fixation_duration_map

    base = GazeCXRDataset(tiny_h5, "val")
    sample = GazeMapDataset(base)[0]
    expected = fixation_duration_map(base.fixations(sample["index"]), base.canvas)
    assert sample["gaze"].shape == (1, 64, 64) and np.array_equal(sample["gaze"][0].numpy(), expected)
    assert expected.max() == 1.0  # the synthetic records have fixations on the canvas
    old = tmp_path / "old.h5"
    shutil.copy(tiny_h5, old)
    with h5py.File(old, "a") as f:
        del f["fixations"], f["fixation_offsets"]
    with pytest.raises(ValueError, match="stores no fixations"):
        GazeMapDataset(GazeCXRDataset(old, "val"))


def test_irnetv2_enlarges_inputs_below_its_minimum_size():
    import torch.nn.functional as F

    from gazecxr.models.irnetv2 import MIN_INPUT, InceptionResNetV2

    net = InceptionResNetV2().eval()
    image = torch.rand(1, 1, 64, 48)  # the tiny test canvas is below timm's minimum of 75 px
    with torch.no_grad():
        logits = net(image)
        assert logits.shape == (1, 3)
        enlarged = F.interpolate(image, size=(100, MIN_INPUT), mode="bilinear", align_corners=False)
        assert torch.allclose(logits, net.net(enlarged), atol=1e-5)
        with pytest.raises(RuntimeError):
            net.net(image)


def test_gazegnn_loads_a_local_pretrained_file_except_a_different_head(tmp_path):
    from gazecxr.models.gazegnn import GazeGNN

    tiny = {"image_size": 32, "channels": [8, 16, 24, 32], "blocks": [1, 1, 1, 1], "hidden": 32}
    source = GazeGNN(num_classes=5, **tiny)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "vig.pth")
    net = GazeGNN(num_classes=3, pretrained=str(tmp_path / "vig.pth"), **tiny)
    assert torch.equal(net.pos_embed, source.pos_embed)
    assert torch.equal(net.backbone[0][0].fc1[0].weight, source.backbone[0][0].fc1[0].weight)
    assert net.prediction[4].weight.shape == (3, 32, 1, 1) and net.imagenet_norm
    torch.save({"pos_embed": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a matching Pyramid ViG state dict"):
        GazeGNN(pretrained=str(tmp_path / "other.pth"), **tiny)
