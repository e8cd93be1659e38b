"""Markdown tables of an evaluation's metrics, laid out like the paper's Tables 4.1 and 4.2."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gazecxr import CLASS_NAMES
from gazecxr.data.provenance import SYNTHETIC_NOTICE


def _paper_class(normal: float, chf: float, pneumonia: float, micro: float, accuracy: float) -> dict[str, float | None]:
    return {"Normal": normal, "CHF": chf, "pneumonia": pneumonia, "auc_macro": None, "auc_micro": micro,
            "accuracy": accuracy}


PAPER_CLASSIFICATION: dict[str, dict[str, float | None]] = {
    "Ours": _paper_class(0.953, 0.927, 0.894, 0.925, 0.800),
    "MT-UNet": _paper_class(0.935, 0.881, 0.687, 0.847, 0.640),
    "DNet201-CL": _paper_class(0.961, 0.865, 0.859, 0.889, 0.750),
    "DNet201": _paper_class(0.964, 0.897, 0.849, 0.880, 0.690),
    "IRNetv2": _paper_class(0.878, 0.873, 0.602, 0.794, 0.600),
    "GazeGNN": _paper_class(0.899, 0.881, 0.823, 0.868, 0.730),
}
"""Paper Table 4.1 (100 test images), every column. The paper's single "AUC" is the released code's micro
AUC; its macro AUC is not reported. GazeGNN uses the radiologist's gaze at test time (oracle)."""


def _paper_saliency(kl: tuple[float, float], cc: tuple[float, float],
                    hs: tuple[float, float]) -> dict[str, tuple[float, float] | None]:
    return {"kl": kl, "cc": cc, "hs": hs, "nss": None, "auc_judd": None, "sauc": None}


PAPER_SALIENCY: dict[str, dict[str, tuple[float, float] | None]] = {
    "Ours": _paper_saliency((0.706, 0.183), (0.576, 0.113), (0.552, 0.055)),
    "MT-UNet": _paper_saliency((0.747, 0.185), (0.545, 0.109), (0.535, 0.055)),
    "Res_SE-UNet": _paper_saliency((0.747, 0.193), (0.560, 0.108), (0.539, 0.058)),
    "UNet_S": _paper_saliency((0.781, 0.202), (0.531, 0.109), (0.527, 0.056)),
}
"""Paper Table 4.2 (mean ± std over 100 test images), every column; NSS, AUC-Judd and sAUC are not
reported."""

PAPER_NAMES: dict[str, str] = {
    "full": "Ours", "fusion": "Ours", "mtunet": "MT-UNet", "densenet_cl": "DNet201-CL", "stage1": "DNet201-CL",
    "densenet": "DNet201", "irnetv2": "IRNetv2", "gazegnn": "GazeGNN", "resse_unet": "Res_SE-UNet",
    "standard_unet": "UNet_S",
}
"""Our method name → the paper's column name for it."""

ORACLE_LABEL = "uses test-time gaze (oracle)"
"""The mark of methods (GazeGNN) that need the radiologist's gaze at test time."""

CLASS_LABELS: dict[str, str] = {"Normal": "Normal", "CHF": "Heart failure", "pneumonia": "Pneumonia"}
"""Row labels of the per-class AUCs, as in Table 4.1."""

SALIENCY_ROWS: dict[str, str] = {"kl": "KL ↓", "cc": "CC ↑", "hs": "HS ↑", "nss": "NSS ↑", "auc_judd": "AUC-Judd ↑",
                                 "sauc": "sAUC ↑"}

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


def parameters_cell(count: float | None) -> str:
    """A parameter count in millions."""
    return MISSING if count is None else f"{count / 1e6:.2f} M"


def seconds_cell(seconds: float | None) -> str:
    """A training time in s, min or h."""
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def method_label(name: str, oracle: Sequence[str] = ("gazegnn",)) -> str:
    """``name``, marked when the method uses test-time gaze."""
    return f"{name} ({ORACLE_LABEL})" if name in oracle else name


def _cost_rows(methods: Sequence[str], costs: Mapping[str, Mapping[str, float | None]], n_paper: int) -> list[list[str]]:
    return [[label, *(fmt(costs.get(m, {}).get(key)) for m in methods), *([MISSING] * n_paper)]
            for key, label, fmt in (("parameters", "Parameters", parameters_cell),
                                    ("train_seconds", "Training time", seconds_cell))]


def _p_value(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return MISSING
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def classification_table(classification: Mapping[str, Mapping[str, Any]],
                         costs: Mapping[str, Mapping[str, float | None]] | None = None,
                         oracle: Sequence[str] = ("gazegnn",)) -> str:
    """Table 4.1: per-class, macro and micro AUC and accuracy, then parameters and training time; one
    column per method, then the paper's."""
    methods = list(classification)
    header = ["Metric", *(method_label(m, oracle) for m in methods),
              *(f"Paper: {method_label(name, ('GazeGNN',))}" for name in PAPER_CLASSIFICATION)]
    rows = []
    for key, label in [*((c, f"AUC ({CLASS_LABELS[c]}) ↑") for c in CLASS_NAMES), ("auc_macro", "AUC (macro) ↑"),
                       ("auc_micro", "AUC (micro) ↑"), ("accuracy", "Accuracy ↑")]:
        ours = [classification[m]["auc_per_class"].get(key) if key in CLASS_NAMES else classification[m][key]
                for m in methods]
        paper = [ref[key] for ref in PAPER_CLASSIFICATION.values()]
        rows.append([label, *map(_number, ours), *map(_number, paper)])
    if costs is not None:
        rows += _cost_rows(methods, costs, len(PAPER_CLASSIFICATION))
    return _table(header, rows)


def saliency_table(saliency: Mapping[str, Mapping[str, Mapping[str, float]]],
                   costs: Mapping[str, Mapping[str, float | None]] | None = None) -> str:
    """Table 4.2: KL, CC, HS, NSS, AUC-Judd and sAUC as mean ± std, then parameters and training time; one
    column per method, then the paper's."""
    methods = list(saliency)
    header = ["Metric", *methods, *(f"Paper: {name}" for name in PAPER_SALIENCY)]
    rows = [[label, *(_mean_std(saliency[m].get(key)) for m in methods),
             *(_mean_std(ref[key]) for ref in PAPER_SALIENCY.values())]
            for key, label in SALIENCY_ROWS.items()]
    if costs is not None:
        rows += _cost_rows(methods, costs, len(PAPER_SALIENCY))
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


def fixation_source_line(fixations: Mapping[str, Any] | None) -> str:
    """One sentence on what NSS, AUC-Judd and sAUC were computed from."""
    if fixations and fixations.get("source") == "recorded":
        return (f"NSS, AUC-Judd and sAUC on the recorded fixations ({fixations['fixations']} fixations, "
                f"{fixations['records_with_fixations']} of {fixations['records']} images).")
    return ("NSS on the top-5 % ground-truth approximation (the data file stores no fixations); AUC-Judd and "
            f"sAUC not available ({MISSING}).")


def anatomy_table(anatomy: Mapping[str, Any]) -> str:
    """Markdown: per map and class, the mean ± std share of the map's mass in each anatomical region."""
    groups = [*anatomy["classes"], "all"]
    rows = [[method, group, *(_mean_std(by[group][r]) if group in by else MISSING for r in anatomy["regions"])]
            for method, by in anatomy["methods"].items() for group in groups]
    return _table(["map", "class", *anatomy["regions"]], rows)


def inter_reader_table(summary: Mapping[str, Any]) -> str:
    """Human consistency: the inter-reader row (each reader predicted by the mean of the others) beside every
    method scored against the same single readers, with the paired test of each method against it."""
    if not summary.get("images"):
        return summary.get("note", "no test image has two or more readers: no inter-reader ceiling")
    scores = summary["scores"]
    p = {(t["method"], t["metric"]): t["p"] for t in summary.get("tests", [])}
    metrics = [m for m in SALIENCY_ROWS if m in scores["inter_reader"]]

    def cell(method: str, metric: str) -> str:
        value = _mean_std(scores[method].get(metric))
        return value if method == "inter_reader" else f"{value} (p {_p_value(p.get((method, metric)))})"

    rows = [[method, *(cell(method, m) for m in metrics)] for method in scores]
    return _table(["Against single readers", *(SALIENCY_ROWS[m] for m in metrics)], rows)


def markdown_report(metrics: Mapping[str, Any]) -> str:
    """The whole ``tables.md``: classification, saliency and t-test tables with their notes."""
    checkpoint = metrics["checkpoint"]
    costs = metrics.get("costs")
    notes = "\n".join(f"- {note}" for note in metrics.get("notes", []))
    return "\n\n".join([
        f"# Evaluation of {checkpoint['stage3']} ({metrics['split']} split, n = {metrics['n_test']})",
        *synthetic_notice(metrics),
        "## Classification (cf. paper Table 4.1)",
        classification_table(metrics["classification"], costs, metrics.get("oracle", ())),
        "The paper reports a single AUC, computed by its released code as the micro AUC; "
        "its macro AUC is not reported. Parameters and training time include the frozen parents' "
        "(the whole model behind the column).",
        "## Visual saliency prediction, mean ± std over images (cf. paper Table 4.2)",
        saliency_table(metrics["saliency"], costs),
        fixation_source_line(metrics.get("fixations")),
        "## Paired two-sided t-tests over images (* p < 0.05)",
        ttest_table([*metrics["tests"], *metrics.get("classification_tests", [])]),
        *(["## Human consistency: inter-reader ceiling (p: paired test against the inter-reader row)",
           inter_reader_table(metrics["inter_reader"])] if metrics.get("inter_reader") else []),
        *(["## Share of map mass per anatomical region and class (gaze, saliency, Grad-CAM)",
           anatomy_table(metrics["anatomy"])] if metrics.get("anatomy") else []),
        "## Notes",
        notes,
    ]) + "\n"
