import numpy as np
import pytest

from gazecxr.data.splits import balanced_group_split, make_split


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


def test_released_split_follows_the_released_counter_rule():
    import torch

    labels = np.array([0] * 25 + [1] * 12)
    split = make_split("released", np.arange(37), labels, seed=0)
    order = torch.randperm(37, generator=torch.Generator().manual_seed(0)).tolist()
    visited = {c: [i for i in order if labels[i] == c] for c in (0, 1)}
    # the k-th visited image of a class (k = 1, 2, ...) goes to test when k % 10 <= 1, to val when it is 2
    for c, indices in visited.items():
        expected = ["test" if k % 10 <= 1 else "val" if k % 10 == 2 else "train" for k in range(1, len(indices) + 1)]
        assert [split[i] for i in indices] == expected
    assert (split[labels == 0] == "test").sum() == 5 and (split[labels == 0] == "val").sum() == 3
    assert (split[labels == 1] == "test").sum() == 3 and (split[labels == 1] == "val").sum() == 2


def test_balanced_group_split_keeps_patients_whole_and_classes_balanced():
    rng = np.random.default_rng(1)
    groups = np.repeat([f"p{i}" for i in range(60)], rng.integers(1, 5, 60))  # 1-4 films per patient
    positive = rng.random(len(groups)) < 0.4  # a patient's films can differ in class
    per_class = {"test": 6, "val": 4, "train": 20}
    rows = balanced_group_split(groups, positive, per_class, seed=0)
    for split, k in per_class.items():
        assert positive[rows[split]].sum() == k and (~positive[rows[split]]).sum() == k, split
    patients = [set(groups[rows[split]]) for split in per_class]
    assert all(not (a & b) for i, a in enumerate(patients) for b in patients[i + 1:])
    again = balanced_group_split(groups, positive, per_class, seed=0)
    assert all(np.array_equal(rows[s], again[s]) for s in per_class)
    assert not np.array_equal(rows["test"], balanced_group_split(groups, positive, per_class, seed=1)["test"])
    with pytest.raises(ValueError, match="runs out of patients"):
        balanced_group_split(groups, positive, {"test": 6, "train": 200}, seed=0)


def test_official_split_carves_validation_by_patient():
    from gazecxr.data.splits import official_split

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 200).astype(str)
    given = np.where(np.isin(groups, [str(k) for k in range(8)]), "test", "train")
    split = official_split(groups, given, seed=1, val_fraction=0.2)
    assert set(split) == {"train", "val", "test"} and np.array_equal(split == "test", given == "test")
    for patient in set(groups):
        assert len(set(split[groups == patient])) == 1
