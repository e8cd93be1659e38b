import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from gazecxr.config import load_config
from gazecxr.evaluation import center_bias_map, evaluate
from gazecxr.evaluation.report import best_baselines, method_cost
from gazecxr.evaluation.saliency_methods import SALIENCY_METRICS, fixation_map, gradcam_saliency
from gazecxr.metrics import EPS, auc_judd
from gazecxr.training.registry import Registry
from gazecxr.training.stages import run_stage1, run_stage2, run_stage3
from stages.evaluate import main as cli_main
from tests_paths import ROOT

SALIENCY_METHODS = {"full", "uniform", "center_bias", "gradcam", "resse_unet", "other_image_gaze", "lung_prior"}
"""The synthetic EGD-CXR file has lung masks (lung_prior) but no REFLACX chest boxes (no chest_box_prior)."""
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
        assert set(result) == set(SALIENCY_METRICS)
        assert all(set(v) == {"mean", "std"} for v in result.values())
    assert all(math.isfinite(x) for x in _numbers({k: stored[k] for k in ("classification", "saliency", "tests")}))
    assert any("NSS" in note for note in stored["notes"]) and any("gradcam" in note for note in stored["notes"])


def test_ttests_compare_full_with_every_other_method(evaluated):
    tests = evaluated[3]["tests"]
    assert all(set(t) >= {"a", "b", "metric", "t", "p"} and t["a"] == "full" for t in tests)
    covered = {(t["b"], t["metric"]) for t in tests}
    assert {(m, k) for m in SALIENCY_METHODS - {"full"} for k in SALIENCY_METRICS} == covered
    assert all(0 <= t["p"] <= 1 for t in tests)
    assert all(0 <= t["wilcoxon_p"] <= 1 and t["p"] <= t["p_holm"] <= 1 for t in tests)
    for metric in SALIENCY_METRICS:  # Holm within each metric's family: the smallest p times the family size
        family = [t for t in tests if t["metric"] == metric]
        smallest = min(family, key=lambda t: t["p"])
        assert smallest["p_holm"] == pytest.approx(min(1.0, len(family) * smallest["p"]))
    classification = evaluated[3]["classification_tests"]
    assert {(t["a"], t["b"], t["metric"], t["test"]) for t in classification} == {
        ("full", "stage1", "auc:Normal", "DeLong"), ("full", "stage1", "auc:CHF", "DeLong"),
        ("full", "stage1", "auc:pneumonia", "DeLong"), ("full", "stage1", "auc_macro", "DeLong (macro, joint covariance)"),
        ("full", "stage1", "auc_micro", "paired patient bootstrap"), ("full", "stage1", "accuracy", "McNemar exact")}
    assert all(t["p_holm"] == t["p"] for t in classification)  # one other classifier: families of one test


def test_every_cell_has_an_interval_and_its_method(evaluated):
    metrics, run_dir = evaluated[3], evaluated[4]
    for method, by_metric in metrics["intervals"]["saliency"].items():
        for metric, cell in by_metric.items():
            assert cell["value"] == pytest.approx(metrics["saliency"][method][metric]["mean"])
            assert "patient bootstrap" in cell["method"] and cell["ci"][0] <= cell["value"] + 1e-12
            assert cell["value"] <= cell["ci"][1] + 1e-12
    full = metrics["intervals"]["classification"]["full"]
    assert full["auc_per_class"]["CHF"]["method"] == "DeLong"
    assert full["auc_per_class"]["CHF"]["value"] == pytest.approx(metrics["classification"]["full"]["auc_per_class"]["CHF"])
    assert full["accuracy"]["value"] == pytest.approx(metrics["classification"]["full"]["accuracy"])
    assert full["ece"]["value"] == pytest.approx(metrics["classification"]["full"]["ece"])
    assert metrics["statistics"]["resamples"] == 2000 and metrics["statistics"]["seed"] == 0
    text = (run_dir / "tables.md").read_text()
    cell = metrics["intervals"]["classification"]["full"]["auc_macro"]
    assert f"{cell['value']:.3f} [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}]" in text
    assert "Holm–Bonferroni" in text and "p (Holm)" in text and "Wilcoxon p" in text
    page = (run_dir / "index.html").read_text()
    assert f"{cell['value']:.3f} [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}]" in page and "p (Holm)" in page
    table = text.split("## Visual saliency")[1].split("\n\n")[1]
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[2:]]
    assert rows[-4:] == ["other_image_gaze", "lung_prior", "center_bias", "uniform"]  # bottom to top
    assert "Ours (paper, 100 real test images)" in rows


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


def _fixations(h5, split):
    """Per test record: its fixations (K, 3) and dicom id, read straight from the file."""
    with h5py.File(h5, "r") as f:
        rows = np.flatnonzero(f["split"].asstr()[:] == split)
        offsets, table = f["fixation_offsets"][:], f["fixations"][:]
        return [table[offsets[r]:offsets[r + 1]] for r in rows]


def test_fixation_metrics_on_recorded_fixations_match_an_independent_computation(evaluated):
    config, _, _, metrics, run_dir = evaluated
    h5 = config["data"]["h5"]
    assert metrics["fixations"]["source"] == "recorded"
    fixations = _fixations(h5, "test")
    assert metrics["fixations"]["fixations"] == sum(map(len, fixations)) > 12
    center = center_bias_map(h5)
    pixels = [(np.floor(f[:, 1] + 0.5).astype(int).clip(0, 63), np.floor(f[:, 0] + 0.5).astype(int).clip(0, 63))
              for f in fixations]
    judd, sauc = [], []
    for i, (rows, cols) in enumerate(pixels):
        fixated = np.zeros((64, 64), bool)
        fixated[rows, cols] = True
        judd.append(auc_judd(center, fixated))
        others = np.concatenate([center[r, c] for j, (r, c) in enumerate(pixels) if j != i])
        positives = center[fixated]
        sauc.append(roc_auc_score(np.r_[np.ones(len(positives)), np.zeros(len(others))], np.r_[positives, others]))
    result = metrics["saliency"]["center_bias"]
    assert result["auc_judd"]["mean"] == pytest.approx(np.mean(judd), abs=1e-9)
    assert result["sauc"]["mean"] == pytest.approx(np.mean(sauc), abs=1e-9)
    assert result["auc_judd"]["mean"] > 0.6 and result["auc_judd"]["mean"] > result["sauc"]["mean"]
    uniform = metrics["saliency"]["uniform"]
    assert uniform["auc_judd"] == {"mean": 0.5, "std": 0.0} and uniform["sauc"] == {"mean": 0.5, "std": 0.0}
    assert uniform["nss"] == {"mean": 0.0, "std": 0.0}
    text = (run_dir / "tables.md").read_text()
    assert "| AUC-Judd ↑ |" in text and "| sAUC ↑ |" in text and "on the recorded fixations" in text


def test_costs_and_every_paper_column_in_the_tables(evaluated):
    _, (e1, e2, e3), baseline, metrics, run_dir = evaluated
    costs = metrics["costs"]
    assert costs["full"]["parameters"] == sum(e.metrics["parameters"] for e in (e1, e2, e3))
    assert costs["stage1"]["parameters"] == e1.metrics["parameters"] > 0
    assert costs["resse_unet"]["train_seconds"] == baseline.metrics["train_seconds"] > 0
    assert costs["uniform"] == {"parameters": 0.0, "train_seconds": 0.0}
    text = (run_dir / "tables.md").read_text()
    assert "| Parameters |" in text and "| Training time |" in text
    for column in ("MT-UNet (paper, 100 real test images)", "DNet201 (paper, 100 real test images)",
                   "IRNetv2 (paper", "GazeGNN (uses test-time gaze (oracle)) (paper", "Res_SE-UNet (paper, 100",
                   "UNet_S (paper, 100 real test images)"):
        assert column in text, column
    for number in ("0.847", "0.640", "0.794", "0.602", "0.868", "0.730", "0.964", "0.545 ± 0.109", "0.781 ± 0.202"):
        assert number in text, number


def test_file_without_fixations_falls_back_to_the_top_five_percent_nss(evaluated, tmp_path):
    config, *_ = evaluated
    old = tmp_path / "old.h5"
    with h5py.File(config["data"]["h5"], "r") as src, h5py.File(old, "w") as dst:
        for key in src:
            if not key.startswith("fixation"):
                src.copy(src[key], dst, key)
        dst.attrs.update(src.attrs)
    metrics = evaluate({**config, "data": {**config["data"], "h5": str(old)}}, out_dir=tmp_path / "reports",
                       progress=False)
    assert metrics["fixations"] == {"source": "approximated"}
    assert all(set(result) == {"kl", "cc", "hs", "nss"} for result in metrics["saliency"].values())
    assert {t["metric"] for t in metrics["tests"]} == {"kl", "cc", "hs", "nss"}
    assert metrics["saliency"]["full"]["kl"] == evaluated[3]["saliency"]["full"]["kl"]
    text = (Path(metrics["report_dir"]) / "tables.md").read_text()
    assert "top-5 % ground-truth approximation" in text and "AUC-Judd ↑" in text
    assert any(line.startswith("| uniform |") and line.endswith("| — | — | 0.00 M | 0 s |") for line in text.splitlines())


def test_best_peer_entries_are_picked_by_their_monitor_and_input_size(tmp_path):
    registry = Registry(tmp_path / "checkpoints")
    weights = {"net": {"w": torch.zeros(2, 3)}}
    config = {"peers": {"mtunet": {"monitor": "val_total_loss"}, "irnetv2": {"monitor": "val_auc_macro"},
                        "gazegnn": {"monitor": "val_auc_macro"}}}

    def save(stage, size, params, seconds=1.0, **metrics):
        return registry.save(weights, stage=stage, config=config, architecture={"input_size": size},
                             metrics={**metrics, "parameters": params, "train_seconds": seconds})

    save("mtunet", [64, 64], 10, val_total_loss=0.9)
    best_mtunet = save("mtunet", [64, 64], 10, val_total_loss=0.4)
    save("mtunet", [64, 64], 10, val_total_loss=0.7)
    best_irnet = save("irnetv2", [64, 64], 20, val_auc_macro=0.8)
    save("irnetv2", [64, 64], 20, val_auc_macro=0.6)
    wrong_size = save("gazegnn", [32, 32], 5, val_auc_macro=0.9)
    chosen, notes = best_baselines(registry, (64, 64))
    assert {m: e.id for m, e in chosen.items()} == {"mtunet": best_mtunet.id, "irnetv2": best_irnet.id}
    assert len(notes) == 1 and wrong_size.id in notes[0] and "gazegnn" in notes[0]
    assert method_cost(registry, best_irnet) == {"parameters": 20.0, "train_seconds": 1.0}


def test_classification_is_scored_on_the_records_that_carry_a_class_label():
    from gazecxr.evaluation.outputs import SplitOutputs
    from gazecxr.evaluation.report import summarise_classification

    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]])
    outputs = SplitOutputs(labels=np.array([0, -1, 2, 1]), dicom_ids=["a", "b", "c", "d"], probs={"full": probs},
                           scores={}, examples=[])
    labels, kept = outputs.labelled()
    np.testing.assert_array_equal(labels, [0, 2, 1])
    np.testing.assert_array_equal(kept["full"], probs[[0, 2, 3]])
    assert summarise_classification(labels, kept)["full"]["accuracy"] == pytest.approx(2 / 3)
