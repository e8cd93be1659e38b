"""The paper's whole comparison (Tables 4.1 and 4.2) trained over several seeds and evaluated on the test split.

Saliency: the full dual-encoder model, MT-UNet, the Res-SE UNet alone, the standard UNet, and the trivial
uniform and centre-bias maps. Classification: the fusion classifier, MT-UNet, DenseNet with and without
contrastive pretraining, Inception-ResNet-v2 and GazeGNN (which uses test-time gaze: an oracle). Entries
already in the registry for the same method and resolved config are reused. A multi-label (findings) task
compares our methods only (the peers are 3-class models), scored with ``gazecxr.metrics.multilabel``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.config import config_hash
from gazecxr.data.provenance import is_synthetic_attrs
from gazecxr.evaluation.artifacts import json_safe, write_text_atomic
from gazecxr.evaluation.html_report import Gallery, dataset_sources, write_html_report
from gazecxr.evaluation.outputs import SplitOutputs, mean_std
from gazecxr.evaluation.report import (
    CLASSIFICATION_SCORES,
    NO_COST,
    ORACLE_METHODS,
    classification_scores,
    fixation_notes,
    method_cost,
    paired_tests,
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
    PAPER_CLASSIFICATION,
    PAPER_NAMES,
    PAPER_SALIENCY,
    SALIENCY_ROWS,
    method_label,
    parameters_cell,
    seconds_cell,
    synthetic_notice,
)
from gazecxr.metrics import EPS, classification_metrics
from gazecxr.metrics.multilabel import multilabel_metrics
from gazecxr.tasks import TaskSpec, task_from_record, task_of
from gazecxr.training.data import make_loader
from gazecxr.training.peers import run_peer
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device
from gazecxr.training.stages import STAGES

ABLATION_TAG = "ablation"


@dataclass(frozen=True)
class Method:
    """A trained method of the comparison: the stage (or peer method) that trains it and its config
    settings, given the ids of the same seed's methods trained before it."""

    name: str
    stage: str
    settings: Callable[[Mapping[str, str]], dict[str, Any]]


METHODS: tuple[Method, ...] = (
    Method("densenet", "stage1", lambda ids: {"stage1.contrastive.enabled": False}),
    Method("densenet_cl", "stage1", lambda ids: {"stage1.contrastive.enabled": True}),
    Method("standard_unet", "stage2", lambda ids: {"stage2.variant": "unet"}),
    Method("resse_unet", "stage2", lambda ids: {"stage2.variant": "resse"}),
    Method("full", "stage2", lambda ids: {"stage2.variant": "full", "stage2.encoder": ids["densenet_cl"]}),
    Method("fusion", "stage3", lambda ids: {"stage2.variant": "full", "stage2.encoder": ids["densenet_cl"],
                                            "stage3.saliency": ids["full"]}),
    Method("mtunet", "mtunet", lambda ids: {}),
    Method("irnetv2", "irnetv2", lambda ids: {}),
    Method("gazegnn", "gazegnn", lambda ids: {}),
)
"""In training order: stage 2 ``full`` and stage 3 ``fusion`` build on the same seed's entries."""

OURS: tuple[str, ...] = ("densenet_cl", "full", "fusion")
"""The trained parts of our model (its DenseNet, saliency model and fusion classifier)."""

SELECTABLE: dict[str, tuple[str, ...]] = {
    "ours": OURS, **{m.name: (m.name,) for m in METHODS if m.name not in ("full", "fusion")},
    "uniform": (), "center_bias": (),
}
"""``--methods`` names → the methods they train (uniform and center_bias train nothing)."""

SALIENCY_METHODS: tuple[str, ...] = ("full", "mtunet", "resse_unet", "standard_unet", "uniform", "center_bias")
CLASSIFICATION_METHODS: tuple[str, ...] = ("fusion", "mtunet", "densenet_cl", "densenet", "irnetv2", "gazegnn")
"""Rows of the two tables, in the paper's column order."""
REFERENCE = {"saliency": "full", "classification": "fusion"}
"""The full model, tested against every other row of its table."""

PAPER_ROWS: dict[str, dict[str, dict[str, Any]]] = {
    "saliency": {m: PAPER_SALIENCY[PAPER_NAMES[m]] for m in SALIENCY_METHODS if PAPER_NAMES.get(m) in PAPER_SALIENCY},
    "classification": {m: PAPER_CLASSIFICATION[PAPER_NAMES[m]] for m in CLASSIFICATION_METHODS},
}
"""Table → our method name → the paper's published numbers for it (Table 4.2, Table 4.1)."""


THREE_CLASS_ONLY: tuple[str, ...] = ("mtunet", "irnetv2", "gazegnn")
"""Peer methods built for the 3 exclusive classes, left out of a multi-label (findings) ablation."""


@dataclass(frozen=True)
class Selection:
    """The methods to train (in training order) and the rows of each table."""

    methods: tuple[Method, ...]
    saliency: tuple[str, ...]
    classification: tuple[str, ...]


def select(names: Sequence[str] | None = None, multilabel: bool = False) -> Selection:
    """The selection of ``--methods`` names (all when None; for a ``multilabel`` task all but
    `THREE_CLASS_ONLY`, which it refuses); ``ours`` is always included, as every row is tested against it."""
    if multilabel:
        refused = sorted(set(names or ()) & set(THREE_CLASS_ONLY))
        if refused:
            raise ValueError(f"method(s) {refused} classify the 3 exclusive EGD classes only; the multi-label "
                             f"task compares {[n for n in SELECTABLE if n not in THREE_CLASS_ONLY]}")
        names = [n for n in SELECTABLE if n not in THREE_CLASS_ONLY] if names is None else names
    wanted = set(SELECTABLE if names is None else names)
    unknown = sorted(wanted - set(SELECTABLE))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(SELECTABLE)}")
    wanted.add("ours")
    trained = {m for name in wanted for m in SELECTABLE[name]}
    rows = wanted | trained
    return Selection(tuple(m for m in METHODS if m.name in trained),
                     tuple(m for m in SALIENCY_METHODS if m in rows),
                     tuple(m for m in CLASSIFICATION_METHODS if m in rows))


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
    f"standard deviation is undefined ({MISSING}).",
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
    "p: paired two-sided t-tests of the full model (saliency: full; classification: fusion) against the "
    "row's method, pairing images pooled across seeds: image i under seed s of one method with image i "
    "under seed s of the other (n = images × seeds). Pooling treats seed replicates as independent pairs, "
    "so p understates between-seed variability. Classification tests compare per-image correctness "
    "(0/1) and the probability of the true class. * p < 0.05.",
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
    "p: paired two-sided t-tests of the full model (saliency: full; classification: fusion) against the "
    "row's method, pairing images pooled across seeds (n = images × seeds; pooling treats seed replicates "
    "as independent pairs, so p understates between-seed variability). Classification tests compare each "
    f"image's mean binary cross-entropy over findings, −mean_f [y log p + (1 − y) log(1 − p)] with p clipped "
    f"to [{EPS}, 1 − {EPS}] (lower is better). * p < 0.05.",
    "Paper columns (saliency only): Table 4.2 of the paper, measured on EGD-CXR, not on this data; the paper "
    "reports no multi-label classification, so that table has no paper columns.",
)


# ----------------------------------------------------------------------------- training


def _with(config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    for dotted, value in values.items():
        *path, last = dotted.split(".")
        node = out
        for key in path:
            node = node[key]
        node[last] = value
    return out


def _runner(stage: str) -> Callable[..., Entry]:
    """The function that trains a method of ``stage``: a stage runner or a peer method's."""
    return STAGES[stage] if stage in STAGES else functools.partial(run_peer, stage)


def ablation_key(method: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """Identity of an ablation run: its method and resolved config hash."""
    return method, config_hash(config)


def _method_of(entry: Entry) -> str:
    return next((t.split("=", 1)[1] for t in entry.tags if t.startswith("method=")), "")


def train_seed(config: Mapping[str, Any], seed: int, known: dict[tuple[str, str], Entry], bar: tqdm,
               progress: bool, methods: Sequence[Method] = METHODS) -> tuple[dict[str, Entry], dict[str, bool]]:
    """Train (or reuse from ``known``, `ablation_key` → entry) ``methods`` for ``seed``; returns the entries
    and whether each was reused. New entries are added to ``known``."""
    entries: dict[str, Entry] = {}
    reused: dict[str, bool] = {}
    for method in methods:
        bar.set_postfix_str(f"{method.name} seed {seed}")
        run_config = _with(config, {"seed": seed, **method.settings({k: e.id for k, e in entries.items()})})
        key = ablation_key(method.name, run_config)
        reused[method.name] = key in known
        if key not in known:
            run_dir = Path(run_config["runs"]["root"]) / ABLATION_TAG / f"{method.name}-seed{seed}-{key[1]}"
            known[key] = _runner(method.stage)(
                run_config, run_dir=run_dir, resume=(run_dir / "config.yaml").is_file(), progress=progress,
                tags=(ABLATION_TAG, f"method={method.name}", f"seed={seed}"))
        entries[method.name] = known[key]
        bar.update(1)
    return entries, reused


# ----------------------------------------------------------------------------- summaries


def over_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample std (None for one value) of per-seed values, and the values."""
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else None
    return {"mean": float(np.mean(array)), "std": std, "per_seed": [float(v) for v in array]}


def summarise_saliency_rows(outputs: Sequence[SplitOutputs],
                            saliency_methods: Sequence[str] = SALIENCY_METHODS) -> tuple[dict[str, Any], list[dict]]:
    """The saliency rows over seeds and their pooled paired tests against the full model; a score some seed
    lacks (fixation metrics of a file without fixations) is left out."""
    scored = {m: [k for k in SALIENCY_METRICS if all(k in o.scores[m] for o in outputs)] for m in saliency_methods}
    saliency = {m: {k: over_seeds([mean_std(o.scores[m][k])["mean"] for o in outputs]) for k in keys}
                for m, keys in scored.items()}
    pooled = {m: {k: np.concatenate([o.scores[m][k] for o in outputs]) for k in keys} for m, keys in scored.items()}
    return saliency, paired_tests(pooled, REFERENCE["saliency"], SALIENCY_METRICS)


def _summary(saliency: dict[str, Any], saliency_tests: list[dict], classification: dict[str, Any],
             pooled: Mapping[str, Mapping[str, np.ndarray]], scores: Sequence[str]) -> dict[str, Any]:
    """A summary's rows and tests: the classification tests of the pooled per-image ``scores``."""
    return {"saliency": saliency, "classification": classification,
            "tests": {"saliency": saliency_tests,
                      "classification": paired_tests(pooled, REFERENCE["classification"], scores)}}


def summarise(outputs: Sequence[SplitOutputs], saliency_methods: Sequence[str] = SALIENCY_METHODS,
              classification_methods: Sequence[str] = CLASSIFICATION_METHODS) -> dict[str, Any]:
    """Per-seed summaries over seeds and the pooled paired tests of the table rows, from each seed's split
    outputs (saliency rows: `summarise_saliency_rows`)."""
    saliency, saliency_tests = summarise_saliency_rows(outputs, saliency_methods)
    labelled = [o.labelled() for o in outputs]
    per_seed = {m: [classification_metrics(labels, probs[m]) for labels, probs in labelled]
                for m in classification_methods}
    classification = {m: {key: over_seeds([r["auc_per_class"][key] if key in CLASS_NAMES else r[key] for r in runs])
                          for key in CLASSIFICATION_COLUMNS} for m, runs in per_seed.items()}
    pooled_classes = {m: {k: np.concatenate([classification_scores(labels, probs[m])[k] for labels, probs in labelled])
                          for k in CLASSIFICATION_SCORES} for m in classification_methods}
    return _summary(saliency, saliency_tests, classification, pooled_classes, CLASSIFICATION_SCORES)


def multilabel_scores(targets: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image ``bce``: mean binary cross-entropy over findings of probabilities (N, F) against multi-hot
    targets (N, F), probabilities clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    y = np.asarray(targets, np.float64)
    return {"bce": -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1)}


def summarise_multilabel(outputs: Sequence[SplitOutputs], task: TaskSpec,
                         thresholds: Sequence[Mapping[str, np.ndarray | None]],
                         saliency_methods: Sequence[str] = SALIENCY_METHODS,
                         classification_methods: Sequence[str] = CLASSIFICATION_METHODS) -> dict[str, Any]:
    """`summarise` for a multi-label task: the saliency rows as there, and per classification row the
    `MULTILABEL_COLUMNS` over seeds (F1 only when every seed's entry stores thresholds; each seed's
    ``thresholds`` by method) and paired tests of per-image `multilabel_scores`."""
    saliency, saliency_tests = summarise_saliency_rows(outputs, saliency_methods)
    per_seed = {m: [multilabel_metrics(o.labels, o.probs[m], task.names, by[m]) for o, by in zip(outputs, thresholds)]
                for m in classification_methods}
    classification = {m: {key: over_seeds([r[key] for r in runs]) if all(key in r for r in runs) else None
                          for key in MULTILABEL_COLUMNS} for m, runs in per_seed.items()}
    pooled = {m: {k: np.concatenate([multilabel_scores(o.labels, o.probs[m])[k] for o in outputs])
                  for k in MULTILABEL_SCORES} for m in classification_methods}
    return _summary(saliency, saliency_tests, classification, pooled, MULTILABEL_SCORES)


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
    if summary is None:
        return MISSING
    mean, std = (summary["mean"], summary["std"]) if isinstance(summary, Mapping) else summary
    return MISSING if mean is None else f"{mean:.3f} ± {_num(std)}"


def _p(test: Mapping[str, Any] | None) -> str:
    if test is None or test["p"] is None:
        return MISSING
    return ("<0.001" if test["p"] < 1e-3 else f"{test['p']:.3f}") + (" *" if test["p"] < 0.05 else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _tests_by(tests: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(t["b"], t["metric"]): t for t in tests}


def _cost_cells(report: Mapping[str, Any], row: str) -> list[str]:
    cost = report.get("costs", {}).get(row, {})
    return [parameters_cell(cost.get("parameters")), seconds_cell(cost.get("train_seconds"))]


def saliency_table(report: Mapping[str, Any]) -> str:
    """Saliency rows: KL, CC, HS, NSS, AUC-Judd and sAUC over seeds, parameters and training time, p against
    the full model, and the paper's numbers."""
    tests = _tests_by(report["tests"]["saliency"])
    paper = PAPER_ROWS["saliency"]
    paper_keys = [k for k in SALIENCY_METRICS if paper["full"][k] is not None]
    header = ["Method", *SALIENCY_ROWS.values(), "Params", "Train time", *(f"p {k.upper()}" for k in SALIENCY_METRICS),
              *(f"Paper {k.upper()}" for k in paper_keys)]
    rows = [[method_label(m, ORACLE_METHODS), *(_cell(report["saliency"][m].get(k)) for k in SALIENCY_METRICS),
             *_cost_cells(report, m), *(_p(tests.get((m, k))) for k in SALIENCY_METRICS),
             *(_cell(paper.get(m, {}).get(k)) for k in paper_keys)] for m in report["saliency"]]
    return _table(header, rows)


def classification_table(report: Mapping[str, Any]) -> str:
    """Classification rows: per-class, macro and micro AUC and accuracy over seeds, parameters and training
    time, p against the fusion classifier, and the paper's numbers."""
    tests = _tests_by(report["tests"]["classification"])
    paper = PAPER_ROWS["classification"]
    paper_keys = [k for k in CLASSIFICATION_COLUMNS if paper["fusion"][k] is not None]
    header = ["Method", *(f"{label} ↑" for label in CLASSIFICATION_COLUMNS.values()), "Params", "Train time",
              *(f"p ({k})" for k in CLASSIFICATION_SCORES), *(f"Paper {CLASSIFICATION_COLUMNS[k]}" for k in paper_keys)]
    rows = [[method_label(m, ORACLE_METHODS), *(_cell(report["classification"][m][k]) for k in CLASSIFICATION_COLUMNS),
             *_cost_cells(report, m), *(_p(tests.get((m, k))) for k in CLASSIFICATION_SCORES),
             *(_num(paper[m][k]) for k in paper_keys)] for m in report["classification"]]
    return _table(header, rows)


def multilabel_table(report: Mapping[str, Any]) -> str:
    """Multi-label classification rows: macro / micro AUROC, macro AP and F1 over seeds, parameters and
    training time, and p against the fusion classifier (no paper columns: the paper has none)."""
    tests = _tests_by(report["tests"]["classification"])
    header = ["Method", *(f"{label} ↑" for label in MULTILABEL_COLUMNS.values()), "Params", "Train time",
              *(f"p ({k})" for k in MULTILABEL_SCORES)]
    rows = [[method_label(m, ORACLE_METHODS), *(_cell(report["classification"][m][k]) for k in MULTILABEL_COLUMNS),
             *_cost_cells(report, m), *(_p(tests.get((m, k))) for k in MULTILABEL_SCORES)]
            for m in report["classification"]]
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
        *classification,
        "## Notes", "\n".join(f"- {note}" for note in report["notes"]),
    ]) + "\n"


# ----------------------------------------------------------------------------- entry point


def run_ablation(config: Mapping[str, Any], seeds: int = 3, out_dir: str | Path = "reports/ablation",
                 split: str = "test", progress: bool = True, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Train (or reuse) the selected ``methods`` (`select`; all when None) for seeds 0..``seeds``-1, evaluate
    them on ``split`` and write ``metrics.json``, ``tables.md`` and ``index.html`` into ``out_dir``; returns
    the metrics written."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    task = task_of(config)
    chosen = select(methods, task.multilabel)
    registry = Registry(config["registry"]["root"])
    known = {(_method_of(e), config_hash(e.config)): e for e in registry.entries(tag=ABLATION_TAG)}
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
    out = Path(out_dir)
    gallery = Gallery(out)
    outputs = [run_split([*(entry_predictor(registry, e, name, device) for name, e in entries.items()), *constants],
                         loader, device, progress=progress, on_image=gallery.add if seed == 0 else None)
               for seed, (entries, _) in enumerate(trained)]
    if task.multilabel:
        thresholds = [{m: task_from_record(entries[m].architecture.get("task"))[1] for m in chosen.classification}
                      for entries, _ in trained]
        summary = summarise_multilabel(outputs, task, thresholds, chosen.saliency, chosen.classification)
        labelling = {"task": task.name, "findings": list(task.names)}
        notes, paper = MULTILABEL_NOTES, {"saliency": {m: PAPER_ROWS["saliency"].get(m) for m in chosen.saliency}}
        page = dataclasses.replace(outputs[0], labels=np.full(len(outputs[0].labels), -1), probs={})
    else:
        summary = summarise(outputs, chosen.saliency, chosen.classification)
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
        "notes": [*notes, *fixation_notes(outputs[0].fixations)],
        "synthetic": is_synthetic_attrs(loader.dataset.attrs),
    })
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out / "tables.md", markdown(report))
    write_html_report(out, markdown(report), page, gallery, dataset_sources(loader.dataset), report["synthetic"],
                      main=None if task.multilabel else REFERENCE["classification"],
                      caption="Per-image outputs of the seed-0 models.")
    return report
