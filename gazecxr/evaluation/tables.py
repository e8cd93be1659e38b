"""Markdown tables of an evaluation's metrics, laid out like the paper's Tables 4.1 and 4.2."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gazecxr import CLASS_NAMES
from gazecxr.data.provenance import SYNTHETIC_NOTICE

PAPER_CLASSIFICATION: dict[str, dict[str, float | None]] = {
    "Ours": {"Normal": 0.953, "CHF": 0.927, "pneumonia": 0.894, "auc_macro": None, "auc_micro": 0.925,
             "accuracy": 0.800},
    "DNet201-CL": {"Normal": 0.961, "CHF": 0.865, "pneumonia": 0.859, "auc_macro": None, "auc_micro": 0.889,
                   "accuracy": 0.750},
}
"""Paper Table 4.1 (100 test images): the proposed model and the DenseNet-201 with contrastive
pretraining (this package's ``stage1``). The paper's single "AUC" is the released code's micro AUC."""

PAPER_SALIENCY: dict[str, dict[str, tuple[float, float] | None]] = {
    "Ours": {"kl": (0.706, 0.183), "cc": (0.576, 0.113), "hs": (0.552, 0.055), "nss": None},
    "Res_SE-UNet": {"kl": (0.747, 0.193), "cc": (0.560, 0.108), "hs": (0.539, 0.058), "nss": None},
    "UNet_S": {"kl": (0.781, 0.202), "cc": (0.531, 0.109), "hs": (0.527, 0.056), "nss": None},
}
"""Paper Table 4.2 (mean ± std over 100 test images): the proposed model, the Res-SE UNet alone
(``resse_unet`` here) and the standard UNet (``standard_unet``); NSS is not reported."""

CLASS_LABELS: dict[str, str] = {"Normal": "Normal", "CHF": "Heart failure", "pneumonia": "Pneumonia"}
"""Row labels of the per-class AUCs, as in Table 4.1."""

SALIENCY_ROWS: dict[str, str] = {"kl": "KL ↓", "cc": "CC ↑", "hs": "HS ↑", "nss": "NSS ↑"}

MISSING = "—"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:.{digits}f}"


def _mean_std(summary: Mapping[str, float] | Sequence[float] | None) -> str:
    if summary is None:
        return MISSING
    mean, std = (summary["mean"], summary["std"]) if isinstance(summary, Mapping) else summary
    if mean is None or not math.isfinite(mean):
        return MISSING
    return f"{mean:.3f} ± {_number(std)}"


def _p_value(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return MISSING
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def classification_table(classification: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 4.1: per-class, macro and micro AUC and accuracy; one column per method, then the paper's."""
    methods = list(classification)
    header = ["Metric", *methods, *(f"Paper: {name}" for name in PAPER_CLASSIFICATION)]
    rows = []
    for key, label in [*((c, f"AUC ({CLASS_LABELS[c]}) ↑") for c in CLASS_NAMES), ("auc_macro", "AUC (macro) ↑"),
                       ("auc_micro", "AUC (micro) ↑"), ("accuracy", "Accuracy ↑")]:
        ours = [classification[m]["auc_per_class"].get(key) if key in CLASS_NAMES else classification[m][key]
                for m in methods]
        paper = [ref[key] for ref in PAPER_CLASSIFICATION.values()]
        rows.append([label, *map(_number, ours), *map(_number, paper)])
    return _table(header, rows)


def saliency_table(saliency: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Table 4.2: KL, CC, HS and NSS as mean ± std; one column per method, then the paper's."""
    methods = list(saliency)
    header = ["Metric", *methods, *(f"Paper: {name}" for name in PAPER_SALIENCY)]
    rows = [[label, *(_mean_std(saliency[m].get(key)) for m in methods),
             *(_mean_std(ref[key]) for ref in PAPER_SALIENCY.values())]
            for key, label in SALIENCY_ROWS.items()]
    return _table(header, rows)


def ttest_table(tests: Sequence[Mapping[str, Any]]) -> str:
    """Paired two-sided t-tests: one row per (method A, method B, metric)."""
    rows = [[t["a"], t["b"], t["metric"].upper(), _number(t.get("mean_diff"), 4), _number(t["t"], 3),
             _p_value(t["p"]) + (" *" if t["p"] is not None and t["p"] < 0.05 else "")]
            for t in tests]
    return _table(["A", "B", "Metric", "Mean diff (A − B)", "t", "p"], rows)


def synthetic_notice(metrics: Mapping[str, Any]) -> list[str]:
    """The markdown notice line for a report on synthetic data (``metrics["synthetic"]``), else nothing."""
    return [f"> **{SYNTHETIC_NOTICE}**"] if metrics.get("synthetic") else []


def markdown_report(metrics: Mapping[str, Any]) -> str:
    """The whole ``tables.md``: classification, saliency and t-test tables with their notes."""
    checkpoint = metrics["checkpoint"]
    notes = "\n".join(f"- {note}" for note in metrics.get("notes", []))
    return "\n\n".join([
        f"# Evaluation of {checkpoint['stage3']} ({metrics['split']} split, n = {metrics['n_test']})",
        *synthetic_notice(metrics),
        "## Classification (cf. paper Table 4.1)",
        classification_table(metrics["classification"]),
        "The paper reports a single AUC, computed by its released code as the micro AUC; "
        "its macro AUC is not reported.",
        "## Visual saliency prediction, mean ± std over images (cf. paper Table 4.2)",
        saliency_table(metrics["saliency"]),
        "## Paired two-sided t-tests over images (* p < 0.05)",
        ttest_table(metrics["tests"]),
        "## Notes",
        notes,
    ]) + "\n"
