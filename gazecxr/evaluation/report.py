"""Evaluation of a trained 3-stage model on one split: inference over the split, metrics,
significance tests, and the report folder (metrics.json, tables.md, figures)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.provenance import is_synthetic_attrs
from gazecxr.evaluation.anatomy_report import AnatomyShares
from gazecxr.evaluation.artifacts import (
    json_safe,
    save_figure_atomic,
    write_text_atomic,
)
from gazecxr.evaluation.baselines import BASELINES, baseline_predictors
from gazecxr.evaluation.comparisons import (
    classification_intervals,
    classification_tests,
    saliency_intervals,
    saliency_tests,
)
from gazecxr.evaluation.consistency import ReaderConsistency, inter_reader_note
from gazecxr.evaluation.figures import (
    confusion_figure,
    overlay_figure,
    reliability_figure,
    roc_figure,
)
from gazecxr.evaluation.findings_report import evaluate_findings
from gazecxr.evaluation.fixations import PIXEL_RULE, SAUC_NEGATIVES, SplitFixations
from gazecxr.evaluation.html_report import Gallery, dataset_sources, write_html_report
from gazecxr.evaluation.method_outputs import predict_batch
from gazecxr.evaluation.outputs import SplitOutputs, summarise_saliency
from gazecxr.evaluation.saliency_methods import (
    NSS_TOP_FRACTION,
    SALIENCY_METRICS,
    Predictor,
    center_bias_map,
    constant_predictor,
    entry_predictor,
    fixation_map,
    full_model_predictor,
    score_maps,
    uniform_map,
)
from gazecxr.evaluation.tables import markdown_report
from gazecxr.metrics import EPS, classification_metrics, finite_rows, score_rows
from gazecxr.metrics.statistics import DEFAULT_RESAMPLES, DEFAULT_SEED, PatientBootstrap
from gazecxr.tasks import task_of
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.data import make_loader
from gazecxr.training.peers import PEER_METHODS
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device

BASELINE_METHODS: dict[str, str] = {"baseline_resse": "resse_unet", "baseline_unet": "standard_unet"}
"""Registry stage of a saliency baseline → its method name in the report."""

PEER_STAGES: tuple[str, ...] = PEER_METHODS
"""Registry stages of the peer methods and gaze mechanisms, also their method names in the report."""

ORACLE_METHODS: frozenset[str] = frozenset({"gazegnn"})
"""Methods that use the radiologist's gaze at test time (an oracle setting)."""

EXAMPLES_PER_CLASS = 2
"""Test images per class shown in the overlay figure."""

OVERLAY_COLUMNS: dict[str, str] = {"heatmap": "gaze ground truth", "full": "predicted saliency (full)",
                                   "gradcam": "Grad-CAM (stage 1)"}

NOTES: tuple[str, ...] = (
    f"KL = Σ G·log(ε + G/(P + ε)) with ε = {EPS} (nats); CC = Pearson correlation over pixels; "
    "HS = Σ min(P, G); maps normalised to sum 1 over the whole canvas.",
    "gradcam: Grad-CAM of the stage-1 DenseNet at its feature tap for its own predicted class, upsampled "
    "bilinearly to the canvas, set to zero outside the letterboxed image region (the ground truth is zero "
    "on the padding) and normalised to sum 1; a CAM with no mass on the image falls back to the uniform "
    "map over the image region.",
    "uniform: the uniform map over the whole canvas. center_bias: the mean ground-truth heatmap of the "
    "training split, normalised to sum 1.",
    "Saliency summaries are mean and population standard deviation (ddof = 0) over images.",
    "Saliency tests: 'full' against every other saliency row, per metric, by a paired two-sided t-test and a "
    "Wilcoxon signed-rank test (zero differences dropped) over images; mean_diff = mean of (a − b); images "
    "without a value (no fixation, no lung mask) are left out of a pair. Classification tests: the fusion "
    "classifier 'full' against every other classifier: DeLong's test (Sun & Xu's fast algorithm) on each "
    "one-vs-rest AUC and on the macro AUC (closed form: mean of the per-class differences with their joint "
    "covariance from per-image structural components), the paired patient bootstrap on the micro AUC (no "
    "closed form) and McNemar's exact test (binomial test of the discordant images) on accuracy.",
    "Intervals (95 %): AUC per class and macro by DeLong (normal approximation, clipped to [0, 1]); every "
    "other cell (saliency means, micro AUC, accuracy, balanced accuracy, ECE, the inter-reader rows) by the "
    "percentile bootstrap resampling test patients (a patient's images move together), seeded; the same "
    "resamples for every cell.",
    "Multiplicity: Holm–Bonferroni within each table's family ('full' against every other row, one family "
    "per metric and test); p is raw, p (Holm) adjusted.",
    "other_image_gaze (shuffled baseline): each test image scored with another test image's ground-truth map "
    "(a seeded derangement of the split), mapped into this image's letterboxed region by relative image "
    "position. lung_prior: uniform over the convex hull of the record's lung masks, blurred with the "
    "dataset's gaze σ (its sigma attribute, brought to the canvas) and confined to the image; records "
    "without a lung mask are left out of that row. chest_box_prior: uniform over the REFLACX chest bounding "
    "box (mean over the record's readers); records without one are left out.",
    "AUC-Judd: ROC area of the map as a classifier of fixated against all other canvas pixels, thresholds at "
    "the fixated pixels' values (ties count as above). sAUC: probability that the map ranks a fixated pixel "
    "above another image's fixation, ties one half. Both are averaged over images.",
    "Values that are undefined (an AUC of a class absent from the split, an infinite t) are null.",
)


# ----------------------------------------------------------------------------- inference


def region_masks(dataset: GazeCXRDataset, indices: Sequence[int]) -> Tensor:
    """Boolean masks (N, H, W) of the letterboxed image region of the records at file rows ``indices``."""
    masks = torch.zeros(len(indices), *dataset.canvas, dtype=torch.bool)
    for mask, index in zip(masks, indices):
        mask[dataset.letterbox(int(index)).region] = True
    return masks


def run_split(predictors: Sequence[Predictor], loader: DataLoader, device: torch.device,
              keep: Sequence[int] = (), progress: bool = True,
              on_image: Callable[[dict[str, Any]], None] | None = None) -> SplitOutputs:
    """Run every predictor on each batch of ``loader`` (a non-shuffled GazeCXRDataset loader) and score
    their saliency maps against the ground truth (NaN scores for the films without gaze); keeps the maps
    of the split positions ``keep`` and
    hands every image's example (as kept) to ``on_image`` when given."""
    probs: dict[str, list[np.ndarray]] = defaultdict(list)
    scores: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    labels, dicom_ids, kept = [], [], {}
    position = 0
    dataset: GazeCXRDataset = loader.dataset
    recorded = SplitFixations(dataset) if dataset.has_fixations else None
    if recorded is None and any(getattr(p, "uses_gaze", False) for p in predictors):
        raise InputError(f"{dataset.h5_path} stores no fixations, but a method needs test-time gaze")
    for batch in tqdm(loader, desc=f"evaluate {dataset.split}", unit="batch", disable=not progress):
        images = batch["image"].to(device)
        gt = batch["heatmap"][:, 0].double().numpy()
        gaze = batch["has_gaze"].numpy().astype(bool) if "has_gaze" in batch else np.ones(len(gt), bool)
        indices = batch["index"].tolist()
        fixations, nonfixations = recorded.targets(indices) if recorded else (fixation_map(gt), None)
        regions = region_masks(dataset, indices).to(device)
        examples = {i: {"position": position + i, "label": int(batch["label"][i]) if batch["label"].ndim == 1 else -1,
                        "dicom_id": batch["dicom_id"][i], "image": batch["image"][i, 0].numpy(), "heatmap": gt[i]}
                    for i in range(len(gt)) if position + i in keep or on_image is not None}
        names: set[tuple[str, str]] = set()
        for predictor in predictors:
            out = predict_batch(predictor, images, regions, lambda: [dataset.fixations(i) for i in indices], indices)
            for key in [*(("saliency", n) for n in out.saliency), *(("classification", n) for n in out.probs)]:
                if key in names:
                    raise ValueError(f"two predictors produce {key[0]} outputs named {key[1]!r}")
                names.add(key)
            for name, maps in out.saliency.items():
                maps = maps.detach().cpu().double().numpy()
                scored = maps if gaze.all() else np.where(gaze[:, None, None], maps, np.nan)
                for metric, values in _score_finite(scored, gt, fixations, nonfixations).items():
                    scores[name][metric].append(values)
                for i, example in examples.items():
                    example[name] = maps[i]
            for name, p in out.probs.items():
                probs[name].append(p.detach().cpu().double().numpy())
        labels.append(batch["label"].numpy())
        dicom_ids.extend(batch["dicom_id"])
        for example in examples.values():
            if on_image is not None:
                on_image(example)
            if example["position"] in keep:
                kept[example["position"]] = example
        position += len(gt)
    return SplitOutputs(
        labels=np.concatenate(labels),
        dicom_ids=dicom_ids,
        probs={name: np.concatenate(chunks) for name, chunks in probs.items()},
        scores={name: {m: np.concatenate(v) for m, v in by_metric.items()} for name, by_metric in scores.items()},
        examples=[kept[p] for p in keep if p in kept],
        fixations={"source": "recorded", **recorded.summary()} if recorded else {"source": "approximated"},
    )


def _score_finite(maps: np.ndarray, gt: np.ndarray, fixations: np.ndarray,
                  nonfixations: np.ndarray | None) -> dict[str, np.ndarray]:
    """`score_maps` of the finite maps; an image whose map is NaN (a record baseline the record does not
    support, e.g. no lung mask) scores NaN on every metric."""
    keys = SALIENCY_METRICS if nonfixations is not None else ("kl", "cc", "hs", "nss")
    return score_rows(finite_rows(maps), lambda rows: score_maps(
        maps[rows], gt[rows], fixations[rows], None if nonfixations is None else nonfixations[rows]), keys)


def evaluate_entries(registry: Registry, entries: Mapping[str, Entry | str], loader: DataLoader,
                     device: torch.device, keep: Sequence[int] = (), progress: bool = True) -> SplitOutputs:
    """Outputs of registry entries (method name → entry or reference) over a split, for ablations:
    stage-1 entries give class probabilities, stage-2/baseline entries saliency scores, stage-3
    entries both."""
    predictors = [entry_predictor(registry, e if isinstance(e, Entry) else registry.resolve(e), name, device)
                  for name, e in entries.items()]
    return run_split(predictors, loader, device, keep, progress)


def example_positions(labels: np.ndarray, per_class: int = EXAMPLES_PER_CLASS) -> list[int]:
    """Split positions of the first ``per_class`` images of each class, grouped by class."""
    return [int(p) for c in range(len(CLASS_NAMES)) for p in np.flatnonzero(labels == c)[:per_class]]


# ----------------------------------------------------------------------------- summaries


def summarise_classification(labels: np.ndarray, probs: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """``classification_metrics`` of every classification method."""
    return {name: classification_metrics(labels, p) for name, p in probs.items()}


def saliency_by_source(scores: Mapping[str, Mapping[str, np.ndarray]], sources: Sequence[str]) -> dict[str, Any]:
    """:func:`summarise_saliency` of each dataset's records (``GazeCXRDataset.sources``, split order)."""
    sources = np.asarray(sources, str)
    return {str(s): summarise_saliency({n: {m: v[sources == s] for m, v in by.items()} for n, by in scores.items()})
            for s in np.unique(sources)}


# ----------------------------------------------------------------------------- writing


def write_report(run_dir: Path, metrics: Mapping[str, Any], outputs: SplitOutputs) -> None:
    """Write metrics.json, tables.md and the figures of an evaluation into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_text_atomic(run_dir / "tables.md", markdown_report(metrics))
    labels, probs = outputs.labelled()
    figures = {
        "roc_curves.png": roc_figure(labels, probs),
        "confusion_full.png": confusion_figure(metrics["classification"]["full"]["confusion_matrix"],
                                               "full model: confusion matrix"),
        "reliability.png": reliability_figure(labels, probs),
        "overlays.png": overlay_figure(outputs.examples, OVERLAY_COLUMNS),
    }
    for name, fig in figures.items():
        save_figure_atomic(fig, run_dir / name)


# ----------------------------------------------------------------------------- entry point


def _selection_metric(entry: Entry) -> str:
    """The validation metric that picks the best entry of ``entry``'s kind: val_kl for the saliency
    baselines, the monitor of its config for a peer method."""
    if entry.stage in BASELINE_METHODS:
        return "val_kl"
    return str(entry.config.get("peers", {}).get(entry.stage, {}).get("monitor", "val_loss"))


def best_baselines(registry: Registry, input_size: Sequence[int]) -> tuple[dict[str, Entry], list[str]]:
    """The best entry of each saliency baseline and peer method in the registry (by validation: lowest
    val_kl for the baselines, each peer's configured monitor) made for ``input_size``, by method name, and
    notes on the ones left out."""
    chosen, notes = {}, []
    for stage, method in {**BASELINE_METHODS, **{m: m for m in PEER_STAGES}}.items():
        if not registry.entries(stage=stage):
            continue
        metric = _selection_metric(registry.resolve("latest", stage=stage))
        entry = registry.resolve("best", stage=stage, metric=metric)
        if entry.architecture.get("input_size") != list(input_size):
            notes.append(f"{method} ({entry.id}) left out: made for input size "
                         f"{entry.architecture.get('input_size')}, the data are {list(input_size)}")
            continue
        chosen[method] = entry
    return chosen, notes


def method_cost(registry: Registry, entry: Entry) -> dict[str, float | None]:
    """``parameters`` and ``train_seconds`` of the model behind ``entry``, its frozen parents included
    (summed over its lineage); None when an entry of the lineage predates these records."""
    lineage = registry.lineage(entry.id)
    cost: dict[str, float | None] = {}
    for key in ("parameters", "train_seconds"):
        values = [e.metrics.get(key) for e in lineage]
        cost[key] = None if any(v is None for v in values) else float(sum(values))
    return cost


NO_COST: dict[str, float | None] = {"parameters": 0.0, "train_seconds": 0.0}
"""Cost of a method with no learned parameters (uniform, centre bias)."""


def fixation_notes(fixations: Mapping[str, Any]) -> list[str]:
    """How NSS, AUC-Judd and sAUC were scored (``SplitOutputs.fixations``), for the report notes."""
    if fixations.get("source") == "recorded":
        return [f"NSS, AUC-Judd and sAUC use the recorded fixations: {fixations['fixations']} fixations on "
                f"{fixations['records_with_fixations']} of {fixations['records']} images (an image without "
                "fixations has no value).", PIXEL_RULE, SAUC_NEGATIVES]
    return [f"NSS fixation map (approximation): the data file stores no fixations (convert it again to add "
            f"them), so the fixated pixels of an image are the ceil({NSS_TOP_FRACTION:g}·H·W) canvas pixels of "
            "highest ground-truth density (zero-density pixels excluded; ties broken by pixel order). AUC-Judd "
            "and sAUC need recorded fixations: not available."]


def _unsupported(scores: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    """A note for each record baseline that some images could not be scored with (no mask / box)."""
    notes = []
    for name in BASELINES:
        kl = scores.get(name, {}).get("kl")
        if kl is not None and not np.all(np.isfinite(kl)):
            notes.append(f"{name}: {int(np.sum(~np.isfinite(kl)))} of {len(kl)} images have no "
                         f"{'lung mask' if name == 'lung_prior' else 'chest box'} and are left out of that row.")
    return notes


def evaluate(config: Mapping[str, Any], checkpoint: str = "best", out_dir: str | Path = "reports",
             split: str = "test", progress: bool = True, bootstrap: int = DEFAULT_RESAMPLES,
             seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Evaluate a stage-3 registry entry and its baselines on ``split``; writes the report folder
    ``out_dir/<stage-3 id>/`` and returns the metrics dict written to its metrics.json. ``bootstrap``
    patient resamples (0: none) with ``seed`` give the intervals and the micro-AUC test. A multi-label
    (findings) task is evaluated by ``gazecxr.evaluation.findings_report``."""
    if task_of(config).multilabel:
        return evaluate_findings(config, checkpoint, out_dir, split, progress, bootstrap, seed)
    registry = Registry(config["registry"]["root"])
    device = resolve_device(config["train"]["device"])
    model, lineage = load_full_model(registry, checkpoint)
    ids = {e.stage: e.id for e in lineage}
    loader = make_loader(config, split, int(config["train"]["batch_size"]), train=False, device=device)
    dataset: GazeCXRDataset = loader.dataset
    size = list(dataset.canvas)
    made_for = lineage[0].architecture.get("input_size")
    if made_for != size:
        raise InputError(f"checkpoint {lineage[0].id} was made for input size {made_for}, "
                         f"but {config['data']['h5']} holds {size} images")
    baselines, skipped = best_baselines(registry, size)
    record_baselines, left_out = baseline_predictors(dataset, seed)
    predictors = [
        full_model_predictor(model.to(device)),
        *(entry_predictor(registry, entry, name, device) for name, entry in baselines.items()),
        *record_baselines,
        constant_predictor("center_bias", center_bias_map(config["data"]["h5"], "train")),
        constant_predictor("uniform", uniform_map(dataset.canvas)),
    ]
    run_dir = Path(out_dir) / ids["stage3"]
    gallery = Gallery(run_dir)
    consistency = ReaderConsistency(dataset)
    anatomy = AnatomyShares(dataset)
    outputs = run_split(predictors, loader, device, example_positions(dataset.labels), progress,
                        lambda example: (gallery.add(example), consistency.add(example), anatomy.add(example)))
    stage1 = next(e for e in lineage if e.stage == "stage1")
    costs = {"full": method_cost(registry, lineage[0]), "stage1": method_cost(registry, stage1),
             "gradcam": method_cost(registry, stage1), "center_bias": NO_COST, "uniform": NO_COST,
             **{name: NO_COST for name in BASELINES},
             **{name: method_cost(registry, entry) for name, entry in baselines.items()}}
    labels, probs = outputs.labelled()
    started = time.perf_counter()
    patients = np.asarray(dataset.patient_ids, str)
    boot = PatientBootstrap(patients, bootstrap, seed)
    boot_labelled = PatientBootstrap(patients[outputs.labels >= 0], bootstrap, seed)
    sources = np.asarray(dataset.sources, str)
    intervals = {"saliency": saliency_intervals(outputs.scores, boot),
                 "classification": classification_intervals(labels, probs, CLASS_NAMES, boot_labelled),
                 "saliency_by_source": {
                     str(src): saliency_intervals({n: {m: v[sources == src] for m, v in by.items()}
                                                   for n, by in outputs.scores.items()},
                                                  PatientBootstrap(patients[sources == src], bootstrap, seed))
                     for src in np.unique(sources)}}
    tests = saliency_tests(outputs.scores, "full", SALIENCY_METRICS)
    class_tests = classification_tests(labels, probs, "full", CLASS_NAMES, boot_labelled)
    inter_reader = consistency.summary(bootstrap, seed)
    statistics = {"resamples": bootstrap, "seed": seed, "unit": "patient", "patients": len(set(patients)),
                  "interval": boot.label, "confidence": 0.95, "seconds": time.perf_counter() - started}
    metrics = json_safe({
        "classification": summarise_classification(labels, probs),
        "saliency": summarise_saliency(outputs.scores),
        "intervals": intervals,
        "tests": tests,
        "classification_tests": class_tests,
        "statistics": statistics,
        "fixations": outputs.fixations,
        "saliency_by_source": saliency_by_source(outputs.scores, dataset.sources),
        "inter_reader": inter_reader,
        "anatomy": anatomy.summary(),
        "costs": costs,
        "oracle": sorted(name for name in baselines if name in ORACLE_METHODS),
        "checkpoint": {"ref": checkpoint, **ids, "baselines": {name: e.id for name, e in baselines.items()}},
        "n_test": len(outputs.labels),
        "n_test_labelled": len(labels),
        "split": split,
        "data": str(config["data"]["h5"]),
        "package_version": __version__,
        "report_dir": str(run_dir),
        "synthetic": is_synthetic_attrs(dataset.attrs),
        "notes": [*NOTES, *fixation_notes(outputs.fixations), *skipped, *left_out, *_unsupported(outputs.scores),
                  inter_reader_note(inter_reader)],
    })
    write_report(run_dir, metrics, outputs)
    write_html_report(run_dir, markdown_report(metrics), outputs, gallery, dataset_sources(dataset),
                      metrics["synthetic"])
    return metrics
