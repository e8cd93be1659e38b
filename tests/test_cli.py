"""The ``gazecxr`` command: flow-ordered help, every subcommand's help, shared flags, old spellings."""

from __future__ import annotations

import configparser
import subprocess
import sys

import pytest

from gazecxr.cli import main as cli
from tests_paths import ROOT

CONFIG_COMMANDS = {"train stage1", "train stage2", "train stage3", "train peer", "tune", "evaluate", "ablate"}
"""Commands that run a config: --config, --set and --checkpoints (registry.root) everywhere."""
SHARED = {
    **{c: ("--config", "--set", "--checkpoints", "--out") for c in CONFIG_COMMANDS},
    "evaluate": ("--config", "--set", "--checkpoints", "--checkpoint", "--out"),
    "registry": ("--checkpoints",),
    "export": ("--checkpoints", "--checkpoint", "--out"),
    "predict": ("--checkpoints", "--checkpoint", "--out"),
    "app": ("--checkpoints", "--checkpoint"),
    "compare-sources": ("--config", "--set", "--out"),
    "synthetic": ("--out",),
    "convert egd-cxr": ("--out",),
    "convert reflacx": ("--out",),
}


def test_console_script_points_at_the_dispatcher():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    scripts = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    assert "gazecxr = gazecxr.cli.main:main" in [s.strip() for s in scripts]


def test_help_lists_the_flow_in_order():
    result = subprocess.run([sys.executable, "-m", "gazecxr", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    positions = []
    for command, (_, help_text) in cli.COMMANDS.items():
        hits = [i for i, line in enumerate(lines) if line.split(help_text)[0].strip() == command]
        assert len(hits) == 1, f"{command!r} not listed once with its help line"
        positions.append(hits[0])
    assert positions == sorted(positions)
    flow = ["synthetic", "convert egd-cxr", "train stage1", "train stage3", "evaluate", "export", "predict"]
    assert [positions[list(cli.COMMANDS).index(c)] for c in flow] == sorted(
        positions[list(cli.COMMANDS).index(c)] for c in flow)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_subcommand_has_help_with_the_shared_flags(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([*command.split(), "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gazecxr {command} ")
    for flag in SHARED.get(command, ()):
        assert flag in out, f"gazecxr {command} --help lacks {flag}"
    # the old spellings are accepted but not advertised
    for old in ("--root", "--run ", "--run-dir", "--export-dir"):
        assert old not in out


def test_groups_and_unknown_commands(capsys):
    assert cli.main(["train"]) == 2
    assert "stage1" in capsys.readouterr().out
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert cli.main(["convert", "egd"]) == 2
    assert "did you mean 'egd-cxr'" in capsys.readouterr().err


def test_bench_outside_a_checkout_says_it_needs_one(monkeypatch, capsys):
    monkeypatch.setattr(cli, "source_checkout", lambda: None)
    assert cli.main(["bench", "--list"]) == 2
    assert "needs the source checkout" in capsys.readouterr().err


def test_bench_in_the_checkout_runs_the_benchmarks_cli(capsys):
    assert cli.main(["bench", "--list"]) == 0
    assert "feature_cache" in capsys.readouterr().out


def test_old_registry_root_spelling_works_and_warns(tmp_path, capsys):
    assert cli.main(["registry", "--root", str(tmp_path), "list"]) == 0
    captured = capsys.readouterr()
    assert f"no entries in {tmp_path}" in captured.out
    assert "--root is deprecated" in captured.err and "use --checkpoints" in captured.err
    assert cli.main(["registry", "list", "--checkpoints", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"no entries in {tmp_path}" in captured.out and "deprecated" not in captured.err


@pytest.mark.parametrize("module, argv, dest, value", [
    ("gazecxr.predict", ["x.png", "--out", "o", "--run", "abc"], "checkpoint", "abc"),
    ("gazecxr.inference.app", ["--run", "abc"], "checkpoint", "abc"),
    ("stages.tune", ["--stage", "1", "--config", "test", "--trials", "1", "--export-dir", "d"], "out", "d"),
])
def test_old_flag_spellings_fill_the_new_option(module, argv, dest, value, capsys):
    parser = __import__(module, fromlist=["build_parser"]).build_parser()
    new = "--checkpoint" if dest == "checkpoint" else "--out"
    assert getattr(parser.parse_args(argv), dest) == value
    assert f"deprecated and will be removed in the next release; use {new}" in capsys.readouterr().err
    renamed = [new if a in ("--run", "--export-dir") else a for a in argv]
    assert getattr(parser.parse_args(renamed), dest) == value
    assert "deprecated" not in capsys.readouterr().err


def test_train_run_dir_alias_and_checkpoints_flag():
    from gazecxr.training.cli import build_parser

    args = build_parser("stage1").parse_args(["--config", "test", "--run-dir", "r", "--checkpoints", "ck"])
    assert args.out == "r" and args.checkpoints == "ck"
    assert build_parser("stage2").parse_args(["--config", "test"]).out is None


def _train_fails_before_work(tmp_path, capsys, *overrides: str) -> str:
    roots = [f"--set=runs.root={tmp_path / 'runs'}", f"--set=data.h5={tmp_path / 'missing.h5'}"]
    code = cli.main(["train", "stage1", "--config", "test", "--checkpoints", str(tmp_path / "ck"), *roots,
                     *(f"--set={o}" for o in overrides), "--quiet"])
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run directory, no registry
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not found" not in err and "No such file" not in err  # data never opened
    return err


def test_wrong_types_fail_before_any_work(tmp_path, capsys):
    err = _train_fails_before_work(tmp_path, capsys, "train.lr=abc", "train.batch_size=16.5")
    assert "train.lr = 'abc': expected a valid number (--set)" in err
    assert "train.batch_size = 16.5: expected a valid integer" in err
    err = _train_fails_before_work(tmp_path, capsys, "train.lr=-0.1")
    assert "train.lr = -0.1: expected greater than 0" in err


def test_misspelled_section_fails_with_a_suggestion(tmp_path, capsys):
    err = _train_fails_before_work(tmp_path, capsys, "trian.lr=1e-3")
    assert "unknown key 'trian' (did you mean 'train'?)" in err


def test_config_show_prints_the_resolved_validated_config(capsys):
    from gazecxr.config import load_config, parse_yaml

    assert cli.main(["config", "show", "demo", "--set", "train.lr=3e-4"]) == 0
    shown = parse_yaml(capsys.readouterr().out)
    assert shown == load_config("demo", ["train.lr=3e-4"]) and shown["train"]["lr"] == 3e-4
    assert cli.main(["config", "show", "test", "--set", "train.batch_size=16.5"]) == 2
    assert "train.batch_size = 16.5: expected a valid integer" in capsys.readouterr().err
    assert cli.main(["config", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"paper", "demo", "test"} <= set(names)


def test_config_show_of_a_registry_entry_old_or_new(tmp_path, capsys):
    import json

    import torch

    from gazecxr.config import load_config, parse_yaml
    from gazecxr.training.registry import ENTRY_FILE, Registry

    config = load_config("test")
    entry = Registry(tmp_path).save({"net": {"w": torch.zeros(1)}}, stage="stage1", config=config, architecture={})
    assert cli.main(["config", "show", "--checkpoint", entry.id, "--checkpoints", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert parse_yaml(captured.out) == config and captured.err == ""
    # an entry from before the schema with a key it does not know: shown, with a warning
    record = json.loads((entry.path / ENTRY_FILE).read_text())
    del record["config_schema"]
    record["config"]["train"]["legacy"] = 1
    (entry.path / ENTRY_FILE).write_text(json.dumps(record))
    assert cli.main(["config", "show", "--checkpoint", "latest", "--checkpoints", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert parse_yaml(captured.out)["train"]["legacy"] == 1
    assert "unknown key 'train.legacy'" in captured.err and "written before config validation" in captured.err


def _broken(*args, **kwargs):
    raise KeyError("chest_box_prior")  # what a bug looks like: not an error in the user's input


def test_an_internal_error_raises_with_its_traceback_and_asks_for_a_report(monkeypatch, tmp_path, capsys):
    import stages.evaluate
    from gazecxr.cli.options import BUG_REPORT

    monkeypatch.setattr(stages.evaluate, "evaluate", _broken)
    with pytest.raises(KeyError, match="chest_box_prior"):
        cli.main(["evaluate", "--config", "test", "--checkpoints", str(tmp_path), "--out", str(tmp_path / "r"),
                  "--quiet"])
    err = capsys.readouterr().err
    assert BUG_REPORT in err and "error: 'chest_box_prior'" not in err


def test_an_internal_error_in_a_process_prints_the_traceback(tmp_path):
    code = ("import sys, stages.ablate\n"
            "def broken(*args, **kwargs):\n"
            "    raise KeyError('chest_box_prior')\n"
            "stages.ablate.run_ablation = broken\n"
            "from gazecxr.cli.main import main\n"
            f"sys.exit(main(['ablate', '--config', 'test', '--seeds', '1', '--out', {str(tmp_path)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'chest_box_prior'" in result.stderr
    assert "internal error" in result.stderr and "error: 'chest_box_prior'" not in result.stderr


def test_a_bad_config_value_is_one_line_and_exit_2(capsys):
    from gazecxr.cli.options import BUG_REPORT

    assert cli.main(["evaluate", "--config", "test", "--set", "train.batch_size=16.5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.batch_size = 16.5: expected a valid integer" in err
    assert "Traceback" not in err and BUG_REPORT not in err


def test_a_file_that_is_not_hdf5_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    assert cli.main(["data", "summary", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {bad}: not an HDF5 file (create it with gazecxr convert)\n"
    assert cli.main(["data", "summary", str(tmp_path / "missing.h5")]) == 2
    assert "dataset file not found" in capsys.readouterr().err


def test_debug_shows_the_traceback_of_user_errors_too(monkeypatch, capsys):
    bad = ["config", "show", "test", "--set", "train.batch_size=16.5"]
    assert cli.main(["--debug", *bad]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.index("Traceback") < err.index("\nerror: ") and err.rstrip().endswith("expected a valid integer (--set)")
    assert cli.main(bad) == 2  # --debug holds for that command only
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setenv("GAZECXR_DEBUG", "1")
    assert cli.main(bad) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("GAZECXR_DEBUG", "0")
    assert cli.main(bad) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_run_main_reports_user_and_argparse_errors_and_re_raises_the_rest(capsys):
    import argparse

    from gazecxr.cli.options import run_main
    from gazecxr.config.errors import InputError, InputNotFoundError, UnknownReferenceError

    def failing(error: BaseException) -> int:
        raise error

    command = run_main(failing)
    for error in (InputError("t.csv: column 'x' missing"), InputNotFoundError("t.csv: not found"),
                  UnknownReferenceError("no entry 'zzz'"), argparse.ArgumentError(None, "bad --flag")):
        assert command(error) == 2
        assert capsys.readouterr().err == f"error: {error}\n"
    for error in (ValueError("shapes differ"), FileNotFoundError("internal.tmp"), LookupError("key")):
        with pytest.raises(type(error)):
            command(error)
    assert isinstance(InputError("x"), ValueError) and isinstance(InputNotFoundError("x"), FileNotFoundError)
    assert isinstance(UnknownReferenceError("x"), LookupError)
