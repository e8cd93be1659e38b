"""Synthetic REFLACX findings: not learnable from the grey-level histogram; the three stages, predict and
evaluate on the multi-label task reflacx_findings."""

import json

import h5py
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gazecxr.config import load_config
from gazecxr.data.convert import ConvertOptions, convert_source
from gazecxr.data.sources.reflacx import ReflacxSource
from gazecxr.evaluation.report import evaluate
from gazecxr.predict import load_predictor
from gazecxr.training.registry import Registry
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx
from gazecxr.tasks import create_task
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.stages import run_stage1, run_stage2, run_stage3
from tests_paths import ROOT

TASK = create_task({"name": "reflacx_findings"})


@pytest.fixture(scope="session")
def findings_h5(tmp_path_factory):
    """60 synthetic REFLACX images (planted findings) converted at 64×64, 12 test records."""
    root = tmp_path_factory.mktemp("findings_data")
    generate_reflacx(root / "raw", n=60, seed=0, size=128, progress=False)
    h5 = root / "reflacx.h5"
    convert_source(ReflacxSource(root / "raw" / "REFLACX", root / "raw" / "MIMIC"), h5,
                   ConvertOptions(height=64, width=64, gaze="reflacx", test_size=12), progress=False)
    return h5


@pytest.fixture(scope="session")
def findings_run(findings_h5, tmp_path_factory):
    """The three stages (1 epoch each) on the findings task of ``findings_h5``, evaluated on its test split."""
    root = tmp_path_factory.mktemp("findings")
    h5 = findings_h5
    config = load_config(ROOT / "configs" / "test.yaml", [
        f"data.h5={h5}", f"registry.root={root / 'checkpoints'}", f"runs.root={root / 'runs'}",
        "task.name=reflacx_findings", "task.positive_weights=true", "stage1.contrastive.loss=supcon",
        "train.max_epochs=1"])
    entries = [run(config, progress=False) for run in (run_stage1, run_stage2, run_stage3)]
    metrics = evaluate(config, entries[2].id, root / "reports", progress=False)
    return {"config": config, "h5": h5, "entries": entries, "metrics": metrics}


def _cv_auroc(features: np.ndarray, targets: np.ndarray) -> float:
    """Macro AUROC of cross-validated logistic regressions, over findings with at least 8 positives and negatives."""
    aucs = []
    for j in np.flatnonzero((targets.sum(0) >= 8) & (targets.sum(0) <= len(targets) - 8)):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        p = cross_val_predict(model, features, targets[:, j], cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")[:, 1]
        aucs.append(roc_auc_score(targets[:, j], p))
    assert len(aucs) >= 2
    return float(np.mean(aucs))


def test_histogram_baseline_is_near_chance_but_spatial_baseline_learns(findings_h5):
    with h5py.File(findings_h5) as f:
        images = f["image"][:]
        targets = TASK.targets_from_certainties(f["findings"][:], list(f["findings"].attrs["label_names"]))
    histograms = np.array([np.histogram(im[im > 0], bins=32, range=(0, 1))[0] / max(1, (im > 0).sum())
                           for im in images])
    spatial = images.reshape(len(images), 16, 4, 16, 4).mean(axis=(2, 4)).reshape(len(images), -1)
    histogram_auc, spatial_auc = _cv_auroc(histograms, targets), _cv_auroc(spatial, targets)
    assert histogram_auc < 0.7
    assert spatial_auc > histogram_auc + 0.1


def test_heads_have_one_logit_per_finding_and_reload(findings_run):
    stage1, _, stage3 = findings_run["entries"]
    assert stage1.architecture["encoder"]["num_classes"] == TASK.num_outputs == 14
    assert stage3.architecture["classifier"]["num_classes"] == 14
    model, _ = load_full_model(Registry(findings_run["config"]["registry"]["root"]), stage3.id)
    out = model(torch.rand(2, 1, 64, 64))
    assert out["class_logits"].shape == (2, 14) and out["encoder_logits"].shape == (2, 14)
    weights = stage1.architecture["task"]["pos_weight"]
    with h5py.File(findings_run["h5"]) as f:
        targets = TASK.targets_from_certainties(f["findings"][:], list(f["findings"].attrs["label_names"]))
    assert len(weights) == 14 and all(w >= 1 for w in weights)
    assert targets.sum() > 0


def test_thresholds_stored_and_predict_lists_findings(findings_run):
    stage3 = findings_run["entries"][2]
    thresholds = stage3.architecture["task"]["thresholds"]
    assert len(thresholds) == 14 and all(0 <= t <= 1 for t in thresholds)
    predictor = load_predictor(findings_run["config"]["registry"]["root"], stage3.id, device="cpu")
    with h5py.File(findings_run["h5"]) as f:
        images = [f["image"][i] for i in range(3)]
    predictions = predictor.predict(images)
    for p in predictions:
        probs = np.array(list(p.probabilities.values()))
        assert list(p.probabilities) == list(TASK.names)
        assert np.all((probs > 0) & (probs < 1)) and not np.isclose(probs.sum(), 1.0)  # independent sigmoids
        assert p.findings == [n for n, t in zip(TASK.names, thresholds) if p.probabilities[n] >= t]


def test_evaluate_writes_multilabel_and_localisation_tables(findings_run):
    metrics = findings_run["metrics"]
    full = metrics["classification"]["full"]
    assert set(full["per_finding"]) == set(TASK.names) and "f1_macro" in full
    loc = metrics["localisation"]
    assert loc["n"] > 0 and set(loc["methods"]) == {"gaze", "full", "gradcam", "center_bias", "uniform"}
    # the gaze ground truth dwells on the planted findings: it points into their ellipses more than uniform
    gaze, uniform = loc["methods"]["gaze"], loc["methods"]["uniform"]
    assert gaze["energy_pointing_game"]["overall"]["mean"] > uniform["energy_pointing_game"]["overall"]["mean"]
    report = metrics["report_dir"]
    tables = open(f"{report}/tables.md", encoding="utf-8").read()
    assert "## Localisation over" in tables and "pointing_game" in tables and "AUROC full" in tables
    assert json.load(open(f"{report}/metrics.json"))["localisation"]["n"] == loc["n"]
