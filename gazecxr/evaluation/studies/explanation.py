"""The explanation-reliability study: which architecture's CAM falls on the radiologists' regions.

After seeds/002 chapter 3 (VGG-16/19, ResNet-18/34/50/101, ViT-S/B/L fine-tuned for pneumothorax on
SIIM-ACR; Grad-CAM scored by Diff and EHR-AUC against the masks; one-way ANOVA and Tukey HSD) and
seeds 000/003 (NIH ChestX-ray14: DenseNet-121, EfficientNet-B0, ResNet-50, MobileNet-V2, Swin; IoU of
the thresholded Grad-CAM with the boxes at thresholds 0.1 … 0.7). ``run_study`` trains every
architecture of ``explain.architectures`` through the training engine (a registry entry per
architecture and seed, reused when its key matches, a killed run resumed from its run directory),
explains every test (image, finding) pair with every method of ``explain.methods``
(`gazecxr.explain.cams`), scores the maps against the pair's region (with ``explain.regions: both``,
as on CXR-P, also against the film's gaze, side by side), adds the baseline rows
(uniform, centre bias, the radiologist's gaze, our gaze saliency model), and writes
``<out>/<name>/``: ``metrics.json``, ``tables.md`` (the seed's Table 3.1 / 3.2 layouts with its numbers
beside ours, ANOVA and Tukey, IoU per threshold), ``fig31_cams.png``, ``fig32_ehr_auc.png``,
``iou_thresholds.png`` and ``index.html`` (every pair's maps, filterable by model and method).
"""

from __future__ import annotations

import copy
import html
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from gazecxr import __version__
from gazecxr.config import ConfigError, config_hash, deep_merge
from gazecxr.config.errors import InputError
from gazecxr.data.provenance import SYNTHETIC_NOTICE, is_synthetic_h5
from gazecxr.evaluation.artifacts import (
    json_safe,
    save_figure_atomic,
    write_text_atomic,
)
from gazecxr.evaluation.studies.explanation_data import (
    Pair,
    Recipe,
    StudyImages,
    pairs_of,
    resize_map,
    study_splits,
)
from gazecxr.metrics import correlation_coefficient, finite_rows, score_rows
from gazecxr.metrics.classification import classification_metrics
from gazecxr.metrics.detection import detection_map
from gazecxr.metrics.localisation import (
    IOU_THRESHOLDS,
    LOCALISATION_METRICS,
    THRESHOLD_METRICS,
    localisation_scores,
    threshold_scores,
)
from gazecxr.metrics.multilabel import multilabel_metrics
from gazecxr.metrics.statistics import (
    delong_interval,
    mean_interval,
    one_way_anova,
    seed_summary,
    tukey_hsd,
)
from gazecxr.models.factory import create_model
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.models.timm_classifier import study_model_section
from gazecxr.tasks import TaskSpec, task_of, task_record
from gazecxr.training.checkpoint_io import load_saliency
from gazecxr.training.data import make_loader
from gazecxr.training.detection import MultiTaskDetectionTask, unpad_targets
from gazecxr.training.distributed import broadcast_object, setup
from gazecxr.training.engine import Trainer, TrainSettings
from gazecxr.training.feature_cache import data_identity
from gazecxr.training.objectives import ClassifierTask
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device, seed_everything

__all__ = ["ANCHORS", "BASELINES", "STAGE", "run_study", "study_config", "study_tables"]

STAGE = "explain"
"""Registry stage of the study's classifiers."""
FIG31 = "fig31_cams.png"
"""Fig. 3.1 of the report: a row per test pair (``explain.figure_pairs`` of them), a column per model."""

BASELINES: dict[str, str] = {
    "uniform": "uniform map", "centre_bias": "centre bias (mean training gaze map, or mean training region)",
    "radiologist_gaze": "the radiologist's gaze map (files with gaze)", "gaze_model": "our gaze saliency model (stage 2)",
}
"""Architecture-free rows scored like the CAMs."""

VIT_FAMILIES = ("vit_", "swin_")

REGIONS = ("annotations", "gaze", "both")
"""``explain.regions``: the annotations (masks, boxes, ellipses), the hottest part of the gaze map, or both
side by side (the annotations as the region, the film's gaze scored beside them)."""

GAZE_METRICS = ("gaze_diff", "gaze_ehr_auc", "gaze_energy_pointing_game", "gaze_cc")
"""Scores of a map against the film's gaze (``regions: both``): Diff, EHR-AUC and energy pointing game
against the gaze region, and the Pearson CC with the gaze map itself."""

EXPLAIN_KEYS = {"name", "architectures", "methods", "size", "pretrained", "baselines", "gaze_model", "regions",
                "gaze_region_percent", "decision_threshold", "anchors", "figure_pairs", "gallery_pairs",
                "max_test", "recipe", "balanced", "train", "seeds", "monitor"}

PAPER_NAMES = {
    "vgg16": "VGG16", "vgg19": "VGG19", "resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50",
    "resnet101": "ResNet101", "vit_small_patch16_224": "ViT Small", "vit_base_patch16_224": "ViT Base",
    "vit_large_patch16_224": "ViT Large", "densenet121": "DenseNet121", "efficientnet_b0": "EfficientNetB0",
    "mobilenetv2_100": "MobileNetV2", "swin_tiny_patch4_window7_224": "Swin-T",
    "densenet201_stage1": "DenseNet-201 (our stage 1)", "densenet121_multitask": "DenseNet121 multi-task (+Faster R-CNN)",
}

ANCHORS: dict[str, dict[str, Any]] = {
    "siim": {
        "source": "seeds/002 ch. 3 (Qiu et al., MLMI 2023), real SIIM-ACR, 1,000 balanced test images",
        "table31": {  # accuracy, precision, recall, AUC
            "vgg16": (0.8370, 0.8224, 0.8800, 0.9069), "vgg19": (0.8320, 0.7747, 0.9080, 0.9098),
            "resnet18": (0.8760, 0.8821, 0.8680, 0.9420), "resnet34": (0.8720, 0.8758, 0.8600, 0.9417),
            "resnet50": (0.8820, 0.8802, 0.8820, 0.9450), "resnet101": (0.8760, 0.8798, 0.8780, 0.9434),
            "vit_small_patch16_224": (0.8580, 0.8137, 0.8820, 0.9302),
            "vit_base_patch16_224": (0.8620, 0.8602, 0.8740, 0.9356),
            "vit_large_patch16_224": (0.8440, 0.8356, 0.8640, 0.9197)},
        "table32": {  # Diff mean, std, min, max
            "vgg16": (0.186, 0.212, -0.213, 0.773), "vgg19": (0.166, 0.220, -0.365, 0.715),
            "resnet18": (0.162, 0.262, -0.366, 0.787), "resnet34": (0.133, 0.273, -0.452, 0.782),
            "resnet50": (0.142, 0.251, -0.287, 0.801), "resnet101": (0.183, 0.265, -0.320, 0.780),
            "vit_small_patch16_224": (0.052, 0.143, -0.251, 0.652),
            "vit_base_patch16_224": (0.081, 0.166, -0.233, 0.786),
            "vit_large_patch16_224": (0.051, 0.164, -0.319, 0.685)},
        "ehr_auc": {"resnet101": 0.0319, "vgg16": 0.0243},
        "anova": "Diff: ANOVA p < 0.001; VGG16 and ResNet101 best (Tukey p < 0.05); ResNet101 > ResNet34 (p < 0.05)",
    },
    "nih14": {
        "source": "seeds/000 Tables 5.1-5.3 and seeds/003 Tables 5 and 7, real NIH ChestX-ray14 official test split",
        "macro_auc": {"densenet121": (0.694, "seed 000"), "efficientnet_b0": (0.604, "seed 000"),
                      "resnet50": (0.638, "seed 000"), "mobilenetv2_100": (0.723, "seed 000"),
                      "densenet121 (seed 003)": (0.8021, "seed 003"), "efficientnet_b0 (seed 003)": (0.8007, "seed 003"),
                      "swin_small (seed 003)": (0.7966, "seed 003")},
        "iou_seed003": {"thresholds": (0.1, 0.15, 0.25, 0.35, 0.45),
                        "densenet121": (0.117, 0.121, 0.129, 0.133, 0.123),
                        "efficientnet_b0": (0.066, 0.066, 0.065, 0.065, 0.067),
                        "swin_small": (0.081, 0.081, 0.077, 0.067, 0.057)},
        "li_et_al": (0.73, 0.62, 0.48, 0.37, 0.28, 0.20, 0.12),
        "multitask_map": 0.213,
    },
}
"""The source documents' numbers, shown beside ours (real data; ours may be synthetic)."""


# ----------------------------------------------------------------------------- configuration


def study_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``explain`` section with defaults, checked (ConfigError naming a wrong key or value)."""
    section = dict(config.get("explain") or {})
    unknown = sorted(set(section) - EXPLAIN_KEYS)
    if unknown:
        raise ConfigError(f"unknown explain key(s) {unknown}; valid: {sorted(EXPLAIN_KEYS)}")
    out = {"name": "study", "architectures": ["resnet50"], "methods": ["gradcam"], "size": "full", "pretrained": {},
           "baselines": ["uniform", "centre_bias", "radiologist_gaze"], "gaze_model": None, "regions": "annotations",
           "gaze_region_percent": 10.0, "decision_threshold": 0.5, "anchors": None, "figure_pairs": 3,
           "gallery_pairs": 24, "max_test": None, "recipe": {}, "balanced": {"enabled": False}, "train": {},
           "seeds": 1, "monitor": "val_auc_macro", **section}
    from gazecxr.explain.cams import METHODS

    bad = [m for m in out["methods"] if m not in METHODS]
    if bad:
        raise ConfigError(f"explain.methods: unknown {bad}; valid: {sorted(METHODS)}")
    bad = [b for b in out["baselines"] if b not in BASELINES]
    if bad:
        raise ConfigError(f"explain.baselines: unknown {bad}; valid: {sorted(BASELINES)}")
    if out["regions"] not in REGIONS:
        raise ConfigError(f"explain.regions must be one of {list(REGIONS)}; got {out['regions']!r}")
    if out["anchors"] not in (None, *ANCHORS):
        raise ConfigError(f"explain.anchors must be one of {sorted(ANCHORS)} or null; got {out['anchors']!r}")
    unknown = sorted(set(out["train"]) - {"cnn", "vit"})
    if unknown:
        raise ConfigError(f"explain.train holds 'cnn' and 'vit' sections only; got {unknown}")
    try:
        Recipe.from_section(out["recipe"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return out


def _family(arch: str) -> str:
    return "vit" if arch.startswith(VIT_FAMILIES) else "cnn"


def train_settings(config: Mapping[str, Any], arch: str) -> TrainSettings:
    """``train`` merged with ``explain.train.cnn`` (CNNs) or ``explain.train.vit`` (ViT, Swin)."""
    study = study_config(config)
    return TrainSettings.from_config(deep_merge(config["train"], study["train"].get(_family(arch)) or {}))


def model_section(config: Mapping[str, Any], arch: str, task: TaskSpec) -> dict[str, Any]:
    """The registry model section of ``arch`` for this study (size, image side, outputs, weights file)."""
    study = study_config(config)
    recipe = Recipe.from_section(study["recipe"])
    section = {**study_model_section(arch, study["size"], recipe.image_size), "num_classes": task.num_outputs}
    weights = (study["pretrained"] or {}).get(arch)
    if weights:
        section["pretrained"] = str(weights)
    if section["name"] == "timm":
        section["in_channels"] = 1
    if section["name"] == "multitask_frcnn":
        del section["num_classes"]
        section.update(num_findings=task.num_outputs, num_box_classes=task.num_outputs)
    return section


def _multitask(section: Mapping[str, Any]) -> bool:
    return section["name"] == "multitask_frcnn"


def training_key(config: Mapping[str, Any], arch: str, seed: int) -> str:
    """Hash of everything that determines a trained classifier (its registry tag ``explain=<key>``)."""
    study = study_config(config)
    task = task_of(config)
    return config_hash({"model": model_section(config, arch, task), "task": task_record(task),
                        "data": data_identity(config["data"]["h5"]), "recipe": asdict(Recipe.from_section(study["recipe"])),
                        "balanced": study["balanced"], "train": asdict(train_settings(config, arch)), "seed": seed,
                        "monitor": study["monitor"]})


# ----------------------------------------------------------------------------- training


def study_task(config: Mapping[str, Any], splits: Mapping[str, Any]) -> TaskSpec:
    """The config's task; a multi-label task with ``positive_weights`` gets its BCE weights (negatives /
    positives per finding, seed 000's weighting) from the study's training records."""
    task = task_of(config)
    if task.multilabel and getattr(task, "positive_weights", False) and task.pos_weight is None:
        base, rows = splits["train"]
        task = task.fit_positive_weights(np.asarray(base.targets)[rows])
    return task


def train_architecture(config: Mapping[str, Any], arch: str, seed: int, splits: Mapping[str, Any],
                       registry: Registry, progress: bool = True) -> tuple[nn.Module, Entry]:
    """The trained classifier of ``arch`` and ``seed``: the registry entry of the same key when one exists,
    else trained (resuming its run directory after a kill) and saved."""
    study = study_config(config)
    task = study_task(config, splits)
    key = training_key(config, arch, seed)
    section = model_section(config, arch, task)
    done = registry.entries(stage=STAGE, tag=f"explain={key}")
    if done:
        state, entry = registry.load(done[-1].id, stage=STAGE)
        model = create_model({k: v for k, v in section.items() if k != "pretrained"})
        model.load_state_dict(state["model"])
        return model, entry
    recipe = Recipe.from_section(study["recipe"])
    ctx = setup(str(config["train"].get("device", "auto")))
    seed_everything(seed, bool(config["train"].get("deterministic")))
    model = create_model(section)
    settings = train_settings(config, arch)
    run_dir = Path(config["runs"]["root"]) / STAGE / study["name"] / f"{arch}-seed{seed}-{key}"
    boxes = list(task.names) if _multitask(section) else None
    objective = MultiTaskDetectionTask(model, task, task.names) if boxes else ClassifierTask(model, task)
    trainer = Trainer(objective, settings, run_dir, study["monitor"],
                      "min" if study["monitor"].endswith("loss") else "max", seed=seed, progress=progress,
                      name=f"explain/{arch}", dist=ctx)
    run_config = {**config, "seed": seed}
    loaders = [make_loader(run_config, split, settings.batch_size, split == "train", trainer.device,
                           dataset=StudyImages(*splits[split], recipe, augment=split == "train", box_findings=boxes),
                           dist=ctx)
               for split in ("train", "val")]
    tic = time.perf_counter()
    result = trainer.fit(*loaders, resume=(run_dir / "state.pt").is_file())
    model.load_state_dict(result.best_state)
    entry_id = None
    if ctx.is_main:
        entry_id = registry.save(
            {"model": result.best_state}, stage=STAGE, config=copy.deepcopy(dict(config)),
            architecture={"model": section, "input_size": [recipe.image_size] * 2, "task": task_record(task),
                          "recipe": asdict(recipe)},
            metrics={**result.best_metrics, "epochs": float(result.epochs_run),
                     "train_seconds": float(sum(r.get("seconds", 0.0) for r in result.history)),
                     "wall_seconds": time.perf_counter() - tic,
                     "parameters": float(sum(p.numel() for p in model.parameters()))},
            tags=[f"explain={key}", f"arch={arch}", f"seed={seed}", f"study={study['name']}"]).id
    return model, registry.resolve(broadcast_object(entry_id, ctx), stage=STAGE)


# ----------------------------------------------------------------------------- explaining and scoring


def _probabilities(model: nn.Module, dataset: StudyImages, task: TaskSpec, device: torch.device,
                   batch_size: int) -> np.ndarray:
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = torch.stack([dataset[i]["image"] for i in range(start, min(len(dataset), start + batch_size))])
            out.append(task.probabilities(model(batch.to(device))).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _detection_map(model: nn.Module, test: StudyImages, task: TaskSpec, device: torch.device,
                   batch_size: int) -> dict[str, Any] | None:
    """Seed 000's detection mAP at IoU 0.5 of the multi-task model on the test images with boxes."""
    boxed = StudyImages(test.base, test.rows, test.recipe, augment=False, box_findings=task.names)
    predictions, truth = [], []
    with torch.no_grad():
        for start in range(0, len(boxed), batch_size):
            items = [boxed[i] for i in range(start, min(len(boxed), start + batch_size))]
            out = model(torch.stack([it["image"] for it in items]).to(device))
            predictions += [{k: v.cpu() for k, v in d.items()} for d in out["detections"]]
            truth += unpad_targets(torch.stack([it["boxes"] for it in items]),
                                   torch.stack([it["box_labels"] for it in items]),
                                   torch.tensor([it["n_boxes"] for it in items]))
    if not any(len(t["boxes"]) for t in truth):
        return None
    return detection_map(predictions, truth, task.names)


def proportion_interval(successes: int, trials: int) -> list[float] | None:
    """Clopper-Pearson exact 95 % interval of a proportion (accuracy, precision, recall); None for no trials."""
    if trials == 0:
        return None
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def classification_row(task: TaskSpec, targets: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Table 3.1's accuracy, precision, recall (at ``threshold``) and AUC for one output; per-finding
    AUROC for several findings; accuracy and macro AUC for exclusive classes."""
    if task.multilabel and task.num_outputs == 1 or not task.multilabel and task.num_outputs == 2:
        y = (targets.reshape(len(targets), -1)[:, 0] > 0.5) if task.multilabel else targets == 1
        p = probs[:, 0] if task.multilabel else probs[:, 1]
        pred = p >= threshold
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        both = 0 < y.sum() < len(y)
        auc = float(roc_auc_score(y, p)) if both else float("nan")
        correct = int((pred == y).sum())
        return {"kind": "binary", "n": len(y), "positives": int(y.sum()),
                "accuracy": correct / len(y), "precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"), "auc": auc,
                "accuracy_ci": proportion_interval(correct, len(y)), "precision_ci": proportion_interval(tp, tp + fp),
                "recall_ci": proportion_interval(tp, tp + fn), "proportion_ci_method": "Clopper-Pearson exact",
                "auc_ci": delong_interval(y.astype(int), p)["ci"] if both else None, "threshold": threshold}
    if task.multilabel:
        m = multilabel_metrics(targets, probs, task.names)
        return {"kind": "multilabel", "n": len(targets), "auroc_macro": m["auroc_macro"],
                "per_finding": {k: v["auroc"] for k, v in m["per_finding"].items()}}
    m = classification_metrics(targets, probs, task.names)
    return {"kind": "exclusive", "n": len(targets), "accuracy": m["accuracy"], "auc_macro": m["auc_macro"]}


def _score(maps: np.ndarray, pairs: Sequence[Pair], both: bool = False) -> dict[str, np.ndarray]:
    """Per-pair scores of ``maps`` against the pairs' regions and, with ``both``, against their gaze
    (``GAZE_METRICS``); NaN where a map is NaN (no map for that pair) or the film has no gaze."""
    maps = np.asarray(maps, np.float64)
    finite = finite_rows(maps)
    out = score_rows(finite, lambda rows: _against_regions(maps[rows], [pairs[i] for i in rows]))
    if both:
        with_gaze = finite & np.array([p.gaze_region is not None for p in pairs])
        out.update(score_rows(with_gaze, lambda rows: _against_gaze(maps[rows], [pairs[i] for i in rows]),
                              GAZE_METRICS))
    return out


def _against_regions(maps: np.ndarray, pairs: Sequence[Pair]) -> dict[str, np.ndarray]:
    regions = np.stack([p.region for p in pairs])
    out = localisation_scores(maps, regions)
    boxes = [p.boxes for p in pairs]
    with_boxes = all(b is not None and len(b) for b in boxes)
    t = threshold_scores(maps, regions, boxes if with_boxes else None)
    out.update({f"{k}@{th:g}": t[k][:, j] for k in THRESHOLD_METRICS for j, th in enumerate(IOU_THRESHOLDS)})
    return out


def _against_gaze(maps: np.ndarray, pairs: Sequence[Pair]) -> dict[str, np.ndarray]:
    scores = localisation_scores(maps, np.stack([p.gaze_region for p in pairs]))
    cc = np.atleast_1d(correlation_coefficient(maps, np.stack([p.gaze_map for p in pairs])))
    return {"gaze_diff": scores["diff"], "gaze_ehr_auc": scores["ehr_auc"],
            "gaze_energy_pointing_game": scores["energy_pointing_game"], "gaze_cc": np.asarray(cc, np.float64)}


def _pair_images(dataset: StudyImages, pairs: Sequence[Pair]) -> torch.Tensor:
    cache: dict[int, torch.Tensor] = {}
    for p in pairs:
        if p.position not in cache:
            cache[p.position] = dataset[p.position]["image"]
    return torch.stack([cache[p.position] for p in pairs])


def _baseline_maps(name: str, pairs: Sequence[Pair], test: StudyImages, prior: np.ndarray,
                   gaze_model: Callable[[Sequence[Pair]], np.ndarray] | None) -> np.ndarray | None:
    size = test.recipe.image_size
    if name == "uniform":
        return np.ones((len(pairs), size, size))
    if name == "centre_bias":
        return np.broadcast_to(prior, (len(pairs), size, size)).copy()
    if name == "radiologist_gaze":
        if not getattr(test.base, "has_heatmap", False):
            return None
        items = [test.base[int(test.rows[p.position])] for p in pairs]
        if not any(item["has_gaze"] for item in items):
            return None
        return np.stack([resize_map(item["heatmap"][0].numpy(), size) if item["has_gaze"]
                         else np.full((size, size), np.nan) for item in items])
    if name == "gaze_model":
        return None if gaze_model is None else gaze_model(pairs)
    raise ValueError(f"unknown baseline {name!r}")


def _centre_prior(train: StudyImages, task: TaskSpec, regions: str, gaze_percent: float, limit: int = 2000) -> np.ndarray:
    """Mean training gaze map (films with gaze) when the file has gaze, else the mean of the training pairs'
    regions."""
    size = train.recipe.image_size
    total, count = np.zeros((size, size)), 0
    has_gaze = getattr(train.base, "has_heatmap", False)
    for position in range(min(len(train), limit)):
        row = int(train.rows[position])
        if has_gaze:
            item = train.base[row]
            if not item["has_gaze"]:
                continue
            heat = resize_map(item["heatmap"][0].numpy(), size)
            total += heat / max(heat.sum(), 1e-12)
            count += 1
        else:
            for p in pairs_of(train.base, row, position, train.base.targets[row], task, size, regions, gaze_percent):
                total += p.region
                count += 1
    return total / count if count else np.ones((size, size))


def _gaze_model(config: Mapping[str, Any], ref: str, test: StudyImages, device: torch.device
                ) -> Callable[[Sequence[Pair]], np.ndarray]:
    unet, encoder, entry = load_saliency(Registry(config["registry"]["root"]), ref)
    if list(entry.architecture.get("input_size", [])) != list(test.base.canvas):
        raise InputError(f"gaze model {entry.id} was trained on {entry.architecture.get('input_size')} canvases, "
                         f"the study's file holds {list(test.base.canvas)}")
    unet.eval().to(device)
    if encoder is not None:
        encoder.eval().to(device)

    def predict(pairs: Sequence[Pair]) -> np.ndarray:
        images = torch.stack([test.base[int(test.rows[p.position])]["image"] for p in pairs]).to(device)
        with torch.no_grad():
            aux = encoder.features_only(images) if encoder is not None else None
            sal = saliency_from_logits(unet(images, aux=aux)["logits"].float())[:, 0].cpu().numpy()
        return np.stack([resize_map(s, test.recipe.image_size) for s in sal])

    return predict


# ----------------------------------------------------------------------------- the study


def _summary(values: np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def run_study(config: Mapping[str, Any], architectures: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, seeds: int | None = None, out_dir: str | Path = "reports/explain",
              progress: bool = True) -> dict[str, Any]:
    """Train, explain, score and report (see the module docstring); returns the metrics written to
    ``<out_dir>/<explain.name>/metrics.json``."""
    from gazecxr.explain.cams import explain, target_layer

    study = study_config({**config, "explain": {**(config.get("explain") or {}),
                                                 **({"methods": list(methods)} if methods else {})}})
    architectures = list(architectures or study["architectures"])
    methods = list(study["methods"])
    n_seeds = int(seeds or study["seeds"])
    task = task_of(config)
    recipe = Recipe.from_section(study["recipe"])
    registry = Registry(config["registry"]["root"])
    device = resolve_device(str(config["train"].get("device", "auto")))
    base_seed = int(config.get("seed", 0))
    split_sets = study_splits(config["data"]["h5"], task, study["balanced"], base_seed)
    test = StudyImages(*split_sets["test"], recipe, augment=False)
    if study["max_test"]:
        test = StudyImages(test.base, test.rows[: int(study["max_test"])], recipe, augment=False)
    train = StudyImages(*split_sets["train"], recipe, augment=False)
    targets = np.stack([np.asarray(test.base.targets[int(r)]) for r in test.rows]) if task.multilabel \
        else np.asarray([int(test.base.targets[int(r)]) for r in test.rows])
    pairs = [p for position, row in enumerate(test.rows)
             for p in pairs_of(test.base, int(row), position, test.base.targets[int(row)], task, recipe.image_size,
                               study["regions"], float(study["gaze_region_percent"]))]
    if not pairs:
        raise InputError(f"{config['data']['h5']}: no test (image, finding) pair has a region to score")
    both = study["regions"] == "both"
    tic = time.perf_counter()
    gaze_model = (_gaze_model(config, study["gaze_model"], test, device)
                  if "gaze_model" in study["baselines"] and study["gaze_model"] else None)
    prior = _centre_prior(train, task, study["regions"], float(study["gaze_region_percent"]))
    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    classification: dict[str, Any] = {}
    entries: dict[str, list[str]] = {}
    layers: dict[str, str] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    keep = max(int(study["figure_pairs"]), int(study["gallery_pairs"]))
    batch = int(config["train"].get("batch_size", 16))
    bar = tqdm(total=len(architectures) * n_seeds, desc="explain study", unit="model", disable=not progress)
    for arch in architectures:
        per_seed: list[dict[str, dict[str, np.ndarray]]] = []
        rows = []
        for k in range(n_seeds):
            model, entry = train_architecture(config, arch, base_seed + k, split_sets, registry, progress)
            entries.setdefault(arch, []).append(entry.id)
            model = model.to(device).eval()
            detection = _detection_map(model, test, task, device, batch) if hasattr(model, "as_classifier") else None
            model = model.as_classifier() if hasattr(model, "as_classifier") else model
            rows.append(classification_row(task, targets, _probabilities(model, test, task, device, batch),
                                           float(study["decision_threshold"])))
            if detection is not None:
                rows[-1]["detection_map"] = detection["map"]
                rows[-1]["detection_ap"] = detection["per_class"]
            layers[arch] = target_layer(model).description
            seed_scores: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in methods}
            for start in range(0, len(pairs), batch):
                chunk = pairs[start:start + batch]
                images = _pair_images(test, chunk).to(device)
                wanted = torch.tensor([p.target for p in chunk])
                for method in methods:
                    maps = explain(model, images, wanted, method)
                    for name, values in _score(maps, chunk, both).items():
                        seed_scores[method].setdefault(name, []).append(values)
                    if k == 0 and start < keep:
                        examples.setdefault(f"{arch}|{method}", []).extend(maps[: keep - start])
            per_seed.append({m: {n: np.concatenate(v) for n, v in by.items()} for m, by in seed_scores.items()})
            bar.update(1)
        for method in methods:
            scores[f"{arch}|{method}"] = {n: np.mean([s[method][n] for s in per_seed], axis=0) for n in per_seed[0][method]}
        classification[arch] = _seed_rows(rows)
    bar.close()
    for name in study["baselines"]:
        maps = _baseline_maps(name, pairs, test, prior, gaze_model)
        if maps is None:
            continue
        scores[name] = _score(maps, pairs, both)
        examples[name] = list(maps[:keep])
    patients = [str(test.base.patient_ids[int(test.rows[p.position])]) for p in pairs]
    metrics = _assemble(config, study, task, architectures, methods, pairs, scores, classification, entries, layers,
                        n_seeds, len(test), time.perf_counter() - tic, patients)
    report = Path(out_dir) / study["name"]
    if not setup(str(config["train"].get("device", "auto"))).is_main:
        return metrics  # under torchrun every rank trained and scored; rank 0 writes the report
    report.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_text_atomic(report / "tables.md", study_tables(metrics))
    grey = {p.position: test.grey(p.position) for p in pairs[:keep]}
    _figures(report, metrics, pairs[: int(study["figure_pairs"])], grey,
             {k: np.asarray(v) for k, v in examples.items()}, architectures, methods)
    _page(report, metrics, pairs[: int(study["gallery_pairs"])], grey, examples)
    return metrics


def _seed_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float):
            out[key] = seed_summary([r[key] for r in rows])["mean"] if len(rows) > 1 else value
    if len(rows) > 1:
        out["per_seed"] = rows
        out["over_seeds"] = {key: seed_summary([r[key] for r in rows]) for key, value in rows[0].items()
                             if isinstance(value, float) and all(np.isfinite(r[key]) for r in rows)}
    return out


def _assemble(config: Mapping[str, Any], study: Mapping[str, Any], task: TaskSpec, architectures: Sequence[str],
              methods: Sequence[str], pairs: Sequence[Pair], scores: Mapping[str, Mapping[str, np.ndarray]],
              classification: Mapping[str, Any], entries: Mapping[str, list[str]], layers: Mapping[str, str],
              n_seeds: int, n_test: int, seconds: float, patients: Sequence[str]) -> dict[str, Any]:
    names = [p.finding for p in pairs]
    summary = {row: {metric: _summary(v) for metric, v in by.items()} for row, by in scores.items()}
    interval_metrics = ("diff", "ehr_auc", *(("energy_pointing_game", *GAZE_METRICS) if study["regions"] == "both"
                                             else ()))
    for row, by in scores.items():
        for metric in interval_metrics:
            summary[row][metric]["ci"] = mean_interval(by[metric], patients)["ci"]
    statistics = {}
    for method in methods:
        rows = {arch: scores[f"{arch}|{method}"] for arch in architectures}
        for metric in interval_metrics:
            samples = {arch: by[metric][np.isfinite(by[metric])] for arch, by in rows.items()}
            try:
                statistics[f"{method}|{metric}"] = {"anova": one_way_anova(samples), "tukey": tukey_hsd(samples)}
            except ValueError as err:
                statistics[f"{method}|{metric}"] = {"skipped": str(err)}
    h5 = config["data"]["h5"]
    return json_safe({
        "name": study["name"], "task": task.name, "findings": sorted(set(names)),
        "data": str(h5), "synthetic": bool(is_synthetic_h5(h5 if isinstance(h5, str) else h5[0])),
        "n_test": n_test, "n_pairs": len(pairs), "seeds": n_seeds, "architectures": list(architectures),
        "methods": list(methods), "baselines": [b for b in study["baselines"] if b in scores],
        "target_layers": dict(layers), "entries": dict(entries), "regions": study["regions"],
        "image_size": Recipe.from_section(study["recipe"]).image_size, "thresholds": list(IOU_THRESHOLDS),
        "gaze_region_percent": float(study["gaze_region_percent"]),
        "classification": dict(classification), "localisation": summary, "statistics": statistics,
        "anchors": study["anchors"], "seconds": seconds, "package_version": __version__,
        "scores": {row: {m: v.tolist() for m, v in by.items() if m in interval_metrics} for row, by in scores.items()},
        "pairs_with_gaze": sum(p.gaze_region is not None for p in pairs) if study["regions"] == "both" else None,
        "pair_findings": names,
    })


# ----------------------------------------------------------------------------- tables


def _n(value: Any, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def _p(value: Any) -> str:
    return "—" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _ci(ci: Sequence[float] | None) -> str:
    return "—" if not ci or any(c is None for c in ci) else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _paper(arch: str) -> str:
    return PAPER_NAMES.get(arch, arch)


def study_tables(metrics: Mapping[str, Any]) -> str:
    """tables.md of a study: Table 3.1 / 3.2 layouts (with the papers' anchor rows), EHR-AUC, ANOVA and
    Tukey HSD, IoU and box hit rates per threshold, every row's localisation scores, notes."""
    archs, methods = metrics["architectures"], metrics["methods"]
    anchors = ANCHORS.get(metrics["anchors"] or "", {})
    where = "synthetic data" if metrics["synthetic"] else "this data"
    parts = [f"# Explanation study {metrics['name']} ({metrics['task']}, {metrics['n_test']} test images, "
             f"{metrics['n_pairs']} scored pairs, {metrics['seeds']} seed(s))", ""]
    if metrics["synthetic"]:
        parts += [f"**{SYNTHETIC_NOTICE}**: the rows marked *ours* are measured on synthetic phantoms; the "
                  "*paper* rows are the source documents' numbers on real data, shown as the anchor.", ""]
    kind = next(iter(metrics["classification"].values()))["kind"] if metrics["classification"] else None
    parts += ["## Diagnosis (Table 3.1 layout)", ""]
    if kind == "binary":
        rows = [[f"{_paper(a)} (ours, {where})",
                 *(f"{_n(metrics['classification'][a][k])} {_ci(metrics['classification'][a].get(k + '_ci'))}"
                   for k in ("accuracy", "precision", "recall")),
                 _n(metrics["classification"][a]["auc"]), _ci(metrics["classification"][a].get("auc_ci"))]
                for a in archs]
        rows += [[f"{_paper(a)} (paper, real SIIM-ACR)", *(_n(v) for v in values), "—"]
                 for a, values in anchors.get("table31", {}).items() if a in archs]
        parts += [_table(["model", "accuracy [95 % CI]", "precision [95 % CI]", "recall [95 % CI]", "AUC",
                          "AUC 95 % CI (DeLong)"], rows),
                  "", "Accuracy, precision and recall intervals: Clopper-Pearson exact (binomial) 95 %.", ""]
    elif kind == "multilabel":
        findings = list(next(iter(metrics["classification"].values()))["per_finding"])
        rows = [[f"{_paper(a)} (ours)", _n(metrics["classification"][a]["auroc_macro"]),
                 *(_n(metrics["classification"][a]["per_finding"][f], 3) for f in findings)] for a in archs]
        parts += [_table(["model", "macro AUROC", *findings], rows), ""]
        paper = anchors.get("macro_auc", {})
        if paper:
            parts += ["Paper anchors (macro AUROC, real NIH ChestX-ray14 official test split): "
                      + "; ".join(f"{_paper(a.split(' ')[0])} {v:.3f} ({src})" for a, (v, src) in paper.items()), ""]
    elif kind == "exclusive":
        parts += [_table(["model", "accuracy", "macro AUC"],
                         [[_paper(a), _n(metrics["classification"][a]["accuracy"]),
                           _n(metrics["classification"][a]["auc_macro"])] for a in archs]), ""]
    detectors = {a: c for a, c in metrics["classification"].items() if c.get("detection_map") is not None}
    for arch, row in detectors.items():
        paper = anchors.get("multitask_map")
        parts += [f"Detection mAP at IoU 0.5 of {_paper(arch)} (Faster R-CNN head): {_n(row['detection_map'], 3)} "
                  f"(ours); per finding: " + ", ".join(f"{k} {_n(v, 3)}" for k, v in row["detection_ap"].items())
                  + (f"; paper (seed 000, real NIH-14): {paper:.3f}." if paper else "."), ""]
    loc = metrics["localisation"]
    for method in methods:
        parts += [f"## {method}: Diff = mean inside − mean outside the region (Table 3.2 layout)", ""]
        header = ["", *(_paper(a) for a in archs)]
        rows = [[stat, *(_n(loc[f"{a}|{method}"]["diff"][stat], 3) for a in archs)] for stat in ("mean", "std", "min", "max")]
        rows.insert(1, ["95 % CI of the mean", *(_ci(loc[f"{a}|{method}"]["diff"].get("ci")) for a in archs)])
        if method == "gradcam" and anchors.get("table32"):
            paper = anchors["table32"]
            rows += [[f"{stat} (paper, real SIIM-ACR)", *(_n(paper[a][i], 3) if a in paper else "—" for a in archs)]
                     for i, stat in enumerate(("mean", "std", "min", "max"))]
        parts += [_table(header, rows), ""]
        paper_ehr = anchors.get("ehr_auc") if method == "gradcam" else None
        ehr = [[_paper(a), _n(loc[f"{a}|{method}"]["ehr_auc"]["mean"]), _ci(loc[f"{a}|{method}"]["ehr_auc"].get("ci")),
                _n(loc[f"{a}|{method}"]["ehr_auc"]["std"]), *([_n(paper_ehr.get(a))] if paper_ehr else [])] for a in archs]
        parts += [f"### {method}: EHR-AUC per model (Fig. 3.2)", "",
                  _table(["model", "EHR-AUC mean", "95 % CI", "std", *(["paper (real SIIM-ACR)"] if paper_ehr else [])],
                         ehr), ""]
        for metric in ("diff", "ehr_auc"):
            st = metrics["statistics"].get(f"{method}|{metric}", {})
            if "skipped" in st or not st:
                parts += [f"ANOVA / Tukey of {metric}: not computed ({st.get('skipped', 'fewer than 2 models')}).", ""]
                continue
            a = st["anova"]
            parts += [f"### {method}: one-way ANOVA and Tukey HSD of {metric} across models", "",
                      f"F({a['df_between']}, {a['df_within']}) = {a['F']:.3f}, p = {_p(a['p'])}.", "",
                      _table(["a", "b", "mean a − b", "95 % CI", "p (Tukey)"],
                             [[_paper(t["a"]), _paper(t["b"]), _n(t["diff"], 3),
                               f"[{_n(t['ci'][0], 3)}, {_n(t['ci'][1], 3)}]", _p(t["p"])] for t in st["tukey"]]), ""]
        if method == "gradcam" and anchors.get("anova"):
            parts += [f"Paper (real SIIM-ACR): {anchors['anova']}.", ""]
    thresholds = metrics["thresholds"]
    rows_all = [*(f"{a}|{m}" for a in archs for m in methods), *metrics["baselines"]]
    parts += ["## IoU of the thresholded map {m̂ > t} with the region, per threshold t (seed 003 / Li et al.)", "",
              _table(["map", *(f"t={t:g}" for t in thresholds)],
                     [[r.replace("|", " · "), *(_n(loc[r][f"iou@{t:g}"]["mean"], 3) for t in thresholds)] for r in rows_all]
                     + ([["Li et al. (paper, real NIH-14, box-supervised; as quoted by seed 003)",
                          *(f"{v:.2f}" for v in anchors["li_et_al"])]] if anchors.get("li_et_al") else [])), ""]
    if anchors.get("iou_seed003"):
        s3 = anchors["iou_seed003"]
        parts += ["Seed 003 Table 7 (paper, real NIH-14, Grad-CAM IoU at its own thresholds "
                  + ", ".join(f"{t:g}" for t in s3["thresholds"]) + "): "
                  + "; ".join(f"{_paper(k)} " + "/".join(f"{v:.3f}" for v in vals)
                              for k, vals in s3.items() if k != "thresholds"), ""]
    if any(loc[r].get(f"box_iou@{thresholds[0]:g}", {}).get("n") for r in rows_all):
        parts += ["## Box of the largest component of {m̂ > t} against the ground-truth boxes", "",
                  _table(["map", *(f"IoU / T(IoU≥0.5) / T(IoBB≥0.5) t={t:g}" for t in thresholds)],
                         [[r.replace("|", " · "), *(f"{_n(loc[r][f'box_iou@{t:g}']['mean'], 3)} / "
                                                    f"{_n(loc[r][f'box_hit@{t:g}']['mean'], 2)} / "
                                                    f"{_n(loc[r][f'iobb_hit@{t:g}']['mean'], 2)}" for t in thresholds)]
                          for r in rows_all]), ""]
    if metrics["regions"] == "both":
        parts += _side_by_side(metrics, rows_all)
    parts += ["## Every row, every localisation metric (mean ± std over pairs)", "",
              _table(["map", *LOCALISATION_METRICS],
                     [[r.replace("|", " · "), *(f"{_n(loc[r][m]['mean'], 3)} ± {_n(loc[r][m]['std'], 3)}"
                                                for m in LOCALISATION_METRICS)] for r in rows_all]), ""]
    parts += ["## Notes", "",
              f"- Pairs: each test image's present finding with an annotated region ({metrics['regions']}); maps at "
              f"{metrics['image_size']}×{metrics['image_size']}, the classifier's input, min–max normalised per image.",
              "- Target layers: " + "; ".join(f"{_paper(a)}: {d}" for a, d in metrics["target_layers"].items()) + ".",
              "- Diff and EHR-AUC (100 equidistant thresholds) on the normalised map; IoU at t uses {m̂ > t}; CAM box: "
              "largest 8-connected component; T(IoU) / T(IoBB): share of pairs with IoU / IoBB ≥ 0.5.",
              "- 95 % CIs of mean Diff and EHR-AUC: patient bootstrap (2,000 resamples, seeded). Over several seeds "
              "metrics.json also holds each classification number's t interval over seeds (over_seeds).",
              "- ANOVA and Tukey HSD treat each model's per-pair scores as independent groups (the seed's "
              "convention), scipy.stats.f_oneway and tukey_hsd." + (" Scores are averaged over seeds per pair."
                                                                   if metrics["seeds"] > 1 else ""),
              *(["- regions: gaze — the region is the hottest part of the radiologist's own map, so the "
                 "radiologist_gaze row is an upper bound (the region's source), not a competitor."]
                if metrics["regions"] == "gaze" and "radiologist_gaze" in metrics["baselines"] else []),
              *([f"- regions: both — every map is scored against the annotation (the mask) and, on the "
                 f"{metrics['pairs_with_gaze']} of {metrics['n_pairs']} pairs whose film has gaze, against the "
                 f"hottest {metrics['gaze_region_percent']:g} % of the radiologist's gaze map (Diff, EHR-AUC, "
                 "energy pointing game) and the gaze map itself (CC); on the gaze side the radiologist_gaze row "
                 "is the region's source, an upper bound, not a competitor."]
                if metrics["regions"] == "both" else []),
              f"- Wall time of the study (training included): {metrics['seconds']:.1f} s.", ""]
    return "\n".join(parts)


def _side_by_side(metrics: Mapping[str, Any], rows: Sequence[str]) -> list[str]:
    """The mask and gaze columns of every row next to each other (``regions: both``)."""
    loc = metrics["localisation"]

    def cell(row: str, metric: str) -> str:
        entry = loc[row].get(metric, {})
        return f"{_n(entry.get('mean'), 3)} {_ci(entry.get('ci'))}" if entry.get("n") else "—"

    header = ["map", "Diff: mask", "Diff: gaze", "EHR-AUC: mask", "EHR-AUC: gaze", "energy PG: mask",
              "energy PG: gaze", "CC with gaze", "pairs with gaze"]
    table = [[r.replace("|", " · "), cell(r, "diff"), cell(r, "gaze_diff"), cell(r, "ehr_auc"), cell(r, "gaze_ehr_auc"),
              cell(r, "energy_pointing_game"), cell(r, "gaze_energy_pointing_game"), cell(r, "gaze_cc"),
              str(loc[r].get("gaze_diff", {}).get("n", 0))] for r in rows]
    anova = []
    for key, st in metrics["statistics"].items():
        method, metric = key.split("|")
        if metric.startswith("gaze_") and "anova" in st:
            a = st["anova"]
            anova.append(f"- {method}, {metric}: F({a['df_between']}, {a['df_within']}) = {a['F']:.3f}, "
                         f"p = {_p(a['p'])}")
    return ["## Against the masks and against the radiologist's gaze, side by side (mean [95 % CI])", "",
            _table(header, table), "",
            f"Gaze region: the hottest {metrics['gaze_region_percent']:g} % of the film's gaze map; CC: Pearson "
            "correlation of the map with the gaze map. Films without gaze have no gaze columns.", "",
            *(["One-way ANOVA across models of the gaze-side scores (Tukey HSD in metrics.json):", "", *anova, ""]
              if anova else [])]


# ----------------------------------------------------------------------------- figures and page

_JET = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _cam_figure(path: Path, shown: Sequence[Pair], grey: Mapping[int, np.ndarray],
                examples: Mapping[str, np.ndarray], archs: Sequence[str], method: str) -> None:
    """Fig. 3.1: a row per pair of ``shown`` (the image with its region, then each model's ``method`` map);
    no pairs (``explain.figure_pairs: 0``): no figure, an earlier one removed."""
    from matplotlib.figure import Figure

    if not shown:
        path.unlink(missing_ok=True)
        return
    fig = Figure(figsize=(2.0 * (len(archs) + 1), 2.0 * len(shown)))
    axes = fig.subplots(len(shown), len(archs) + 1, squeeze=False)
    for i, p in enumerate(shown):
        axes[i, 0].imshow(grey[p.position], cmap="gray")
        axes[i, 0].contour(p.region, levels=[0.5], colors="white", linewidths=0.8)
        axes[i, 0].set_ylabel(p.finding, fontsize=8)
        for j, arch in enumerate(archs):
            ax = axes[i, j + 1]
            ax.imshow(grey[p.position], cmap="gray")
            ax.imshow(examples[f"{arch}|{method}"][i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.contour(p.region, levels=[0.5], colors="white", linewidths=0.8)
            if i == 0:
                ax.set_title(_paper(arch), fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("image + region", fontsize=8)
    fig.suptitle(f"{method} per model (rows: test pairs; region outlined in white)", fontsize=9)
    save_figure_atomic(fig, path)


def _figures(report: Path, metrics: Mapping[str, Any], shown: Sequence[Pair], grey: Mapping[int, np.ndarray],
             examples: Mapping[str, np.ndarray], archs: Sequence[str], methods: Sequence[str]) -> None:
    """Fig. 3.1 (`_cam_figure` of ``shown``, the first ``explain.figure_pairs`` test pairs), Fig. 3.2
    (EHR-AUC per model and method) and the mean IoU per threshold."""
    from matplotlib.figure import Figure

    method = methods[0]
    _cam_figure(report / FIG31, shown, grey, examples, archs, method)
    loc = metrics["localisation"]
    fig = Figure(figsize=(max(4, 0.9 * len(archs) * len(methods)), 3.2))
    ax = fig.subplots()
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        means = [loc[f"{a}|{m}"]["ehr_auc"]["mean"] or 0 for a in archs]
        stds = [loc[f"{a}|{m}"]["ehr_auc"]["std"] or 0 for a in archs]
        ax.bar(np.arange(len(archs)) + k * width, means, width, yerr=stds, label=m, capsize=2)
    ax.set_xticks(np.arange(len(archs)) + width * (len(methods) - 1) / 2, [_paper(a) for a in archs], rotation=30,
                  fontsize=7, ha="right")
    ax.set_ylabel("EHR-AUC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, report / "fig32_ehr_auc.png")
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    for row in [*(f"{a}|{method}" for a in archs), *metrics["baselines"]]:
        ax.plot(metrics["thresholds"], [loc[row][f"iou@{t:g}"]["mean"] or 0 for t in metrics["thresholds"]],
                marker="o", label=row.replace("|", " · "))
    ax.set_xlabel("threshold t of the normalised map")
    ax.set_ylabel("mean IoU with the region")
    ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure_atomic(fig, report / "iou_thresholds.png")


def _thumb(grey: np.ndarray, heat: np.ndarray | None, region: np.ndarray) -> Image.Image:
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    if heat is not None:
        h = np.asarray(heat, np.float64)
        h = (h - h.min()) / (h.max() - h.min()) if np.ptp(h) > 0 else np.zeros_like(h)
        rgb = (0.55 * rgb + 0.45 * _JET[np.rint(h * 255).astype(np.uint8)]).astype(np.uint8)
    edge = region & ~(np.roll(region, 1, 0) & np.roll(region, -1, 0) & np.roll(region, 1, 1) & np.roll(region, -1, 1))
    rgb[edge] = 255
    return Image.fromarray(rgb)


def _options(values: Sequence[str]) -> str:
    return "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)


def _page(report: Path, metrics: Mapping[str, Any], pairs: Sequence[Pair], grey: Mapping[int, np.ndarray],
          examples: Mapping[str, Sequence[np.ndarray]]) -> None:
    import markdown

    thumbs = report / "thumbs"
    thumbs.mkdir(exist_ok=True)
    columns = [k for k in examples if len(examples[k]) >= len(pairs)]
    head = "".join(f'<th data-col="{html.escape(c)}">{html.escape(c.replace("|", " · "))}</th>' for c in columns)
    body = []
    for i, p in enumerate(pairs):
        name = f"{i:04d}_image.png"
        _thumb(grey[p.position], None, p.region).save(thumbs / name)
        cells = [f'<td><img src="thumbs/{name}" alt="image"><br>{html.escape(p.finding)}</td>']
        for c in columns:
            file = f"{i:04d}_{c.replace('|', '__').replace('+', 'p')}.png"
            _thumb(grey[p.position], examples[c][i], p.region).save(thumbs / file)
            cells.append(f'<td data-col="{html.escape(c)}"><img src="thumbs/{file}" alt="{html.escape(c)}"></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    models = sorted({c.split("|")[0] for c in columns})
    methods = sorted({c.split("|")[1] for c in columns if "|" in c})
    tables = markdown.markdown((report / "tables.md").read_text(encoding="utf-8"), extensions=["tables"])
    figures = "".join(f'<figure><img src="{f}" alt="{f}"><figcaption>{f}</figcaption></figure>'
                      for f in (FIG31, "fig32_ehr_auc.png", "iou_thresholds.png") if (report / f).is_file())
    banner = f'<p class="notice">{html.escape(SYNTHETIC_NOTICE)}</p>' if metrics["synthetic"] else ""
    text = _PAGE.format(title=html.escape(f"Explanation study {metrics['name']}"), banner=banner, tables=tables,
                        figures=figures, head=head, body="\n".join(body), models=_options(models),
                        methods=_options(methods), n=len(pairs))
    write_text_atomic(report / "index.html", text)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em}}.notice{{background:#b00020;color:#fff;padding:.5em}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:2px 5px;font-size:12px}}
figure{{display:inline-block}}figure img{{max-height:300px}}#gallery img{{width:112px}}
</style></head><body>{banner}<h1>{title}</h1>{tables}<h2>Figures</h2>{figures}
<h2>Every pair's maps ({n} pairs; region outlined in white)</h2>
<label>model <select id="model"><option value="">all</option>{models}</select></label>
<label>method <select id="method"><option value="">all</option>{methods}</select></label>
<table id="gallery"><tr><th>image</th>{head}</tr>{body}</table>
<script>
function show(){{const m=document.getElementById('model').value, k=document.getElementById('method').value;
for(const el of document.querySelectorAll('[data-col]')){{const [a,b]=el.dataset.col.split('|');
const hit=(!m||a===m||b===undefined)&&(!k||b===k||b===undefined);el.style.display=hit?'':'none';}}}}
document.getElementById('model').onchange=show;document.getElementById('method').onchange=show;
</script></body></html>
"""
