"""Train/val/test splits grouped by patient, so no patient straddles two splits."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from gazecxr.config.errors import InputError

SPLIT_METHODS = ("paper", "ratio", "released")
"""Methods :func:`make_split` computes; ``official`` (a dataset's own lists) is :func:`official_split`."""


def _group_take(groups: np.ndarray, rng: np.random.Generator, target: int) -> np.ndarray:
    """Boolean mask of records of randomly ordered patients, taken until ``target`` records."""
    patients = rng.permutation(np.unique(groups))
    chosen, count = [], 0
    sizes = {p: int(n) for p, n in zip(*np.unique(groups, return_counts=True))}
    for patient in patients:
        if count >= target:
            break
        chosen.append(patient)
        count += sizes[patient]
    return np.isin(groups, chosen)


def paper_split(
    groups: np.ndarray, seed: int = 0, test_size: int = 100, val_fraction: float = 0.1
) -> np.ndarray:
    """The paper's protocol: ``test_size`` random test images, the rest train with a
    ``val_fraction`` carved out for validation (early stopping). Returns split names.

    When the dataset has fewer than twice ``test_size`` records the test set is 20 % of it.
    """
    groups = np.asarray(groups).astype(str)
    n = len(groups)
    rng = np.random.default_rng(seed)
    n_test = test_size if n >= 2 * test_size else max(1, round(0.2 * n))
    split = np.full(n, "train", dtype=object)
    test = _group_take(groups, rng, n_test)
    split[test] = "test"
    rest = np.flatnonzero(~test)
    n_val = max(1, round(val_fraction * len(rest))) if val_fraction > 0 else 0
    if n_val:
        val = _group_take(groups[rest], rng, n_val)
        split[rest[val]] = "val"
    return split.astype(str)


def ratio_split(groups: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """70/10/20 train/val/test, stratified by class and grouped by patient."""
    groups = np.asarray(groups).astype(str)
    labels = np.asarray(labels)
    n = len(groups)
    split = np.full(n, "train", dtype=object)
    idx = np.arange(n)
    test = _stratified_group_fold(idx, labels, groups, n_splits=5, seed=seed)
    split[test] = "test"
    rest = idx[~np.isin(idx, test)]
    val = _stratified_group_fold(rest, labels[rest], groups[rest], n_splits=8, seed=seed + 1)
    split[val] = "val"
    return split.astype(str)


def _stratified_group_fold(
    idx: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> np.ndarray:
    """Indices (from ``idx``) of one stratified, patient-grouped fold of size ≈ 1/n_splits."""
    n_classes_ok = np.bincount(labels).max() >= n_splits and len(np.unique(groups)) >= n_splits
    if n_classes_ok:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, held = next(folds.split(idx, labels, groups))
    else:
        shuffle = GroupShuffleSplit(n_splits=1, test_size=1 / n_splits, random_state=seed)
        _, held = next(shuffle.split(idx, labels, groups))
    return idx[held]


def official_split(groups: np.ndarray, given: np.ndarray, seed: int = 0, val_fraction: float = 0.1) -> np.ndarray:
    """A dataset's own split (``given``: "test" for its test list, anything else for its training list)
    with ``val_fraction`` of the training records carved out as "val", grouped by patient (``groups``)."""
    groups = np.asarray(groups).astype(str)
    given = np.asarray(given).astype(str)
    split = np.where(given == "test", "test", "train").astype(object)
    rest = np.flatnonzero(split == "train")
    n_val = max(1, round(val_fraction * len(rest))) if val_fraction > 0 and len(rest) > 1 else 0
    if n_val:
        val = _group_take(groups[rest], np.random.default_rng(seed), n_val)
        split[rest[val]] = "val"
    return split.astype(str)


def balanced_group_split(groups: np.ndarray, positive: np.ndarray, per_class: Mapping[str, int],
                         seed: int = 0) -> dict[str, np.ndarray]:
    """A class-balanced subset drawn by patient: for each split of ``per_class`` (in its order, e.g.
    test, val, train) the sorted record indices of ``per_class[split]`` positive and as many negative
    records (``positive``: bool per record), every patient (``groups``) in one split at most.

    Patients are visited in a seeded random order; each goes whole to the first split that still needs
    records of a class it has, which takes (randomly) as many of them as it needs; the rest of that
    patient's records are left out, never put in another split. Raises ``InputError`` when the patients
    run out before a split is filled.
    """
    groups = np.asarray(groups).astype(str)
    positive = np.asarray(positive, bool)
    rng = np.random.default_rng(seed)
    names, patient = np.unique(groups, return_inverse=True)
    order = np.argsort(patient, kind="stable")
    bounds = np.searchsorted(patient[order], np.arange(len(names) + 1))
    need = {split: [int(k), int(k)] for split, k in per_class.items()}  # [negatives, positives] still wanted
    taken: dict[str, list[np.ndarray]] = {split: [np.empty(0, np.int64)] for split in per_class}
    for p in rng.permutation(len(names)):
        if not any(any(n) for n in need.values()):
            break
        rows = order[bounds[p]:bounds[p + 1]]
        by_class = [rng.permutation(rows[positive[rows] == c]) for c in (False, True)]
        split = next((s for s in per_class if any(need[s][c] and len(by_class[c]) for c in (0, 1))), None)
        if split is None:
            continue
        for c in (0, 1):
            take = by_class[c][:need[split][c]]
            need[split][c] -= len(take)
            taken[split].append(take)
    short = {split: tuple(n) for split, n in need.items() if any(n)}
    if short:
        raise InputError(f"a class-balanced subset grouped by patient ({dict(per_class)} records per class and split) "
                         f"runs out of patients: still wanted (negative, positive) {short}")
    return {split: np.sort(np.concatenate(parts)).astype(np.int64) for split, parts in taken.items()}


def released_split(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """The split of the released CXRGazeLearn / MT-UNet data preparation, image by image.

    Records are visited in the order of ``torch.utils.data.random_split`` under
    ``torch.Generator().manual_seed(seed)`` (the released code uses seed 0); each record's class
    counter is incremented, and counter % 10 in {0, 1} sends it to test, 2 to val, the rest to
    train (20 / 10 / 70 % per class). It is not grouped by patient: one patient's images can land
    in several splits, as in the released code.
    """
    import torch

    labels = np.asarray(labels)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    split = np.empty(len(labels), dtype=object)
    counters: dict[int, int] = {}
    for index in order:
        label = int(labels[index])
        counters[label] = counters.get(label, 0) + 1
        select = counters[label] % 10
        split[index] = "test" if select <= 1 else "val" if select == 2 else "train"
    return split.astype(str)


def make_split(
    method: str,
    groups: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    test_size: int = 100,
    val_fraction: float = 0.1,
) -> np.ndarray:
    """Split names ("train"/"val"/"test") per record by ``method`` ("paper", "ratio" or "released")."""
    if method == "paper":
        return paper_split(groups, seed=seed, test_size=test_size, val_fraction=val_fraction)
    if method == "ratio":
        return ratio_split(groups, labels, seed=seed)
    if method == "released":
        return released_split(labels, seed=seed)
    raise ValueError(f"split method must be one of {SPLIT_METHODS}, got {method!r}")
