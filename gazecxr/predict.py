"""Inference with a trained three-stage model: saliency map, diagnosis and optional Grad-CAM.

Every output is in the geometry of the original radiograph. Library use::

    from gazecxr.predict import load_predictor
    predictor = load_predictor("checkpoints", run="best")
    prediction = predictor.predict("image.dcm", gradcam=True)

Command line: ``python -m gazecxr.predict IMAGE... --out DIR`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gazecxr.cli.options import add_checkpoint_argument, prog_name, run_main
from gazecxr.config.errors import InputError
from gazecxr.inference.predictor import (
    BACKENDS,
    DEFAULT_BATCH_SIZE,
    BasePredictor,
    Prediction,
    Predictor,
    _prepare,
    _Prepared,
    checked_task,
    entry_input_size,
    write_atomic,
)
from gazecxr.inference.pretrained import load_pretrained_predictor
from gazecxr.models.weights import is_pretrained_dir
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.registry import Registry
from gazecxr.training.runtime import resolve_device


def load_predictor(checkpoints: str | os.PathLike = "checkpoints", run: str | None = None,
                   device: str | torch.device | None = None, backend: str = "pytorch") -> BasePredictor:
    """A predictor on ``backend``.

    ``"pytorch"``: stage-3 entry ``run`` (an id, id prefix, ``latest``, ``best`` (default) or a
    tag) of the registry at ``checkpoints``, on ``device`` (None: CUDA when available, else CPU);
    or, when ``checkpoints`` is a pretrained folder (``gazecxr export --format pretrained``), its
    model (``run``, when given, must be a prefix of the registry id recorded there).
    ``"onnxruntime"``: ``checkpoints`` is a file written by ``python -m gazecxr.inference.export``; ``run``,
    when given, must be (a prefix of) the registry id recorded in it; needs the ``[onnx]`` extra.
    """
    if backend == "onnxruntime":
        from gazecxr.inference.onnx_backend import load_onnx_predictor

        return load_onnx_predictor(checkpoints, run, device)
    if backend != "pytorch":
        raise InputError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if is_pretrained_dir(checkpoints):
        return load_pretrained_predictor(checkpoints, run, device)
    registry = Registry(checkpoints)
    model, lineage = load_full_model(registry, "best" if run is None else run)
    entry = lineage[0]
    target = resolve_device("auto" if device is None else str(device))
    task, thresholds = checked_task(entry.architecture.get("task"), f"checkpoint {entry.id}")
    return Predictor(model, entry.id, entry_input_size(entry), target, task, thresholds)


# -- command line -----------------------------------------------------------------------------


def _overlay(image: np.ndarray, heat: np.ndarray, ax: Any, title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    peak = float(heat.max())
    ax.imshow(heat / peak if peak > 0 else heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _render(prepared: _Prepared, prediction: Prediction, path: Path) -> None:
    """Saliency heatmap (and Grad-CAM, when present) over the radiograph, saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only the command line draws: not on import
    from matplotlib.figure import Figure

    panels = 1 if prediction.gradcam is None else 2
    h, w = prediction.original_size
    fig = Figure(figsize=(4.0 * panels * max(w / h, 0.6), 4.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _overlay(prepared.image, prediction.saliency, axes[0], "predicted saliency")
    if prediction.gradcam is not None:
        _overlay(prepared.image, prediction.gradcam, axes[1], f"Grad-CAM ({prediction.label})")
    probs = ", ".join(f"{name} {p:.2f}" for name, p in prediction.probabilities.items())
    fig.suptitle(f"{prediction.label}  ({probs})", fontsize=10)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))


def _record(prediction: Prediction, checkpoint: str) -> dict[str, Any]:
    """The JSON summary of one prediction (no image metadata)."""
    return {
        "source": prediction.source,
        "checkpoint": checkpoint,
        "label": prediction.label,
        "probabilities": prediction.probabilities,
        "original_size": list(prediction.original_size),
        **({} if prediction.findings is None else {"findings": prediction.findings}),
    }


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 2
    while stem in used:
        stem, k = f"{path.stem}_{k}", k + 1
    used.add(stem)
    return stem


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m gazecxr.predict`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.predict"),
        description="Predict radiologist saliency and the diagnosis (Normal / CHF / pneumonia) for chest "
                    "radiographs with a trained three-stage model. For each IMAGE (.dcm, .png, .jpg) writes "
                    "<stem>.png, the saliency heatmap over the radiograph titled with the predicted label and "
                    "class probabilities (plus a Grad-CAM panel with --gradcam), and <stem>.json with the "
                    "probabilities, label, source, checkpoint id and original size. No DICOM metadata is "
                    "copied. Unreadable images are reported and skipped; the exit code is 1 if any failed. "
                    "With --input-list instead of IMAGEs (archive scale): images are read by --workers "
                    "processes and written as compressed .npz shards of saliency maps in original geometry "
                    "plus predictions.csv (probabilities, label, or the error of a bad file); rerunning "
                    "resumes where a stopped run left off; under torchrun the list is split over the ranks.",
        epilog="Examples: gazecxr predict scans/*.dcm --out predictions --checkpoint best --gradcam; "
               "gazecxr predict --input-list archive/ --out archive-saliency --workers 4 "
               "--backend onnxruntime --model model.onnx",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="radiograph files (.dcm, .png, .jpg)")
    parser.add_argument("--input-list", type=Path, metavar="FILE_OR_DIR",
                        help="batch mode: a text file of image paths (one per line, relative to the file) or a "
                             "directory searched recursively for .dcm/.dicom/.png/.jpg/.jpeg")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--backend", default="pytorch", choices=BACKENDS,
                        help="pytorch (registry checkpoint) or onnxruntime (a file from python -m gazecxr.inference.export, "
                             "given by --model; no Grad-CAM) (default: %(default)s)")
    parser.add_argument("--model", type=Path, metavar="FILE", help="the exported .onnx file (--backend onnxruntime)")
    parser.add_argument("--checkpoints", default="checkpoints", metavar="DIR", help="checkpoint registry root (default: %(default)s)")
    add_checkpoint_argument(parser, None, "stage-3 entry: id, id prefix, latest, best or a tag (default: best; with "
                            "onnxruntime: checked against the id recorded in --model)", old=("--run",))
    parser.add_argument("--gradcam", action="store_true", help="also compute and draw the DenseNet Grad-CAM (pytorch only)")
    parser.add_argument("--device", default=None, metavar="DEVICE", help="cpu, cuda, cuda:1, ... (default: cuda when available; onnxruntime: cpu)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help="images per forward pass, and per shard in batch mode (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="batch mode: image-reading worker processes (default: %(default)s, read in the main process)")
    return parser


def _predict_images(predictor: BasePredictor, images: Sequence[str], out: Path, gradcam: bool, batch_size: int) -> int:
    """The per-image mode: PNG figure and JSON record per image; returns the number that failed."""
    failed = 0
    used: set[str] = set()
    for start in range(0, len(images), batch_size):
        batch: list[_Prepared] = []
        for i, name in enumerate(images[start:start + batch_size]):
            try:
                batch.append(_prepare(name, start + i, predictor.input_size))
            except ValueError as err:
                failed += 1
                print(f"FAILED {err}", file=sys.stderr)
        if not batch:
            continue
        predictions = predictor.predict_letterboxed([p.source for p in batch], [p.letterbox for p in batch],
                                                    np.stack([p.canvas() for p in batch]), gradcam)
        for prepared, prediction in zip(batch, predictions):
            stem = _unique_stem(Path(prepared.source), used)
            png, record = out / f"{stem}.png", out / f"{stem}.json"
            _render(prepared, prediction, png)
            text = json.dumps(_record(prediction, predictor.checkpoint), indent=2) + "\n"
            write_atomic(record, lambda tmp: tmp.write_text(text, encoding="utf-8"))
            probs = " ".join(f"{name}={p:.3f}" for name, p in prediction.probabilities.items())
            print(f"{prepared.source}: {prediction.label} ({probs}) -> {png}, {record}")
    if failed:
        print(f"{failed} of {len(images)} images failed", file=sys.stderr)
    return failed


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some images failed, 2 setup error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.workers < 0:
        parser.error("--workers must be at least 0")
    if bool(args.images) == (args.input_list is not None):
        parser.error("give either IMAGE files or --input-list, not both (nor neither)")
    if args.input_list is not None and args.gradcam:
        parser.error("--gradcam is not available with --input-list (batch mode writes saliency maps and probabilities)")
    if (args.backend == "onnxruntime") != (args.model is not None):
        parser.error("--backend onnxruntime needs --model FILE.onnx, and --model needs --backend onnxruntime")
    if args.backend == "onnxruntime" and args.gradcam:
        parser.error("--gradcam needs --backend pytorch (Grad-CAM back-propagates through the DenseNet)")
    predictor = load_predictor(args.model if args.model is not None else args.checkpoints, args.checkpoint,
                               args.device, backend=args.backend)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.input_list is None:
        return 1 if _predict_images(predictor, args.images, args.out, args.gradcam, args.batch_size) else 0
    from gazecxr.inference.batch import predict_archive

    summary = predict_archive(predictor, args.input_list, args.out, args.workers, args.batch_size)
    print(json.dumps(summary.to_dict()))
    if summary.failed:
        print(f"{summary.failed} of {summary.total} images failed (see the error column of "
              f"{args.out / 'predictions.csv'})", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
