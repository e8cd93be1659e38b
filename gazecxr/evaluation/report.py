"""Evaluation of a trained 3-stage model on one split: inference over the split, metrics,
significance tests, and the report folder (metrics.json, tables.md, figures)."""

from __future__ import annotations

import json
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
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.provenance import is_synthetic_attrs
from gazecxr.evaluation.anatomy_report import AnatomyShares
from gazecxr.evaluation.artifacts import (
    json_safe,
    save_figure_atomic,
    write_text_atomic,
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
from gazecxr.metrics import EPS, classification_metrics, paired_ttest
from gazecxr.tasks import task_of
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.data import make_loader
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device

BASELINE_METHODS: dict[str, str] = {"baseline_resse": "resse_unet", "baseline_unet": "standard_unet"}
"""Registry stage of a saliency baseline → its method name in the report."""

PEER_STAGES: tuple[str, ...] = ("mtunet", "irnetv2", "gazegnn")
"""Registry stages of the peer methods, also their method names in the report."""

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
    "tests: paired two-sided t-tests over images of 'full' against every other saliency method, on each "
    "saliency metric, and of the fusion classifier 'full' against every other classifier on per-image "
    "correctness (0/1) and probability of the true class; mean_diff = mean of (a − b); images without a "
    "value (no fixation) are left out of a pair.",
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
    their saliency maps against the ground truth; keeps the maps of the split positions ``keep`` and
    hands every image's example (as kept) to ``on_image`` when given."""
    probs: dict[str, list[np.ndarray]] = defaultdict(list)
    scores: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    labels, dicom_ids, kept = [], [], {}
    position = 0
    dataset: GazeCXRDataset = loader.dataset
    recorded = SplitFixations(dataset) if dataset.has_fixations else None
    if recorded is None and any(getattr(p, "uses_gaze", False) for p in predictors):
        raise ValueError(f"{dataset.h5_path} stores no fixations, but a method needs test-time gaze")
    for batch in tqdm(loader, desc=f"evaluate {dataset.split}", unit="batch", disable=not progress):
        images = batch["image"].to(device)
        gt = batch["heatmap"][:, 0].double().numpy()
        indices = batch["index"].tolist()
        fixations, nonfixations = recorded.targets(indices) if recorded else (fixation_map(gt), None)
        regions = region_masks(dataset, indices).to(device)
        examples = {i: {"position": position + i, "label": int(batch["label"][i]) if batch["label"].ndim == 1 else -1,
                        "dicom_id": batch["dicom_id"][i], "image": batch["image"][i, 0].numpy(), "heatmap": gt[i]}
                    for i in range(len(gt)) if position + i in keep or on_image is not None}
        names: set[tuple[str, str]] = set()
        for predictor in predictors:
            out = predict_batch(predictor, images, regions, lambda: [dataset.fixations(i) for i in indices])
            for key in [*(("saliency", n) for n in out.saliency), *(("classification", n) for n in out.probs)]:
                if key in names:
                    raise ValueError(f"two predictors produce {key[0]} outputs named {key[1]!r}")
                names.add(key)
            for name, maps in out.saliency.items():
                maps = maps.detach().cpu().double().numpy()
                for metric, values in score_maps(maps, gt, fixations, nonfixations).items():
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


CLASSIFICATION_SCORES: tuple[str, ...] = ("correct", "p_true")
"""Per-image classification scores for the paired tests: arg-max is the label (0/1), and the
probability given to the true class."""


def classification_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image ``correct`` (arg-max is the label, 0/1) and ``p_true`` (probability of the true class)."""
    return {"correct": (probs.argmax(1) == labels).astype(np.float64),
            "p_true": probs[np.arange(len(labels)), labels].astype(np.float64)}


def paired_tests(scores: Mapping[str, Mapping[str, np.ndarray]], reference: str = "full",
                 metrics: Sequence[str] = SALIENCY_METRICS) -> list[dict[str, Any]]:
    """Paired two-sided t-tests of ``reference`` against every other method, per metric that both have,
    over the images where both values are finite (at least 2)."""
    tests = []
    for other in scores:
        for metric in metrics:
            if other == reference or metric not in scores[reference] or metric not in scores[other]:
                continue
            a, b = np.asarray(scores[reference][metric]), np.asarray(scores[other][metric])
            both = np.isfinite(a) & np.isfinite(b)
            if both.sum() >= 2:
                tests.append({"a": reference, "b": other, "metric": metric, **paired_ttest(a[both], b[both])})
    return tests


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


def evaluate(config: Mapping[str, Any], checkpoint: str = "best", out_dir: str | Path = "reports",
             split: str = "test", progress: bool = True) -> dict[str, Any]:
    """Evaluate a stage-3 registry entry and its baselines on ``split``; writes the report folder
    ``out_dir/<stage-3 id>/`` and returns the metrics dict written to its metrics.json. A multi-label
    (findings) task is evaluated by ``gazecxr.evaluation.findings_report``."""
    if task_of(config).multilabel:
        return evaluate_findings(config, checkpoint, out_dir, split, progress)
    registry = Registry(config["registry"]["root"])
    device = resolve_device(config["train"]["device"])
    model, lineage = load_full_model(registry, checkpoint)
    ids = {e.stage: e.id for e in lineage}
    loader = make_loader(config, split, int(config["train"]["batch_size"]), train=False, device=device)
    dataset: GazeCXRDataset = loader.dataset
    size = list(dataset.canvas)
    made_for = lineage[0].architecture.get("input_size")
    if made_for != size:
        raise ValueError(f"checkpoint {lineage[0].id} was made for input size {made_for}, "
                         f"but {config['data']['h5']} holds {size} images")
    baselines, skipped = best_baselines(registry, size)
    predictors = [
        full_model_predictor(model.to(device)),
        *(entry_predictor(registry, entry, name, device) for name, entry in baselines.items()),
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
             **{name: method_cost(registry, entry) for name, entry in baselines.items()}}
    labels, probs = outputs.labelled()
    class_scores = {name: classification_scores(labels, p) for name, p in probs.items()}
    metrics = json_safe({
        "classification": summarise_classification(labels, probs),
        "saliency": summarise_saliency(outputs.scores),
        "tests": paired_tests(outputs.scores, "full"),
        "classification_tests": paired_tests(class_scores, "full", CLASSIFICATION_SCORES),
        "fixations": outputs.fixations,
        "saliency_by_source": saliency_by_source(outputs.scores, dataset.sources),
        "inter_reader": consistency.summary(),
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
        "notes": [*NOTES, *fixation_notes(outputs.fixations), *skipped, inter_reader_note(consistency.summary())],
    })
    write_report(run_dir, metrics, outputs)
    write_html_report(run_dir, markdown_report(metrics), outputs, gallery, dataset_sources(dataset),
                      metrics["synthetic"])
    return metrics
