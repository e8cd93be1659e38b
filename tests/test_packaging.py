"""Packaging: a wheel built from the repository, installed into a fresh virtual environment, trains and
predicts with the ``gazecxr`` command; what the wheel holds and leaves out; light imports."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests_paths import ROOT

LIGHT_IMPORT = ("import json, sys, gazecxr.predict; "
                "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'tensorboard'})))")


def test_import_predict_loads_neither_matplotlib_nor_tensorboard():
    out = subprocess.run([sys.executable, "-c", LIGHT_IMPORT], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_training_without_tensorboard_says_which_extra(monkeypatch, tmp_path, capsys):
    from gazecxr.training import engine

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    engine._summary_writer_class.cache_clear()
    try:
        assert engine.tensorboard_writer(tmp_path / "tb") is None
        assert engine.tensorboard_writer(tmp_path / "tb") is None
    finally:
        engine._summary_writer_class.cache_clear()
    assert capsys.readouterr().err.count("pip install 'gazecxr[tensorboard]'") == 1  # said once


def _source_tree(dest: Path) -> Path:
    """The checkout's files that git does not ignore (what a clone of this working tree holds)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if name.split("/")[0] in ("tests", "checkpoints") or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the repository's files")
    work = tmp_path_factory.mktemp("wheel")
    src = _source_tree(work / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(work / "dist"), str(src)], check=True, capture_output=True, cwd=work)
    (built,) = (work / "dist").glob("gazecxr-*.whl")
    return built


def test_wheel_ships_presets_license_and_types_but_not_bench(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"gazecxr/config/presets/test.yaml", "gazecxr/config/presets/paper.yaml",
            "gazecxr/config/presets/tune/stage1.yaml", "gazecxr/py.typed"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {n.split("/")[0] for n in names if "/" in n and not n.split("/")[0].endswith(".dist-info")} == \
        {"gazecxr", "stages", "data_prep"}  # no top-level bench (nor tests)
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    requires = metadata.get_all("Requires-Dist")
    assert "torch>=2.14" in requires and "torchvision>=0.29" in requires  # a range: no upper pin
    tensorboard = [r for r in requires if r.startswith("tensorboard")]
    assert 'tensorboard<3,>=2.17; extra == "tensorboard"' in tensorboard
    assert all("extra ==" in r for r in tensorboard)  # never a hard dependency
    assert "MIT" in (metadata.get("License-Expression") or metadata.get("License") or "")
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "gazecxr = gazecxr.cli.main:main" in entry_points


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (--no-deps); its dependencies are this environment's, on
    its path by a .pth file (offline and fast, nothing downloaded). Returns the venv's bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_path("purelib"), *site.getsitepackages()}
    Path(purelib, "_gazecxr_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    return venv / "bin"


def test_installed_wheel_trains_and_predicts(installed, tiny_h5, tiny_model, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = lambda *args: subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env)  # noqa: E731
    where = run(str(installed / "python"), "-c", "import gazecxr, stages; print(gazecxr.__file__, stages.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(installed.parent)) for path in where.stdout.split()), where.stdout
    assert run(str(installed / "python"), "-c", "import bench").returncode != 0  # not installed

    trained = run(str(installed / "gazecxr"), "train", "stage1", "--config", "test", "--quiet",
                  "--checkpoints", str(tmp_path / "ck"), "--out", str(tmp_path / "run"),
                  "--set", f"data.h5={tiny_h5}", "--set", "train.max_epochs=1",
                  "--set", "stage1.contrastive.enabled=false")
    assert trained.returncode == 0, trained.stderr[-3000:]
    entry = json.loads(trained.stdout)
    assert entry["stage"] == "stage1" and (tmp_path / "ck" / entry["id"] / "model.safetensors").is_file()

    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((72, 60)) * 255).astype(np.uint8)).save(tmp_path / "film.png")
    registry = tiny_model["config"]["registry"]["root"]
    predicted = run(str(installed / "gazecxr"), "predict", "film.png", "--checkpoints", registry,
                    "--checkpoint", tiny_model["stage3"], "--out", "out", "--device", "cpu")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "film.json").read_text())
    assert (tmp_path / "out" / "film.png").is_file() and record["original_size"] == [72, 60]

    from gazecxr.predict import load_predictor

    here = load_predictor(registry, run=tiny_model["stage3"], device="cpu").predict(str(tmp_path / "film.png"))
    assert record["label"] == here.label
    assert record["probabilities"] == pytest.approx(here.probabilities, abs=1e-6)
