"""The gaze-utility benchmark on a tiny grid (g ∈ {0, 1}, shortcut ∈ {0, 0.9}, one size, one seed, 32×32):
the contract rows, the controls, no fit ever sees a test film, reruns reuse every fit; and the parts: the CAM
alignment loss, the methods learn on easy data, the shuffle control deranges."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from gazecxr.config import PRESETS_DIR, load_config
from gazecxr.evaluation.studies import gaze_utility as study_module
from gazecxr.evaluation.studies.gaze_utility import StudySettings, jobs, shuffle_gaze
from gazecxr.losses.attention import cam_alignment_loss, pool_distribution
from gazecxr.training import gaze_methods
from gazecxr.training.gaze_methods import BenchArrays, BenchSettings, TrainingArrays
from stages import gaze_utility as stage

METHODS = ["evidence_oracle", "test_time_gaze", "fusion", "saliency_pool", "attention_consistency"]
GRID = ["--informativeness", "0", "1", "--shortcuts", "0", "0.9", "--train-sizes", "24", "--seeds", "1",
        "--methods", *METHODS]
CONTRACT = {"method", "control", "g", "shortcut", "train_size", "test", "auc", "auc_baseline", "gain", "ci", "p_holm"}


def _config(root) -> str:
    path = root / "tiny.yaml"
    path.write_text(f"""inherit: {PRESETS_DIR / 'gaze_utility' / 'quick.yaml'}
registry: {{root: {root / 'checkpoints'}}}
runs: {{root: {root / 'runs'}}}
gaze_utility:
  data_root: {root / 'data'}
  images: 48
  film_size: 64
  height: 32
  width: 32
  test_size: 12
  val_fraction: 0.2
  bootstrap: 200
  train: {{epochs: 2, head_epochs: 2, batch_size: 8, widths: [4, 8]}}
""")
    return str(path)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaze_utility")
    config = _config(root)
    seen: list[tuple[str, ...]] = []
    fit = gaze_methods.fit

    def recording_fit(job, data, *args, **kwargs):
        seen.extend([data.train.ids, data.val.ids])
        return fit(job, data, *args, **kwargs)

    gaze_methods.fit = recording_fit
    try:
        out = root / "report"
        assert stage.main(["--config", config, *GRID, "--out", str(out), "--quiet"]) == 0
    finally:
        gaze_methods.fit = fit
    return config, out, json.loads((out / "metrics.json").read_text()), seen


def test_the_contract_rows_cover_every_method_test_and_control(study):
    _, out, report, _ = study
    for name in ("metrics.json", "tables.md", "gain_vs_g.png", "gain_vs_shortcut.png", "index.html"):
        assert (out / name).stat().st_size > 0
    rows = report["gains"]
    assert rows and all(CONTRACT <= set(r) for r in rows)
    keys = [(r["method"], r["g"], r["shortcut"], r["train_size"], r["test"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["test"] for r in rows} == {"iid", "shifted"}
    assert {r["shortcut"] for r in rows} == {0.0, 0.9}
    controls = {r["method"]: r["control"] for r in rows}
    assert controls["evidence_oracle"] == "positive" and controls["test_time_gaze"] == "test_time_gaze"
    assert controls["attention_consistency_shuffled"] == "shuffled" and controls["fusion"] is None
    baselines = {r["method"]: r["baseline"] for r in rows}
    assert baselines["fusion"] == "fusion@nogaze" and baselines["attention_consistency"] == "baseline"
    assert not any(r["method"].endswith("@nogaze") for r in rows)
    assert all(r["g"] is None for r in rows if r["method"] == "evidence_oracle")
    assert {r["g"] for r in rows if r["method"] == "fusion"} == {0.0, 1.0}
    for r in rows:
        assert r["gain"] == pytest.approx(r["auc"] - r["auc_baseline"])
        assert r["ci"][0] <= r["gain"] <= r["ci"][1] or r["ci"][0] <= r["ci"][1]
        assert 0 <= r["p_holm"] <= 1
    assert {(b["shortcut"], b["train_size"]) for b in report["baselines"]} == {(0.0, 24), (0.9, 24)}
    assert {e["method"] for e in report["gaze_effects"]} >= {"fusion", "saliency_pool", "attention_consistency"}


def test_no_fit_reads_a_test_film(study):
    config, _, report, seen = study
    with h5py.File(report["data"]["files"]["g0-p0"], "r") as f:
        test = set(np.asarray(f["dicom_id"].asstr()[:])[f["split"].asstr()[:] == "test"])
    assert seen and all(not (set(ids) & test) for ids in seen)


def test_the_data_sets_share_films_and_the_marker_follows_the_shortcut(study):
    _, _, report, _ = study
    files = report["data"]["files"]
    with h5py.File(files["g1-p0.9"], "r") as strong, h5py.File(files["g0-shifted"], "r") as shifted:
        assert list(strong["dicom_id"].asstr()[:]) == list(shifted["dicom_id"].asstr()[:])
        with h5py.File(files["g0-p0.9"], "r") as weak:
            assert np.array_equal(weak["marker_state"][:], strong["marker_state"][:])
        with h5py.File(files["g1-p0"], "r") as plain:
            assert np.array_equal(plain["heatmap"][:], strong["heatmap"][:])   # readers never look at the marker
        split = strong["split"].asstr()[:]
        fit = split != "test"
        agree = np.mean(strong["marker_state"][:][fit] == strong["label"][:][fit])
        assert agree > 0.75
        assert strong["evidence_mask"][:][strong["label"][:] == 0].sum() == 0
        assert strong["evidence_mask"][:][strong["label"][:] != 0].reshape(-1, 32 * 32).any(1).all()


def test_a_rerun_reuses_every_fit(study, tmp_path):
    config, _, first, _ = study
    out = tmp_path / "again"
    assert stage.main(["--config", config, *GRID, "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["reused"] == again["fits"] == first["fits"]
    assert [r["auc"] for r in again["gains"]] == [r["auc"] for r in first["gains"]]


def test_the_quick_preset_is_the_issue_grid():
    s = StudySettings.from_config(load_config("gaze_utility/quick"))
    assert s.informativeness == (0.0, 1.0) and s.shortcuts == (0.0, 0.9) and len(s.train_sizes) == 1
    assert s.seeds == 2 and {"evidence_oracle", "test_time_gaze", "fusion", "saliency_pool",
                             "attention_consistency"} <= set(s.methods) and s.shuffled
    full = StudySettings.from_config(load_config("gaze_utility/full"))
    assert full.seeds >= 3 and set(full.methods) == set(study_module.SELECTABLE)
    assert len(jobs(full)) > len(jobs(s))


def test_a_shuffle_control_method_must_be_a_training_time_gaze_method():
    config = load_config("gaze_utility/quick")
    config["gaze_utility"]["shuffled"] = ["test_time_gaze"]
    config["gaze_utility"]["methods"] = ["test_time_gaze"]
    with pytest.raises(ValueError, match="shuffled"):
        StudySettings.from_config(config)


def _arrays(n: int, seed: int, size: int = 16) -> BenchArrays:
    """Easy data: class 1 has a bright square at a fixed place, class 0 has it nowhere; gaze on the square."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(0.3, 0.05, (n, 1, size, size)).astype(np.float32)
    evidence = np.zeros((n, size, size), np.float32)
    evidence[labels == 1, 4:8, 4:8] = 1
    images[:, 0] += 0.5 * evidence
    gaze = evidence + 0.01
    return BenchArrays(images, labels, gaze, evidence, tuple(f"{seed}-{i}" for i in range(n)))


def test_every_cnn_method_learns_easy_data():
    settings = BenchSettings(epochs=6, head_epochs=20, batch_size=16, widths=(4, 8), decoder_width=4, num_classes=2)
    data, test = TrainingArrays(_arrays(48, 0), _arrays(16, 1)), _arrays(32, 2)
    for name in ("baseline", "evidence_oracle", "attention_consistency", "test_time_gaze"):
        fitted = gaze_methods.train_classifier(name, data, settings, seed=0)
        probs = fitted.predict(test.images, test.gaze)
        assert probs.shape == (32, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
        assert gaze_methods._macro_auc(test.labels, probs) > 0.9, name
    backbone = gaze_methods.train_classifier("baseline", data, settings, seed=0).modules["cnn"]
    decoder, info = gaze_methods.train_decoder(backbone, data, settings, seed=0)
    assert np.isfinite(info["val_kl"])
    for name in ("fusion", "fusion_conv", "saliency_pool"):
        probs = gaze_methods.train_head(name, backbone, decoder, data, settings, seed=0).predict(test.images, None)
        assert gaze_methods._macro_auc(test.labels, probs) > 0.9, name


def test_only_the_leaking_control_reads_gaze_at_test_time():
    settings = BenchSettings(epochs=1, batch_size=16, widths=(4,), num_classes=2)
    data, test = TrainingArrays(_arrays(32, 0), _arrays(8, 1)), _arrays(8, 2)
    blank = np.zeros_like(test.gaze)
    oracle = gaze_methods.train_classifier("attention_consistency", data, settings, seed=0)
    assert np.array_equal(oracle.predict(test.images, test.gaze), oracle.predict(test.images, blank))
    leak = gaze_methods.train_classifier("test_time_gaze", data, settings, seed=0)
    assert not np.array_equal(leak.predict(test.images, test.gaze), leak.predict(test.images, blank))


def test_cam_alignment_is_zero_on_the_target_and_ignores_films_without_one():
    target = torch.zeros(2, 8, 8)
    target[0, 2:4, 2:4] = 1
    q = pool_distribution(target, (4, 4))
    assert q[0].sum() == pytest.approx(1) and q[1].sum() == 0
    matching = torch.log(q.clamp_min(1e-12))
    assert float(cam_alignment_loss(matching, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(cam_alignment_loss(torch.zeros(2, 4, 4), target)) == pytest.approx(np.log(16), rel=1e-4)
    assert float(cam_alignment_loss(torch.zeros(2, 4, 4), torch.zeros(2, 8, 8))) == 0.0


def test_the_shuffled_control_gives_every_film_another_films_gaze():
    data = TrainingArrays(_arrays(10, 0), _arrays(6, 1))
    data = TrainingArrays(data.train.with_gaze(np.random.default_rng(0).random((10, 16, 16), np.float32)),
                          data.val.with_gaze(np.random.default_rng(1).random((6, 16, 16), np.float32)))
    mixed = shuffle_gaze(data, seed=3)
    for before, after in ((data.train, mixed.train), (data.val, mixed.val)):
        assert not any(np.array_equal(a, b) for a, b in zip(before.gaze, after.gaze))
        assert sorted(map(bytes, before.gaze)) == sorted(map(bytes, after.gaze))
        assert np.array_equal(before.images, after.images)


def test_a_fit_is_a_function_of_its_seed():
    settings = BenchSettings(epochs=2, head_epochs=2, batch_size=16, widths=(4, 8), decoder_width=4, num_classes=2)
    data, test = TrainingArrays(_arrays(32, 0), _arrays(16, 1)), _arrays(8, 2)
    torch.manual_seed(123)
    first = gaze_methods.train_classifier("baseline", data, settings, seed=5)
    torch.rand(7)                                       # the global generator moved on: the fit must not care
    second = gaze_methods.train_classifier("baseline", data, settings, seed=5)
    assert np.array_equal(first.predict(test.images, None), second.predict(test.images, None))
    other = gaze_methods.train_classifier("baseline", data, settings, seed=6)
    assert not np.array_equal(first.predict(test.images, None), other.predict(test.images, None))
    backbone = first.modules["cnn"]
    a, _ = gaze_methods.train_decoder(backbone, data, settings, seed=1)
    torch.rand(3)
    b, _ = gaze_methods.train_decoder(backbone, data, settings, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
