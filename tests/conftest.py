"""Shared fixtures: a small synthetic raw dataset and its HDF5 conversion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gazecxr.config import load_config
from gazecxr.data.convert import ConvertOptions
from gazecxr.data.sources.egd_cxr import convert_egd_cxr
from gazecxr.data.synthetic import generate

from tests_paths import ROOT
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> Path:
    """60 synthetic radiographs (nominal height 256) in the raw EGD-CXR layout."""
    out = tmp_path_factory.mktemp("raw") / "synthetic"
    generate(out, n=60, seed=0, size=256, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_h5(synthetic_raw, tmp_path_factory) -> Path:
    """The synthetic raw data converted at 64×64 with the paper split (12 test records)."""
    out = tmp_path_factory.mktemp("h5") / "tiny.h5"
    convert_egd_cxr(synthetic_raw / "EGD", synthetic_raw / "MIMIC", out,
            ConvertOptions(height=64, width=64, sigma=75.5 * 256 / 3000, test_size=12), progress=False)
    return out


@pytest.fixture
def tiny_config(tiny_h5, tmp_path) -> dict:
    """configs/test.yaml pointed at the tiny dataset, with a fresh registry and run root."""
    return load_config(ROOT / "configs" / "test.yaml", [
        f"data.h5={tiny_h5}", f"registry.root={tmp_path / 'checkpoints'}", f"runs.root={tmp_path / 'runs'}",
    ])


@pytest.fixture(scope="session")
def tiny_model(tiny_h5, tmp_path_factory) -> dict:
    """The three stages trained for one epoch on the tiny data, once per session: the config they
    were trained with (its ``registry.root`` holds them) and the stage-3 entry id."""
    from gazecxr.training.stages import run_stage1, run_stage2, run_stage3

    root = tmp_path_factory.mktemp("tiny_model")
    config = load_config(ROOT / "configs" / "test.yaml", [
        f"data.h5={tiny_h5}", f"registry.root={root / 'checkpoints'}", f"runs.root={root / 'runs'}",
        "train.max_epochs=1", "stage1.contrastive.enabled=false",
    ])
    run_stage1(config, progress=False)
    run_stage2(config, progress=False)
    return {"config": config, "stage3": run_stage3(config, progress=False).id}


@pytest.fixture(scope="session")
def evaluated_report(tiny_model, tmp_path_factory) -> tuple[dict, Path]:
    """stages.evaluate of the tiny model on its test split: (metrics, report folder with index.html)."""
    from gazecxr.evaluation import evaluate

    metrics = evaluate(tiny_model["config"], checkpoint=tiny_model["stage3"],
                       out_dir=tmp_path_factory.mktemp("reports"), progress=False)
    return metrics, Path(metrics["report_dir"])
