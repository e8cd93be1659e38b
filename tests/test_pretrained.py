"""Shareable weights: ``export --format pretrained`` folders (model.safetensors, config.json, model card)
read back by ``load_predictor(DIR)`` and ``GazeCXRModel.from_pretrained(DIR)`` with identical outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gazecxr.inference.pretrained import export_pretrained, model_card
from gazecxr.models.cooperative import GazeCXRModel
from gazecxr.models.weights import WeightsFileError
from gazecxr.predict import load_predictor


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    root = tiny_model["config"]["registry"]["root"]
    evaluation = tmp_path_factory.mktemp("eval") / "metrics.json"
    evaluation.write_text(json.dumps({"classification": {"auc_macro": {"value": 0.81, "ci": [0.7, 0.9],
                                                                        "method": "DeLong"}, "n": 12}}))
    out = tmp_path_factory.mktemp("pretrained") / "model"
    result = export_pretrained(root, tiny_model["stage3"], out, evaluation=evaluation)
    return root, tiny_model["stage3"], out, result


def test_folder_holds_safetensors_config_and_card(exported):
    root, run, out, result = exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert result.checkpoint == run and result.synthetic_data is True  # the tiny data are synthetic phantoms
    data = (out / "model.safetensors").read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert header["__metadata__"]["format"] == "pt" and "encoder.net.features.conv0.weight" in header

    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "gazecxr-pretrained" and config["checkpoint"] == run
    assert sorted(config["architecture"]) == ["classifier", "encoder", "unet"]
    assert config["architecture"]["encoder"]["pretrained"] == "none"  # nothing is downloaded on load
    assert config["input_size"] == [64, 64] and config["classes"] == ["Normal", "CHF", "pneumonia"]
    assert [e["stage"] for e in config["lineage"]] == ["stage3", "stage2", "stage1"]
    assert config["synthetic_data"] is True and "letterbox" in config["preprocessing"]["geometry"]
    assert config["metrics"]["evaluation"] == {"classification.auc_macro": {"value": 0.81, "ci": [0.7, 0.9],
                                                                             "method": "DeLong"}}
    assert config["metrics"]["validation"]["val_auc_macro"]["ci"] is None

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\nlibrary_name: gazecxr\n")
    assert "For research only" in card and "not for diagnosis" in card
    assert "Synthetic phantoms" in card and "## Limitations" in card
    assert "| test | classification.auc_macro | 0.81 | [0.7, 0.9] |" in card
    assert "| validation | val_auc_macro |" in card and "not recorded |" in card

    real = model_card({**config, "synthetic_data": False})
    assert "Synthetic" not in real and "credentialed users" in real and "EGD-CXR" in real and "one centre" in real


def test_pretrained_folder_round_trips_to_identical_predictions(exported, tmp_path):
    root, run, out, _ = exported
    rng = np.random.default_rng(0)
    png = tmp_path / "film.png"
    Image.fromarray((rng.random((80, 56)) * 255).astype(np.uint8)).save(png)
    inputs = [str(png), rng.random((70, 90)).astype(np.float32)]
    from_registry = load_predictor(root, run=run, device="cpu").predict(inputs)
    shared = load_predictor(out, device="cpu")
    assert shared.checkpoint == run and shared.input_size == (64, 64)
    for a, b in zip(from_registry, shared.predict(inputs)):
        assert np.array_equal(a.saliency, b.saliency) and a.probabilities == b.probabilities and a.label == b.label

    model = GazeCXRModel.from_pretrained(out)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert load_predictor(out, run=run[:6], device="cpu").checkpoint == run
    with pytest.raises(LookupError, match="holds checkpoint"):
        load_predictor(out, run="s3-nope", device="cpu")


def test_export_refuses_overwrite_and_bad_folders_are_named(exported, tmp_path):
    root, run, out, _ = exported
    with pytest.raises(FileExistsError, match="exists"):
        export_pretrained(root, run, out)
    again = tmp_path / "again"
    shutil.copytree(out, again)
    (again / "stray.txt").write_text("left from before")
    export_pretrained(root, run, again, overwrite=True)
    assert sorted(p.name for p in again.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left
    with pytest.raises(ValueError, match="synthetic"):  # the HDF5 file says synthetic; a contrary claim is refused
        export_pretrained(root, run, tmp_path / "claimed", synthetic=False)

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    config = json.loads((broken / "config.json").read_text())
    config["architecture"]["unet"]["aux_channels"] = 0  # builds, but no longer fits the weights
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsFileError, match="does not fit the architecture in its config.json"):
        GazeCXRModel.from_pretrained(broken)
    (broken / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WeightsFileError, match="not a gazecxr pretrained folder"):
        GazeCXRModel.from_pretrained(broken)


def test_export_command_writes_a_pretrained_folder(exported, tmp_path, capsys):
    from gazecxr.inference.export import main

    root, run, out, _ = exported
    target = tmp_path / "cli"
    assert main(["--format", "pretrained", "--checkpoints", str(root), "--checkpoint", run, "--out", str(target)]) == 0
    summary = json.loads(capsys.readouterr().out)["export"]
    assert summary["checkpoint"] == run and set(summary["files"]) == {"README.md", "config.json", "model.safetensors"}
    a, b = GazeCXRModel.from_pretrained(target).state_dict(), GazeCXRModel.from_pretrained(out).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
