"""Shareable weights: a trained three-stage model as a folder in the Hugging Face convention.

``gazecxr export --format pretrained --checkpoint REF --out DIR`` (twin:
``python -m gazecxr.inference.export``) writes

- ``model.safetensors``: the `GazeCXRModel` state dict (keys ``encoder.*``, ``unet.*``,
  ``classifier.*``), no pickle;
- ``config.json``: the architecture (one model section per part, as `gazecxr.models.create_model`
  takes it), the task and its thresholds, the input size, the preprocessing, the registry lineage
  with each entry's metrics, and whether the training data were synthetic;
- ``README.md``: the model card (intended use, data, metrics, limitations).

`GazeCXRModel.from_pretrained(DIR)` and ``load_predictor(DIR)`` read it back. The folder is written
under a temporary name, re-read and checked to give the very outputs of the registry model, and only
then renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gazecxr import __version__
from gazecxr.config.errors import CheckFailedError, InputError, OutputExistsError, UnknownReferenceError
from gazecxr.data.provenance import is_synthetic_h5
from gazecxr.inference.predictor import PREPROCESSING, Predictor, checked_task, entry_input_size
from gazecxr.models.cooperative import GazeCXRModel
from gazecxr.models.weights import (
    CARD_FILE,
    CONFIG_FILE,
    PRETRAINED_FORMAT,
    PRETRAINED_FORMAT_VERSION,
    WEIGHTS_FILE,
    read_pretrained_config,
    save_tensors,
)
from gazecxr.training.checkpoint_io import load_full_model, offline_section
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device

PARTS = {"encoder": "stage1", "unet": "stage2", "classifier": "stage3"}
"""Each part of the assembled model and the registry stage whose architecture section builds it."""

TASK_DATASETS = {
    "egd_3class": "EGD-CXR (Normal / CHF / pneumonia labels of 1,083 MIMIC-CXR radiographs)",
    "reflacx_findings": "REFLACX (findings of MIMIC-CXR radiographs read by radiologists)",
    "nih14_findings": "NIH ChestX-ray14",
    "chexpert14": "CheXpert",
    "siim_pneumothorax": "SIIM-ACR Pneumothorax",
    "vindr_findings": "VinDr-CXR",
}
"""The dataset a task's labels come from, for the model card."""

GAZE_DATA = ("The saliency UNet learnt from radiologists' eye gaze: EGD-CXR or REFLACX, both recorded on "
             "MIMIC-CXR radiographs, which PhysioNet releases only to credentialed users under a data use "
             "agreement (as EGD-CXR and REFLACX themselves); weights trained on them may only be shared under "
             "the same terms.")

LIMITATIONS = (
    "Saliency maps predict where radiologists looked, not where disease is, and are not explanations of the "
    "classifier.",
    "Validation metrics selected the checkpoint and are optimistic; compare models on held-out test metrics "
    "with intervals.",
    "Inputs must follow the preprocessing in config.json; other scaling or aspect handling changes the outputs.",
)
REAL_DATA_LIMITATION = ("The gaze data come from a few radiologists at one centre (MIMIC-CXR: Beth Israel "
                        "Deaconess Medical Center, frontal views); performance on other hospitals, scanners, "
                        "projections or populations is unknown.")
SYNTHETIC_LIMITATION = ("Trained on synthetic phantoms: these weights say nothing about performance on radiographs.")


@dataclass(frozen=True)
class PretrainedExport:
    """What `export_pretrained` wrote."""

    path: str
    checkpoint: str
    files: dict[str, int]
    synthetic_data: bool | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return asdict(self)


def _section(lineage: Sequence[Entry], key: str, stage: str) -> dict[str, Any]:
    for entry in lineage:
        if entry.stage == stage and key in entry.architecture:
            return offline_section(entry.architecture[key])
    raise InputError(f"checkpoint {lineage[0].id}: its lineage has no {stage} entry with a {key!r} section")


def training_data_synthetic(lineage: Sequence[Entry]) -> bool | None:
    """True when any entry of the lineage trained on an HDF5 file marked synthetic, False when all
    of their files were found and none is, None when a file is no longer where its config says."""
    flags = []
    for entry in lineage:
        h5 = (entry.config.get("data") or {}).get("h5") if isinstance(entry.config, dict) else None
        if not h5 or not Path(h5).is_file():
            flags.append(None)
            continue
        flags.append(is_synthetic_h5(h5))
    if any(flag is True for flag in flags):
        return True
    return None if any(flag is None for flag in flags) else False


def _intervals(metrics: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """``{name: {value, ci}}`` of an entry's metrics; ``<name>_ci_low``/``<name>_ci_high`` pairs give
    the interval (None where the entry records none)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in metrics.items():
        if name.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        out[name] = {"value": value, "ci": None if low is None or high is None else [low, high]}
    return out


def evaluation_cells(node: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """The cells ``{value, ci, method}`` of an evaluation ``metrics.json``, keyed by their dotted path."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(node, Mapping):
        if "value" in node and "ci" in node and isinstance(node["value"], (int, float)):
            return {prefix: {"value": node["value"], "ci": node["ci"], "method": node.get("method")}}
        for key, sub in node.items():
            out.update(evaluation_cells(sub, f"{prefix}.{key}" if prefix else str(key)))
    return out


def pretrained_config(lineage: Sequence[Entry], synthetic: bool | None,
                      evaluation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` record of the stage-3 entry ``lineage[0]`` (its lineage as the registry gives it)."""
    entry = lineage[0]
    task, _ = checked_task(entry.architecture.get("task"), f"checkpoint {entry.id}")
    return {
        "format": PRETRAINED_FORMAT,
        "format_version": PRETRAINED_FORMAT_VERSION,
        "library": "gazecxr",
        "library_version": __version__,
        "model_type": "gazecxr-three-stage",
        "architecture": {part: _section(lineage, part, stage) for part, stage in PARTS.items()},
        "task": entry.architecture.get("task") or {"name": task.name},
        "classes": list(task.names),
        "multilabel": task.multilabel,
        "input_size": list(entry_input_size(entry)),
        "preprocessing": {
            "channels": 1, "dtype": "float32", "range": [0.0, 1.0], "scaling": "per-image min-max",
            "geometry": "letterbox: aspect kept, bilinear antialiased resize, centred, zero padding",
            "description": PREPROCESSING,
        },
        "outputs": {"saliency": "(N, H, W) on the canvas, each map sums to 1",
                    "probabilities": "(N, classes): " + ("sigmoid per finding" if task.multilabel else "softmax")},
        "checkpoint": entry.id,
        "sha256": entry.sha256,
        "lineage": [{"id": e.id, "stage": e.stage, "created": e.created, "sha256": e.sha256, "parents": e.parents,
                     "tags": e.tags, "metrics": _intervals(e.metrics)} for e in lineage],
        "metrics": {"validation": _intervals(entry.metrics),
                    **({"evaluation": evaluation_cells(evaluation)} if evaluation is not None else {})},
        "synthetic_data": synthetic,
    }


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _metric_rows(cells: Mapping[str, Mapping[str, Any]], where: str) -> list[str]:
    rows = []
    for name, cell in cells.items():
        ci = cell.get("ci")
        interval = f"[{_number(ci[0])}, {_number(ci[1])}]" if ci else "not recorded"
        rows.append(f"| {where} | {name} | {_number(cell['value'])} | {interval} |")
    return rows


def model_card(config: Mapping[str, Any]) -> str:
    """The ``README.md`` model card of a pretrained ``config.json`` record (Hugging Face front matter)."""
    task = config["task"].get("name", "egd_3class")
    synthetic = config["synthetic_data"]
    h, w = config["input_size"]
    if synthetic:
        data = ("**Synthetic phantoms.** These weights were trained on synthetic chest-film phantoms with simulated "
                "gaze (`gazecxr synthetic`), not on patient data: they demonstrate the format only, and their metrics "
                "are not comparable to any published number.")
    else:
        data = (f"Diagnosis labels: {TASK_DATASETS.get(task, task)} (see that dataset's access terms). {GAZE_DATA}")
        if synthetic is None:
            data += (" The training HDF5 file was not found at export, so whether it held synthetic phantoms "
                     "could not be checked.")
    rows = _metric_rows(config["metrics"]["validation"], "validation")
    rows += _metric_rows(config["metrics"].get("evaluation", {}), "test")
    lineage = "\n".join(f"- `{e['id']}` ({e['stage']}), sha256 `{e['sha256'][:12]}…`" for e in config["lineage"])
    first = SYNTHETIC_LIMITATION if synthetic else REAL_DATA_LIMITATION
    limitations = "\n".join(f"- {line}" for line in (first, *LIMITATIONS))
    return f"""---
license: mit
library_name: gazecxr
pipeline_tag: image-classification
tags:
- chest-x-ray
- eye-tracking
- saliency-prediction
- medical-imaging
- research-only
---

# gazecxr three-stage model `{config['checkpoint']}`

**For research only. Not a medical device; not for diagnosis, triage or any clinical decision.**

A DenseNet encoder, a dual-encoder Res-SE UNet that predicts where radiologists look (saliency),
and a fusion classifier on both, trained in three stages (gazecxr {config['library_version']}).
Task: `{task}` — outputs {', '.join(config['classes'])}
({'independent sigmoid per finding, thresholds in config.json' if config['multilabel'] else 'softmax over exclusive classes'}).
Input: one greyscale radiograph letterboxed into {h}×{w}; outputs: a saliency map on that canvas
(sums to 1) and the class probabilities.

## Intended use

Research on gaze-guided chest X-ray interpretation: reproducing and comparing models, studying
saliency prediction. Out of scope: any use on patients or in clinical workflows.

## Training data

{data}

## Metrics

Values recorded by the registry entries (validation split, used to select the checkpoint){' and the test evaluation given at export' if config['metrics'].get('evaluation') else ''}.
95 % intervals where they were recorded.

| split | metric | value | 95 % interval |
|---|---|---|---|
{chr(10).join(rows) or '| – | none recorded | | |'}

## Limitations

{limitations}

## Preprocessing

{config['preprocessing']['description']}

## How to load

```python
from gazecxr.predict import load_predictor
predictor = load_predictor("THIS_FOLDER")          # or GazeCXRModel.from_pretrained("THIS_FOLDER")
prediction = predictor.predict("image.png")
```

`model.safetensors` holds the weights (safetensors, no pickle); `config.json` the architecture,
task, input size, preprocessing and lineage.

## Lineage

{lineage}
"""


def _write_folder(tmp: Path, model: GazeCXRModel, config: Mapping[str, Any]) -> None:
    tmp.mkdir(parents=True)
    save_tensors(model.state_dict(), tmp / WEIGHTS_FILE, {"gazecxr.checkpoint": str(config["checkpoint"])})
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (tmp / CARD_FILE).write_text(model_card(config), encoding="utf-8")


def check_round_trip(model: GazeCXRModel, directory: Path, input_size: tuple[int, int]) -> None:
    """RuntimeError unless the folder's model has ``model``'s tensors exactly and gives its outputs
    exactly on two seeded random canvases."""
    loaded = GazeCXRModel.from_pretrained(directory)
    expected = model.state_dict()
    got = loaded.state_dict()
    differing = [k for k, v in expected.items() if k not in got or not torch.equal(got[k].cpu(), v.cpu())]
    if differing or set(got) != set(expected):
        raise CheckFailedError(f"{directory}: the written weights differ from the checkpoint's ({differing[:5]})")
    images = torch.rand(2, 1, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model.cpu().eval()(images), loaded(images)
    for key in ("saliency_logits", "class_logits"):
        if not torch.equal(a[key], b[key]):
            raise CheckFailedError(f"{directory}: the re-read model's {key} differ from the checkpoint's")


def export_pretrained(checkpoints: str | os.PathLike, run: str, out: str | os.PathLike,
                      synthetic: bool | None = None, evaluation: str | os.PathLike | None = None,
                      overwrite: bool = False) -> PretrainedExport:
    """Write stage-3 entry ``run`` of the registry at ``checkpoints`` as the pretrained folder ``out``.

    ``synthetic`` declares whether the training data were synthetic when the training HDF5 files are
    gone (it must agree with them when they are found). ``evaluation``: a ``metrics.json`` of the
    test evaluation whose ``{value, ci}`` cells go into the card. An existing ``out`` is replaced
    only with ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass overwrite to replace it")
    registry = Registry(checkpoints)
    model, lineage = load_full_model(registry, run)
    entry = lineage[0]
    found = training_data_synthetic(lineage)
    if found is not None and synthetic is not None and found != synthetic:
        raise InputError(f"checkpoint {entry.id}: its training data are {'synthetic' if found else 'not synthetic'} "
                         f"(HDF5 attribute), but synthetic={synthetic} was given")
    metrics = None
    if evaluation is not None:
        try:
            metrics = json.loads(Path(evaluation).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"evaluation metrics {evaluation}: {err}") from None
    config = pretrained_config(lineage, found if found is not None else synthetic, metrics)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}.{os.getpid()}.{secrets.token_hex(4)}")
    old = out.with_name(f".old-{out.name}.{os.getpid()}.{secrets.token_hex(4)}")
    replaced = False
    try:
        _write_folder(tmp, model.cpu(), config)
        check_round_trip(model, tmp, entry_input_size(entry))
        replaced = out.exists()
        if replaced:
            os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            if replaced:
                os.rename(old, out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if replaced:
        shutil.rmtree(old, ignore_errors=True)
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    return PretrainedExport(str(out), entry.id, files, config["synthetic_data"])


def load_pretrained_predictor(directory: str | os.PathLike, run: str | None = None,
                              device: str | torch.device | None = None) -> Predictor:
    """A PyTorch predictor on the pretrained folder ``directory``; ``run``, when given, must be (a prefix
    of) the registry id recorded in it."""
    config = read_pretrained_config(directory)
    if run is not None and run not in ("best", "latest") and not str(config["checkpoint"]).startswith(run):
        raise UnknownReferenceError(f"{directory} holds checkpoint {config['checkpoint']}, not {run!r}")
    task, thresholds = checked_task(config["task"], f"pretrained folder {directory}")
    model = GazeCXRModel.from_pretrained(directory)
    target = resolve_device("auto" if device is None else str(device))
    size = (int(config["input_size"][0]), int(config["input_size"][1]))
    return Predictor(model, str(config["checkpoint"]), size, target, task, thresholds)
