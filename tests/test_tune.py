import optuna
import pytest
import torch
import yaml

from gazecxr.config import ConfigError, apply_overrides, load_config, parse_yaml
from gazecxr.training.registry import Registry
from gazecxr.training import stages
from gazecxr.training.stages import run_stage1
from gazecxr.training.tuning import load_space, parse_space, tune
from gazecxr.training.tuning.space import check_space
from gazecxr.training.tuning.study import pin_parent
from stages.tune import main as cli_main
from tests_paths import ROOT

SPACE = {"params": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                    "train.batch_size": {"type": "categorical", "choices": [8, 16]}},
         "pruner": {"type": "none"}}
FAST = ["stage1.contrastive.enabled=false", "train.max_epochs=1"]


@pytest.fixture
def setup(tiny_config, tmp_path):
    """A fast stage-1 config (no contrastive phase, 1 epoch), its --set form, a space file, a fresh SQLite URL."""
    space_path = tmp_path / "space.yaml"
    space_path.write_text(yaml.safe_dump(SPACE))
    overrides = [f"data.h5={tiny_config['data']['h5']}", f"registry.root={tiny_config['registry']['root']}",
                 f"runs.root={tiny_config['runs']['root']}", *FAST]
    return apply_overrides(tiny_config, FAST), overrides, space_path, f"sqlite:///{tmp_path / 'study.db'}"


def test_study_records_failures_resumes_and_exports_a_runnable_config(setup, tmp_path, monkeypatch):
    config, overrides, space_path, storage = setup
    real = stages.STAGES["stage1"]

    def flaky(cfg, **kwargs):
        if "trial=1" in kwargs["tags"]:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(cfg, **kwargs)

    monkeypatch.setitem(stages.STAGES, "stage1", flaky)
    export_dir = tmp_path / "tuned"
    first = tune(config, 1, load_space(space_path), 3, "s1-test", storage=storage, export_dir=export_dir,
                 progress=False)
    assert first.states == {"COMPLETE": 2, "FAIL": 1} and first.metric == "val_auc_macro"
    assert first.direction == "maximize"

    code = cli_main(["--stage", "1", "--config", str(ROOT / "configs" / "test.yaml"), "--trials", "2",
                     "--storage", storage, "--study", "s1-test", "--space", str(space_path),
                     "--export-dir", str(export_dir), "--quiet", *(a for o in overrides for a in ("--set", o))])
    assert code == 0
    study = optuna.load_study(study_name="s1-test", storage=storage)
    trials = study.trials
    assert len(trials) == 5
    assert [t.state.name for t in trials].count("FAIL") == 1
    failed = trials[1]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs["error"] == "RuntimeError: CUDA out of memory (simulated)"

    registry = Registry(config["registry"]["root"])
    tagged = registry.entries(tag="study=s1-test")
    assert len(tagged) == 4
    for trial in (t for t in trials if t.state == optuna.trial.TrialState.COMPLETE):
        entry = registry.resolve(trial.user_attrs["entry_id"])
        assert f"trial={trial.number}" in entry.tags and "study=s1-test" in entry.tags
        assert trial.value == pytest.approx(entry.metrics["val_auc_macro"])
        assert trial.user_attrs["run_dir"].endswith(f"tune/s1-test/trial-{trial.number}")

    exported = export_dir / "s1-test.yaml"
    raw = parse_yaml(exported.read_text())
    assert "inherit" not in raw
    assert raw["train"]["lr"] == study.best_params["train.lr"]
    assert raw["train"]["batch_size"] == study.best_params["train.batch_size"]
    assert raw["data"]["h5"] == config["data"]["h5"] and raw["stage1"]["contrastive"]["enabled"] is False
    entry = run_stage1(load_config(exported), progress=False)
    assert entry.config["train"]["lr"] == study.best_params["train.lr"]


def test_forced_pruning_stops_trials_after_their_first_epoch(setup, tmp_path):
    config, _, _, storage = setup
    config = apply_overrides(config, ["train.max_epochs=2"])
    space = parse_space({**SPACE, "pruner": {"type": "threshold", "lower": 2.0}})  # an AUC is never ≥ 2
    result = tune(config, 1, space, 1, "s1-pruned", storage=storage, export_dir=tmp_path / "tuned", progress=False)
    assert result.states == {"PRUNED": 1} and result.export_path is None
    for trial in optuna.load_study(study_name="s1-pruned", storage=storage).trials:
        assert list(trial.intermediate_values) == [1]
    assert Registry(config["registry"]["root"]).entries(tag="study=s1-pruned") == []


def test_stage2_study_pins_one_stage1_entry_for_all_its_trials(tiny_config):
    registry = Registry(tiny_config["registry"]["root"])

    def save(auc):
        return registry.save({"encoder": {"w": torch.zeros(1)}}, stage="stage1", config=tiny_config,
                             architecture={}, metrics={"val_auc_macro": auc})

    first = save(0.8)
    study = optuna.create_study()
    assert pin_parent(study, tiny_config, 2)["stage2"]["encoder"] == first.id
    assert study.user_attrs["stage2.encoder"] == first.id
    save(0.9)  # a better stage-1 entry appears while the study runs
    assert pin_parent(study, tiny_config, 2)["stage2"]["encoder"] == first.id
    resse = apply_overrides(tiny_config, ["stage2.variant=resse"])
    assert pin_parent(optuna.create_study(), resse, 2) == resse


def test_space_files_parse_and_reject_bad_settings(tiny_config):
    for stage in (1, 2, 3):
        space = load_space(ROOT / "configs" / "tune" / f"stage{stage}.yaml")
        check_space(space, load_config(ROOT / "configs" / "paper.yaml"), stage)
        assert isinstance(space.make_pruner(), optuna.pruners.MedianPruner)
    default = parse_space({"params": SPACE["params"]})
    assert default.pruner == {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 2}
    with pytest.raises(ConfigError, match="unknown type"):
        parse_space({"params": {"train.lr": {"type": "gaussian"}}})
    with pytest.raises(ConfigError, match="missing"):
        parse_space({"params": {"train.lr": {"type": "float", "low": 0.1}}})
    with pytest.raises(ConfigError, match="pruner"):
        parse_space({**SPACE, "pruner": {"type": "hyperband"}})
    with pytest.raises(ConfigError, match="unknown key"):
        check_space(parse_space({"params": {"train.lr_typo": SPACE["params"]["train.lr"]}}), tiny_config, 1)
    with pytest.raises(ConfigError, match="stage1.contrastive.train.max_epochs"):
        check_space(parse_space({"params": {"train.max_epochs": {"type": "int", "low": 1, "high": 3}}}),
                    tiny_config, 1)


def test_cli_help_explains_resuming_and_sharing(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for text in ("--storage", "--study", "--trials", "--timeout", "--set", "same --storage", "FAIL",
                 "optuna.db", "postgresql://", "tune/stage<N>", "<out>/<study>.yaml"):
        assert text in out, text
