"""The config schema: every preset fits it, it matches the code it configures, and its errors say what is wrong."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import typing

import pytest

from gazecxr.config import ConfigError, load_config, preset_names
from gazecxr.config.__main__ import run_presets
from gazecxr.config.loader import PRESETS_DIR
from gazecxr.config.schema import (
    MODEL_SECTIONS,
    TASK_SECTIONS,
    AugmentSection,
    ExplainRecipe,
    ExplainSection,
    TrainSection,
    validate_config,
)
from gazecxr.training.tuning.space import check_space, load_space, parse_space


def _problems(config: dict, *changes: tuple[str, object]) -> str:
    config = copy.deepcopy(config)
    for dotted, value in changes:
        *path, key = dotted.split(".")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[key] = value
    with pytest.raises(ConfigError) as err:
        validate_config(config, "cfg")
    return str(err.value)


@pytest.fixture(scope="module")
def test_config() -> dict:
    return load_config("test")


@pytest.mark.parametrize("name", run_presets())
def test_every_preset_fits_the_schema_unchanged(name):
    assert set(preset_names()) <= set(run_presets()) and "explain/siim" in run_presets()
    config = load_config(name)
    assert validate_config(config) is config  # validated, not normalised: hashes and reuse stay


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_shipped_search_spaces_fit_the_schema(stage):
    check_space(load_space(PRESETS_DIR / "tune" / f"stage{stage}.yaml"), load_config("paper"), stage)


def test_a_search_space_bound_outside_the_schema_is_refused(test_config):
    space = parse_space({"params": {"train.batch_size": {"type": "categorical", "choices": [8, 12.5]}}})
    with pytest.raises(ConfigError, match=r"(?s)params.train.batch_size can take 12.5.*expected a valid integer"):
        check_space(space, test_config, 1)
    space = parse_space({"params": {"model.classifier.dropout": {"type": "float", "low": 0.0, "high": 1.5}}})
    with pytest.raises(ConfigError, match=r"dropout = 1.5: expected less than 1"):
        check_space(space, test_config, 3)


def test_type_and_range_errors_name_key_value_and_expectation(test_config):
    text = _problems(test_config, ("train.lr", "abc"), ("train.batch_size", 16.5), ("train.patience", -1),
                     ("train.deterministic", "yes"), ("data.augment.scale", [1.1, 0.9]),
                     ("stage2.variant", "ful"), ("peers.gazegnn.model.channels", [8, 16]))
    assert text.startswith("cfg: invalid config (7 problems):")
    for line in ("train.lr = 'abc': expected a valid number",
                 "train.batch_size = 16.5: expected a valid integer",
                 "train.patience = -1: expected greater than or equal to 0",
                 "train.deterministic = 'yes': expected a valid boolean",
                 "data.augment.scale = [1.1, 0.9]: expected [low, high] with low <= high",
                 "stage2.variant = 'ful': expected 'full', 'resse' or 'unet'",
                 "peers.gazegnn.model.channels = [8, 16]: expected at least 4 items, got 2"):
        assert line in text, line


def test_unknown_keys_suggest_the_closest_valid_key(test_config):
    assert "unknown key 'trian' (did you mean 'train'?)" in _problems(test_config, ("trian.lr", 1e-3))
    text = _problems(test_config, ("stage1.contrastive.train.lrr", 1e-3))
    assert "unknown key 'stage1.contrastive.train.lrr' (did you mean 'stage1.contrastive.train.lr'?)" in text
    text = _problems(test_config, ("model.encoder.arhc", "custom"))
    assert "(did you mean 'model.encoder.arch'?)" in text and "valid keys in 'model.encoder': name, arch" in text
    text = _problems(test_config, ("model.encoder.name", "densnet"))
    assert "model.encoder.name = 'densnet': unknown name (did you mean 'densenet'?)" in text
    text = _problems(test_config, ("task.name", "reflacx_findings"), ("task.treshold", 3))
    assert "unknown key 'task.treshold' (did you mean 'task.threshold'?)" in text


def test_sections_chosen_by_name_check_that_models_options(test_config):
    assert validate_config(load_config("test", ["model.unet.se_reduction=8", "task.name=chexpert14",
                                                "task.uncertainty=zeros"]))
    assert "task.uncertainty = 'maybe'" in _problems(test_config, ("task.name", "chexpert14"),
                                                     ("task.uncertainty", "maybe"))
    # se_reduction belongs to the Res-SE UNet, not to the fusion classifier
    assert "unknown key 'model.classifier.se_reduction'" in _problems(test_config, ("model.classifier.se_reduction", 8))


def test_load_config_validates_before_returning():
    with pytest.raises(ConfigError, match=r"train.batch_size = 16.5: expected a valid integer \(--set\)"):
        load_config("test", ["train.batch_size=16.5"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_config("test", ["trian.lr=1e-3"])


def test_model_sections_match_the_constructors():
    from gazecxr.models.factory import available_models, model_keys

    assert set(MODEL_SECTIONS) == set(available_models())
    for name, section in MODEL_SECTIONS.items():
        assert list(section.model_fields) == ["name", *model_keys(name)], name


def test_train_and_augment_sections_match_the_code():
    from gazecxr.data.transforms import PairedAugment
    from gazecxr.training.engine import OPTIMIZERS, TrainSettings
    from gazecxr.training.feature_cache import CACHE_MODES

    assert list(TrainSection.model_fields) == [f.name for f in dataclasses.fields(TrainSettings)]
    for f in dataclasses.fields(TrainSettings):
        default = TrainSection.model_fields[f.name].default
        assert default == f.default or (default is None and f.default is None), f.name
    augment = list(inspect.signature(PairedAugment).parameters)
    assert list(AugmentSection.model_fields) == ["enabled", *augment]
    assert set(_choices(TrainSection, "optimizer")) == set(OPTIMIZERS)
    assert set(_choices(TrainSection, "feature_cache")) == set(CACHE_MODES)


def _choices(section, key: str) -> tuple:
    return typing.get_args(section.model_fields[key].annotation)


def test_explain_section_matches_the_study():
    from gazecxr.evaluation.studies import explanation
    from gazecxr.evaluation.studies.explanation_data import Recipe
    from gazecxr.explain.cams import METHODS

    assert set(ExplainSection.model_fields) == set(explanation.EXPLAIN_KEYS)
    assert list(ExplainRecipe.model_fields) == list(inspect.signature(Recipe).parameters)
    assert set(typing.get_args(typing.get_args(ExplainSection.model_fields["methods"].annotation)[0])) == set(METHODS)
    assert set(typing.get_args(typing.get_args(ExplainSection.model_fields["baselines"].annotation)[0])) == set(
        explanation.BASELINES)
    assert set(typing.get_args(typing.get_args(ExplainSection.model_fields["anchors"].annotation)[0])) == set(
        explanation.ANCHORS)
    for name in ("explain/siim", "explain/nih14", "explain/test"):
        assert validate_config(load_config(name))
    assert "explain.methods[0] = 'gradcan'" in _problems(load_config("explain/test"), ("explain.methods", ["gradcan"]))


def test_task_sections_match_the_registered_tasks():
    from gazecxr.tasks import create_task

    for name, section in TASK_SECTIONS.items():
        task = create_task({"name": name})
        options = {f.name for f in dataclasses.fields(task) if f.init}
        assert set(section.model_fields) - {"name"} == options, name


def test_registry_entries_record_the_validated_config_and_old_entries_still_load(tmp_path):
    import json

    import torch

    from gazecxr.config.schema import SCHEMA_VERSION
    from gazecxr.training.registry import ENTRY_FILE, Registry

    registry = Registry(tmp_path)
    state = {"net": {"w": torch.zeros(2)}}
    config = load_config("test")
    entry = registry.save(state, stage="stage1", config=config, architecture={})
    assert entry.config_schema == SCHEMA_VERSION and registry.resolve(entry.id).config == config
    other = registry.save(state, stage="stage1", config={"not": "a run config"}, architecture={})
    assert registry.resolve(other.id).config_schema is None
    # an entry written before the schema: no config_schema field, a config the schema would refuse
    record = json.loads((other.path / ENTRY_FILE).read_text())
    del record["config_schema"]
    record["config"] = {**config, "train": {**config["train"], "old_key": 1}}
    (other.path / ENTRY_FILE).write_text(json.dumps(record))
    old = registry.resolve(other.id)
    assert old.config_schema is None and old.config["train"]["old_key"] == 1
    assert registry.verify(other.id) == []
