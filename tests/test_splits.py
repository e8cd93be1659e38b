import numpy as np
import pytest

from gazecxr.data.splits import make_split


def _cohort(n_patients=400, seed=0):
    rng = np.random.default_rng(seed)
    per = rng.choice([1, 1, 1, 2], n_patients)
    groups = np.repeat([f"p{i}" for i in range(n_patients)], per)
    labels = np.repeat(rng.integers(0, 3, n_patients), per)
    return groups, labels


def _no_patient_straddles(groups, split):
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1, g


def test_paper_split_has_100_test_images_grouped_by_patient():
    groups, labels = _cohort()
    split = make_split("paper", groups, labels, seed=3)
    n_test = (split == "test").sum()
    assert 100 <= n_test <= 101
    rest = len(split) - n_test
    assert abs((split == "val").sum() - 0.1 * rest) <= 2
    _no_patient_straddles(groups, split)
    assert np.array_equal(split, make_split("paper", groups, labels, seed=3))
    assert not np.array_equal(split, make_split("paper", groups, labels, seed=4))


def test_paper_split_shrinks_test_for_small_sets():
    groups, labels = _cohort(50)
    split = make_split("paper", groups, labels)
    assert 0.15 * len(split) <= (split == "test").sum() <= 0.3 * len(split)
    assert (split == "train").sum() > 0 and (split == "val").sum() > 0


def test_ratio_split_is_70_10_20_stratified_and_grouped():
    groups, labels = _cohort(600)
    split = make_split("ratio", groups, labels, seed=0)
    n = len(split)
    for name, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs((split == name).sum() / n - frac) < 0.03, name
        share = np.bincount(labels[split == name], minlength=3) / (split == name).sum()
        np.testing.assert_allclose(share, np.bincount(labels) / n, atol=0.06)
    _no_patient_straddles(groups, split)


def test_unknown_method():
    with pytest.raises(ValueError, match="split method"):
        make_split("random", np.array(["a"]), np.array([0]))
