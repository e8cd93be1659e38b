"""The intervals and tests of a report's tables, with the field's test for each compared quantity
(`gazecxr.metrics.statistics`) and Holm–Bonferroni within each table's family.

- Saliency table (per-image KL, CC, HS, NSS, AUC-Judd, sAUC): each cell the mean over images with its
  patient-bootstrap interval; the reference method against every other row by a paired t-test and a
  Wilcoxon signed-rank test; family = (metric, test): the reference against every other row on that metric.
- Classification table: per-class and macro AUC with DeLong intervals, micro AUC, accuracy, balanced
  accuracy and ECE with patient-bootstrap intervals; the reference against every other row by DeLong
  (per class, macro in closed form), the paired patient bootstrap (micro AUC: no closed form) and McNemar's
  exact test (accuracy); family = metric.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gazecxr.metrics.statistics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PatientBootstrap,
    adjust_family,
    delong_class_intervals,
    delong_one_vs_rest,
    interval_cell,
    mcnemar_exact,
    paired_score_tests,
    weighted_accuracy,
    weighted_ece,
    weighted_mean,
    weighted_micro_auc,
)

BASELINE_ORDER: tuple[str, ...] = ("other_image_gaze", "lung_prior", "chest_box_prior", "center_bias", "uniform")
"""The non-learned saliency rows, top to bottom below the models (a table reads, bottom to top: uniform,
centre bias, chest box / lungs, another image's gaze, the models, then the inter-reader ceiling)."""

SALIENCY_TESTS: tuple[tuple[str, str], ...] = (("p", "paired t-test"), ("wilcoxon_p", "Wilcoxon signed-rank"))
"""The p-value keys of a saliency test record and their tests (each Holm-adjusted in its own family)."""

__all__ = ["BASELINE_ORDER", "add_bootstrap_arguments", "classification_intervals", "classification_tests", "holm_note", "saliency_intervals",
           "saliency_order", "saliency_tests"]


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap N`` and ``--bootstrap-seed S`` of the commands that write a report."""
    parser.add_argument("--bootstrap", type=_non_negative, default=DEFAULT_RESAMPLES, metavar="N",
                        help="patient-bootstrap resamples for the 95 %% intervals and the micro-AUC test "
                        "(0 turns the bootstrap off; DeLong intervals and the other tests remain) "
                        "(default: %(default)s)")
    parser.add_argument("--bootstrap-seed", type=int, default=DEFAULT_SEED, metavar="S",
                        help="seed of the bootstrap resampling, also of the other_image_gaze pairing "
                        "(default: %(default)s)")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def saliency_order(methods: Sequence[str]) -> list[str]:
    """``methods`` in table order, top to bottom: the models (in their given order), then the baselines of
    `BASELINE_ORDER` present."""
    return [m for m in methods if m not in BASELINE_ORDER] + [m for m in BASELINE_ORDER if m in methods]


def saliency_intervals(scores: Mapping[str, Mapping[str, np.ndarray]],
                       boot: PatientBootstrap) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and metric: the mean of the per-image scores (images with a value) and its
    patient-bootstrap interval (`interval_cell`); a method's metrics in one matrix product."""
    out = {}
    for name, by_metric in scores.items():
        metrics = list(by_metric)
        cells = boot.interval(weighted_mean(np.stack([np.asarray(by_metric[m], np.float64) for m in metrics], 1)))
        out[name] = dict(zip(metrics, cells))
    return out


def saliency_tests(scores: Mapping[str, Mapping[str, np.ndarray]], reference: str,
                   metrics: Sequence[str]) -> list[dict[str, Any]]:
    """The ``reference`` method against every other method, per metric both have, over the images where both
    values are finite (at least 2): `paired_score_tests` (t-test and Wilcoxon) with Holm-adjusted
    ``p_holm`` and ``wilcoxon_p_holm`` within each (metric, test) family."""
    tests = []
    for other in scores:
        for metric in metrics:
            if other == reference or metric not in scores.get(reference, {}) or metric not in scores[other]:
                continue
            a, b = np.asarray(scores[reference][metric]), np.asarray(scores[other][metric])
            if (np.isfinite(a) & np.isfinite(b)).sum() >= 2:
                tests.append({"a": reference, "b": other, "metric": metric, **paired_score_tests(a, b)})
    for metric in {t["metric"] for t in tests}:
        family = [t for t in tests if t["metric"] == metric]
        for key, _ in SALIENCY_TESTS:
            adjust_family(family, key)
    return tests


def classification_intervals(labels: np.ndarray, probs: Mapping[str, np.ndarray], class_names: Sequence[str],
                             boot: PatientBootstrap) -> dict[str, dict[str, dict[str, Any]]]:
    """Per classification method: ``auc_per_class`` {class: DeLong interval} and ``auc_macro`` (DeLong, joint
    covariance), ``auc_micro``, ``accuracy``, ``balanced_accuracy`` and ``ece`` (patient bootstrap), each an
    `interval_cell` (value None where undefined)."""
    out: dict[str, dict[str, Any]] = {}
    present = np.eye(len(class_names))[labels]
    for name, p in probs.items():
        delong = delong_class_intervals(labels, p, class_names)
        per_class = {c: (interval_cell(d["value"], d["ci"], "DeLong") if d is not None
                         else interval_cell(None, None, "DeLong")) for c, d in delong["per_class"].items()}
        macro = delong["macro"]
        recall = [weighted_mean(np.where(labels == k, p.argmax(1) == k, np.nan)) for k in range(len(class_names))
                  if present[:, k].any()]
        accuracy, micro, balanced, ece = boot.interval(lambda w, p=p, recall=recall: np.stack([
            weighted_accuracy(labels, p)(w), weighted_micro_auc(labels, p)(w),
            np.nanmean(np.stack([r(w) for r in recall], axis=1), axis=1), weighted_ece(labels, p)(w)], axis=1))
        out[name] = {"auc_per_class": per_class,
                     "auc_macro": interval_cell(macro["value"], macro["ci"], macro["method"]) if macro
                     else interval_cell(None, None, "DeLong"),
                     "auc_micro": micro, "accuracy": accuracy, "balanced_accuracy": balanced, "ece": ece}
    return out


def classification_tests(labels: np.ndarray, probs: Mapping[str, np.ndarray], reference: str,
                         class_names: Sequence[str], boot: PatientBootstrap) -> list[dict[str, Any]]:
    """The ``reference`` classifier against every other one on the same images: DeLong per class (metric
    ``auc:<class>``) and on the macro AUC (``auc_macro``), the paired patient bootstrap on the micro AUC
    (``auc_micro``, when the bootstrap is on) and McNemar's exact test on accuracy (``accuracy``); each record
    ``a``, ``b``, ``metric``, ``test``, ``diff`` (a − b), ``ci`` (of the difference; None for McNemar), ``p``
    and ``p_holm`` (Holm within the metric's family: the reference against every other row)."""
    tests: list[dict[str, Any]] = []
    ref = probs[reference]
    for other, p in probs.items():
        if other == reference:
            continue
        delong = delong_one_vs_rest(labels, ref, p, class_names)
        for c, d in delong["per_class"].items():
            if d is not None:
                tests.append({"a": reference, "b": other, "metric": f"auc:{c}", "test": "DeLong", **_keep(d)})
        if delong["macro"] is not None:
            tests.append({"a": reference, "b": other, "metric": "auc_macro", "test": "DeLong (macro, joint covariance)",
                          **_keep(delong["macro"])})
        micro = boot.paired_difference(weighted_micro_auc(labels, ref), weighted_micro_auc(labels, p))
        if micro is not None and micro["p"] is not None:
            tests.append({"a": reference, "b": other, "metric": "auc_micro", "test": "paired patient bootstrap",
                          "diff": micro["diff"], "ci": micro["ci"], "p": micro["p"], "n": len(labels)})
        mc = mcnemar_exact(ref.argmax(1) == labels, p.argmax(1) == labels)
        tests.append({"a": reference, "b": other, "metric": "accuracy", "test": "McNemar exact", "diff": mc["diff"],
                      "ci": None, "p": mc["p"], "n": mc["n"], "a_only": mc["a_only"], "b_only": mc["b_only"]})
    for metric in {t["metric"] for t in tests}:
        adjust_family([t for t in tests if t["metric"] == metric])
    return tests


def _keep(delong: Mapping[str, Any]) -> dict[str, Any]:
    return {"diff": delong["diff"], "ci": delong["ci"], "z": delong["z"], "p": delong["p"], "n": delong["n"]}


def holm_note(table: str, reference: str) -> str:
    """The one-line note of a table's family and correction."""
    return (f"{table}: family = '{reference}' against every other row, one family per metric (and per test); "
            "Holm–Bonferroni step-down correction within each family; raw and Holm-adjusted p side by side.")
