"""Tests of gazecxr.metrics against hand-worked values and independent implementations
(scipy, scikit-learn)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from gazecxr.metrics import (
    EPS,
    auc_judd,
    classification_metrics,
    correlation_coefficient,
    fixated_map,
    fixation_counts,
    fixation_pixels,
    histogram_similarity,
    kl_divergence,
    nss,
    paired_ttest,
    reliability_curve,
    shuffled_auc,
)

SALIENCY_METRICS = (kl_divergence, correlation_coefficient, histogram_similarity)

# Hand-worked 2x2 maps.
# P = [1 2; 3 4] normalises to [.1 .2; .3 .4]; G = [1 1; 1 3] normalises to [1/6 1/6; 1/6 1/2].
P_HAND = np.array([[1.0, 2.0], [3.0, 4.0]])
G_HAND = np.array([[1.0, 1.0], [1.0, 3.0]])


def _random_maps(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Strictly positive, smooth-ish random maps."""
    return rng.gamma(2.0, size=shape) + 0.05


# --------------------------------------------------------------------------- hand-worked


def test_kl_hand_worked() -> None:
    # P uniform: 1/4 each. G = [2 0; 1 1] / 4 = [.5 0; .25 .25].
    # KL = .5*log(.5/.25) + 0*log(eps) + .25*log(1) + .25*log(1) = .5*log 2.
    p = np.ones((2, 2))
    g = np.array([[2.0, 0.0], [1.0, 1.0]])
    assert kl_divergence(p, g) == pytest.approx(0.5 * math.log(2.0), abs=1e-12)


def test_kl_zero_ground_truth_pixels_contribute_nothing_but_zero_prediction_is_penalised() -> None:
    # G = [1 0; 0 0], P = [0 1; 0 0]: KL = 1 * log(eps + 1 / eps) ~ log(1/eps) ~ 36.04.
    g = np.array([[1.0, 0.0], [0.0, 0.0]])
    p = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert kl_divergence(p, g) == pytest.approx(math.log(EPS + 1.0 / EPS), rel=1e-12)


def test_cc_hand_worked() -> None:
    # Centred P: [-.15 -.05 .05 .15]; centred G (mean 1/4): [-1/12 -1/12 -1/12 1/4].
    # Σ pc*gc = .15/12 + .15/4 = .05; Σ pc² = .05; Σ gc² = 3/144 + 1/16 = 1/12.
    # CC = .05 / sqrt(.05 / 12) = sqrt(.6).
    assert correlation_coefficient(P_HAND, G_HAND) == pytest.approx(math.sqrt(0.6), abs=1e-12)
    # Reversed ranking: [1 2; 3 4] vs [4 3; 2 1] is perfectly anti-correlated.
    assert correlation_coefficient(P_HAND, P_HAND[::-1, ::-1]) == pytest.approx(-1.0, abs=1e-12)


def test_hs_hand_worked() -> None:
    # min(.1, 1/6) + min(.2, 1/6) + min(.3, 1/6) + min(.4, 1/2) = .1 + 1/6 + 1/6 + .4 = 5/6.
    assert histogram_similarity(P_HAND, G_HAND) == pytest.approx(5.0 / 6.0, abs=1e-12)
    # Disjoint supports share nothing.
    assert histogram_similarity(np.eye(2), 1.0 - np.eye(2)) == 0.0


def test_nss_hand_worked() -> None:
    # P = [1 2; 3 4]: mean 2.5, population std = sqrt(mean(2.25, .25, .25, 2.25)) = sqrt(1.25).
    # One fixation on the 4: (4 - 2.5) / sqrt(1.25).
    fix = np.array([[0, 0], [0, 1]])
    assert nss(P_HAND, fix) == pytest.approx(1.5 / math.sqrt(1.25), abs=1e-12)
    # Fixations on 3 and 4: mean(.5, 1.5) / sqrt(1.25) = 1 / sqrt(1.25).
    fix = np.array([[0, 0], [1, 1]], dtype=bool)
    assert nss(P_HAND, fix) == pytest.approx(1.0 / math.sqrt(1.25), abs=1e-12)


# -------------------------------------------------------------------- independent checks


def test_kl_matches_scipy_entropy_on_positive_maps() -> None:
    rng = np.random.default_rng(0)
    p, g = _random_maps(rng, (5, 16, 12)), _random_maps(rng, (5, 16, 12))
    ours = kl_divergence(p, g)
    ref = [stats.entropy(g[i].ravel(), p[i].ravel()) for i in range(5)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_kl_matches_released_code_torch_kl_div() -> None:
    # The released code's loss: F.kl_div(log P, G, reduction="sum") per map, for P > 0.
    rng = np.random.default_rng(16)
    p, g = _random_maps(rng, (3, 8, 8)), _random_maps(rng, (3, 8, 8))
    p_t = torch.from_numpy(p / p.sum(axis=(1, 2), keepdims=True))
    g_t = torch.from_numpy(g / g.sum(axis=(1, 2), keepdims=True))
    kl_div = torch.nn.functional.kl_div
    ref = [kl_div(p_t[i].log(), g_t[i], reduction="sum").item() for i in range(3)]
    np.testing.assert_allclose(kl_divergence(p, g), ref, rtol=0, atol=1e-10)


def test_empty_batch_gives_empty_result() -> None:
    empty = np.zeros((0, 4, 4))
    for metric in SALIENCY_METRICS + (nss,):
        assert metric(empty, empty).shape == (0,)


def test_cc_matches_scipy_pearsonr() -> None:
    rng = np.random.default_rng(1)
    p, g = _random_maps(rng, (5, 16, 12)), _random_maps(rng, (5, 16, 12))
    g[1] = p[1] + 0.3 * g[1]  # a strongly correlated pair too
    ours = correlation_coefficient(p, g)
    ref = [stats.pearsonr(p[i].ravel(), g[i].ravel())[0] for i in range(5)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_nss_matches_direct_zscore() -> None:
    rng = np.random.default_rng(2)
    p = _random_maps(rng, (16, 12))
    fix = rng.random((16, 12)) < 0.1
    fix[0, 0] = True
    ref = stats.zscore(p.ravel())[fix.ravel()].mean()  # zscore uses ddof=0
    assert nss(p, fix) == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("metric", SALIENCY_METRICS)
def test_invariant_to_positive_scaling(metric) -> None:
    rng = np.random.default_rng(3)
    p, g = _random_maps(rng, (3, 8, 8)), _random_maps(rng, (3, 8, 8))
    np.testing.assert_allclose(metric(7.5 * p, 0.01 * g), metric(p, g), rtol=1e-12, atol=1e-14)


def test_nss_invariant_to_scaling_and_shift_of_prediction() -> None:
    rng = np.random.default_rng(4)
    p = _random_maps(rng, (8, 8))
    fix = np.zeros((8, 8))
    fix[2, 3] = fix[5, 5] = 1
    assert nss(3.0 * p - 10.0, fix) == pytest.approx(nss(p, fix), abs=1e-12)


def test_identical_maps_give_perfect_scores() -> None:
    rng = np.random.default_rng(5)
    g = _random_maps(rng, (4, 10, 9))
    g[0, :5] = 0.0  # zeros in the ground truth must not break identity
    np.testing.assert_allclose(kl_divergence(g, g), 0.0, atol=1e-12)
    np.testing.assert_allclose(correlation_coefficient(g, g), 1.0, atol=1e-12)
    np.testing.assert_allclose(histogram_similarity(g, g), 1.0, atol=1e-12)


def test_constant_map_gives_cc_zero_and_nss_zero() -> None:
    rng = np.random.default_rng(6)
    g = _random_maps(rng, (6, 5))
    flat = np.full((6, 5), 1.0 / 30.0)
    assert correlation_coefficient(flat, g) == 0.0
    assert correlation_coefficient(g, flat) == 0.0
    assert correlation_coefficient(flat, flat) == 0.0
    assert nss(flat, np.eye(6, 5)) == 0.0


@pytest.mark.parametrize("metric", SALIENCY_METRICS)
def test_batch_equals_loop_over_single(metric) -> None:
    rng = np.random.default_rng(7)
    p, g = _random_maps(rng, (4, 9, 7)), _random_maps(rng, (4, 9, 7))
    batch = metric(p, g)
    assert isinstance(batch, np.ndarray) and batch.shape == (4,) and batch.dtype == np.float64
    singles = [metric(p[i], g[i]) for i in range(4)]
    assert all(type(s) is float for s in singles)
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-15)


def test_nss_batch_equals_loop_over_single() -> None:
    rng = np.random.default_rng(8)
    p = _random_maps(rng, (3, 9, 7))
    fix = rng.random((3, 9, 7)) < 0.2
    fix[:, 0, 0] = True
    batch = nss(p, fix)
    assert batch.shape == (3,)
    np.testing.assert_allclose(batch, [nss(p[i], fix[i]) for i in range(3)], atol=1e-15)


@pytest.mark.parametrize("metric", SALIENCY_METRICS + (nss,))
def test_torch_input_equals_numpy_input(metric) -> None:
    rng = np.random.default_rng(9)
    p = _random_maps(rng, (2, 8, 6)).astype(np.float32)
    g = _random_maps(rng, (2, 8, 6)).astype(np.float32)
    if metric is nss:
        g = (g > 2.0).astype(np.float32)
        g[:, 0, 0] = 1
    ref = metric(p, g)
    got = metric(torch.from_numpy(p).requires_grad_(), torch.from_numpy(g))
    np.testing.assert_array_equal(got, ref)
    # Half-precision tensors are accepted (computed in float64 after conversion).
    half = metric(torch.from_numpy(p).to(torch.bfloat16), torch.from_numpy(g).to(torch.bfloat16))
    np.testing.assert_allclose(half, ref, atol=0.05)


# ---------------------------------------------------------------------------- map errors


@pytest.mark.parametrize("metric", SALIENCY_METRICS + (nss,))
def test_shape_mismatch_names_both_shapes(metric) -> None:
    with pytest.raises(ValueError, match=r"same shape.*\(4, 5\).*\(5, 4\)"):
        metric(np.ones((4, 5)), np.ones((5, 4)))


@pytest.mark.parametrize("metric", SALIENCY_METRICS + (nss,))
@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4)])
def test_wrong_ndim(metric, shape) -> None:
    with pytest.raises(ValueError, match="one map \\(H, W\\) or a batch \\(N, H, W\\)"):
        metric(np.ones(shape), np.ones(shape))


@pytest.mark.parametrize("metric", SALIENCY_METRICS)
def test_negative_values_rejected(metric) -> None:
    bad = np.ones((3, 3))
    bad[1, 1] = -0.5
    with pytest.raises(ValueError, match="pred has negative values"):
        metric(bad, np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"gt\[1\] has negative values"):
        metric(np.ones((2, 3, 3)), np.stack([np.ones((3, 3)), bad]))


@pytest.mark.parametrize("metric", SALIENCY_METRICS)
def test_all_zero_map_rejected(metric) -> None:
    with pytest.raises(ValueError, match="gt is all zeros"):
        metric(np.ones((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"pred\[0\] is all zeros"):
        metric(np.zeros((2, 3, 3)), np.ones((2, 3, 3)))


@pytest.mark.parametrize("metric", SALIENCY_METRICS + (nss,))
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_rejected(metric, value) -> None:
    bad = np.ones((3, 3))
    bad[0, 2] = value
    with pytest.raises(ValueError, match="pred contains NaN or infinite"):
        metric(bad, np.ones((3, 3)))


def test_nss_fixation_errors() -> None:
    with pytest.raises(ValueError, match="no fixated pixel"):
        nss(np.ones((3, 3)), np.zeros((3, 3)))
    fix = np.zeros((2, 3, 3))
    fix[0, 1, 1] = 1
    with pytest.raises(ValueError, match=r"fixations\[1\] has no fixated pixel"):
        nss(np.ones((2, 3, 3)), fix)
    with pytest.raises(ValueError, match="binary"):
        nss(np.ones((3, 3)), np.full((3, 3), 0.5))


def test_nss_accepts_negative_predictions() -> None:
    fix = np.array([[0, 0], [0, 1]])
    assert nss(P_HAND - 10.0, fix) == pytest.approx(nss(P_HAND, fix), abs=1e-12)


# ------------------------------------------------------------------------ classification


def _random_classification(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 3, size=n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.0  # some signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_auc_matches_sklearn() -> None:
    y, probs = _random_classification(np.random.default_rng(10), 90)
    res = classification_metrics(y, probs)
    for c, name in enumerate(("Normal", "CHF", "pneumonia")):
        assert res["auc_per_class"][name] == pytest.approx(
            roc_auc_score(y == c, probs[:, c]), abs=1e-12
        )
    assert res["auc_macro"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12
    )
    assert res["auc_micro"] == pytest.approx(
        roc_auc_score(label_binarize(y, classes=[0, 1, 2]), probs, average="micro"), abs=1e-12
    )
    assert res["n"] == 90


def test_accuracy_balanced_accuracy_and_confusion_hand_worked() -> None:
    # Predictions (arg-max): 0, 0, 1, 1, 2, 2 for labels 0, 0, 0, 1, 1, 2.
    y = np.array([0, 0, 0, 1, 1, 2])
    probs = np.array([
        [0.7, 0.2, 0.1],
        [0.5, 0.3, 0.2],
        [0.1, 0.8, 0.1],
        [0.2, 0.5, 0.3],
        [0.2, 0.3, 0.5],
        [0.1, 0.1, 0.8],
    ])
    res = classification_metrics(y, probs)
    # 4 of 6 correct; recalls 2/3, 1/2, 1/1 -> balanced (4/6 + 3/6 + 6/6) / 3 = 13/18.
    assert res["accuracy"] == pytest.approx(4.0 / 6.0)
    assert res["balanced_accuracy"] == pytest.approx(13.0 / 18.0)
    assert res["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_result_is_plain_json_serialisable() -> None:
    y, probs = _random_classification(np.random.default_rng(11), 30)
    res = classification_metrics(torch.from_numpy(y), torch.from_numpy(probs).float())
    json.loads(json.dumps(res))
    for key in ("auc_macro", "auc_micro", "accuracy", "balanced_accuracy", "ece"):
        assert type(res[key]) is float
    assert type(res["n"]) is int
    assert all(type(v) is float for v in res["auc_per_class"].values())
    assert all(type(v) is int for row in res["confusion_matrix"] for v in row)


def test_absent_class_gives_nan_auc_and_macro_over_defined_classes() -> None:
    y, probs = _random_classification(np.random.default_rng(12), 60)
    keep = y != 2
    y, probs = y[keep], probs[keep]
    res = classification_metrics(y, probs)
    assert math.isnan(res["auc_per_class"]["pneumonia"])
    defined = [res["auc_per_class"]["Normal"], res["auc_per_class"]["CHF"]]
    assert res["auc_macro"] == pytest.approx(np.mean(defined), abs=1e-12)
    assert res["confusion_matrix"][2] == [0, 0, 0]


def test_custom_class_names_and_two_classes() -> None:
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    res = classification_metrics(y, probs, class_names=("neg", "pos"))
    # Positive-class scores .1,.8,.4,.7 for labels 0,1,1,0: pairs (pos>neg) = 3 of 4.
    assert res["auc_per_class"]["pos"] == pytest.approx(0.75)
    assert res["auc_micro"] == pytest.approx(
        roc_auc_score(np.eye(2)[y].ravel(), probs.ravel()), abs=1e-12
    )


def test_ece_hand_worked() -> None:
    # Two bins (0, .5], (.5, 1].  Confidences .9 (right), .8 (wrong), .6 (right), .5 (wrong).
    # Bin (.5, 1]: mean conf 2.3/3, accuracy 2/3 -> |diff| = .1, weight 3/4 -> .075.
    # Bin (0, .5]: conf .5, accuracy 0 -> .5, weight 1/4 -> .125.   ECE = .2.
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.5, 0.5]])
    res = classification_metrics(y, probs, class_names=("a", "b"), n_bins=2)
    assert res["ece"] == pytest.approx(0.2, abs=1e-12)
    curve = reliability_curve(y, probs, n_bins=2)
    np.testing.assert_allclose(curve["bin_edges"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(curve["count"], [1, 3])
    np.testing.assert_allclose(curve["confidence"], [0.5, 2.3 / 3.0])
    np.testing.assert_allclose(curve["accuracy"], [0.0, 2.0 / 3.0])


def _synthetic_calibration(overconfidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-class data whose stated confidence c is right with probability c − overconfidence."""
    rng = np.random.default_rng(13)
    n = 20000
    conf = rng.uniform(0.6, 1.0, size=n)
    correct = rng.random(n) < conf - overconfidence
    predicted = rng.integers(0, 2, size=n)
    y = np.where(correct, predicted, 1 - predicted)
    probs = np.empty((n, 2))
    probs[np.arange(n), predicted] = conf
    probs[np.arange(n), 1 - predicted] = 1.0 - conf
    return y, probs


def test_ece_small_when_calibrated_and_large_when_overconfident() -> None:
    calibrated = classification_metrics(*_synthetic_calibration(0.0), class_names=("a", "b"))
    overconfident = classification_metrics(*_synthetic_calibration(0.2), class_names=("a", "b"))
    assert calibrated["ece"] < 0.02
    assert overconfident["ece"] == pytest.approx(0.2, abs=0.02)


def test_reliability_curve_empty_bins_and_counts() -> None:
    y, probs = _random_classification(np.random.default_rng(14), 50)
    curve = reliability_curve(y, probs, n_bins=10)
    assert curve["count"].sum() == 50
    # Max of 3 probabilities is at least 1/3, so the first three bins are empty.
    assert np.all(curve["count"][:3] == 0)
    assert np.all(np.isnan(curve["confidence"][:3])) and np.all(np.isnan(curve["accuracy"][:3]))
    filled = curve["count"] > 0
    lo, hi = curve["bin_edges"][:-1][filled], curve["bin_edges"][1:][filled]
    assert np.all((curve["confidence"][filled] > lo) & (curve["confidence"][filled] <= hi))


@pytest.mark.parametrize(
    ("y", "probs", "kwargs", "message"),
    [
        ([0, 1], [[0.5, 0.3, 0.1], [0.2, 0.3, 0.5]], {}, "row 0 sums to 0.9"),
        ([0, 3], [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], {}, r"labels must lie in \[0, 2\]"),
        ([0, 1, 2], [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], {}, "same number of samples"),
        ([0.5, 1], [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], {}, "integer class labels"),
        ([0, 1], [[0.5, 0.5], [0.2, 0.8]], {}, "class_names has 3 names but probs has 2"),
        ([0, 1], [[1.5, -0.5], [0.2, 0.8]], {"class_names": "ab"}, r"probs must lie in \[0, 1\]"),
        ([0, 1], [[np.nan, 0.5], [0.2, 0.8]], {"class_names": "ab"}, "NaN"),
        ([0, 1], [0.5, 0.5], {}, r"probs must be a 2-D array"),
        ([], np.zeros((0, 3)), {}, "no samples"),
        ([0, 1], [[0.5, 0.5], [0.2, 0.8]], {"class_names": "ab", "n_bins": 0}, "n_bins"),
    ],
)
def test_classification_input_errors(y, probs, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.asarray(y), np.asarray(probs), **kwargs)


# ------------------------------------------------------------------------------- t-test


def test_paired_ttest_matches_scipy() -> None:
    rng = np.random.default_rng(15)
    a = rng.normal(size=25)
    b = a + rng.normal(0.3, 0.5, size=25)
    res = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert res["t"] == pytest.approx(ref.statistic, abs=1e-12)
    assert res["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert res["mean_diff"] == pytest.approx(np.mean(a - b), abs=1e-12)
    assert res["n"] == 25
    assert res["mean_diff"] < 0 and res["t"] < 0


def test_paired_ttest_degenerate_differences() -> None:
    a = np.array([0.1, 0.5, 0.7])
    assert paired_ttest(a, a.copy()) == {"t": 0.0, "p": 1.0, "mean_diff": 0.0, "n": 3}
    shifted = paired_ttest(np.array([2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0]))
    assert shifted["t"] == math.inf and shifted["p"] == 0.0 and shifted["mean_diff"] == 1.0


def test_paired_ttest_errors() -> None:
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(4,\)"):
        paired_ttest(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_ttest([1.0], [2.0])
    with pytest.raises(ValueError, match="1-D"):
        paired_ttest(np.ones((2, 2)), np.ones((2, 2)))


# ------------------------------------------------------------------ fixation-based metrics


def _pysaliency_judd_roc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """pysaliency's ``general_roc(positives, negatives, judd=1)`` re-derived: thresholds at every
    positive value (plus one above the maximum and the overall minimum), counts of values ≥ θ."""
    sorted_pos, sorted_neg = np.sort(positives)[::-1], np.sort(negatives)[::-1]
    low = min(sorted_pos[-1], sorted_neg[-1])
    high = max(sorted_pos[0], sorted_neg[0]) + 1
    thresholds = np.sort(np.hstack([high, positives, low]))[::-1]
    hit, false = [0.0], [0.0]
    tp = fp = 0
    for theta in thresholds:
        while tp < len(sorted_pos) and sorted_pos[tp] >= theta:
            tp += 1
        while fp < len(sorted_neg) and sorted_neg[fp] >= theta:
            fp += 1
        hit.append(tp / len(sorted_pos))
        false.append(fp / len(sorted_neg))
    hit, false = np.array(hit), np.array(false)
    return float(np.sum(np.diff(false) * (hit[1:] + hit[:-1]) / 2))


def _pysaliency_rocs_per_positive(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """pysaliency's ``general_rocs_per_positive`` re-derived: for each positive, the share of negatives
    below it plus half the share equal to it."""
    return np.array([(np.sum(negatives < v) + 0.5 * np.sum(negatives == v)) / len(negatives) for v in positives])


def test_auc_judd_hand_worked() -> None:
    # Fixation on the 4: threshold 4 gives (FPR 0, TPR 1); area 1.
    assert auc_judd(P_HAND, np.array([[0, 0], [0, 1]])) == pytest.approx(1.0)
    # Fixation on the 3: (1/3, 1) since the 4 is also ≥ 3; area 1/6 + 2/3 = 5/6.
    assert auc_judd(P_HAND, np.array([[0, 0], [1, 0]])) == pytest.approx(5 / 6)
    # Fixations on 2 and 4: points (0, .5), (.5, 1); area .375 + .5 = .875 (the rank AUC would be .75:
    # the trapezoid between thresholds credits half a step).
    assert auc_judd(P_HAND, np.array([[0, 1], [0, 1]])) == pytest.approx(0.875)
    # Ties: P = [1 1; 1 2], fixations on a 1 and the 2: points (0, .5), (1, 1); area .75.
    assert auc_judd(np.array([[1.0, 1.0], [1.0, 2.0]]), np.array([[1, 0], [0, 1]])) == pytest.approx(0.75)
    assert auc_judd(np.full((3, 3), 0.2), np.eye(3)) == pytest.approx(0.5)


def test_shuffled_auc_hand_worked() -> None:
    # Positive: the 3. Other images' fixations: two on the 4, one on the 1, one on the 3 (a tie).
    # (0 + 0 + 1 + 0.5) / 4 = 0.375.
    other = np.array([[1, 0], [1, 2]])
    assert shuffled_auc(P_HAND, np.array([[0, 0], [1, 0]]), other) == pytest.approx(0.375)
    # Positives 4 and 2 against the same negatives: the 4 beats the 1 and the 3 and ties both 4s,
    # (2 + 0.5·2) / 4 = .75; the 2 beats the 1 only, 1/4; mean .5.
    assert shuffled_auc(P_HAND, np.array([[0, 1], [0, 1]]), other) == pytest.approx(0.5)
    assert shuffled_auc(np.ones((2, 2)), np.array([[0, 0], [1, 0]]), other) == pytest.approx(0.5)


def test_auc_judd_matches_pysaliency_definition_and_is_rank_invariant() -> None:
    rng = np.random.default_rng(3)
    maps = np.round(_random_maps(rng, (4, 12, 10)), 1)  # rounding makes ties
    fix = rng.random((4, 12, 10)) < 0.1
    fix[:, 0, 0] = True
    ours = auc_judd(maps, fix)
    for i in range(4):
        expected = _pysaliency_judd_roc(maps[i][fix[i]], maps[i][~fix[i]])
        assert ours[i] == pytest.approx(expected, abs=1e-12)
        assert auc_judd(maps[i], fix[i]) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(auc_judd(np.exp(3 * maps) - 7, fix), ours, atol=1e-12)
    assert np.all((ours > 0.3) & (ours < 0.8))


def test_shuffled_auc_matches_pysaliency_and_weighted_sklearn() -> None:
    rng = np.random.default_rng(4)
    maps = np.round(_random_maps(rng, (3, 9, 8)), 1)
    fix = rng.random((3, 9, 8)) < 0.15
    fix[:, 4, 4] = True
    counts = rng.poisson(0.4, size=(3, 9, 8))
    counts[:, 0, 0] += 1
    ours = shuffled_auc(maps, fix, counts)
    for i in range(3):
        negatives = np.repeat(maps[i].ravel(), counts[i].ravel())
        assert ours[i] == pytest.approx(np.mean(_pysaliency_rocs_per_positive(maps[i][fix[i]], negatives)), abs=1e-12)
        pos = maps[i][fix[i]]
        y = np.r_[np.ones(len(pos)), np.zeros(counts[i].size)]
        weights = np.r_[np.ones(len(pos)), counts[i].ravel()]
        keep = weights > 0
        sk = roc_auc_score(y[keep], np.r_[pos, maps[i].ravel()][keep], sample_weight=weights[keep])
        assert ours[i] == pytest.approx(sk, abs=1e-12)
    # A map equal to the other images' fixation density (a centre bias) cannot beat chance by much
    # when this image's fixations follow the same density.
    density = np.zeros((40, 40))
    density[10:30, 10:30] = 1
    own = np.zeros((40, 40), dtype=bool)
    own[12:28:3, 12:28:3] = True
    assert shuffled_auc(density, own, density * 5) == pytest.approx(0.5)
    assert auc_judd(density, own) > 0.8


def test_fixation_metric_errors() -> None:
    with pytest.raises(ValueError, match="fixates every pixel"):
        auc_judd(P_HAND, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"fixations\[1\] has no fixated pixel"):
        auc_judd(np.ones((2, 2, 2)), np.array([np.eye(2), np.zeros((2, 2))]))
    with pytest.raises(ValueError, match="no fixation of another image"):
        shuffled_auc(P_HAND, np.eye(2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        shuffled_auc(P_HAND, np.eye(2), -np.eye(2))
    with pytest.raises(ValueError, match="same shape"):
        shuffled_auc(P_HAND, np.eye(2), np.ones((3, 3)))


def test_fixation_points_round_to_the_nearest_pixel_centre_and_duplicates_count_once() -> None:
    # Canvas 3 rows × 4 columns, pixel centres at integer coordinates.
    points = np.array([[0.49, 0.0, 0.3],    # → column 0
                       [0.5, 0.0, 0.2],     # → column 1 (halves round up)
                       [-0.7, 2.4, 0.1],    # rounding to -1 is clipped onto column 0, row 2
                       [3.6, 2.6, 0.1],     # beyond the last centre: column 3, row 2
                       [1.2, 1.1, 0.5],
                       [0.8, 0.9, 0.5]])    # same pixel (1, 1) as the one before
    rows, cols = fixation_pixels(points, (3, 4))
    assert rows.tolist() == [0, 0, 2, 2, 1, 1] and cols.tolist() == [0, 1, 0, 3, 1, 1]
    counts = fixation_counts(points, (3, 4))
    assert counts.sum() == 6 and counts[1, 1] == 2
    binary = fixated_map(points, (3, 4))
    assert binary.dtype == bool and binary.sum() == 5 and binary[1, 1]
    # NSS counts the doubly fixated pixel once.
    pred = np.arange(12.0).reshape(3, 4)
    z = (pred - pred.mean()) / pred.std()
    assert nss(pred, binary) == pytest.approx(z[binary].mean())
    with pytest.raises(ValueError, match="outside the 3×4 canvas"):
        fixation_pixels(np.array([[5.5, 0.0]]), (3, 4))
    with pytest.raises(ValueError, match=r"\(K, 2\+\)"):
        fixation_pixels(np.array([1.0, 2.0]), (3, 4))
    assert fixation_counts(np.zeros((0, 3)), (3, 4)).sum() == 0
