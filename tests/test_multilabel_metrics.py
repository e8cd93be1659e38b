"""Multi-label metrics checked against scikit-learn and direct computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from gazecxr.metrics.multilabel import (
    DEFAULT_THRESHOLD,
    apply_thresholds,
    binary_reliability,
    choose_thresholds,
    multilabel_metrics,
)

NAMES = ["Atelectasis", "Consolidation", "Pneumothorax", "Hiatal hernia", "Support devices"]


def _data(seed: int, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Labels with an informative score; finding 3 never present, finding 4 always present."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 5)) < [0.3, 0.5, 0.1, 0.0, 1.0]).astype(int)
    logits = 1.5 * (2 * y - 1) + rng.normal(size=y.shape)
    return y, 1 / (1 + np.exp(-logits))


def test_aurocs_and_ap_match_sklearn():
    y, p = _data(0)
    m = multilabel_metrics(y, p, NAMES)
    json.dumps(m)
    both = [0, 1, 2]
    for f in both:
        assert m["per_finding"][NAMES[f]]["auroc"] == pytest.approx(roc_auc_score(y[:, f], p[:, f]))
    for f in (0, 1, 2, 4):
        assert m["per_finding"][NAMES[f]]["average_precision"] == pytest.approx(
            average_precision_score(y[:, f], p[:, f]))
    assert np.isnan(m["per_finding"]["Hiatal hernia"]["auroc"])
    assert np.isnan(m["per_finding"]["Hiatal hernia"]["average_precision"])
    assert np.isnan(m["per_finding"]["Support devices"]["auroc"])  # no negatives
    assert m["per_finding"]["Support devices"]["positives"] == len(y)
    assert m["auroc_macro"] == pytest.approx(roc_auc_score(y[:, both], p[:, both], average="macro"))
    assert m["auroc_micro"] == pytest.approx(roc_auc_score(y[:, both], p[:, both], average="micro"))
    assert m["ap_macro"] == pytest.approx(average_precision_score(y[:, [0, 1, 2, 4]], p[:, [0, 1, 2, 4]],
                                                                  average="macro"))
    assert m["auroc_macro"] > 0.8 and "f1_macro" not in m


def test_thresholds_maximise_validation_f1_and_f1_matches_sklearn():
    y_val, p_val = _data(1)
    t = choose_thresholds(y_val, p_val)
    assert t[3] == DEFAULT_THRESHOLD  # no positives in validation
    for f in (0, 1, 2, 4):
        best = max(f1_score(y_val[:, f], p_val[:, f] >= c, zero_division=0) for c in np.unique(p_val[:, f]))
        assert f1_score(y_val[:, f], p_val[:, f] >= t[f]) == pytest.approx(best)
        assert t[f] in p_val[:, f]
    assert t[4] == p_val[:, 4].min()  # always present: predicting all positive is optimal, lowest threshold

    y, p = _data(2)
    decisions = apply_thresholds(p, t)
    assert decisions.dtype == bool and np.array_equal(decisions, p >= t)
    m = multilabel_metrics(y, p, NAMES, thresholds=t)
    present = [0, 1, 2, 4]
    for f in present:
        assert m["per_finding"][NAMES[f]]["f1"] == pytest.approx(f1_score(y[:, f], decisions[:, f]))
        assert m["per_finding"][NAMES[f]]["threshold"] == t[f]
    assert np.isnan(m["per_finding"]["Hiatal hernia"]["f1"])
    assert m["f1_macro"] == pytest.approx(f1_score(y[:, present], decisions[:, present], average="macro"))
    assert m["f1_micro"] == pytest.approx(f1_score(y[:, present], decisions[:, present], average="micro"))


def test_threshold_ties_choose_the_highest():
    y = np.array([[0], [1], [1], [0]])
    p = np.array([[0.1], [0.6], [0.8], [0.3]])  # any threshold in (0.3, 0.6] is perfect
    assert choose_thresholds(y, p)[0] == 0.6


def test_binary_reliability_and_ece_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.1, 0.9, 0.95, 0.35, 0.35])
    r = binary_reliability(y, p, n_bins=4)  # bins (0,.25], (.25,.5], (.5,.75], (.75,1]
    assert r["count"].tolist() == [2, 2, 0, 2]
    assert np.allclose(r["confidence"][[0, 1, 3]], [0.075, 0.35, 0.925]) and np.isnan(r["confidence"][2])
    assert np.allclose(r["frequency"][[0, 1, 3]], [0, 0.5, 1])
    assert r["ece"] == pytest.approx((2 * 0.075 + 2 * 0.15 + 2 * 0.075) / 6)
    y2, p2 = _data(3)
    m = multilabel_metrics(y2, p2, NAMES, n_bins=5)
    for f, name in enumerate(NAMES):
        assert m["per_finding"][name]["ece"] == pytest.approx(binary_reliability(y2[:, f], p2[:, f], 5)["ece"])
    assert m["ece_mean"] == pytest.approx(np.mean([m["per_finding"][k]["ece"] for k in NAMES]))
    calibrated = multilabel_metrics(np.tile([[0], [1]], (50, 1)), np.tile([[0.0], [1.0]], (50, 1)), ["x"])
    assert calibrated["ece_mean"] == 0 and calibrated["auroc_macro"] == 1


def test_bad_inputs_are_rejected():
    y, p = _data(0, n=10)
    with pytest.raises(ValueError, match="multi-hot"):
        multilabel_metrics(y * 2, p, NAMES)
    with pytest.raises(ValueError, match="logits"):
        multilabel_metrics(y, p * 3, NAMES)
    with pytest.raises(ValueError, match="names"):
        multilabel_metrics(y, p, NAMES[:3])
    with pytest.raises(ValueError, match="same shape"):
        multilabel_metrics(y[:, :4], p, NAMES)
    with pytest.raises(ValueError, match="one value per finding"):
        apply_thresholds(p, [0.5, 0.5])
    no_defined = multilabel_metrics(np.zeros((4, 2), int), np.full((4, 2), 0.2), ["a", "b"])
    assert np.isnan(no_defined["auroc_macro"]) and np.isnan(no_defined["auroc_micro"])
