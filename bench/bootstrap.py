"""Cost of a report's statistics: the vectorised patient bootstrap against a resampling loop.

An evaluation-sized set of per-image results (``--images`` test images of ``--images`` · 0.96 patients,
8 saliency methods × 6 scores, 5 three-class classifiers) gets what ``gazecxr evaluate`` computes: the
mean and patient-bootstrap interval of every saliency cell, the DeLong and bootstrap intervals of every
classification cell, and the tests of the first method against the others (t-test + Wilcoxon, DeLong, the
micro-AUC bootstrap, McNemar), with 2,000 resamples. ``loop`` times the same saliency intervals by an explicit
loop over resamples (index resampling of patients, a mean per resample); ``ratio`` = loop / vectorised on
those cells.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import cpu_info, report
from gazecxr.evaluation.comparisons import (
    classification_intervals,
    classification_tests,
    saliency_intervals,
    saliency_tests,
)
from gazecxr.metrics.statistics import DEFAULT_RESAMPLES, PatientBootstrap

TARGET = 5.0
METRICS = ("kl", "cc", "hs", "nss", "auc_judd", "sauc")


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    rng = np.random.default_rng(seed)
    patients = np.sort(rng.integers(0, max(2, int(n * 0.96)), n)).astype(str)
    labels = rng.integers(0, 3, n)
    scores = {f"m{k}": {m: rng.normal(k * 0.01, 1, n) for m in METRICS} for k in range(8)}
    probs = {}
    for k in range(5):
        p = rng.dirichlet(np.ones(3), n)
        p[np.arange(n), labels] += 0.3 + 0.05 * k
        probs[f"c{k}"] = p / p.sum(1, keepdims=True)
    return patients, labels, scores, probs


def _loop_intervals(scores: dict, patients: np.ndarray, resamples: int, seed: int = 0) -> None:
    """The saliency cells' percentile intervals by an explicit resampling loop."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    draws = [np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))]) for _ in range(resamples)]
    for by_metric in scores.values():
        for values in by_metric.values():
            np.quantile([values[idx].mean() for idx in draws], [0.025, 0.975])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.bootstrap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[100, 1000], help="test-split sizes")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    args = parser.parse_args(argv)
    fields: dict = {**cpu_info(), "resamples": args.resamples}
    ratio = None
    for n in args.images:
        patients, labels, scores, probs = _data(n)
        tic = time.perf_counter()
        boot = PatientBootstrap(patients, args.resamples)
        saliency_intervals(scores, boot)
        saliency_s = time.perf_counter() - tic
        saliency_tests(scores, "m0", METRICS)
        classification_intervals(labels, probs, ("Normal", "CHF", "pneumonia"), boot)
        classification_tests(labels, probs, "c0", ("Normal", "CHF", "pneumonia"), boot)
        total_s = time.perf_counter() - tic
        tic = time.perf_counter()
        _loop_intervals(scores, patients, args.resamples)
        loop_s = time.perf_counter() - tic
        ratio = loop_s / saliency_s
        fields[f"n{n}"] = {"all_statistics_s": round(total_s, 2), "saliency_cells_s": round(saliency_s, 2),
                           "saliency_cells_loop_s": round(loop_s, 2), "weights_mib": round(n * args.resamples * 8 / 2**20, 1)}
        print(f"{n} images: all statistics {total_s:.2f} s (48 saliency cells {saliency_s:.2f} s vectorised, "
              f"{loop_s:.2f} s by a loop)")
    return report("bootstrap", ratio, TARGET, **fields)


if __name__ == "__main__":
    main()
