"""The explanation study end to end on synthetic SIIM-ACR-layout data: tables, figures, statistics, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from data_prep import cxr_p as cxr_p_cli
from data_prep import siim as siim_cli
from gazecxr.config import load_yaml_config, resolve_config
from gazecxr.data.synthetic.cxr_p_writer import generate_cxr_p
from gazecxr.data.synthetic.siim_writer import generate_siim
from gazecxr.evaluation.studies.explanation import run_study, study_config
from gazecxr.evaluation.studies.explanation_data import clahe
from gazecxr.training.registry import Registry
from stages import explain as explain_stage


@pytest.fixture(scope="module")
def siim_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("siim")
    generate_siim(root / "raw", n=32, seed=0, size=96, progress=False)
    out = root / "siim.h5"
    assert siim_cli.main(["--siim-dir", str(root / "raw" / "SIIM"), "--out", str(out), "--height", "64",
                          "--width", "64", "--split", "ratio", "--quiet"]) == 0
    return out


def _config(siim_h5: Path, tmp_path: Path) -> dict:
    config = load_yaml_config(resolve_config("explain/test"))
    config["data"]["h5"] = str(siim_h5)
    config["registry"]["root"] = str(tmp_path / "checkpoints")
    config["runs"]["root"] = str(tmp_path / "runs")
    config["train"]["max_epochs"] = 1
    config["explain"]["train"] = {"cnn": {"max_epochs": 1}, "vit": {"optimizer": "sgd", "lr": 0.01, "max_epochs": 1}}
    return config


def test_study_writes_every_table_and_reuses_its_registry_entries(siim_h5: Path, tmp_path: Path) -> None:
    config = _config(siim_h5, tmp_path)
    out = tmp_path / "reports"
    metrics = run_study(config, out_dir=out, progress=False)
    report = out / "test"
    for name in ("metrics.json", "tables.md", "fig31_cams.png", "fig32_ehr_auc.png", "iou_thresholds.png",
                 "index.html"):
        assert (report / name).is_file(), name
    tables = (report / "tables.md").read_text()
    for text in ("Table 3.1 layout", "ResNet18 (paper, real SIIM-ACR) | 0.8760", "Table 3.2 layout",
                 "mean (paper, real SIIM-ACR) | 0.162", "one-way ANOVA and Tukey HSD of diff", "t=0.7",
                 "EHR-AUC per model", "synthetic phantoms"):
        assert text in tables, text
    stored = json.loads((report / "metrics.json").read_text())
    assert stored["n_pairs"] == metrics["n_pairs"] > 0 and set(stored["findings"]) == {"Pneumothorax"}
    # the ANOVA / Tukey of the report are scipy's on the stored per-pair scores
    a, b = (np.asarray(stored["scores"][f"{arch}|gradcam"]["diff"]) for arch in config["explain"]["architectures"])
    anova = stored["statistics"]["gradcam|diff"]["anova"]
    assert anova["p"] == pytest.approx(stats.f_oneway(a, b).pvalue)
    assert stored["statistics"]["gradcam|diff"]["tukey"][0]["p"] == pytest.approx(stats.tukey_hsd(a, b).pvalue[0, 1])
    # the uniform map has no location: Diff 0, IoU at every threshold = the region's share of the canvas
    uniform = stored["localisation"]["uniform"]
    assert uniform["diff"]["mean"] == 0 and uniform["iou@0.1"]["mean"] == pytest.approx(uniform["iou@0.7"]["mean"])
    page = (report / "index.html").read_text()
    assert '<option value="resnet18">' in page and '<option value="eigencam">' in page
    entries = Registry(config["registry"]["root"]).entries(stage="explain")
    assert len(entries) == 2 and {t for e in entries for t in e.tags if t.startswith("arch=")} == \
        {"arch=resnet18", "arch=vit_small_patch16_224"}
    # Fig. 3.1: a row of 200 px (2 in at 100 dpi) per test pair, explain.figure_pairs of them
    assert stored["n_pairs"] >= 2 and Image.open(report / "fig31_cams.png").height == 200 * min(3, stored["n_pairs"])
    config["explain"]["figure_pairs"] = 1
    again = run_study(config, architectures=["resnet18"], methods=["gradcam"], out_dir=tmp_path / "again",
                      progress=False)
    assert Image.open(tmp_path / "again" / "test" / "fig31_cams.png").height == 200
    config["explain"]["figure_pairs"] = 0  # no Fig. 3.1: the earlier one goes, the page does not show it
    run_study(config, architectures=["resnet18"], methods=["gradcam"], out_dir=tmp_path / "again", progress=False)
    assert not (tmp_path / "again" / "test" / "fig31_cams.png").exists()
    assert "fig31_cams.png" not in (tmp_path / "again" / "test" / "index.html").read_text()
    assert len(Registry(config["registry"]["root"]).entries(stage="explain")) == 2  # reused, not retrained
    assert again["entries"]["resnet18"] == metrics["entries"]["resnet18"]
    assert again["classification"]["resnet18"] == metrics["classification"]["resnet18"]
    assert again["localisation"]["resnet18|gradcam"]["diff"] == metrics["localisation"]["resnet18|gradcam"]["diff"]


def test_cli_refuses_unknown_methods_and_keys(siim_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert explain_stage.main(["--config", "explain/test", "--methods", "gradcam3", "--set",
                               f"data.h5={siim_h5}", "--quiet"]) == 2
    assert "unknown ['gradcam3']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown explain key"):
        study_config({"explain": {"architecture": ["resnet18"]}})


def test_clahe_equalises_contrast_and_keeps_the_range() -> None:
    rng = np.random.default_rng(0)
    dull = 0.45 + 0.1 * rng.random((64, 64))
    out = clahe(dull)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert out.std() > 2 * dull.std()  # contrast stretched
    assert np.corrcoef(out.ravel(), dull.ravel())[0, 1] > 0.5  # same structure


def test_egd_study_scores_cams_against_the_gaze_region_beside_the_gaze_rows(tiny_model: dict, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_model["config"]["registry"]["root"], root)
    config = load_yaml_config(resolve_config("explain/egd"))
    config["data"]["h5"] = tiny_model["config"]["data"]["h5"]
    config["registry"]["root"], config["runs"]["root"] = str(root), str(tmp_path / "runs")
    config["train"].update(max_epochs=1, batch_size=8, device="cpu", patience=None)
    config["data"]["num_workers"] = 0
    config["explain"].update(architectures=["densenet201_stage1"], size="tiny", gaze_model="latest", gallery_pairs=2,
                             recipe={"image_size": 64}, train={"cnn": {"max_epochs": 1}})
    config["explain"]["baselines"] = ["uniform", "centre_bias", "radiologist_gaze", "gaze_model"]
    metrics = run_study(config, out_dir=tmp_path / "reports", progress=False)
    loc = metrics["localisation"]
    assert set(metrics["baselines"]) == {"uniform", "centre_bias", "radiologist_gaze", "gaze_model"}
    assert metrics["classification"]["densenet201_stage1"]["kind"] == "exclusive"
    # the region is the hottest 10 % of the radiologist's map: that map points into it every time
    assert loc["radiologist_gaze"]["pointing_game"]["mean"] == 1.0
    assert loc["radiologist_gaze"]["diff"]["mean"] > loc["uniform"]["diff"]["mean"] == 0
    assert "upper bound" in (tmp_path / "reports" / "egd" / "tables.md").read_text()


def test_table_31_numbers_by_hand() -> None:
    from gazecxr.evaluation.studies.explanation import classification_row
    from gazecxr.tasks import create_task

    y = np.array([[0], [1], [1], [0], [1], [0.0]])
    p = np.array([[0.2], [0.8], [0.4], [0.3], [0.9], [0.6]])
    row = classification_row(create_task({"name": "siim_pneumothorax"}), y, p, 0.5)
    # at 0.5: TP = 2, FP = 1, FN = 1, 4 of 6 right; AUC: 8 of the 9 (positive, negative) pairs ordered
    assert row["accuracy"] == pytest.approx(4 / 6) and row["precision"] == pytest.approx(2 / 3)
    assert row["recall"] == pytest.approx(2 / 3) and row["auc"] == pytest.approx(8 / 9)
    assert row["auc_ci"][0] < 8 / 9 <= row["auc_ci"][1]
    # Clopper-Pearson: the 2.5 % quantile of Beta(k, n - k + 1) and the 97.5 % quantile of Beta(k + 1, n - k)
    assert row["accuracy_ci"] == pytest.approx([stats.beta.ppf(0.025, 4, 3), stats.beta.ppf(0.975, 5, 2)])
    assert row["precision_ci"] == pytest.approx([stats.beta.ppf(0.025, 2, 2), stats.beta.ppf(0.975, 3, 1)])


def test_balanced_subset_draws_patients_not_images(siim_h5: Path, tmp_path: Path) -> None:
    """Several films per patient (as in SIIM-ACR, NIH): no patient has films in two splits, classes stay balanced."""
    import shutil

    import h5py

    from gazecxr.evaluation.studies.explanation_data import study_splits
    from gazecxr.tasks import create_task

    h5 = tmp_path / "siim_patients.h5"
    shutil.copy(siim_h5, h5)
    with h5py.File(h5, "r+") as f:
        n = len(f["patient_id"])
        del f["patient_id"]
        f["patient_id"] = np.array([f"patient{i // 3}" for i in range(n)], dtype=h5py.string_dtype())
    task = create_task({"name": "siim_pneumothorax"})
    splits = study_splits(h5, task, {"enabled": True, "n": 12, "val": 4, "test": 4}, seed=0)
    base = splits["test"][0]
    positive = np.asarray(base.targets).reshape(len(base.targets), -1)[:, 0] > 0.5
    for split, per_class in (("test", 2), ("val", 2), ("train", 2)):
        rows = splits[split][1]
        assert positive[rows].sum() == per_class and (~positive[rows]).sum() == per_class, split
    patients = {split: set(base.patient_ids[rows]) for split, (_, rows) in splits.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert not (patients["val"] & patients["test"])


@pytest.fixture(scope="module")
def cxrp_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cxrp_explain")
    raw = generate_cxr_p(root / "raw", n=48, seed=5, size=96, progress=False)
    out = root / "cxr_p.h5"
    assert cxr_p_cli.main(["--siim-dir", raw["paths"]["siim"], "--gaze", raw["paths"]["gaze_json"],
                           "--out", str(out), "--height", "64", "--width", "64", "--sigma", "5",
                           "--split", "ratio", "--quiet"]) == 0
    return out


def test_cxrp_study_scores_every_map_against_masks_and_gaze_side_by_side(cxrp_h5: Path, tmp_path: Path) -> None:
    config = _config(cxrp_h5, tmp_path)
    config["explain"].update(regions="both", architectures=["resnet18"], methods=["gradcam"],
                             baselines=["uniform", "centre_bias", "radiologist_gaze"], anchors=None)
    metrics = run_study(config, out_dir=tmp_path / "reports", progress=False)
    loc, n = metrics["localisation"], metrics["n_pairs"]
    with_gaze = metrics["pairs_with_gaze"]
    assert 0 < with_gaze < n  # some positive test films were read without gaze
    assert loc["resnet18|gradcam"]["diff"]["n"] == n and loc["resnet18|gradcam"]["gaze_diff"]["n"] == with_gaze
    # the radiologist's own map against itself: CC 1; it has no map for the films without gaze
    gaze_row = loc["radiologist_gaze"]
    assert gaze_row["gaze_cc"]["mean"] == pytest.approx(1.0) and gaze_row["diff"]["n"] == with_gaze
    assert gaze_row["gaze_ehr_auc"]["mean"] > loc["uniform"]["gaze_ehr_auc"]["mean"]
    assert loc["uniform"]["gaze_diff"]["mean"] == 0 and loc["uniform"]["gaze_cc"]["mean"] == 0
    assert loc["resnet18|gradcam"]["gaze_ehr_auc"]["ci"] is not None
    tables = (tmp_path / "reports" / "test" / "tables.md").read_text()
    assert "side by side" in tables and f"on the {with_gaze} of {n} pairs whose film has gaze" in tables
