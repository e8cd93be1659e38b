"""Metrics: saliency agreement, fixation prediction, diagnosis quality, multi-label findings,
localisation, anatomy shares, and the statistics that compare methods.

The submodules: ``saliency`` (KL, CC, HS, NSS, AUC-Judd, sAUC), ``classification`` (AUC,
accuracy, calibration), ``multilabel`` (per-finding AUROC/AP/ECE and thresholds),
``localisation`` (pointing game, Diff, EHR-AUC, IoU), ``anatomy`` (gaze share per region) and
``statistics`` (paired tests). The names below are the ones most code needs.
"""

from gazecxr.metrics._arrays import EPS, finite_rows, score_rows
from gazecxr.metrics.classification import (
    PROB_SUM_ATOL,
    binned_means,
    classification_metrics,
    reliability_curve,
)
from gazecxr.metrics.saliency import (
    auc_judd,
    correlation_coefficient,
    fixated_map,
    fixation_counts,
    fixation_pixels,
    histogram_similarity,
    kl_divergence,
    nss,
    shuffled_auc,
)
from gazecxr.metrics.statistics import paired_ttest

__all__ = [
    "finite_rows",
    "score_rows",
    "EPS",
    "PROB_SUM_ATOL",
    "kl_divergence",
    "correlation_coefficient",
    "histogram_similarity",
    "nss",
    "auc_judd",
    "shuffled_auc",
    "fixation_pixels",
    "fixation_counts",
    "fixated_map",
    "classification_metrics",
    "reliability_curve",
    "binned_means",
    "paired_ttest",
]
