"""The statistics of the reports: DeLong, McNemar, Holm, the patient bootstrap, seeds, ANOVA / Tukey, and
the anatomical and shuffled saliency baselines."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.baselines import (
    chest_box_prior_map,
    convex_hull_mask,
    derangement,
    lung_prior_map,
    map_into_region,
)
from gazecxr.metrics.statistics import (
    PatientBootstrap,
    adjust_family,
    auc_influence,
    bootstrap_interval,
    bootstrap_paired_difference,
    delong_covariance,
    delong_interval,
    delong_one_vs_rest,
    delong_test,
    format_interval,
    holm_bonferroni,
    mcnemar_exact,
    one_way_anova,
    paired_score_tests,
    patient_bootstrap_weights,
    seed_summary,
    tukey_hsd,
    weighted_auc,
    weighted_ece,
    weighted_macro_auc,
    weighted_mean,
    weighted_micro_auc,
    wilcoxon_signed_rank,
)

# Hand-worked DeLong example: 5 images, the first 3 positive.
#   a: positives 0.9, 0.6, 0.4; negatives 0.7, 0.3 → V10 = (1, ½, ½), V01 = (⅓, 1), AUC = ⅔
#   b: positives 0.8, 0.7, 0.5; negatives 0.6, 0.1 → V10 = (1, 1, ½), V01 = (⅔, 1), AUC = ⅚
#   S10 = [[1/12, 1/24], [1/24, 1/12]], S01 = [[2/9, 1/9], [1/9, 1/18]]
#   var = S10/3 + S01/2 → var_a = 5/36, var_b = 1/18, cov = 5/72; var(a − b) = 1/18, z = (−1/6)/√(1/18) = −1/√2
HAND_Y = np.array([1, 1, 1, 0, 0])
HAND_A = np.array([0.9, 0.6, 0.4, 0.7, 0.3])
HAND_B = np.array([0.8, 0.7, 0.5, 0.6, 0.1])


def test_delong_hand_worked_example() -> None:
    aucs, cov = delong_covariance(HAND_Y, np.stack([HAND_A, HAND_B]))
    np.testing.assert_allclose(aucs, [2 / 3, 5 / 6])
    np.testing.assert_allclose(cov, [[5 / 36, 5 / 72], [5 / 72, 1 / 18]])
    test = delong_test(HAND_Y, HAND_A, HAND_B)
    assert test["diff"] == pytest.approx(-1 / 6)
    assert test["z"] == pytest.approx(-1 / math.sqrt(2))
    assert test["p"] == pytest.approx(2 * stats.norm.sf(1 / math.sqrt(2)))
    assert test["p"] == pytest.approx(0.4795, abs=1e-4)
    interval = delong_interval(HAND_Y, HAND_A)
    half = stats.norm.ppf(0.975) * math.sqrt(5 / 36)
    assert interval["ci"] == pytest.approx([max(0, 2 / 3 - half), min(1, 2 / 3 + half)])
    _, phi = auc_influence(HAND_Y, np.stack([HAND_A, HAND_B]))
    np.testing.assert_allclose(phi @ phi.T, cov)


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """The AUC by its definition: the share of (positive, negative) pairs ranked right, ties one half."""
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def test_delong_agrees_with_a_brute_force_bootstrap() -> None:
    rng = np.random.default_rng(3)
    n = 150
    y = rng.integers(0, 2, n)
    a = y * 1.0 + rng.normal(0, 1.0, n)
    b = y * 0.6 + 0.5 * a + rng.normal(0, 1.0, n)
    test = delong_test(y, a, b)
    _, cov = delong_covariance(y, np.stack([a, b]))
    assert test["auc_a"] == pytest.approx(roc_auc_score(y, a)) == pytest.approx(_pairwise_auc(y, a))
    resamples = 1500
    diffs, aucs_a = np.empty(resamples), np.empty(resamples)
    for r in range(resamples):  # the explicit bootstrap: resample images, recompute both AUCs by definition
        idx = rng.integers(0, n, n)
        aucs_a[r] = _pairwise_auc(y[idx], a[idx])
        diffs[r] = aucs_a[r] - _pairwise_auc(y[idx], b[idx])
    # the bootstrap variance estimates the same quantity; its Monte-Carlo relative error is ≈ √(2/R) ≈ 4 %
    assert np.var(diffs) == pytest.approx(test["se"] ** 2, rel=0.15)
    assert np.var(aucs_a) == pytest.approx(cov[0, 0], rel=0.15)
    p_boot = 2 * stats.norm.sf(abs(test["diff"]) / np.std(diffs))
    assert p_boot == pytest.approx(test["p"], abs=0.03)
    # the vectorised weighted bootstrap gives the same variance
    w = patient_bootstrap_weights(np.arange(n), resamples, seed=1)
    vectorised = weighted_auc(y, a)(w) - weighted_auc(y, b)(w)
    assert np.var(vectorised) == pytest.approx(test["se"] ** 2, rel=0.15)


def test_delong_macro_is_the_mean_of_class_differences() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    probs_a = rng.dirichlet([1, 1, 1], 120)
    probs_a[np.arange(120), labels] += 0.6
    probs_a /= probs_a.sum(1, keepdims=True)
    probs_b = rng.dirichlet([1, 1, 1], 120)
    res = delong_one_vs_rest(labels, probs_a, probs_b, ["x", "y", "z"])
    diffs = [res["per_class"][c]["diff"] for c in "xyz"]
    assert res["macro"]["diff"] == pytest.approx(np.mean(diffs))
    for k, c in enumerate("xyz"):
        assert res["per_class"][c]["auc_a"] == pytest.approx(roc_auc_score(labels == k, probs_a[:, k]))
    # with one class, the joint covariance reduces to DeLong's variance
    single = delong_one_vs_rest((labels == 0).astype(int), np.stack([1 - probs_a[:, 0], probs_a[:, 0]], 1),
                                np.stack([1 - probs_b[:, 0], probs_b[:, 0]], 1), ["rest", "x"])
    assert single["macro"]["se"] == pytest.approx(single["per_class"]["x"]["se"])
    # the macro variance matches the bootstrap of the macro AUC difference
    w = patient_bootstrap_weights(np.arange(120), 1500, seed=2)
    boot = weighted_macro_auc(labels, probs_a)(w)[:, -1] - weighted_macro_auc(labels, probs_b)(w)[:, -1]
    assert np.var(boot) == pytest.approx(res["macro"]["se"] ** 2, rel=0.2)


def test_weighted_statistics_equal_the_unweighted_metrics() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 80)
    probs = rng.dirichlet([1, 1, 1], 80)
    ones = np.ones((1, 80))
    macro = weighted_macro_auc(labels, probs)(ones)[0]
    np.testing.assert_allclose(macro[:3], [roc_auc_score(labels == k, probs[:, k]) for k in range(3)])
    assert weighted_micro_auc(labels, probs)(ones)[0] == pytest.approx(
        roc_auc_score(np.eye(3)[labels].ravel(), probs.ravel()))
    from gazecxr.metrics import classification_metrics
    assert weighted_ece(labels, probs)(ones)[0] == pytest.approx(classification_metrics(labels, probs)["ece"])
    # integer weights = repeating elements, ties included
    scores = np.round(probs[:, 0], 1)
    w = rng.integers(0, 3, 80).astype(float)
    assert weighted_auc(labels == 0, scores)(w[None])[0] == pytest.approx(
        roc_auc_score(np.repeat(labels == 0, w.astype(int)), np.repeat(scores, w.astype(int))))
    values = rng.normal(size=80)
    values[3] = np.nan
    assert weighted_mean(values)(ones)[0] == pytest.approx(np.nanmean(values))


def test_mcnemar_exact_on_a_hand_made_table() -> None:
    # 2×2: both right 10, only a right 8, only b right 2, both wrong 5
    a = np.array([1] * 10 + [1] * 8 + [0] * 2 + [0] * 5)
    b = np.array([1] * 10 + [0] * 8 + [1] * 2 + [0] * 5)
    res = mcnemar_exact(a, b)
    assert (res["a_only"], res["b_only"], res["discordant"], res["n"]) == (8, 2, 10, 25)
    assert res["p"] == pytest.approx(112 / 1024)  # 2 · P(X ≤ 2), X ~ Bin(10, ½) = 2 · (1 + 10 + 45) / 1024
    assert res["diff"] == pytest.approx(6 / 25)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])["p"] == 1.0
    with pytest.raises(ValueError, match="correctness"):
        mcnemar_exact([0.5, 1], [1, 0])


def test_holm_on_known_p_values() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, max(1·0.04, 0.06)
    assert holm_bonferroni([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert holm_bonferroni([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_bonferroni([]) == []
    tests = adjust_family([{"p": 0.02}, {"p": 0.04}, {"p": float("nan")}])
    assert [t["p_holm"] for t in tests] == pytest.approx([0.04, 0.04, None])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_bonferroni([1.5])


def _patients_file(path, patients: list[int]) -> None:
    n = len(patients)
    with h5py.File(path, "w") as f:
        f["image"] = np.zeros((n, 8, 8), np.float32)
        f["heatmap"] = np.full((n, 8, 8), 1 / 64, np.float32)
        f["label"] = np.zeros(n, np.int64)
        f["label"].attrs["class_names"] = ["Normal", "CHF", "pneumonia"]
        f["dicom_id"] = np.array([f"d{i}" for i in range(n)], dtype=object).astype("S")
        f["patient_id"] = np.array([f"p{p}" for p in patients], dtype=object).astype("S")
        f["split"] = np.array(["test"] * n, dtype="S")
        f["orig_size"] = np.full((n, 2), 8, np.int32)
        f["scale"] = np.ones(n)
        f["pad"] = np.zeros((n, 2), np.int32)


def test_patient_bootstrap_never_splits_a_patient_and_is_reproducible(tmp_path) -> None:
    patients = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 6]
    _patients_file(tmp_path / "p.h5", patients)
    groups = GazeCXRDataset(tmp_path / "p.h5", "test").patient_ids
    w = patient_bootstrap_weights(groups, 300, seed=7)
    assert w.shape == (300, len(patients))
    for p in set(patients):  # every image of a patient has its patient's count in every resample
        cols = w[:, [i for i, q in enumerate(patients) if q == p]]
        assert np.all(cols == cols[:, :1])
    counts = np.array([w[:, patients.index(p)] for p in sorted(set(patients))])
    assert np.all(counts.sum(axis=0) == 7)  # 7 patients drawn per resample
    np.testing.assert_array_equal(w, patient_bootstrap_weights(groups, 300, seed=7))
    assert not np.array_equal(w, patient_bootstrap_weights(groups, 300, seed=8))
    values = np.arange(len(patients), dtype=float)
    first = bootstrap_interval(weighted_mean(values), groups, 300, seed=7)
    assert first == bootstrap_interval(weighted_mean(values), groups, 300, seed=7)
    assert first[0]["value"] == pytest.approx(values.mean())
    assert first[0]["ci"][0] < values.mean() < first[0]["ci"][1]
    assert bootstrap_interval(weighted_mean(values), groups, 0) is None


def test_bootstrap_interval_covers_like_the_normal_interval() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(2.0, 1.0, 400)
    groups = np.arange(400)
    se = values.std(ddof=1) / 20
    for method in ("percentile", "bca"):
        cell = bootstrap_interval(weighted_mean(values), groups, 2000, seed=0, method=method)[0]
        assert cell["ci"] == pytest.approx([values.mean() - 1.96 * se, values.mean() + 1.96 * se], abs=0.3 * se)
        assert method in cell["method"]
    boot = PatientBootstrap(groups, 0)
    assert boot.mean(values)["ci"] is None and boot.paired_difference(weighted_mean(values), weighted_mean(values)) is None
    diff = bootstrap_paired_difference(weighted_mean(values), weighted_mean(values - 0.5), groups, 500)
    assert diff["diff"] == pytest.approx(0.5) and diff["ci"] == pytest.approx([0.5, 0.5]) and diff["p"] < 0.01


def test_wilcoxon_and_paired_score_tests() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=30), rng.normal(size=30) + 0.3
    res = wilcoxon_signed_rank(a, b)
    assert res["p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert wilcoxon_signed_rank(a, a)["p"] == 1.0
    a_nan = a.copy()
    a_nan[0] = np.nan
    both = paired_score_tests(a_nan, b)
    assert both["n"] == 29 and both["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a[1:], b[1:]).pvalue)
    assert both["p"] == pytest.approx(stats.ttest_rel(a[1:], b[1:]).pvalue)


def test_seed_summary_and_several_models() -> None:
    s = seed_summary([0.80, 0.82, 0.85])
    half = stats.t.ppf(0.975, 2) * np.std([0.80, 0.82, 0.85], ddof=1) / math.sqrt(3)
    assert s["ci"] == pytest.approx([s["mean"] - half, s["mean"] + half])
    assert seed_summary([0.8])["ci"] is None and seed_summary([0.8])["std"] is None
    rng = np.random.default_rng(4)
    samples = {"x": rng.normal(0, 1, 25), "y": rng.normal(2, 1, 25), "z": rng.normal(0, 1, 25)}
    anova = one_way_anova(samples)
    assert anova["p"] == pytest.approx(stats.f_oneway(*samples.values()).pvalue) and anova["df_within"] == 72
    pairs = {(t["a"], t["b"]): t for t in tukey_hsd(samples)}
    assert pairs[("x", "y")]["p"] < 0.001 < pairs[("x", "z")]["p"]
    assert pairs[("x", "y")]["ci"][1] < 0


def test_format_interval() -> None:
    assert format_interval({"value": 0.9251, "ci": [0.88, 0.96], "method": "m"}) == "0.925 [0.880, 0.960]"
    assert format_interval({"value": 0.9251, "ci": None, "method": "m"}) == "0.925"
    assert format_interval(None) == "—"


# ----------------------------------------------------------------------------- baselines


def test_convex_hull_and_lung_prior_on_hand_made_masks() -> None:
    mask = np.zeros((10, 12), bool)
    mask[2:8, 2:4] = True  # right lung (image left)
    mask[2:8, 8:10] = True  # left lung
    hull = convex_hull_mask(mask)
    assert hull[2:8, 2:10].all() and hull.sum() == 6 * 8  # the gap between the lungs is filled, nothing else
    prior = lung_prior_map(mask, 0.0)
    assert prior.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(prior[2:8, 2:10], 1 / 48)
    assert prior[~hull].sum() == 0
    region = np.zeros((10, 12), bool)
    region[:, 1:11] = True
    blurred = lung_prior_map(mask, (1.5, 1.5), region)
    assert blurred.sum() == pytest.approx(1.0) and blurred[:, 0].sum() == 0 and blurred[:, 11].sum() == 0
    assert blurred[5, 6] > blurred[0, 6] > 0
    assert lung_prior_map(np.zeros((4, 4), bool), 1.0) is None
    triangle = np.zeros((5, 5), bool)
    triangle[0, 0] = triangle[4, 0] = triangle[4, 4] = True
    # the hull of the three corner squares is bounded by the line column = row + 1: 2 + 3 + 4 + 5 + 5 centres
    assert convex_hull_mask(triangle).sum() == 19


def test_chest_box_prior_and_other_image_gaze() -> None:
    prior = chest_box_prior_map([2.0, 1.0, 5.0, 3.0], (6, 8))
    expected = np.zeros((6, 8))
    expected[1:4, 2:6] = 1 / 12
    np.testing.assert_allclose(prior, expected)
    assert chest_box_prior_map([np.nan] * 4, (6, 8)) is None
    source = np.zeros((8, 8))
    source[2:6, 0:4] = 1.0  # mass on the left half of a full-canvas image
    moved = map_into_region(source, (slice(0, 8), slice(0, 8)), (slice(0, 8), slice(2, 6)), (8, 8))
    assert moved.sum() == pytest.approx(1.0) and moved[:, :2].sum() == 0 and moved[:, 6:].sum() == 0
    assert moved[:, 2:4].sum() > 0.9
    perm = derangement(7, seed=1)
    assert sorted(perm) == list(range(7)) and np.all(perm != np.arange(7))
    np.testing.assert_array_equal(perm, derangement(7, seed=1))
