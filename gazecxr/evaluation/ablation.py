"""The paper's whole comparison (Tables 4.1 and 4.2) trained over several seeds and evaluated on the test split.

Saliency: the full dual-encoder model, MT-UNet, the Res-SE UNet alone, the standard UNet, and the trivial
uniform and centre-bias maps. Classification: the fusion classifier, MT-UNet, DenseNet with and without
contrastive pretraining, Inception-ResNet-v2 and GazeGNN (which uses test-time gaze: an oracle). Entries
already in the registry for the same method and resolved config are reused. A multi-label (findings) task
compares our methods only (the peers are 3-class models), scored with ``gazecxr.metrics.multilabel``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.provenance import is_synthetic_attrs
from gazecxr.evaluation.artifacts import json_safe, write_text_atomic
from gazecxr.evaluation.baselines import BASELINES, baseline_predictors, supported_baselines
from gazecxr.evaluation.comparisons import (
    classification_tests,
    holm_note,
    saliency_order,
    saliency_tests,
)
from gazecxr.evaluation.html_report import Gallery, dataset_sources, write_html_report
from gazecxr.evaluation.outputs import SplitOutputs, mean_std
from gazecxr.evaluation.report import (
    NO_COST,
    ORACLE_METHODS,
    fixation_notes,
    method_cost,
    run_split,
)
from gazecxr.evaluation.saliency_methods import (
    SALIENCY_METRICS,
    center_bias_map,
    constant_predictor,
    entry_predictor,
    uniform_map,
)
from gazecxr.evaluation.tables import (
    CLASS_LABELS,
    MISSING,
    ORACLE_LABEL,
    PAPER_ANCHOR,
    PAPER_CLASSIFICATION,
    PAPER_NAMES,
    PAPER_SALIENCY,
    SALIENCY_ROWS,
    method_label,
    parameters_cell,
    saliency_test_table,
    seconds_cell,
    synthetic_notice,
    ttest_table,
)
from gazecxr.metrics import EPS, classification_metrics
from gazecxr.metrics.multilabel import multilabel_metrics
from gazecxr.metrics.statistics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PatientBootstrap,
    Statistic,
    adjust_family,
    delong_multilabel,
    seed_summary,
    weighted_accuracy,
    weighted_macro_auc,
    weighted_mean,
    weighted_micro_auc,
)
from gazecxr.tasks import TaskSpec, task_from_record, task_of
from gazecxr.training.data import make_loader
from gazecxr.training.methods import METHODS, Method, known_entries, train_seed
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device

OURS: tuple[str, ...] = ("densenet_cl", "full", "fusion")
"""The trained parts of our model (its DenseNet, saliency model and fusion classifier)."""

SELECTABLE: dict[str, tuple[str, ...]] = {
    "ours": OURS, **{m.name: (m.name,) for m in METHODS if m.name not in ("full", "fusion")},
    "uniform": (), "center_bias": (), **{name: () for name in BASELINES},
}
"""``--methods`` names → the methods they train (uniform and center_bias train nothing)."""

SALIENCY_METHODS: tuple[str, ...] = ("full", "mtunet", "resse_unet", "standard_unet", *BASELINES, "center_bias",
                                     "uniform")
MECHANISMS: tuple[str, ...] = ("gaze_token_mask", "gdvig", "gaze_mtl")
"""The field's training-time gaze mechanisms (EG-ViT, GD-ViG, Gaze-MTL): rows only when asked for by name."""
CLASSIFICATION_METHODS: tuple[str, ...] = ("fusion", "mtunet", "densenet_cl", "densenet", "irnetv2", "gazegnn",
                                           *MECHANISMS)
"""Rows of the two tables, in the paper's column order (then the mechanisms the paper does not have)."""
REFERENCE = {"saliency": "full", "classification": "fusion"}
"""The full model, tested against every other row of its table."""

PAPER_ROWS: dict[str, dict[str, dict[str, Any]]] = {
    "saliency": {m: PAPER_SALIENCY[PAPER_NAMES[m]] for m in SALIENCY_METHODS if PAPER_NAMES.get(m) in PAPER_SALIENCY},
    "classification": {m: PAPER_CLASSIFICATION[PAPER_NAMES[m]] for m in CLASSIFICATION_METHODS if m in PAPER_NAMES},
}
"""Table → our method name → the paper's published numbers for it (Table 4.2, Table 4.1)."""


THREE_CLASS_ONLY: tuple[str, ...] = ("mtunet", "irnetv2", "gazegnn", *MECHANISMS)
"""Peer methods built for the 3 exclusive classes, left out of a multi-label (findings) ablation."""


@dataclass(frozen=True)
class Selection:
    """The methods to train (in training order) and the rows of each table."""

    methods: tuple[Method, ...]
    saliency: tuple[str, ...]
    classification: tuple[str, ...]


def select(names: Sequence[str] | None = None, multilabel: bool = False) -> Selection:
    """The selection of ``--methods`` names (when None, all but the `MECHANISMS`, which are asked for by name;
    for a ``multilabel`` task all but `THREE_CLASS_ONLY`, which it refuses); ``ours`` is always included, as
    every row is tested against it."""
    if multilabel:
        refused = sorted(set(names or ()) & set(THREE_CLASS_ONLY))
        if refused:
            raise InputError(f"method(s) {refused} classify the 3 exclusive EGD classes only; the multi-label "
                             f"task compares {[n for n in SELECTABLE if n not in THREE_CLASS_ONLY]}")
        names = [n for n in SELECTABLE if n not in THREE_CLASS_ONLY] if names is None else names
    wanted = set([n for n in SELECTABLE if n not in MECHANISMS] if names is None else names)
    unknown = sorted(wanted - set(SELECTABLE))
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; choose from {list(SELECTABLE)}")
    wanted.add("ours")
    trained = {m for name in wanted for m in SELECTABLE[name]}
    rows = wanted | trained
    return Selection(tuple(m for m in METHODS if m.name in trained),
                     tuple(m for m in SALIENCY_METHODS if m in rows),
                     tuple(m for m in CLASSIFICATION_METHODS if m in rows))


def with_supported_baselines(chosen: Selection, dataset: GazeCXRDataset) -> tuple[Selection, list[str]]:
    """``chosen`` without the record baseline rows ``dataset`` cannot have (`supported_baselines`: no lung
    masks, no chest boxes, one image), and the note saying why for each one left out."""
    supported, notes = supported_baselines(dataset, chosen.saliency)
    rows = tuple(m for m in chosen.saliency if m not in BASELINES or m in supported)
    return dataclasses.replace(chosen, saliency=rows), notes


CLASSIFICATION_COLUMNS: dict[str, str] = {
    **{c: f"AUC ({CLASS_LABELS[c]})" for c in CLASS_NAMES},
    "auc_macro": "AUC (macro)", "auc_micro": "AUC (micro)", "accuracy": "Accuracy",
}
"""Classification metric → column label (all higher is better)."""

NOTES: tuple[str, ...] = (
    "Every method is trained once per seed (config seed = 0..S-1); the full saliency model and the fusion "
    "classifier of a seed build on that seed's own DenseNet with contrastive pretraining (densenet_cl) and "
    "full saliency entries. Registry entries tagged 'ablation' whose stored config hashes equal the config "
    "to train are reused.",
    "Cells are mean ± sample standard deviation (ddof = 1) over seeds of each seed's test-split value: the "
    "mean over images of a saliency score, or the AUC / accuracy of a classifier; with one seed the "
    f"standard deviation is undefined ({MISSING}). [lo, hi]: the 95 % patient-bootstrap interval of the "
    "seed mean (test patients resampled, every seed's value recomputed on the resample and averaged); with "
    "--bootstrap 0 the Student-t interval of the mean over seeds (two seeds or more). metrics.json stores "
    "both (ci: over seeds; bootstrap_ci).",
    f"KL = Σ G·log(ε + G/(P + ε)), ε = {EPS}; CC = Pearson correlation; HS = Σ min(P, G); NSS = mean z-score "
    "at the fixated pixels; AUC-Judd = ROC area of fixated against all other pixels; sAUC = ROC area of "
    "fixated pixels against other images' fixations. uniform = uniform map, center_bias = mean training "
    "heatmap (the same for every seed).",
    "Params: parameters of the whole model behind the row, frozen parents included (full: DenseNet + "
    "saliency UNet; fusion: DenseNet + UNet + classifier). Train time: summed epoch wall time of the row's "
    "entries and their parents, mean over seeds (feature caching and evaluation not included), on the "
    "machine that ran them.",
    f"gazegnn: {ORACLE_LABEL}; it sees the radiologist's fixations of each test image, which no other row "
    "does. MT-UNet is one model in both tables.",
    "Tests: the full model (saliency: full; classification: fusion) against the row's method on the images "
    "pooled across seeds (image i under seed s of one method with image i under seed s of the other; n = "
    "images × seeds): saliency by a paired t-test and a Wilcoxon signed-rank test; classification by "
    "DeLong's test per class and on the macro AUC (joint covariance), the paired patient bootstrap on the "
    "micro AUC (a patient's images of every seed move together) and McNemar's exact test on accuracy. "
    "DeLong, McNemar and the per-image tests treat seed replicates as independent, so p understates "
    "between-seed variability. Holm–Bonferroni within each family (one per metric and test); * p < 0.05.",
    "Paper columns: Tables 4.1 and 4.2 of the paper (100 test images; its ± is over images, not seeds; its "
    "single AUC is the micro AUC): Ours ↔ full / fusion, MT-UNet ↔ mtunet, Res_SE-UNet ↔ resse_unet, "
    "UNet_S ↔ standard_unet, DNet201-CL ↔ densenet_cl, DNet201 ↔ densenet, IRNetv2 ↔ irnetv2, GazeGNN ↔ gazegnn.",
)


MULTILABEL_COLUMNS: dict[str, str] = {
    "auroc_macro": "AUROC (macro)", "auroc_micro": "AUROC (micro)", "ap_macro": "AP (macro)",
    "f1_macro": "F1 (macro)", "f1_micro": "F1 (micro)",
}
"""Multi-label classification metric (`multilabel_metrics`) → column label (all higher is better)."""

MULTILABEL_SCORES: tuple[str, ...] = ("bce",)
"""Per-image multi-label score for the paired tests: mean binary cross-entropy over findings."""

MULTILABEL_NOTES: tuple[str, ...] = (
    NOTES[0], NOTES[1].replace("the AUC / accuracy of a classifier", "a classifier's AUROC, AP or F1"), *NOTES[2:4],
    "Multi-label task: one independent sigmoid per finding; a finding is present when its certainty is at "
    "least task.threshold. AUROC (macro) averages findings with positives and negatives in the split, AUROC "
    "(micro) pools their (image, finding) entries, AP (macro) averages findings with positives; F1 at the "
    "per-finding thresholds chosen on the validation split and stored in the row's entry (the fusion "
    f"classifier's stage-3 entry; {MISSING} when an entry stores none).",
    f"Peer methods ({', '.join(THREE_CLASS_ONLY)}) classify the 3 exclusive EGD classes only and are not "
    "part of a multi-label ablation.",
    "Tests: the full model (saliency: full; classification: fusion) against the row's method, pairing images "
    "pooled across seeds (n = images × seeds; pooling treats seed replicates as independent pairs, so p "
    "understates between-seed variability): paired t-test and Wilcoxon signed-rank test of saliency scores "
    f"and of each image's mean binary cross-entropy over findings, −mean_f [y log p + (1 − y) log(1 − p)] with "
    f"p clipped to [{EPS}, 1 − {EPS}] (bce, lower is better); DeLong's test per finding and on the macro AUROC "
    "(joint covariance). Holm–Bonferroni within each family (one per metric and test); * p < 0.05.",
    "Paper columns (saliency only): Table 4.2 of the paper, measured on EGD-CXR, not on this data; the paper "
    "reports no multi-label classification, so that table has no paper columns.",
)


# ----------------------------------------------------------------------------- summaries


def _seed_mean(statistics: Sequence[Statistic]) -> Statistic:
    """The mean over seeds of one weighted statistic per seed (all on the same test images)."""
    return lambda w: np.mean(np.stack([np.asarray(st(w), np.float64) for st in statistics]), axis=0)


def _with_interval(summary: dict[str, Any], cell: Mapping[str, Any] | None) -> dict[str, Any]:
    """A `seed_summary` with the patient-bootstrap interval of the seed mean (``bootstrap_ci``, its
    ``bootstrap_method``) when the bootstrap is on."""
    if cell is not None and cell.get("ci") is not None:
        summary["bootstrap_ci"], summary["bootstrap_method"] = cell["ci"], cell["method"]
    return summary


def _patients(outputs: Sequence[SplitOutputs], patients: Sequence[str] | None,
              keep: np.ndarray | None = None) -> np.ndarray:
    """Patient of each test image (each image its own patient when unknown), optionally of the ``keep`` ones."""
    groups = np.asarray(patients if patients is not None else [str(i) for i in range(len(outputs[0].labels))], str)
    return groups if keep is None else groups[keep]


def summarise_saliency_rows(outputs: Sequence[SplitOutputs], saliency_methods: Sequence[str] = SALIENCY_METHODS,
                            boot: PatientBootstrap | None = None) -> tuple[dict[str, Any], list[dict]]:
    """The saliency rows over seeds (`seed_summary`, with the patient-bootstrap interval of the seed mean when
    ``boot`` is on) and their pooled paired tests against the full model (t-test and Wilcoxon, Holm per
    metric); a score some seed lacks (fixation metrics of a file without fixations) is left out."""
    scored = {m: [k for k in SALIENCY_METRICS if all(k in o.scores[m] for o in outputs)] for m in saliency_methods}
    saliency = {}
    for m, keys in scored.items():
        saliency[m] = {}
        for k in keys:
            cell = boot.interval(_seed_mean([weighted_mean(o.scores[m][k]) for o in outputs]))[0] if boot else None
            saliency[m][k] = _with_interval(seed_summary([mean_std(o.scores[m][k])["mean"] for o in outputs]), cell)
    pooled = {m: {k: np.concatenate([o.scores[m][k] for o in outputs]) for k in keys} for m, keys in scored.items()}
    return saliency, saliency_tests(pooled, REFERENCE["saliency"], SALIENCY_METRICS)


def summarise(outputs: Sequence[SplitOutputs], saliency_methods: Sequence[str] = SALIENCY_METHODS,
              classification_methods: Sequence[str] = CLASSIFICATION_METHODS, bootstrap: int = 0,
              seed: int = DEFAULT_SEED, patients: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-seed summaries over seeds (`seed_summary`; with ``bootstrap`` resamples of the test ``patients``
    (one per image, split order; each image its own when None), also the patient-bootstrap interval of each
    seed mean) and the tests of the table rows on the images pooled over seeds: saliency by `saliency_tests`,
    classification by `classification_tests` (DeLong, McNemar, and the bootstrap on the micro AUC resampling
    patients with all their seed replicates)."""
    boot = PatientBootstrap(_patients(outputs, patients), bootstrap, seed) if bootstrap else None
    saliency, sal_tests = summarise_saliency_rows(outputs, saliency_methods, boot)
    labelled = [o.labelled() for o in outputs]
    keep = outputs[0].labels >= 0
    class_boot = PatientBootstrap(_patients(outputs, patients, keep), bootstrap, seed) if bootstrap else None
    per_seed = {m: [classification_metrics(labels, probs[m]) for labels, probs in labelled]
                for m in classification_methods}
    classification = {}
    for m, runs in per_seed.items():
        cells = (class_boot.interval(_seed_mean([_class_statistic(labels, probs[m]) for labels, probs in labelled]))
                 if class_boot else [None] * len(CLASSIFICATION_COLUMNS))
        classification[m] = {key: _with_interval(seed_summary([r["auc_per_class"][key] if key in CLASS_NAMES
                                                               else r[key] for r in runs]), cell)
                             for key, cell in zip(CLASSIFICATION_COLUMNS, cells)}
    labels = np.concatenate([labels for labels, _ in labelled])
    pooled = {m: np.concatenate([probs[m] for _, probs in labelled]) for m in classification_methods}
    pooled_boot = PatientBootstrap(np.tile(_patients(outputs, patients, keep), len(outputs)), bootstrap, seed)
    return {"saliency": saliency, "classification": classification,
            "tests": {"saliency": sal_tests,
                      "classification": classification_tests(labels, pooled, REFERENCE["classification"],
                                                             CLASS_NAMES, pooled_boot)}}


def _class_statistic(labels: np.ndarray, probs: np.ndarray) -> Statistic:
    """The `CLASSIFICATION_COLUMNS` of one seed as one weighted statistic (B, 6): per-class AUCs, macro,
    micro AUC, accuracy."""
    macro, micro, accuracy = (weighted_macro_auc(labels, probs), weighted_micro_auc(labels, probs),
                              weighted_accuracy(labels, probs))
    return lambda w: np.concatenate([macro(w), micro(w)[:, None], accuracy(w)[:, None]], axis=1)


def multilabel_scores(targets: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image ``bce``: mean binary cross-entropy over findings of probabilities (N, F) against multi-hot
    targets (N, F), probabilities clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    y = np.asarray(targets, np.float64)
    return {"bce": -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1)}


def summarise_multilabel(outputs: Sequence[SplitOutputs], task: TaskSpec,
                         thresholds: Sequence[Mapping[str, np.ndarray | None]],
                         saliency_methods: Sequence[str] = SALIENCY_METHODS,
                         classification_methods: Sequence[str] = CLASSIFICATION_METHODS, bootstrap: int = 0,
                         seed: int = DEFAULT_SEED, patients: Sequence[str] | None = None) -> dict[str, Any]:
    """`summarise` for a multi-label task: the saliency rows as there, and per classification row the
    `MULTILABEL_COLUMNS` over seeds (F1 only when every seed's entry stores thresholds; each seed's
    ``thresholds`` by method; the macro AUROC with its patient-bootstrap interval), paired tests (t-test and
    Wilcoxon) of per-image `multilabel_scores` and DeLong tests per finding and on the macro AUROC, on the
    images pooled over seeds, Holm per metric."""
    boot = PatientBootstrap(_patients(outputs, patients), bootstrap, seed) if bootstrap else None
    saliency, sal_tests = summarise_saliency_rows(outputs, saliency_methods, boot)
    per_seed = {m: [multilabel_metrics(o.labels, o.probs[m], task.names, by[m]) for o, by in zip(outputs, thresholds)]
                for m in classification_methods}
    classification = {}
    for m, runs in per_seed.items():
        auroc = boot.interval(_seed_mean([weighted_macro_auc(o.labels, o.probs[m]) for o in outputs]))[-1] \
            if boot else None
        classification[m] = {key: (_with_interval(seed_summary([r[key] for r in runs]),
                                                  auroc if key == "auroc_macro" else None)
                                   if all(key in r for r in runs) else None) for key in MULTILABEL_COLUMNS}
    pooled = {m: {k: np.concatenate([multilabel_scores(o.labels, o.probs[m])[k] for o in outputs])
                  for k in MULTILABEL_SCORES} for m in classification_methods}
    tests = saliency_tests(pooled, REFERENCE["classification"], MULTILABEL_SCORES)
    targets = np.concatenate([o.labels for o in outputs])
    reference = np.concatenate([o.probs[REFERENCE["classification"]] for o in outputs])
    for m in classification_methods:
        if m == REFERENCE["classification"]:
            continue
        delong = delong_multilabel(targets, reference, np.concatenate([o.probs[m] for o in outputs]), task.names)
        records = [(f"auroc:{f}", "DeLong", d) for f, d in delong["per_class"].items() if d is not None]
        if delong["macro"] is not None:
            records.append(("auroc_macro", "DeLong (macro, joint covariance)", delong["macro"]))
        tests += [{"a": REFERENCE["classification"], "b": m, "metric": metric, "test": test, "diff": d["diff"],
                   "ci": d["ci"], "p": d["p"], "n": d["n"]} for metric, test, d in records]
    for metric in {t["metric"] for t in tests} - set(MULTILABEL_SCORES):  # the per-image scores: saliency_tests
        adjust_family([t for t in tests if t["metric"] == metric])
    return {"saliency": saliency, "classification": classification,
            "tests": {"saliency": sal_tests, "classification": tests}}


def costs(registry: Registry, trained: Sequence[Mapping[str, Entry]], rows: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Mean over seeds of each row's ``parameters`` and ``train_seconds`` (`method_cost`; None when unknown)."""
    out = {}
    for row in rows:
        if row not in trained[0]:
            out[row] = dict(NO_COST)
            continue
        per_seed = [method_cost(registry, entries[row]) for entries in trained]
        out[row] = {key: None if any(c[key] is None for c in per_seed) else float(np.mean([c[key] for c in per_seed]))
                    for key in ("parameters", "train_seconds")}
    return out


# ----------------------------------------------------------------------------- tables


def _num(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _cell(summary: Mapping[str, Any] | Sequence[float] | None) -> str:
    """``mean ± std`` over seeds, then the bootstrap interval of the seed mean (else the t interval over
    seeds) when there is one."""
    if summary is None:
        return MISSING
    mean, std = (summary["mean"], summary["std"]) if isinstance(summary, Mapping) else summary
    if mean is None:
        return MISSING
    text = f"{mean:.3f} ± {_num(std)}"
    ci = (summary.get("bootstrap_ci") or summary.get("ci")) if isinstance(summary, Mapping) else None
    return text if ci is None else f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _cost_cells(report: Mapping[str, Any], row: str) -> list[str]:
    cost = report.get("costs", {}).get(row, {})
    return [parameters_cell(cost.get("parameters")), seconds_cell(cost.get("train_seconds"))]


def saliency_table(report: Mapping[str, Any]) -> str:
    """Saliency rows (models, then another image's gaze, lungs / chest box, centre bias, uniform): KL, CC, HS,
    NSS, AUC-Judd and sAUC over seeds with their interval, parameters and training time, and the paper's
    numbers (100 real test images)."""
    paper = PAPER_ROWS["saliency"]
    paper_keys = [k for k in SALIENCY_METRICS if paper["full"][k] is not None]
    header = ["Method", *SALIENCY_ROWS.values(), "Params", "Train time",
              *(f"Paper {k.upper()} ({PAPER_ANCHOR})" for k in paper_keys)]
    rows = [[method_label(m, ORACLE_METHODS), *(_cell(report["saliency"][m].get(k)) for k in SALIENCY_METRICS),
             *_cost_cells(report, m), *(_cell(paper.get(m, {}).get(k)) for k in paper_keys)]
            for m in saliency_order(list(report["saliency"]))]
    return _table(header, rows)


def classification_table(report: Mapping[str, Any]) -> str:
    """Classification rows: per-class, macro and micro AUC and accuracy over seeds with their interval,
    parameters and training time, and the paper's numbers (100 real test images)."""
    paper = PAPER_ROWS["classification"]
    paper_keys = [k for k in CLASSIFICATION_COLUMNS if paper["fusion"][k] is not None]
    header = ["Method", *(f"{label} ↑" for label in CLASSIFICATION_COLUMNS.values()), "Params", "Train time",
              *(f"Paper {CLASSIFICATION_COLUMNS[k]} ({PAPER_ANCHOR})" for k in paper_keys)]
    rows = [[method_label(m, ORACLE_METHODS), *(_cell(report["classification"][m][k]) for k in CLASSIFICATION_COLUMNS),
             *_cost_cells(report, m), *(_num(paper[m][k]) for k in paper_keys)] for m in report["classification"]]
    return _table(header, rows)


def multilabel_table(report: Mapping[str, Any]) -> str:
    """Multi-label classification rows: macro / micro AUROC, macro AP and F1 over seeds with their interval,
    parameters and training time (no paper columns: the paper has none)."""
    header = ["Method", *(f"{label} ↑" for label in MULTILABEL_COLUMNS.values()), "Params", "Train time"]
    rows = [[method_label(m, ORACLE_METHODS), *(_cell(report["classification"][m][k]) for k in MULTILABEL_COLUMNS),
             *_cost_cells(report, m)] for m in report["classification"]]
    return _table(header, rows)


def markdown(report: Mapping[str, Any]) -> str:
    """The ``tables.md`` of an ablation: both tables and the notes."""
    classification = ([f"## Multi-label classification ({report['task']}, {len(report['findings'])} findings)",
                       multilabel_table(report)] if "findings" in report
                      else ["## Classification (cf. paper Table 4.1)", classification_table(report)])
    return "\n\n".join([
        f"# Ablation over seeds {report['seeds']} ({report['split']} split, n = {report['n_test']} images)",
        *synthetic_notice(report),
        "## Visual saliency prediction (cf. paper Table 4.2)", saliency_table(report),
        "### Saliency tests (images pooled over seeds): paired t-test and Wilcoxon signed-rank (* p < 0.05)",
        saliency_test_table(report["tests"]["saliency"]), holm_note("Saliency tests", REFERENCE["saliency"]),
        *classification,
        "### Classification tests (images pooled over seeds; * p < 0.05)",
        *([saliency_test_table([t for t in report["tests"]["classification"] if t["metric"] in MULTILABEL_SCORES])]
          if "findings" in report else []),
        ttest_table([t for t in report["tests"]["classification"] if t["metric"] not in MULTILABEL_SCORES]),
        holm_note("Classification tests", REFERENCE["classification"]),
        "## Notes", "\n".join(f"- {note}" for note in report["notes"]),
    ]) + "\n"


# ----------------------------------------------------------------------------- entry point


def run_ablation(config: Mapping[str, Any], seeds: int = 3, out_dir: str | Path = "reports/ablation",
                 split: str = "test", progress: bool = True, methods: Sequence[str] | None = None,
                 bootstrap: int = DEFAULT_RESAMPLES, bootstrap_seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Train (or reuse) the selected ``methods`` (`select`; all when None) for seeds 0..``seeds``-1, evaluate
    them on ``split`` and write ``metrics.json``, ``tables.md`` and ``index.html`` into ``out_dir``; returns
    the metrics written."""
    if seeds < 1:
        raise InputError(f"seeds must be at least 1, got {seeds}")
    task = task_of(config)
    chosen = select(methods, task.multilabel)
    registry = Registry(config["registry"]["root"])
    known = known_entries(registry)
    trained: list[tuple[dict[str, Entry], dict[str, bool]]] = []
    with tqdm(total=seeds * len(chosen.methods), desc="ablation runs", unit="run", disable=not progress) as bar:
        for seed in range(seeds):
            trained.append(train_seed(config, seed, known, bar, progress, chosen.methods))
    device = resolve_device(config["train"]["device"])
    loader = make_loader(config, split, int(config["train"]["batch_size"]), train=False, device=device,
                         labelled_only=task.multilabel)
    constants = [constant_predictor(name, make()) for name, make in (
        ("center_bias", lambda: center_bias_map(config["data"]["h5"], "train")),
        ("uniform", lambda: uniform_map(loader.dataset.canvas))) if name in chosen.saliency]
    chosen, left_out = with_supported_baselines(chosen, loader.dataset)
    records, _ = baseline_predictors(loader.dataset, bootstrap_seed, chosen.saliency)
    constants = [*records, *constants]
    out = Path(out_dir)
    gallery = Gallery(out)
    outputs = [run_split([*(entry_predictor(registry, e, name, device) for name, e in entries.items()), *constants],
                         loader, device, progress=progress, on_image=gallery.add if seed == 0 else None)
               for seed, (entries, _) in enumerate(trained)]
    if task.multilabel:
        thresholds = [{m: task_from_record(entries[m].architecture.get("task"))[1] for m in chosen.classification}
                      for entries, _ in trained]
        summary = summarise_multilabel(outputs, task, thresholds, chosen.saliency, chosen.classification, bootstrap,
                                       bootstrap_seed, loader.dataset.patient_ids)
        labelling = {"task": task.name, "findings": list(task.names)}
        notes, paper = MULTILABEL_NOTES, {"saliency": {m: PAPER_ROWS["saliency"].get(m) for m in chosen.saliency}}
        page = dataclasses.replace(outputs[0], labels=np.full(len(outputs[0].labels), -1), probs={})
    else:
        summary = summarise(outputs, chosen.saliency, chosen.classification, bootstrap, bootstrap_seed,
                            loader.dataset.patient_ids)
        labelling, notes, page = {}, NOTES, outputs[0]
        paper = {table: {m: rows.get(m) for m in getattr(chosen, table)} for table, rows in PAPER_ROWS.items()}
    report = json_safe({
        "seeds": list(range(seeds)),
        "split": split,
        "n_test": len(outputs[0].labels),
        "data": str(config["data"]["h5"]),
        "package_version": __version__,
        **labelling,
        "methods": [m.name for m in chosen.methods],
        **summary,
        "costs": costs(registry, [entries for entries, _ in trained], (*chosen.saliency, *chosen.classification)),
        "fixations": outputs[0].fixations,
        "oracle": sorted(ORACLE_METHODS & set(chosen.classification)),
        "paper": paper,
        "entries": {str(s): {m: e.id for m, e in entries.items()} for s, (entries, _) in enumerate(trained)},
        "reused": {str(s): flags for s, (_, flags) in enumerate(trained)},
        "statistics": {"resamples": bootstrap, "seed": bootstrap_seed, "unit": "patient",
                       "patients": len(set(loader.dataset.patient_ids))},
        "notes": [*notes, *fixation_notes(outputs[0].fixations), *left_out],
        "synthetic": is_synthetic_attrs(loader.dataset.attrs),
    })
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out / "tables.md", markdown(report))
    write_html_report(out, markdown(report), page, gallery, dataset_sources(loader.dataset), report["synthetic"],
                      main=None if task.multilabel else REFERENCE["classification"],
                      caption="Per-image outputs of the seed-0 models.")
    return report
