import json
import math

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from gazecxr.config import load_config
from gazecxr.evaluation import center_bias_map, evaluate
from gazecxr.evaluation.saliency_methods import fixation_map, gradcam_saliency
from gazecxr.metrics import EPS
from gazecxr.training.stages import run_stage1, run_stage2, run_stage3
from stages.evaluate import main as cli_main
from tests_paths import ROOT

SALIENCY_METHODS = {"full", "uniform", "center_bias", "gradcam", "resse_unet"}
FIGURES = ("roc_curves.png", "confusion_full.png", "reliability.png", "overlays.png")


@pytest.fixture(scope="module")
def evaluated(tiny_h5, tmp_path_factory):
    """The three stages and a Res-SE UNet baseline trained on the tiny data, then evaluated."""
    root = tmp_path_factory.mktemp("evaluate")
    config = load_config(ROOT / "configs" / "test.yaml", [
        f"data.h5={tiny_h5}", f"registry.root={root / 'checkpoints'}", f"runs.root={root / 'runs'}",
        "train.max_epochs=1",
    ])
    entries = [run_stage1(config, progress=False), run_stage2(config, progress=False),
               run_stage3(config, progress=False)]
    baseline = run_stage2({**config, "stage2": {**config["stage2"], "variant": "resse"}}, progress=False)
    metrics = evaluate(config, out_dir=root / "reports", progress=False)
    return config, entries, baseline, metrics, root / "reports" / entries[2].id


def _heatmaps(h5, split):
    with h5py.File(h5, "r") as f:
        rows = np.flatnonzero(f["split"].asstr()[:] == split)
        return f["heatmap"][rows].astype(np.float64)


def _kl(gt, pred):
    return np.sum(gt * np.log(EPS + gt / (pred + EPS)), axis=(1, 2))


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_report_folder_has_every_file_and_method(evaluated):
    _, (e1, e2, e3), baseline, metrics, run_dir = evaluated
    assert metrics["report_dir"] == str(run_dir)
    for name in ("metrics.json", "tables.md", *FIGURES):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".tmp-*"))
    assert set(metrics["saliency"]) == SALIENCY_METHODS
    assert set(metrics["classification"]) == {"stage1", "full"}
    assert metrics["checkpoint"] == {"ref": "best", "stage3": e3.id, "stage2": e2.id, "stage1": e1.id,
                                     "baselines": {"resse_unet": baseline.id}}


def test_metrics_json_schema_with_finite_numbers(evaluated):
    _, _, _, metrics, run_dir = evaluated
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored == metrics
    assert stored["n_test"] == 12 and stored["split"] == "test"
    for result in stored["classification"].values():
        assert {"auc_macro", "auc_micro", "accuracy", "auc_per_class", "balanced_accuracy",
                "confusion_matrix", "ece", "n"} <= set(result)
        assert set(result["auc_per_class"]) == {"Normal", "CHF", "pneumonia"}
        assert np.sum(result["confusion_matrix"]) == 12
    for result in stored["saliency"].values():
        assert set(result) == {"kl", "cc", "hs", "nss"}
        assert all(set(v) == {"mean", "std"} for v in result.values())
    assert all(math.isfinite(x) for x in _numbers({k: stored[k] for k in ("classification", "saliency", "tests")}))
    assert any("NSS" in note for note in stored["notes"]) and any("gradcam" in note for note in stored["notes"])


def test_ttests_compare_full_with_every_other_method(evaluated):
    tests = evaluated[3]["tests"]
    assert all(set(t) >= {"a", "b", "metric", "t", "p"} and t["a"] == "full" for t in tests)
    covered = {(t["b"], t["metric"]) for t in tests}
    assert {(m, k) for m in SALIENCY_METHODS - {"full"} for k in ("kl", "cc", "hs", "nss")} == covered
    assert all(0 <= t["p"] <= 1 for t in tests)


def test_uniform_and_center_bias_match_independent_computation(evaluated):
    config, _, _, metrics, _ = evaluated
    h5 = config["data"]["h5"]
    gt = _heatmaps(h5, "test")
    gt /= gt.sum(axis=(1, 2), keepdims=True)
    uniform = np.full(gt.shape[1:], 1.0 / gt[0].size)
    assert metrics["saliency"]["uniform"]["kl"]["mean"] == pytest.approx(_kl(gt, uniform).mean(), abs=1e-6)
    assert metrics["saliency"]["uniform"]["cc"] == {"mean": 0.0, "std": 0.0}
    train = _heatmaps(h5, "train")
    mean_train = (train / train.sum(axis=(1, 2), keepdims=True)).mean(axis=0)
    center = center_bias_map(h5)
    np.testing.assert_allclose(center, mean_train / mean_train.sum(), atol=1e-12)
    assert metrics["saliency"]["center_bias"]["kl"]["mean"] == pytest.approx(_kl(gt, mean_train).mean(), abs=1e-6)
    hs = np.minimum(gt, mean_train / mean_train.sum()).sum(axis=(1, 2))
    assert metrics["saliency"]["center_bias"]["hs"]["std"] == pytest.approx(hs.std(), abs=1e-6)


def test_tables_follow_the_paper_layout_with_its_numbers(evaluated):
    run_dir = evaluated[4]
    text = (run_dir / "tables.md").read_text()
    for row in ("AUC (Normal)", "AUC (Heart failure)", "AUC (Pneumonia)", "AUC (macro)", "AUC (micro)",
                "Accuracy", "KL ↓", "CC ↑", "HS ↑", "NSS ↑"):
        assert f"| {row}" in text, row
    for number in ("0.953", "0.927", "0.894", "0.925", "0.800", "0.706 ± 0.183", "0.576 ± 0.113",
                   "0.552 ± 0.055", "0.747 ± 0.193"):
        assert number in text, number
    assert "| full | resse_unet |" in text and "| full | stage1 |" in text


def test_figures_are_real_pngs(evaluated):
    run_dir = evaluated[4]
    for name in FIGURES:
        path = run_dir / name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_cli_prints_tables_and_report_folder(evaluated, tmp_path, capsys):
    config, (_, _, e3), *_ = evaluated
    code = cli_main(["--config", str(ROOT / "configs" / "test.yaml"), "--checkpoint", e3.id[:12],
                     "--out", str(tmp_path), "--quiet", "--set", f"data.h5={config['data']['h5']}",
                     "--set", f"registry.root={config['registry']['root']}"])
    out = capsys.readouterr().out
    assert code == 0 and "AUC (Heart failure)" in out and f"report: {tmp_path / e3.id}" in out
    assert (tmp_path / e3.id / "metrics.json").is_file()


def test_cli_help_says_what_is_written(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(word in out for word in ("metrics.json", "tables.md", "overlays.png", "--checkpoint"))


def test_fixation_map_keeps_the_densest_five_percent():
    gt = np.zeros((2, 20, 20))
    gt[0] = np.arange(400).reshape(20, 20)
    gt[1, 0, :3] = 1.0
    fix = fixation_map(gt)
    assert fix[0].sum() == 20 and fix[0].reshape(-1)[-20:].all()
    assert fix[1].sum() == 3 and fix[1, 0, :3].all()


def test_gradcam_saliency_is_confined_to_the_image_and_falls_back_to_uniform():
    regions = torch.zeros(2, 4, 4, dtype=torch.bool)
    regions[:, :, 1:3] = True
    cams = torch.rand(2, 4, 4)
    cams[1] = 0
    maps = gradcam_saliency(cams, regions)
    assert torch.allclose(maps.sum((1, 2)), torch.ones(2, dtype=maps.dtype))
    assert (maps[~regions] == 0).all()
    assert torch.allclose(maps[1][regions[1]], torch.full((8,), 1 / 8))
