"""Thresholded-map IoU/Dice, CAM boxes against ground-truth boxes, and the study's statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gazecxr.metrics.localisation import (
    box_iobb,
    box_iou,
    diff_inside_outside,
    ehr_auc,
    largest_component_box,
    threshold_scores,
)
from gazecxr.metrics.statistics import one_way_anova, tukey_hsd


def _map_and_region() -> tuple[np.ndarray, np.ndarray]:
    m = np.zeros((10, 10))
    m[2:4, 2:6] = 1.0  # 8 hot pixels inside the region
    m[7, 7] = 0.5  # one warm pixel outside
    region = np.zeros((10, 10), bool)
    region[2:6, 2:6] = True  # 16 pixels
    return m, region


def test_iou_and_dice_at_thresholds_on_a_hand_worked_map() -> None:
    m, region = _map_and_region()
    s = threshold_scores(m[None], region[None], thresholds=(0.1, 0.6))
    # t = 0.1: 9 pixels above (8 in the region); union 17 -> IoU 8/17, Dice 16/25
    # t = 0.6: the 8 inside only; IoU 8/16, Dice 16/24
    np.testing.assert_allclose(s["iou"][0], [8 / 17, 0.5])
    np.testing.assert_allclose(s["dice"][0], [16 / 25, 16 / 24])
    assert np.isnan(s["box_iou"]).all()  # no boxes given


def test_cam_box_of_the_largest_component_against_ground_truth_boxes() -> None:
    m, region = _map_and_region()
    truth = [np.array([[2.0, 2.0, 6.0, 6.0], [8.0, 8.0, 9.0, 9.0]])]
    s = threshold_scores(m[None], region[None], truth, thresholds=(0.1,))
    # largest component: rows 2-3, cols 2-5 -> box [2, 2, 6, 4] (pixel edges); area 8 inside the 16 of truth
    np.testing.assert_array_equal(largest_component_box(m > 0.1), [2, 2, 6, 4])
    assert s["box_iou"][0, 0] == pytest.approx(0.5) and s["iobb"][0, 0] == pytest.approx(1.0)
    assert s["box_hit"][0, 0] == 1.0 and s["iobb_hit"][0, 0] == 1.0
    far = [np.array([[0.0, 6.0, 2.0, 10.0]])]
    s = threshold_scores(m[None], region[None], far, thresholds=(0.1,))
    assert s["box_iou"][0, 0] == 0 and s["box_hit"][0, 0] == 0
    assert largest_component_box(np.zeros((4, 4), bool)) is None


def test_box_iou_and_iobb_by_hand() -> None:
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3])[0, 0] == pytest.approx(1 / 7)
    assert box_iobb([0, 0, 2, 2], [1, 0, 3, 3])[0, 0] == pytest.approx(0.5)
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3])[0, 0] == 0


def test_diff_and_ehr_auc_on_a_map_with_known_answers() -> None:
    m, region = _map_and_region()
    # inside: 8 ones of 16 -> mean 0.5; outside: one 0.5 of 84 -> 0.5 / 84
    assert diff_inside_outside(m, region) == pytest.approx(0.5 - 0.5 / 84)
    # EHR(t) = 8/9 for t <= 0.5 and 1 above: mean over t = j/100
    assert ehr_auc(m, region) == pytest.approx((50 * 8 / 9 + 50) / 100)


def test_anova_and_tukey_equal_scipy_on_a_hand_made_table() -> None:
    table = {"vgg16": [0.3, 0.25, 0.35, 0.28], "resnet50": [0.1, 0.15, 0.12, 0.2], "vit_s": [0.02, 0.05, 0.0, 0.04]}
    anova = one_way_anova(table)
    expected = stats.f_oneway(*table.values())
    assert anova["F"] == pytest.approx(expected.statistic) and anova["p"] == pytest.approx(expected.pvalue)
    assert anova["df_between"] == 2 and anova["df_within"] == 9
    pairs = {(p["a"], p["b"]): p for p in tukey_hsd(table)}
    reference = stats.tukey_hsd(*table.values())
    assert pairs[("vgg16", "vit_s")]["p"] == pytest.approx(reference.pvalue[0, 2])
    assert pairs[("vgg16", "vit_s")]["diff"] == pytest.approx(np.mean(table["vgg16"]) - np.mean(table["vit_s"]))
