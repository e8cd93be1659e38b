"""Evaluation of a multi-label (findings) model: diagnosis metrics per finding and whether each map
lands on the findings' ellipses; ``gazecxr.evaluation.report.evaluate`` hands multi-label tasks here.

Writes ``metrics.json``, ``tables.md`` and ``overlays.png`` (ellipses outlined over the maps).
Localisation is scored over (test image, present finding) pairs whose finding has an ellipse: the
region is the union of every reader's ellipses labelled with the finding, rasterised on the canvas.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gazecxr import __version__
from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.artifacts import (
    json_safe,
    save_figure_atomic,
    write_text_atomic,
)
from gazecxr.evaluation.comparisons import saliency_intervals, saliency_tests
from gazecxr.evaluation.figures import overlay_figure
from gazecxr.evaluation.outputs import summarise_saliency
from gazecxr.evaluation.saliency_methods import (
    center_bias_map,
    gradcam_saliency,
    uniform_map,
)
from gazecxr.evaluation.tables import (
    _number,
    _saliency_cell,
    _table,
    holm_note,
    saliency_test_table,
    ttest_table,
)
from gazecxr.explain.gradcam import gradcam_from_tap
from gazecxr.metrics import correlation_coefficient, histogram_similarity, kl_divergence
from gazecxr.metrics.localisation import compare_localisation, finding_regions
from gazecxr.metrics.multilabel import multilabel_metrics
from gazecxr.metrics.statistics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PatientBootstrap,
    adjust_family,
    delong_finding_intervals,
    delong_multilabel,
    format_interval,
)
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.tasks import TaskSpec, task_from_record
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.data import make_loader
from gazecxr.training.registry import Registry
from gazecxr.training.runtime import resolve_device

__all__ = ["LOCALISATION_METHODS", "collect", "findings_tables", "evaluate_findings"]

LOCALISATION_METHODS: dict[str, str] = {
    "gaze": "gaze ground truth", "full": "predicted saliency (full)", "gradcam": "Grad-CAM of the finding (stage 1)",
    "center_bias": "centre bias", "uniform": "uniform"}
"""Maps scored against the findings' regions, in table order; ``full`` is the reference of the tests."""

OVERLAY_IMAGES = 4
"""Test images with findings shown in the overlay figure."""

NOTES: tuple[str, ...] = (
    "Diagnosis: independent sigmoid per finding; a finding is present when its certainty is at least "
    "task.threshold. Macro AUROC averages findings with positives and negatives in the split, micro AUROC "
    "pools their (image, finding) entries; F1 at the per-finding thresholds chosen on the validation split "
    "(stored in the stage-3 entry); ECE with 10 equal-width bins per finding.",
    "Localisation: one row per (image, present finding with a region); region = union of all readers' "
    "ellipses of that finding (REFLACX), else the file's pixel mask of it (SIIM-ACR, CXR-P). The gaze row "
    "scores the radiologist's gaze map and leaves out the films read without gaze. Pointing game: the map's peak in the region; energy PG: share of mass in it; "
    "Diff: mean min-max-normalised map inside minus outside; EHR-AUC: area under the effective-heat-ratio "
    "curve over equidistant thresholds; IoU of the map's top k % pixels with the region. gradcam: the "
    "stage-1 DenseNet's Grad-CAM for that finding's logit, confined to the image region.",
    "Tests: 'full' against every other map by a paired two-sided t-test and a Wilcoxon signed-rank test over "
    "(image, finding) pairs (localisation) or images (saliency); the fusion classifier 'full' against the "
    "DenseNet 'stage1' by DeLong's test per finding and on the macro AUROC (mean of the per-finding "
    "differences with their joint covariance from per-image structural components). Holm–Bonferroni within "
    "each family (one per metric and test: 'full' against every other row); p raw, p (Holm) adjusted.",
    "Intervals (95 %): AUROC per finding and macro by DeLong; localisation and saliency means by the "
    "percentile bootstrap resampling test patients (a patient's images, and their pairs, move together), "
    "seeded.",
)


def _pairs(dataset: GazeCXRDataset, index: int, targets: np.ndarray, task: TaskSpec) -> list[tuple[int, np.ndarray]]:
    """(finding number, region (H, W)) of each present finding of record ``index`` that has a region: its
    ellipses, or the file's pixel mask of that finding (SIIM-ACR, CXR-P) when it has no ellipse. A box
    stored with swapped corners (xmax < xmin or ymax < ymin) is read as the same box, corners sorted."""
    boxes, labels, names = dataset.finding_ellipses(index)
    if not len(boxes):
        return _mask_pairs(dataset, index, targets, task)
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    columns = np.stack([labels[:, names.index(n)] if n in names else np.zeros(len(boxes), bool)
                        for n in task.names], axis=1)
    regions = finding_regions(boxes, columns, dataset.canvas)
    return [(f, regions[f]) for f in np.flatnonzero(targets > 0.5) if regions[f].any()]


def _mask_pairs(dataset: GazeCXRDataset, index: int, targets: np.ndarray, task: TaskSpec
                ) -> list[tuple[int, np.ndarray]]:
    """(finding number, mask) of each present finding of record ``index`` with a stored pixel mask that
    covers part of the canvas (an empty or full mask localises nothing)."""
    out = []
    for f in np.flatnonzero(targets > 0.5):
        mask = dataset.region_mask(index, task.names[int(f)])
        if mask is not None and mask.any() and not mask.all():
            out.append((int(f), mask))
    return out


def _saliency_scores(pred: np.ndarray, gt: np.ndarray, gaze: np.ndarray) -> dict[str, np.ndarray]:
    """KL, CC and HS per image; NaN for the images without gaze (``gaze`` false: an all-zero map)."""
    out = {}
    for name, fn in (("kl", kl_divergence), ("cc", correlation_coefficient), ("hs", histogram_similarity)):
        values = np.full(len(gt), np.nan)
        if gaze.any():
            values[gaze] = np.atleast_1d(fn(pred[gaze], gt[gaze]))
        out[name] = values
    return out


def collect(model: Any, task: TaskSpec, loader: Any, device: torch.device, progress: bool = True) -> dict[str, Any]:
    """One pass over a split: finding probabilities of the fusion head (``full``) and the DenseNet
    (``stage1``), targets, saliency scores against the gaze maps, and every localisation pair's maps."""
    dataset: GazeCXRDataset = loader.dataset
    fixed = {"center_bias": center_bias_map(dataset.h5_path, "train"), "uniform": uniform_map(dataset.canvas)}
    probs: dict[str, list[np.ndarray]] = {"full": [], "stage1": []}
    targets, pair_maps, pair_regions, pair_findings, examples = [], {m: [] for m in LOCALISATION_METHODS}, [], [], []
    pair_patients: list[str] = []
    position = 0
    saliency: dict[str, dict[str, list[np.ndarray]]] = {m: {"kl": [], "cc": [], "hs": []} for m in ("full", *fixed)}
    for batch in tqdm(loader, desc=f"evaluate findings {dataset.split}", unit="batch", disable=not progress):
        images = batch["image"].to(device)
        with torch.no_grad():
            out = model(images)
        probs["full"].append(task.probabilities(out["class_logits"]).cpu().numpy())
        probs["stage1"].append(task.probabilities(out["encoder_logits"]).cpu().numpy())
        y = batch["label"].float().numpy()
        targets.append(y)
        gt = batch["heatmap"][:, 0].double().numpy()
        gaze = batch["has_gaze"].numpy().astype(bool) if "has_gaze" in batch else np.ones(len(gt), bool)
        full = saliency_from_logits(out["saliency_logits"].float())[:, 0].double().cpu().numpy()
        for name, maps in {"full": full, **{k: np.broadcast_to(v, gt.shape) for k, v in fixed.items()}}.items():
            for metric, values in _saliency_scores(maps, gt, gaze).items():
                saliency[name][metric].append(values)
        pairs = [(i, f, region) for i, index in enumerate(batch["index"].tolist())
                 for f, region in _pairs(dataset, index, y[i], task)]
        pair_patients += [str(dataset.patient_ids[position + i]) for i, _, _ in pairs]
        position += len(y)
        if not pairs:
            continue
        rows = torch.tensor([i for i, _, _ in pairs], device=device)
        cams, _ = gradcam_from_tap(model.encoder, out["dense_features"][rows], dataset.canvas,
                                   target=torch.tensor([f for _, f, _ in pairs], device=device))
        inside = torch.stack([_region(dataset, int(batch["index"][i])) for i, _, _ in pairs]).to(device)
        cams = gradcam_saliency(cams.float(), inside).double().cpu().numpy()
        for p, (i, f, region) in enumerate(pairs):
            maps = {"gaze": gt[i] if gaze[i] else np.full_like(gt[i], np.nan), "full": full[i],
                    "gradcam": cams[p], **fixed}
            for name in LOCALISATION_METHODS:
                pair_maps[name].append(maps[name].astype(np.float32))
            pair_regions.append(region)
            pair_findings.append(task.names[f])
            if len(examples) < OVERLAY_IMAGES and (not examples or examples[-1]["index"] != int(batch["index"][i])):
                boxes, labels, names = dataset.finding_ellipses(int(batch["index"][i]))
                examples.append({"index": int(batch["index"][i]), "image": batch["image"][i, 0].numpy(),
                                 "label": 0, "dicom_id": batch["dicom_id"][i], "heatmap": gt[i], "full": full[i],
                                 "gradcam": cams[p], "boxes": boxes,
                                 "box_names": [", ".join(n for n, on in zip(names, row) if on) for row in labels],
                                 "row_label": f"{batch['dicom_id'][i][:12]}\nGrad-CAM: {task.names[f]}"})
    return {
        "probs": {k: np.concatenate(v) for k, v in probs.items()},
        "targets": np.concatenate(targets),
        "saliency": {m: {k: np.concatenate(v) for k, v in by.items()} for m, by in saliency.items()},
        "pairs": {"maps": {k: np.stack(v) for k, v in pair_maps.items()} if pair_findings else {},
                  "regions": np.stack(pair_regions) if pair_regions else None, "findings": pair_findings,
                  "patients": pair_patients},
        "examples": examples,
    }


def _region(dataset: GazeCXRDataset, index: int) -> torch.Tensor:
    """Bool (H, W) mask of the letterboxed image region of record ``index``."""
    mask = torch.zeros(dataset.canvas, dtype=torch.bool)
    mask[dataset.letterbox(index).region] = True
    return mask


def findings_tables(metrics: Mapping[str, Any]) -> str:
    """tables.md of a multi-label evaluation: diagnosis per finding (AUROC with its DeLong interval),
    localisation per map and saliency (mean ± std [95 % interval]), and the tests with raw and Holm p."""
    names = list(metrics["classification"]["full"]["per_finding"])
    intervals = metrics.get("intervals", {})
    delong = intervals.get("classification", {})

    def auroc(method: str, finding: str | None) -> str:
        by = delong.get(method)
        if by is None:
            m = metrics["classification"][method]
            return _number(m["per_finding"][finding]["auroc"] if finding else m["auroc_macro"])
        return format_interval(by["per_class"].get(finding) if finding else by["macro"])

    rows = []
    for name in names:
        full = metrics["classification"]["full"]["per_finding"][name]
        rows.append([name, str(full["positives"]), auroc("full", name), auroc("stage1", name),
                     _number(full["average_precision"]), _number(full.get("f1")), _number(full.get("threshold")),
                     _number(full["ece"])])
    for method in ("full", "stage1"):
        m = metrics["classification"][method]
        rows.append([f"**{method}: macro / micro**", str(m["n"]), f"{auroc(method, None)} / "
                     f"{_number(m['auroc_micro'])}", "", _number(m["ap_macro"]),
                     f"{_number(m.get('f1_macro'))} / {_number(m.get('f1_micro'))}", "", _number(m["ece_mean"])])
    tests = metrics.get("tests", {})
    parts = [f"# Multi-label findings evaluation ({metrics['split']} split, {metrics['n_test']} images)", "",
             "## Diagnosis per finding (full = fusion classifier, stage1 = DenseNet alone; AUROC [95 % DeLong "
             "interval])", "",
             _table(["finding", "positives", "AUROC full", "AUROC stage1", "AP full", "F1 full", "threshold",
                     "ECE full"], rows), ""]
    if tests.get("classification"):
        parts += ["## DeLong tests: full against stage1 (* p < 0.05)", "", ttest_table(tests["classification"]), "",
                  holm_note("DeLong tests", "full"), ""]
    loc = metrics["localisation"]
    if loc is None:
        parts += ["No localisation pairs: no present finding with an ellipse or a mask in this split.", ""]
    else:
        loc_ci = intervals.get("localisation", {})
        parts += [f"## Localisation over {loc['n']} (image, finding) pairs: mean ± std [95 % interval]", "",
                  _table(["map", *loc["metrics"]],
                         [[LOCALISATION_METHODS.get(m, m),
                           *(_saliency_cell(by[metric]["overall"], loc_ci.get(m, {}).get(metric))
                             for metric in loc["metrics"])]
                          for m, by in loc["methods"].items()]), "",
                  "## Localisation tests over all pairs: paired t-test and Wilcoxon signed-rank (* p < 0.05)", "",
                  saliency_test_table(tests.get("localisation", [])), "", holm_note("Localisation tests", "full"), ""]
    sal_ci = intervals.get("saliency", {})
    parts += ["## Saliency against the gaze maps: mean ± std [95 % interval]", "",
              _table(["map", "KL", "CC", "HS"], [[m, *(_saliency_cell(s[k], sal_ci.get(m, {}).get(k))
                                                       for k in ("kl", "cc", "hs"))]
                                                 for m, s in metrics["saliency"].items()]), ""]
    if tests.get("saliency"):
        parts += [saliency_test_table(tests["saliency"]), "", holm_note("Saliency tests", "full"), ""]
    parts += ["## Notes", "", *(f"- {n}" for n in metrics["notes"]), ""]
    return "\n".join(parts)


def _delong_records(out: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """DeLong tests of the fusion head ('full') against the DenseNet ('stage1') per finding and on the macro
    AUROC, Holm-adjusted within each finding's family (one comparison each here)."""
    delong = delong_multilabel(out["targets"], out["probs"]["full"], out["probs"]["stage1"], names)
    records = [{"a": "full", "b": "stage1", "metric": f"auroc:{f}", "test": "DeLong", "diff": d["diff"], "ci": d["ci"],
                "p": d["p"], "n": d["n"]} for f, d in delong["per_class"].items() if d is not None]
    if delong["macro"] is not None:
        m = delong["macro"]
        records.append({"a": "full", "b": "stage1", "metric": "auroc_macro", "test": "DeLong (macro, joint covariance)",
                        "diff": m["diff"], "ci": m["ci"], "p": m["p"], "n": m["n"]})
    for record in records:
        adjust_family([record])
    return records


def evaluate_findings(config: Mapping[str, Any], checkpoint: str = "best", out_dir: str | Path = "reports",
                      split: str = "test", progress: bool = True, bootstrap: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Evaluate a multi-label stage-3 entry on ``split``; writes ``out_dir/<stage-3 id>/`` and returns
    the metrics dict written to its metrics.json (``bootstrap`` patient resamples with ``seed`` for the
    intervals of the localisation and saliency means; 0: none)."""

    registry = Registry(config["registry"]["root"])
    device = resolve_device(config["train"]["device"])
    model, lineage = load_full_model(registry, checkpoint)
    model = model.to(device)
    task, thresholds = task_from_record(lineage[0].architecture.get("task"))
    if not task.multilabel:
        raise InputError(f"checkpoint {lineage[0].id} is not a multi-label model (task {task.name!r})")
    loader = make_loader(config, split, int(config["train"]["batch_size"]), train=False, device=device,
                         labelled_only=True)
    dataset: GazeCXRDataset = loader.dataset
    if lineage[0].architecture.get("input_size") != list(dataset.canvas):
        raise InputError(f"checkpoint {lineage[0].id} was made for input size "
                         f"{lineage[0].architecture.get('input_size')}, but {config['data']['h5']} holds "
                         f"{list(dataset.canvas)} images")
    out = collect(model, task, loader, device, progress)
    pairs = out["pairs"]
    localisation = None
    if pairs["findings"]:
        localisation = compare_localisation(pairs["maps"], pairs["regions"], pairs["findings"], reference="full")
    ids = {e.stage: e.id for e in lineage}
    run_dir = Path(out_dir) / ids["stage3"]
    boot = PatientBootstrap(np.asarray(dataset.patient_ids, str), bootstrap, seed)
    intervals: dict[str, Any] = {
        "classification": {m: delong_finding_intervals(out["targets"], p, task.names) for m, p in out["probs"].items()},
        "saliency": saliency_intervals(out["saliency"], boot)}
    tests: dict[str, Any] = {"classification": _delong_records(out, task.names),
                             "saliency": saliency_tests(out["saliency"], "full", ("kl", "cc", "hs"))}
    if localisation is not None:
        pair_boot = PatientBootstrap(np.asarray(pairs["patients"], str), bootstrap, seed)
        intervals["localisation"] = saliency_intervals(localisation["scores"], pair_boot)
        tests["localisation"] = saliency_tests(localisation["scores"], "full", localisation["metrics"])
    metrics = json_safe({
        "task": task.name,
        "classification": {
            "full": multilabel_metrics(out["targets"], out["probs"]["full"], task.names, thresholds),
            "stage1": multilabel_metrics(out["targets"], out["probs"]["stage1"], task.names)},
        "localisation": localisation,
        "saliency": summarise_saliency(out["saliency"]),
        "intervals": intervals,
        "tests": tests,
        "statistics": {"resamples": bootstrap, "seed": seed, "unit": "patient", "interval": boot.label},
        "checkpoint": {"ref": checkpoint, **ids},
        "n_test": int(len(out["targets"])),
        "split": split,
        "data": str(config["data"]["h5"]),
        "package_version": __version__,
        "report_dir": str(run_dir),
        "notes": list(NOTES),
    })
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_text_atomic(run_dir / "tables.md", findings_tables(metrics))
    columns = {"heatmap": "gaze ground truth", "full": "predicted saliency", "gradcam": "Grad-CAM (finding)"}
    save_figure_atomic(overlay_figure(out["examples"], columns), run_dir / "overlays.png")
    return metrics

