"""Markdown tables of an evaluation's metrics, laid out like the paper's Tables 4.1 and 4.2."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gazecxr import CLASS_NAMES
from gazecxr.data.provenance import SYNTHETIC_NOTICE
from gazecxr.evaluation.comparisons import BASELINE_ORDER, holm_note, saliency_order
from gazecxr.metrics.statistics import format_interval


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


PAPER_ANCHOR = "paper, 100 real test images"
"""The label of the paper's anchor rows and columns (Tables 4.1 and 4.2, measured on EGD-CXR's 100-image
test split)."""

REFLACX_ANCHORS = ("REFLACX reference (Lanfredi et al.'s saliency-map study, released tables; each radiologist "
                   "against the mean of the other four on the images read by all five): inter-observer NCC 0.632 "
                   "[0.606, 0.658], AUC 0.790 [0.782, 0.799], sNCC 0.028, sAUC 0.558; lung segmentation (convex "
                   "hull) NCC 0.637 [0.615, 0.659], AUC 0.735, sNCC −0.187, sAUC 0.505; best Grad-CAM NCC 0.437, "
                   "AUC 0.696, sNCC −0.067, sAUC 0.522. Anatomy alone matches human agreement on dense metrics; "
                   "shuffled metrics separate them. (NCC there is our CC.)")
"""The real-data reference of a REFLACX saliency table's notes."""


def _cell(value: float | None, interval: Mapping[str, Any] | None) -> str:
    """``value`` with its interval when there is one: ``0.925 [0.880, 0.960]``."""
    if interval is not None:
        return format_interval(interval, missing=MISSING)
    return _number(value)


def classification_table(classification: Mapping[str, Mapping[str, Any]],
                         costs: Mapping[str, Mapping[str, float | None]] | None = None,
                         oracle: Sequence[str] = ("gazegnn",),
                         intervals: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Table 4.1: per-class, macro and micro AUC and accuracy (each with its 95 % interval from
    ``intervals`` when given), then parameters and training time; one column per method, then the paper's."""
    methods = list(classification)
    header = ["Metric", *(method_label(m, oracle) for m in methods),
              *(f"{method_label(name, ('GazeGNN',))} ({PAPER_ANCHOR})" for name in PAPER_CLASSIFICATION)]
    rows = []
    for key, label in [*((c, f"AUC ({CLASS_LABELS[c]}) ↑") for c in CLASS_NAMES), ("auc_macro", "AUC (macro) ↑"),
                       ("auc_micro", "AUC (micro) ↑"), ("accuracy", "Accuracy ↑"), ("ece", "ECE ↓")]:
        ours = []
        for m in methods:
            by = (intervals or {}).get(m)
            interval = None if by is None else (by["auc_per_class"].get(key) if key in CLASS_NAMES else by.get(key))
            value = classification[m]["auc_per_class"].get(key) if key in CLASS_NAMES else classification[m][key]
            ours.append(_cell(value, interval))
        paper = [ref.get(key) for ref in PAPER_CLASSIFICATION.values()]
        rows.append([label, *ours, *map(_number, paper)])
    if costs is not None:
        rows += _cost_rows(methods, costs, len(PAPER_CLASSIFICATION))
    return _table(header, rows)


def _saliency_cell(summary: Mapping[str, float] | None, interval: Mapping[str, Any] | None) -> str:
    text = _mean_std(summary)
    ci = (interval or {}).get("ci")
    if text == MISSING or ci is None:
        return text
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"


def saliency_table(saliency: Mapping[str, Mapping[str, Mapping[str, float]]],
                   costs: Mapping[str, Mapping[str, float | None]] | None = None,
                   intervals: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Table 4.2 with one row per method: KL, CC, HS, NSS, AUC-Judd and sAUC as mean ± std over images with
    the mean's 95 % interval (``intervals``), parameters and training time. Rows top to bottom: the models,
    the paper's rows (labelled `PAPER_ANCHOR`), another image's gaze, lungs / chest box, centre bias,
    uniform."""
    order = saliency_order(list(saliency))
    models = [m for m in order if m not in BASELINE_ORDER]
    header = ["Method", *SALIENCY_ROWS.values(), *(["Params", "Train time"] if costs is not None else [])]

    def row(name: str) -> list[str]:
        cost = [] if costs is None else [parameters_cell(costs.get(name, {}).get("parameters")),
                                         seconds_cell(costs.get(name, {}).get("train_seconds"))]
        return [name, *(_saliency_cell(saliency[name].get(k), (intervals or {}).get(name, {}).get(k))
                        for k in SALIENCY_ROWS), *cost]

    paper = [[f"{name} ({PAPER_ANCHOR})", *(_mean_std(ref[k]) for k in SALIENCY_ROWS),
              *([MISSING, MISSING] if costs is not None else [])] for name, ref in PAPER_SALIENCY.items()]
    rows = [*(row(m) for m in models), *paper, *(row(m) for m in order if m in BASELINE_ORDER)]
    return _table(header, rows)


def _p_cell(p: float | None) -> str:
    return _p_value(p) + (" *" if p is not None and math.isfinite(p) and p < 0.05 else "")


def saliency_test_table(tests: Sequence[Mapping[str, Any]]) -> str:
    """The saliency tests, one row per (A, B, metric): mean difference, the paired t-test's and the Wilcoxon
    signed-rank test's raw and Holm-adjusted p (* p < 0.05)."""
    rows = [[t["a"], t["b"], t["metric"].upper(), str(t.get("n", MISSING)), _number(t.get("mean_diff"), 4),
             _number(t.get("t"), 3), _p_cell(t.get("p")), _p_cell(t.get("p_holm")), _p_cell(t.get("wilcoxon_p")),
             _p_cell(t.get("wilcoxon_p_holm"))] for t in tests]
    return _table(["A", "B", "Metric", "n", "Mean diff (A − B)", "t", "t-test p", "p (Holm)", "Wilcoxon p",
                   "p (Holm)"], rows)


def ttest_table(tests: Sequence[Mapping[str, Any]]) -> str:
    """Classification (and other) tests, one row per (A, B, metric): the test, the difference A − B with its
    95 % interval where the test gives one, raw and Holm-adjusted p (* p < 0.05)."""
    rows = []
    for t in tests:
        ci = t.get("ci")
        diff = _number(t.get("diff", t.get("mean_diff")), 4)
        if ci is not None:
            diff += f" [{ci[0]:.4f}, {ci[1]:.4f}]"
        rows.append([t["a"], t["b"], t["metric"], t.get("test", "paired t-test"), diff, _p_cell(t.get("p")),
                     _p_cell(t.get("p_holm"))])
    return _table(["A", "B", "Metric", "Test", "Diff (A − B) [95 % CI]", "p", "p (Holm)"], rows)


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
    """Human consistency: the inter-reader row (each reader predicted by the mean of the others) on top, then
    every method scored against the same single readers (models, then the baselines), each cell mean ± std
    with the mean's 95 % interval and, for a method, the Holm-adjusted p of its paired t-test against the
    inter-reader row."""
    if not summary.get("images"):
        return summary.get("note", "no test image has two or more readers: no inter-reader ceiling")
    scores, intervals = summary["scores"], summary.get("intervals", {})
    tests = {(t["method"], t["metric"]): t for t in summary.get("tests", [])}
    metrics = [m for m in SALIENCY_ROWS if m in scores["inter_reader"]]

    def cell(method: str, metric: str) -> str:
        value = _saliency_cell(scores[method].get(metric), intervals.get(method, {}).get(metric))
        if method == "inter_reader":
            return value
        test = tests.get((method, metric), {})
        return f"{value} (p {_p_value(test.get('p'))}, Holm {_p_value(test.get('p_holm'))})"

    order = ["inter_reader", *saliency_order([m for m in scores if m != "inter_reader"])]
    rows = [[method, *(cell(method, m) for m in metrics)] for method in order]
    return _table(["Against single readers", *(SALIENCY_ROWS[m] for m in metrics)], rows)


def markdown_report(metrics: Mapping[str, Any]) -> str:
    """The whole ``tables.md``: classification, saliency, test and consistency tables with their notes."""
    checkpoint = metrics["checkpoint"]
    costs = metrics.get("costs")
    intervals = metrics.get("intervals", {})
    notes = "\n".join(f"- {note}" for note in metrics.get("notes", []))
    reflacx = any(str(s).upper() == "REFLACX" for s in metrics.get("saliency_by_source", {}))
    return "\n\n".join([
        f"# Evaluation of {checkpoint['stage3']} ({metrics['split']} split, n = {metrics['n_test']})",
        *synthetic_notice(metrics),
        "## Classification (cf. paper Table 4.1)",
        classification_table(metrics["classification"], costs, metrics.get("oracle", ()),
                             intervals.get("classification")),
        "The paper reports a single AUC, computed by its released code as the micro AUC; "
        "its macro AUC is not reported. Parameters and training time include the frozen parents' "
        "(the whole model behind the column). Intervals (95 %): per-class and macro AUC by DeLong; micro AUC, "
        f"accuracy and ECE by the patient bootstrap ({metrics.get('statistics', {}).get('interval', MISSING)}).",
        "## Visual saliency prediction, mean ± std over images [95 % interval of the mean] (cf. paper Table 4.2)",
        saliency_table(metrics["saliency"], costs, intervals.get("saliency")),
        fixation_source_line(metrics.get("fixations")),
        *([REFLACX_ANCHORS] if reflacx else []),
        "## Saliency tests over images: paired t-test and Wilcoxon signed-rank (* p < 0.05)",
        saliency_test_table(metrics["tests"]),
        holm_note("Saliency tests", "full"),
        *(["## Classification tests: DeLong (AUC), paired patient bootstrap (micro AUC), McNemar exact (accuracy)",
           ttest_table(metrics["classification_tests"]), holm_note("Classification tests", "full")]
          if metrics.get("classification_tests") else []),
        *(["## Human consistency: inter-reader ceiling (p: paired t-test against the inter-reader row)",
           inter_reader_table(metrics["inter_reader"]),
           *([holm_note("Human consistency", "inter_reader").replace("'inter_reader' against every other row",
                                                                      "every row against 'inter_reader'")]
             if metrics["inter_reader"].get("images") else [])]
          if metrics.get("inter_reader") else []),
        *(["## Share of map mass per anatomical region and class (gaze, saliency, Grad-CAM)",
           anatomy_table(metrics["anatomy"])] if metrics.get("anatomy") else []),
        "## Notes",
        notes,
    ]) + "\n"
