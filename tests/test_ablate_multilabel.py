"""The ablation on the multi-label findings task: our methods only, scored per finding set over seeds."""

import json
import math

import pytest

from gazecxr.evaluation.ablation import MULTILABEL_COLUMNS, THREE_CLASS_ONLY
from stages.ablate import main as cli_main
from test_html_report import page_data
from test_multilabel_pipeline import findings_h5  # noqa: F401  (session fixture: synthetic REFLACX data)
from tests_paths import ROOT


def _args(h5, root, *extra):
    overrides = [f"data.h5={h5}", f"registry.root={root / 'checkpoints'}", f"runs.root={root / 'runs'}",
                 "task.name=reflacx_findings", "stage1.contrastive.loss=supcon", "train.max_epochs=1"]
    return ["--config", str(ROOT / "configs" / "test.yaml"), "--out", str(root / "report"), "--quiet",
            *extra, *(a for o in overrides for a in ("--set", o))]


@pytest.fixture(scope="module")
def ablated(findings_h5, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("ablation_findings")
    assert cli_main(_args(findings_h5, root, "--seeds", "1", "--methods", "ours", "densenet", "uniform")) == 0
    return root / "report"


def test_multilabel_table_has_finite_macro_auroc_and_tests(ablated):
    metrics = json.loads((ablated / "metrics.json").read_text())
    assert metrics["task"] == "reflacx_findings" and len(metrics["findings"]) == 14
    assert set(metrics["classification"]) == {"fusion", "densenet_cl", "densenet"}
    for method, row in metrics["classification"].items():
        assert set(row) == set(MULTILABEL_COLUMNS)
        auroc = row["auroc_macro"]
        assert math.isfinite(auroc["mean"]) and 0 <= auroc["mean"] <= 1 and auroc["per_seed"] == [auroc["mean"]], method
    # the fusion classifier's stage-3 entry stores validation thresholds: its F1 is defined
    assert math.isfinite(metrics["classification"]["fusion"]["f1_macro"]["mean"])
    tests = metrics["tests"]["classification"]
    pairs = {(t["b"], t["metric"]) for t in tests}
    assert pairs >= {(b, m) for b in ("densenet_cl", "densenet") for m in ("bce", "auroc_macro")}
    assert all(m in ("bce", "auroc_macro") or m.startswith("auroc:") for _, m in pairs)
    assert all(t["p"] <= t["p_holm"] <= min(1.0, 2 * t["p"]) + 1e-12 for t in tests)  # Holm over the 2 other rows
    assert all(t["n"] == metrics["n_test"] and 0 <= t["p"] <= 1 for t in tests)
    assert set(metrics["saliency"]) == {"full", "uniform"} and metrics["tests"]["saliency"]
    text = (ablated / "tables.md").read_text()
    assert "## Multi-label classification (reflacx_findings, 14 findings)" in text
    assert "AUROC (macro) ↑" in text and "| fusion | densenet_cl | BCE |" in text and "| densenet_cl |" in text
    assert "DeLong (macro, joint covariance)" in text and "p (Holm)" in text
    assert "Paper AUC" not in text and "Paper KL" in text  # no paper columns for the findings table
    _, page = page_data(ablated / "index.html")  # a page of unlabelled images with no class prediction to show
    assert page["main"] is None and page["classification"] == [] and len(page["records"]) == metrics["n_test"]
    assert {r["label"] for r in page["records"]} == {"unlabelled"} and "full" in page["records"][0]["scores"]


def test_three_class_peers_are_refused_for_a_multilabel_task(findings_h5, tmp_path, capsys):  # noqa: F811
    assert cli_main(_args(findings_h5, tmp_path, "--methods", "ours", THREE_CLASS_ONLY[0])) == 2
    assert "3 exclusive EGD classes only" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
