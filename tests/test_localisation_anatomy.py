"""Anatomical mass shares of maps, per class and method."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gazecxr import CLASS_NAMES
from gazecxr.metrics.anatomy import ELSEWHERE, anatomy_by_class, mass_shares
from gazecxr.data.dataset import GazeCXRDataset

H, W = 30, 40
LUNG = np.zeros((H, W), bool)
LUNG[5:25, 3:15] = LUNG[5:25, 25:37] = True  # 480 px
HEART = np.zeros((H, W), bool)
HEART[12:26, 16:24] = True  # 112 px


def _masks(n: int) -> dict[str, np.ndarray]:
    return {"lung_mask": np.repeat(LUNG[None], n, 0), "heart_mask": np.repeat(HEART[None], n, 0)}


def test_mass_shares_on_hand_made_maps():
    on_heart = HEART * 2.0
    half = LUNG / LUNG.sum() + HEART / HEART.sum()
    corner = np.zeros((H, W))
    corner[0, 0] = 1.0
    uniform = np.ones((H, W))
    s = mass_shares(np.stack([on_heart, half, corner, uniform, np.zeros((H, W))]), _masks(5))
    assert list(s) == ["lung_mask", "heart_mask", ELSEWHERE]
    assert np.allclose(s["heart_mask"], [1, 0.5, 0, HEART.mean(), HEART.mean()])
    assert np.allclose(s["lung_mask"], [0, 0.5, 0, LUNG.mean(), LUNG.mean()])
    assert np.allclose(s[ELSEWHERE], [0, 0, 1, 1 - LUNG.mean() - HEART.mean(), 1 - LUNG.mean() - HEART.mean()])


def test_records_without_masks_are_nan_and_overlaps_are_shared():
    masks = _masks(2)
    masks["heart_mask"][1] = False
    s = mass_shares(np.ones((2, H, W)), masks)
    assert all(np.isnan(v[1]) for v in s.values()) and not any(np.isnan(v[0]) for v in s.values())
    overlap = {"a": np.ones((1, H, W), bool), "b": np.repeat(HEART[None], 1, 0)}
    s = mass_shares(np.ones((1, H, W)), overlap)
    assert s["a"][0] == 1 and s["b"][0] == pytest.approx(HEART.mean()) and s[ELSEWHERE][0] == pytest.approx(0)
    with pytest.raises(ValueError, match="'heart_mask' has shape"):
        mass_shares(np.ones((2, H, W)), {"heart_mask": HEART})
    with pytest.raises(ValueError, match="reserved"):
        mass_shares(np.ones((1, H, W)), {ELSEWHERE: HEART[None]})


def test_anatomy_by_class_compares_methods_to_gaze():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2] * 4)
    n = labels.size
    # gaze: heart-heavy in CHF, lung-heavy otherwise; "model" copies gaze with noise; "gradcam" is uniform
    heart_weight = np.where(labels == 1, 0.7, 0.1)
    gaze = (heart_weight[:, None, None] * HEART / HEART.sum()
            + (1 - heart_weight)[:, None, None] * LUNG / LUNG.sum())
    model = gaze + 1e-7 * rng.random(gaze.shape)
    masks = _masks(n)
    masks["lung_mask"][-1] = False  # one record without masks
    out = anatomy_by_class({"model": model, "gaze": gaze, "gradcam": np.ones((n, H, W))}, masks, labels)
    json.dumps(out)
    assert out["n"] == n - 1 and out["skipped"] == 1
    assert out["regions"] == ["lung_mask", "heart_mask", ELSEWHERE] and out["classes"] == list(CLASS_NAMES)
    gaze_out = out["methods"]["gaze"]
    assert gaze_out["CHF"]["heart_mask"]["mean"] == pytest.approx(0.7)
    assert gaze_out["Normal"]["heart_mask"]["mean"] == pytest.approx(0.1)
    assert gaze_out["pneumonia"]["lung_mask"]["n"] == 3  # the last record (pneumonia) is skipped
    assert gaze_out["all"]["heart_mask"]["n"] == n - 1
    assert out["methods"]["gradcam"]["CHF"]["heart_mask"]["mean"] == pytest.approx(HEART.mean())
    tests = out["tests"]
    assert {t["a"] for t in tests} == {"gaze"} and {t["b"] for t in tests} == {"model", "gradcam"}
    assert len(tests) == 2 * 4 * 3  # two methods × (3 classes + all) × 3 regions
    chf = next(t for t in tests if t["b"] == "gradcam" and t["class"] == "CHF" and t["region"] == "heart_mask")
    assert chf["n"] == 4 and chf["mean_diff"] == pytest.approx(0.7 - HEART.mean()) and chf["p"] == 0
    close = next(t for t in tests if t["b"] == "model" and t["class"] is None and t["region"] == "heart_mask")
    assert abs(close["mean_diff"]) < 1e-3
    with pytest.raises(ValueError, match="class indices"):
        anatomy_by_class({"gaze": gaze}, masks, labels + 1)
    with pytest.raises(ValueError, match="'gaze'.*N = 12"):
        anatomy_by_class({"gaze": gaze[:3]}, masks, labels)


def test_synthetic_gaze_looks_at_the_heart_in_chf(tiny_h5):
    """On the converted synthetic data, with the masks as the dataset yields them."""
    ds = GazeCXRDataset(tiny_h5, "all", masks=True)
    assert ds.has_masks
    samples = [ds[i] for i in range(len(ds))]
    gaze = np.stack([s["heatmap"][0].numpy() for s in samples])
    masks = {k: np.stack([s[k][0].numpy() for s in samples]) for k in ("lung_mask", "heart_mask")}
    out = anatomy_by_class({"gaze": gaze, "uniform": np.ones_like(gaze)}, masks, ds.labels)
    heart = {c: out["methods"]["gaze"][c]["heart_mask"]["mean"] for c in CLASS_NAMES}
    assert heart["CHF"] > heart["Normal"] + 0.1 and heart["CHF"] > heart["pneumonia"] + 0.1
    lung = {m: out["methods"][m]["all"]["lung_mask"]["mean"] for m in ("gaze", "uniform")}
    assert lung["gaze"] > 2 * lung["uniform"]


def test_egd_evaluation_reports_anatomy_shares_per_class(evaluated_report):
    metrics, report_dir = evaluated_report
    anatomy = metrics["anatomy"]
    assert set(anatomy["methods"]) == {"gaze", "full", "gradcam"} and anatomy["n"] == metrics["n_test"]
    for by_class in anatomy["methods"].values():
        total = sum(by_class["all"][r]["mean"] for r in anatomy["regions"] if r != ELSEWHERE)
        assert 0 < by_class["all"][ELSEWHERE]["mean"] < 1 and 0 < total <= 2
    # the simulated radiologist scans the chest: most gaze mass lies on the lungs and heart
    assert anatomy["methods"]["gaze"]["all"][ELSEWHERE]["mean"] < 0.5
    assert "Share of map mass per anatomical region" in (report_dir / "tables.md").read_text(encoding="utf-8")
