"""Localisation metrics on hand-made maps and regions whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gazecxr.metrics.localisation import (
    LOCALISATION_METRICS,
    compare_localisation,
    diff_inside_outside,
    ehr_auc,
    ehr_curve,
    ellipse_mask,
    energy_pointing_game,
    finding_regions,
    localisation_scores,
    normalise_maps,
    pointing_game,
    top_k_iou,
)

H, W = 40, 50


def _rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[r0:r1, c0:c1] = True
    return mask


REGION = _rect(10, 30, 5, 25)  # 400 of 2000 pixels
SHARE = REGION.mean()


def _all_scores(m: np.ndarray, region: np.ndarray = REGION) -> dict[str, float]:
    return {k: float(v[0]) for k, v in localisation_scores(m[None], region[None]).items()}


# ----------------------------------------------------------------------------- ellipses


def test_ellipse_area_matches_pi_a_b_and_is_centred():
    mask = ellipse_mask([[100.0, 60.0, 260.0, 140.0]], (200, 300))  # a = 80, b = 40
    assert abs(mask.sum() / (math.pi * 80 * 40) - 1) < 0.01
    rows, cols = np.nonzero(mask)
    assert rows.mean() == pytest.approx(100.0, abs=0.05) and cols.mean() == pytest.approx(180.0, abs=0.05)
    assert rows.min() == 60 and rows.max() == 140 and cols.min() == 100 and cols.max() == 260
    assert mask[100, 180] and not mask[60, 100]  # centre in, box corner out


def test_ellipse_union_clipping_and_degenerate_boxes():
    a = ellipse_mask([[10, 10, 30, 30]], (100, 100))
    b = ellipse_mask([[60, 60, 90, 80]], (100, 100))
    assert np.array_equal(ellipse_mask([[10, 10, 30, 30], [60, 60, 90, 80]], (100, 100)), a | b)
    overlapping = ellipse_mask([[10, 10, 30, 30], [20, 10, 40, 30]], (100, 100))
    assert a.sum() < overlapping.sum() < 2 * a.sum()
    point = ellipse_mask([[7, 3, 7, 3]], (10, 10))
    assert point.sum() == 1 and point[3, 7]
    quarter = ellipse_mask([[-20, -20, 20, 20]], (100, 100))  # centred on the corner pixel
    y, x = np.mgrid[:100, :100]
    assert np.array_equal(quarter, x * x + y * y <= 400)
    assert not ellipse_mask([[200, 200, 300, 300]], (100, 100)).any()
    assert not ellipse_mask(np.zeros((0, 4)), (5, 6)).any() and ellipse_mask([], (5, 6)).shape == (5, 6)


def test_finding_regions_unite_the_ellipses_of_each_finding():
    boxes = [[2, 2, 10, 8], [20, 5, 30, 15], [5, 20, 15, 28]]
    labels = [[True, False, False], [True, True, False], [False, False, False]]
    regions = finding_regions(boxes, labels, (H, W))
    assert regions.shape == (3, H, W)
    assert np.array_equal(regions[0], ellipse_mask(boxes[:2], (H, W)))
    assert np.array_equal(regions[1], ellipse_mask(boxes[1:2], (H, W)))
    assert not regions[2].any()
    assert finding_regions(np.zeros((0, 4)), np.zeros((0, 2), bool), (H, W)).shape == (2, H, W)
    with pytest.raises(ValueError, match="K = 3"):
        finding_regions(boxes, labels[:2], (H, W))


def test_ellipse_rejects_bad_boxes():
    with pytest.raises(ValueError, match="xmax < xmin"):
        ellipse_mask([[10, 0, 5, 4]], (20, 20))
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        ellipse_mask([[1, 2, 3]], (20, 20))
    with pytest.raises(ValueError, match="NaN"):
        ellipse_mask([[1, 2, np.nan, 4]], (20, 20))


# ---------------------------------------------------------------------- known answers


def test_map_equal_to_region_scores_perfectly():
    s = _all_scores(REGION.astype(float) * 3.0)
    assert s == pytest.approx({k: 1.0 for k in LOCALISATION_METRICS})


def test_map_entirely_inside_region():
    m = np.zeros((H, W))
    m[15:20, 10:14] = np.arange(20).reshape(5, 4) + 1.0  # 20 hot pixels inside, all distinct
    s = _all_scores(m)
    assert s["pointing_game"] == 1 and s["energy_pointing_game"] == 1 and s["ehr_auc"] == 1
    # every top region is the 20 hot pixels (fewer than 5 % of 2000), all inside the region
    for k in (5, 10, 20):
        assert s[f"iou_top{k}"] == pytest.approx(20 / 400)
    n = normalise_maps(m)
    assert s["diff"] == pytest.approx(n[REGION].mean() - 0.0) and s["diff"] > 0


def test_map_entirely_outside_region():
    m = (~REGION).astype(float)
    s = _all_scores(m)
    assert s == pytest.approx({"pointing_game": 0, "energy_pointing_game": 0, "diff": -1, "ehr_auc": 0,
                               "iou_top5": 0, "iou_top10": 0, "iou_top20": 0})
    blob = np.zeros((H, W))
    blob[35, 45] = 5.0
    blob[0, 49] = 2.0
    s = _all_scores(blob)
    assert s["pointing_game"] == 0 and s["energy_pointing_game"] == 0 and s["ehr_auc"] == 0 and s["diff"] < 0


@pytest.mark.parametrize("value", [0.0, 0.7])
def test_uniform_map_scores_chance(value):
    s = _all_scores(np.full((H, W), value))
    assert s == pytest.approx({"pointing_game": SHARE, "energy_pointing_game": SHARE, "diff": 0.0,
                               "ehr_auc": SHARE, "iou_top5": SHARE, "iou_top10": SHARE, "iou_top20": SHARE})


def test_pointing_game_ties_count_the_share_of_peaks_inside():
    m = np.zeros((H, W))
    m[20, 10] = m[0, 0] = 1.0
    assert pointing_game(m, REGION) == 0.5
    m[20, 11] = 1.0
    assert pointing_game(m, REGION) == pytest.approx(2 / 3)


def test_energy_and_diff_on_hand_made_values():
    m = np.zeros((H, W))
    m[REGION] = 1.0 / REGION.sum()  # mass 1 inside
    m[0, :] = 3.0 / W  # mass 3 outside, on the top row
    assert energy_pointing_game(m, REGION) == pytest.approx(0.25)
    # normalised: top row 1, region (1/400) / (3/50) = 1/24, elsewhere 0
    expected = 1 / 24 - W * 1.0 / (H * W - REGION.sum())
    assert diff_inside_outside(m, REGION) == pytest.approx(expected)


def test_ehr_curve_by_hand_and_against_direct_computation():
    m = np.zeros((4, 4))
    region = np.zeros((4, 4), bool)
    m[0, 0], region[0, 0] = 1.0, True
    m[1, :3] = 0.5  # three pixels at half height, outside
    t, ehr = ehr_curve(m, region, n_thresholds=4)
    assert np.allclose(t, [0.25, 0.5, 0.75, 1])
    assert np.allclose(ehr, [0.25, 0.25, 1, 1])  # the half-height pixels count at t = 0.5 (m >= t)
    assert ehr_auc(m, region, n_thresholds=4) == pytest.approx(0.625)

    rng = np.random.default_rng(0)
    maps = rng.gamma(0.5, size=(3, 12, 9))
    regions = rng.random((3, 12, 9)) < 0.3
    got = ehr_auc(maps, regions, n_thresholds=37)
    for i in range(3):
        n = (maps[i] - maps[i].min()) / np.ptp(maps[i])
        direct = [np.sum((n >= tj) & regions[i]) / np.sum(n >= tj) for tj in np.arange(1, 38) / 37]
        assert got[i] == pytest.approx(np.mean(direct))


def test_top_k_iou_by_hand():
    m = np.arange(100, dtype=float).reshape(10, 10)
    region = m >= 95  # the 5 hottest pixels
    assert top_k_iou(m, region, 5) == 1.0
    assert top_k_iou(m, region, 10) == pytest.approx(5 / 10)
    assert top_k_iou(m, region, 20) == pytest.approx(5 / 20)
    tied = np.zeros((10, 10))
    tied[0, :8] = 1.0  # 8 tied hottest pixels: all of them are in the top 5 %
    assert top_k_iou(tied, tied > 0, 5) == 1.0
    with pytest.raises(ValueError, match="percentage"):
        top_k_iou(m, region, 0)


def test_batch_matches_single_and_scale_invariance():
    rng = np.random.default_rng(1)
    maps = rng.random((4, H, W)) ** 4
    regions = np.stack([REGION, ~REGION, _rect(0, 5, 0, 5), ellipse_mask([[10, 5, 40, 30]], (H, W))])
    batch = localisation_scores(maps, regions)
    scaled = localisation_scores(maps * 7.5, regions)
    for metric in LOCALISATION_METRICS:
        assert batch[metric].shape == (4,)
        assert np.allclose(batch[metric], scaled[metric])
        assert all(-1 <= v <= 1 for v in batch[metric])
    for i in range(4):
        assert pointing_game(maps[i], regions[i]) == batch["pointing_game"][i]
        assert diff_inside_outside(maps[i], regions[i]) == pytest.approx(batch["diff"][i])
        assert top_k_iou(maps[i], regions[i], 10) == batch["iou_top10"][i]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="negative"):
        pointing_game(-np.ones((H, W)), REGION)
    with pytest.raises(ValueError, match="region 0 is empty"):
        energy_pointing_game(np.ones((H, W)), np.zeros((H, W), bool))
    with pytest.raises(ValueError, match="same shape"):
        ehr_auc(np.ones((H, W)), REGION[:-1])
    with pytest.raises(ValueError, match="whole map"):
        diff_inside_outside(np.ones((H, W)), np.ones((H, W), bool))
    with pytest.raises(ValueError, match="boolean"):
        pointing_game(np.ones((H, W)), REGION * 2.0)
    with pytest.raises(ValueError, match="n_thresholds"):
        ehr_auc(np.ones((H, W)), REGION, n_thresholds=0)


# ----------------------------------------------------------------------------- comparison


def test_compare_localisation_per_finding_overall_and_tests():
    rng = np.random.default_rng(2)
    n = 12
    findings = ["Atelectasis", "Pneumothorax"] * (n // 2)
    regions = np.stack([ellipse_mask([[rng.uniform(0, 20), rng.uniform(0, 15), rng.uniform(25, 45),
                                       rng.uniform(20, 35)]], (H, W)) for _ in range(n)])
    oracle = regions + 0.01 * rng.random((n, H, W))
    inverse = (~regions) + 0.01 * rng.random((n, H, W))
    uniform = np.ones((n, H, W))
    out = compare_localisation({"oracle": oracle, "inverse": inverse, "uniform": uniform}, regions, findings)
    json.dumps(out)
    assert out["n"] == n and out["findings"] == ["Atelectasis", "Pneumothorax"]
    assert out["metrics"] == list(LOCALISATION_METRICS)
    oracle_pg = out["methods"]["oracle"]["pointing_game"]
    assert oracle_pg["overall"]["mean"] == 1.0 and oracle_pg["per_finding"]["Pneumothorax"]["n"] == n // 2
    assert out["methods"]["inverse"]["energy_pointing_game"]["overall"]["mean"] < 0.02
    shares = regions.reshape(n, -1).mean(axis=1)
    assert out["scores"]["uniform"]["ehr_auc"] == pytest.approx(shares.tolist())
    atel = np.array(findings) == "Atelectasis"
    assert out["methods"]["uniform"]["iou_top5"]["per_finding"]["Atelectasis"]["mean"] == pytest.approx(
        shares[atel].mean())
    tests = out["tests"]
    assert {t["a"] for t in tests} == {"oracle"} and {t["b"] for t in tests} == {"inverse", "uniform"}
    assert len(tests) == 2 * len(LOCALISATION_METRICS) * 3
    overall_diff = next(t for t in tests if t["b"] == "uniform" and t["metric"] == "diff" and t["finding"] is None)
    assert overall_diff["n"] == n and overall_diff["mean_diff"] > 0.9 and overall_diff["p"] < 1e-6
    by_finding = [t for t in tests if t["b"] == "inverse" and t["metric"] == "ehr_auc" and t["finding"]]
    assert sorted(t["finding"] for t in by_finding) == ["Atelectasis", "Pneumothorax"]
    assert all(t["n"] == n // 2 for t in by_finding)
    assert compare_localisation({"o": oracle, "u": uniform}, regions, findings, reference="u")["tests"][0]["a"] == "u"


def test_compare_localisation_leaves_out_pairs_a_method_has_no_map_for():
    rng = np.random.default_rng(3)
    n = 8
    regions = np.stack([ellipse_mask([[rng.uniform(0, 20), rng.uniform(0, 15), rng.uniform(25, 45),
                                       rng.uniform(20, 35)]], (H, W)) for _ in range(n)])
    oracle = regions + 0.01 * rng.random((n, H, W))
    gaze = regions + 0.5 * rng.random((n, H, W))
    missing = np.array([False, True, False, False, True, False, False, False])
    gaze[missing] = np.nan
    out = compare_localisation({"oracle": oracle, "gaze": gaze}, regions, ["Pneumothorax"] * n)
    full = compare_localisation({"oracle": oracle[~missing], "gaze": gaze[~missing]}, regions[~missing],
                                ["Pneumothorax"] * int((~missing).sum()))
    assert [v is None or np.isnan(v) for v in out["scores"]["gaze"]["diff"]] == missing.tolist()
    assert out["methods"]["gaze"]["diff"]["overall"] == pytest.approx(full["methods"]["gaze"]["diff"]["overall"])
    assert out["methods"]["oracle"]["diff"]["overall"]["n"] == n
    test = next(t for t in out["tests"] if t["metric"] == "diff" and t["finding"] is None)
    same = next(t for t in full["tests"] if t["metric"] == "diff" and t["finding"] is None)
    assert test["n"] == n - 2 and test["p"] == pytest.approx(same["p"])


def test_compare_localisation_errors_name_the_method():
    regions = np.stack([REGION, REGION])
    with pytest.raises(ValueError, match="'bad'.*negative"):
        compare_localisation({"ok": np.ones((2, H, W)), "bad": -np.ones((2, H, W))}, regions, ["a", "b"])
    with pytest.raises(ValueError, match="N = 3"):
        compare_localisation({"ok": np.ones((2, H, W))}, regions, ["a", "b", "c"])
    with pytest.raises(ValueError, match="reference"):
        compare_localisation({"ok": np.ones((2, H, W))}, regions, ["a", "b"], reference="gaze")
