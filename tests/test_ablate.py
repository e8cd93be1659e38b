import json

import numpy as np
import pytest
from scipy import stats

from gazecxr.config import config_hash, load_config
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.ablation import (
    CLASSIFICATION_METHODS,
    MECHANISMS,
    PAPER_ROWS,
    SALIENCY_METHODS,
    markdown,
    run_ablation,
    select,
    summarise,
    with_supported_baselines,
)
from gazecxr.evaluation.outputs import SplitOutputs
from gazecxr.evaluation.saliency_methods import SALIENCY_METRICS
from gazecxr.training.registry import Registry
from stages.ablate import main as cli_main
from tests_paths import ROOT

LIGHT = ["train.max_epochs=1", "stage2.baseline_unet.encoder_depth=3", "stage2.baseline_unet.decoder_channels=[16,8,4]",
         "peers.mtunet.train.max_epochs=1", "peers.gazegnn.train.max_epochs=1"]
METHODS = ["ours", "densenet", "resse_unet", "standard_unet", "mtunet", "gazegnn", "uniform", "center_bias",
           "other_image_gaze", "lung_prior", "chest_box_prior"]
"""Every row but IRNetv2 (55 M parameters, too slow here and larger than the tiny images allow)."""
SALIENCY_ROWS = {"full", "mtunet", "resse_unet", "standard_unet", "uniform", "center_bias", "other_image_gaze",
                 "lung_prior"}
"""The EGD-CXR file has lung masks but no REFLACX chest boxes: chest_box_prior is left out, with a note."""
NO_CHEST_BOXES = "chest_box_prior left out: no chest bounding boxes in {} (REFLACX readings only)"
CLASSIFICATION_ROWS = {"fusion", "mtunet", "densenet_cl", "densenet", "gazegnn"}


@pytest.fixture(scope="module")
def ablated(tiny_h5, tmp_path_factory):
    """One-seed ablation on the tiny data through the command line."""
    root = tmp_path_factory.mktemp("ablation")
    overrides = [f"data.h5={tiny_h5}", f"registry.root={root / 'checkpoints'}", f"runs.root={root / 'runs'}", *LIGHT]
    code = cli_main(["--config", str(ROOT / "configs" / "test.yaml"), "--seeds", "1", "--out", str(root / "report"),
                     "--quiet", "--methods", *METHODS, *(a for o in overrides for a in ("--set", o))])
    assert code == 0
    config = load_config(ROOT / "configs" / "test.yaml", overrides)
    return config, root / "report", json.loads((root / "report" / "metrics.json").read_text())


def test_both_tables_have_every_row_with_p_values_and_paper_numbers(ablated):
    _, out, metrics = ablated
    assert set(metrics["saliency"]) == SALIENCY_ROWS
    assert set(metrics["classification"]) == CLASSIFICATION_ROWS
    assert metrics["seeds"] == [0] and metrics["n_test"] == 12
    kl = metrics["saliency"]["full"]["kl"]
    assert kl["std"] is None and kl["per_seed"] == [kl["mean"]]
    assert {(t["b"], t["metric"]) for t in metrics["tests"]["saliency"]} == {
        (m, k) for m in SALIENCY_ROWS - {"full"} for k in SALIENCY_METRICS}
    assert {(t["b"], t["metric"]) for t in metrics["tests"]["classification"]} == {
        (m, k) for m in CLASSIFICATION_ROWS - {"fusion"}
        for k in ("auc:Normal", "auc:CHF", "auc:pneumonia", "auc_macro", "auc_micro", "accuracy")}
    assert all(t["n"] == 12 and 0 <= t["p"] <= 1 for t in metrics["tests"]["saliency"])
    text = (out / "tables.md").read_text()
    for row in (SALIENCY_ROWS | CLASSIFICATION_ROWS) - {"gazegnn"}:
        assert f"| {row} |" in text, row
    assert "| gazegnn (uses test-time gaze (oracle)) |" in text and metrics["oracle"] == ["gazegnn"]
    for number in ("0.706 ± 0.183", "0.747 ± 0.193", "0.781 ± 0.202", "0.747 ± 0.185", "0.925", "0.889", "0.880",
                   "0.690", "0.847", "0.868"):
        assert number in text, number
    assert "Wilcoxon p" in text and "McNemar exact" in text and "p (Holm)" in text and "AUC (Heart failure) ↑" in text
    assert "| Params | Train time |" in text.replace("sAUC ↑ | Params", "| Params")
    assert metrics["fixations"]["source"] == "recorded" and metrics["saliency"]["uniform"]["auc_judd"]["mean"] == 0.5
    assert NO_CHEST_BOXES.format([metrics["data"]]) in metrics["notes"] and "| chest_box_prior |" not in text


def test_entries_are_tagged_chained_per_seed_and_match_their_configs(ablated):
    config, _, metrics = ablated
    registry = Registry(config["registry"]["root"])
    ids = metrics["entries"]["0"]
    entries = {m: registry.resolve(i) for m, i in ids.items()}
    assert all("ablation" in e.tags and "seed=0" in e.tags for e in entries.values())
    assert [entries[m].stage for m in ("standard_unet", "resse_unet", "full", "fusion")] == [
        "baseline_unet", "baseline_resse", "stage2", "stage3"]
    assert entries["full"].parents == [ids["densenet_cl"]] and entries["fusion"].parents == [ids["full"]]
    assert entries["densenet"].config["stage1"]["contrastive"]["enabled"] is False
    assert "contrastive_val_loss" in entries["densenet_cl"].metrics
    assert entries["mtunet"].stage == "mtunet" and entries["gazegnn"].stage == "gazegnn"
    assert "oracle=test-time-gaze" in entries["gazegnn"].tags
    assert not any(metrics["reused"]["0"].values())
    costs = metrics["costs"]
    assert costs["fusion"]["parameters"] == sum(entries[m].metrics["parameters"] for m in ("densenet_cl", "full", "fusion"))
    assert costs["mtunet"]["train_seconds"] == entries["mtunet"].metrics["train_seconds"] > 0
    assert costs["uniform"] == {"parameters": 0.0, "train_seconds": 0.0}


def test_second_run_reuses_every_entry(ablated, tmp_path):
    config, _, first = ablated
    registry = Registry(config["registry"]["root"])
    before = [e.id for e in registry.entries()]
    second = run_ablation(config, seeds=1, out_dir=tmp_path, progress=False, methods=METHODS)
    assert [e.id for e in registry.entries()] == before
    assert second["entries"] == first["entries"] and all(second["reused"]["0"].values())
    assert second["saliency"]["full"] == first["saliency"]["full"]
    assert config_hash(registry.resolve(first["entries"]["0"]["fusion"]).config) != config_hash(config)


def test_summaries_average_seed_means_and_pool_images_for_tests():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 0])

    def seed_outputs(shift):
        scores = {m: {k: rng.random(4) + (shift if m == "full" else 0) for k in ("kl", "cc", "hs", "nss")}
                  for m in SALIENCY_METHODS}
        probs = {m: rng.dirichlet(np.ones(3), size=4) for m in CLASSIFICATION_METHODS}
        return SplitOutputs(labels, ["a", "b", "c", "d"], probs, scores, [])

    outputs = [seed_outputs(0.0), seed_outputs(1.0)]
    summary = summarise(outputs)
    means = [float(np.mean(o.scores["full"]["kl"])) for o in outputs]
    assert summary["saliency"]["full"]["kl"]["mean"] == pytest.approx(np.mean(means))
    assert summary["saliency"]["full"]["kl"]["std"] == pytest.approx(np.std(means, ddof=1))
    assert all(t["n"] == 8 for t in summary["tests"]["saliency"] + summary["tests"]["classification"])
    per_class = summary["classification"]["fusion"]["CHF"]["per_seed"]
    assert len(per_class) == 2
    accuracy = summary["classification"]["fusion"]["accuracy"]
    half = stats.t.ppf(0.975, 1) * accuracy["std"] / np.sqrt(2)
    assert accuracy["ci"] == pytest.approx([accuracy["mean"] - half, accuracy["mean"] + half])
    mcnemar = next(t for t in summary["tests"]["classification"] if t["b"] == "densenet" and t["metric"] == "accuracy")
    correct = [(np.concatenate([o.probs[m] for o in outputs]).argmax(1) == np.tile(labels, 2)) for m in ("fusion", "densenet")]
    assert (mcnemar["a_only"], mcnemar["b_only"]) == (int(np.sum(correct[0] & ~correct[1])), int(np.sum(~correct[0] & correct[1])))
    # with the bootstrap on, each cell also carries the patient-bootstrap interval of the seed mean
    booted = summarise(outputs, bootstrap=200, patients=["p0", "p0", "p1", "p2"])
    kl = booted["saliency"]["full"]["kl"]
    assert kl["bootstrap_ci"][0] <= kl["mean"] <= kl["bootstrap_ci"][1] and "200 resamples" in kl["bootstrap_method"]


def test_report_page_shows_seed_zero_per_image_outputs_and_synthetic_notice(ablated):
    _, out, metrics = ablated
    text = (out / "index.html").read_text(encoding="utf-8")
    data = json.loads(text.split('id="report-data">')[1].split("</script>")[0])
    assert len(data["records"]) == metrics["n_test"] and data["main"] == "fusion"
    assert set(data["records"][0]["probs"]) == CLASSIFICATION_ROWS
    assert SALIENCY_ROWS <= set(data["records"][0]["layers"][1:])
    assert all((out / r["sprite"]).is_file() for r in data["records"])
    assert metrics["synthetic"] is True and "synthetic phantoms" in text.split("<h1>")[0]


def test_method_selection_always_includes_ours_and_rejects_unknown_names(capsys):
    chosen = select(["mtunet", "uniform"])
    assert [m.name for m in chosen.methods] == ["densenet_cl", "full", "fusion", "mtunet"]
    assert chosen.saliency == ("full", "mtunet", "uniform")
    assert chosen.classification == ("fusion", "mtunet", "densenet_cl")
    everything = select()
    assert everything.saliency == SALIENCY_METHODS
    assert everything.classification == tuple(m for m in CLASSIFICATION_METHODS if m not in MECHANISMS)
    assert [m.name for m in everything.methods][-3:] == ["mtunet", "irnetv2", "gazegnn"]
    mechanisms = select(["gaze_mtl", "gdvig", "gaze_token_mask"])
    assert [m.name for m in mechanisms.methods][-3:] == ["gaze_token_mask", "gdvig", "gaze_mtl"]
    assert set(MECHANISMS) <= set(mechanisms.classification) and "gaze_mtl" not in PAPER_ROWS["classification"]
    with pytest.raises(ValueError, match="unknown method"):
        select(["mt-unet"])
    with pytest.raises(SystemExit):
        cli_main(["--config", "x.yaml", "--methods", "resnet"])
    assert "invalid choice" in capsys.readouterr().err


def test_rows_leave_out_the_baselines_a_file_cannot_have_and_the_tables_are_written(tiny_h5):
    chosen, notes = with_supported_baselines(select(), GazeCXRDataset(tiny_h5, "test"))
    assert "chest_box_prior" not in chosen.saliency and {"lung_prior", "other_image_gaze"} <= set(chosen.saliency)
    assert notes == [NO_CHEST_BOXES.format([str(tiny_h5)])]
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 0])
    outputs = [SplitOutputs(labels, list("abcd"), {m: rng.dirichlet(np.ones(3), size=4) for m in chosen.classification},
                            {m: {k: rng.random(4) for k in ("kl", "cc", "hs", "nss")} for m in chosen.saliency}, [])
               for _ in range(2)]  # what the evaluation gives on that file: no chest_box_prior scores
    summary = summarise(outputs, chosen.saliency, chosen.classification)
    assert set(summary["saliency"]) == set(chosen.saliency)
    text = markdown({"seeds": [0, 1], "split": "test", "n_test": 4, "notes": notes, **summary})
    assert "| lung_prior |" in text and "| other_image_gaze |" in text and "| chest_box_prior |" not in text
    assert NO_CHEST_BOXES.format([str(tiny_h5)]) in text
