from pathlib import Path

import pytest

from gazecxr.config import PRESETS_DIR, ConfigError, config_hash, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_paper_config_has_the_paper_settings():
    cfg = load_config(CONFIGS / "paper.yaml")
    assert cfg["train"]["lr"] == 1e-4 and cfg["train"]["batch_size"] == 16 and cfg["train"]["max_epochs"] == 50
    assert cfg["model"]["encoder"]["arch"] == "densenet201" and cfg["model"]["unet"]["width"] == 1.0
    assert cfg["model"]["classifier"]["dropout"] == 0.25 and cfg["model"]["classifier"]["hidden"] == 64


@pytest.mark.parametrize("name", ["demo.yaml", "test.yaml"])
def test_derived_configs_inherit_and_override(name):
    cfg = load_config(CONFIGS / name)
    assert cfg["train"]["lr"] > 0 and cfg["model"]["encoder"]["arch"] == "custom"
    assert cfg["stage1"]["contrastive"]["loss"] == "triplet"


def test_overrides_parse_yaml_values_and_reject_typos():
    cfg = load_config(CONFIGS / "test.yaml", ["train.lr=3e-4", "train.plateau={factor: 0.5, patience: 2}",
                                              "model.unet.se_reduction=8", "stage2.train.max_epochs=4"])
    assert cfg["train"]["lr"] == 3e-4 and cfg["train"]["plateau"] == {"factor": 0.5, "patience": 2}
    assert cfg["model"]["unet"]["se_reduction"] == 8 and cfg["stage2"]["train"]["max_epochs"] == 4
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        load_config(CONFIGS / "test.yaml", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(CONFIGS / "test.yaml", ["train.lr"])
    assert config_hash(load_config(CONFIGS / "test.yaml")) != config_hash(cfg)
    switches = load_config(CONFIGS / "test.yaml", ["train.feature_cache=off", "train.deterministic=true"])
    assert switches["train"]["feature_cache"] == "off" and switches["train"]["deterministic"] is True


def test_inherit_rejects_unknown_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text(f"inherit: {PRESETS_DIR / 'paper.yaml'}\ntrian: {{lr: 1}}\n")
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(tmp_path / "bad.yaml")
