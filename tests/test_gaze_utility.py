"""The gaze-utility study on a tiny grid (2 g × 1 size × 1 seed × ours + densenet, 64×64): every table and
figure is written, the data sets share their films, the shuffled control trains on other images' gaze."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from gazecxr.config import PRESETS_DIR, load_config
from gazecxr.evaluation.studies.gaze_utility import StudySettings, prepare_data, train_all
from gazecxr.training.registry import Registry
from stages import gaze_utility as stage

GRID = ["--informativeness", "0", "1", "--train-sizes", "12", "--seeds", "1", "--methods", "ours", "densenet"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaze_utility")
    config = root / "tiny.yaml"
    config.write_text(f"""inherit: {PRESETS_DIR / 'test.yaml'}
train: {{max_epochs: 1, feature_cache: "off"}}
stage1: {{contrastive: {{train: {{max_epochs: 1}}}}, finetune: {{train: {{max_epochs: 1}}}}}}
registry: {{root: {root / 'checkpoints'}}}
runs: {{root: {root / 'runs'}}}
gaze_utility:
  data_root: {root / 'data'}
  images: 27
  film_size: 64
  knobs: {{evidence_contrast: 0.5, distractors: 1}}
  height: 64
  width: 64
  test_size: 9
  val_fraction: 0.2
  bootstrap: 200
""")
    out = root / "report"
    assert stage.main(["--config", str(config), *GRID, "--out", str(out), "--quiet"]) == 0
    return config, out, json.loads((out / "metrics.json").read_text())


def test_every_table_and_figure_is_written(study):
    _, out, report = study
    for name in ("metrics.json", "tables.md", "gain_vs_g.png", "saliency_cc_vs_g.png", "index.html"):
        assert (out / name).stat().st_size > 0, name
    tables = (out / "tables.md").read_text()
    assert "## Gain of each gaze-using method" in tables and "shuffled" in tables
    gains = {(t["variant"], t["method"]) for t in report["gains"]}
    assert gains == {("g0", "ours"), ("g1", "ours"), ("shuffled", "ours")}
    for test in report["gains"]:
        assert test["baseline"] == "densenet_cl"
        assert -1.0 <= test["auc_gain"] <= 1.0
        assert test["ci"][0] <= test["ci"][1] and 0.0 < test["p"] <= test["p_holm"] <= 1.0
        assert len(test["delong_per_seed"]) == 1 and test["mcnemar"]["n"] == report["n_test"]
    effects = {(t["variant"], t["baseline"]) for t in report["gaze_effects"]}
    assert effects == {("g1", "fusion at g0"), ("shuffled", "fusion at g0")}
    assert "## Gaze effect" in tables
    rows = {(r["variant"], r["row"]) for r in report["rows"]}
    assert {("any g", "densenet"), ("any g", "densenet_cl"), ("g0", "fusion"), ("g1", "fusion")} <= rows
    saliency = [r for r in report["rows"] if r["row"] == "fusion" and r["g"] is not None]
    assert all(-1.0 <= r["saliency"]["cc"]["mean"] <= 1.0 for r in saliency)


def test_data_sets_differ_only_in_gaze_and_the_control_shuffles_it(study):
    config, _, report = study
    files = report["data"]["files"]
    with h5py.File(files["g0-n12"], "r") as a, h5py.File(files["g1-n12"], "r") as b, \
            h5py.File(files["shuffled-n12"], "r") as s:
        np.testing.assert_array_equal(a["image"][:], b["image"][:])
        np.testing.assert_array_equal(a["split"][:], b["split"][:])
        assert not np.allclose(a["heatmap"][:], b["heatmap"][:])
        split = s["split"].asstr()[:]
        assert (split == "train").sum() == 12 and (split == "unused").any()
        source = s["heatmap_source_row"][:]
        shuffled = np.isin(split, ["train", "val"])
        assert np.all(source[shuffled] != np.flatnonzero(shuffled)) and np.all(split[source] == split)
        np.testing.assert_array_equal(s["heatmap"][:], b["heatmap"][:][source])
        assert json.loads(b.attrs["synthetic_knobs"])["gaze_informativeness"] == 1.0
    registry = Registry(load_config(config)["registry"]["root"])
    fusion = registry.resolve(report["entries"]["shuffled-n12-seed0"]["fusion"])
    assert fusion.config["data"]["h5"] == files["shuffled-n12"]


def test_a_rerun_reuses_every_entry(study):
    config, _, report = study
    assert not any(any(flags.values()) for flags in report["reused"].values())
    args = stage.build_parser().parse_args(["--config", str(config), *GRID])
    settings_config = stage.with_grid(load_config(config), args)
    settings = StudySettings.from_config(settings_config)
    again = train_all(settings_config, settings, prepare_data(settings, progress=False), progress=False)
    assert {key: {m: e.id for m, e in t.entries.items()} for key, t in again.items()} == {
        tuple_key(name): ids for name, ids in report["entries"].items()}
    assert all(all(t.reused.values()) for t in again.values())


def tuple_key(name: str) -> tuple[str, int, int]:
    """("g1", 12, 0) of a report's entry key "g1-n12-seed0"."""
    variant, size, seed = name.rsplit("-", 2)
    return variant, int(size[1:]), int(seed[4:])
