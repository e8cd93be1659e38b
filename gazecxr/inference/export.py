"""Export a trained three-stage model to ONNX, verified against PyTorch before it is kept.

``python -m gazecxr.inference.export --checkpoint ID --format onnx --out model.onnx`` writes one
self-contained ``.onnx`` file: input ``image`` (N, 1, H, W) float32 canvases in [0, 1]
(dynamic batch size N, the training input size H×W), outputs ``saliency`` (N, H, W),
softmax-normalised over each canvas, and ``probabilities`` (N, classes). One DenseNet pass
feeds the UNet and the fusion head, as in `GazeCXRModel`. The metadata records the registry
id and sha256 of the stage-3 checkpoint, the lineage, the input size, the class names and the
preprocessing. Before the file is renamed into place, ONNX Runtime runs it on sample inputs
and the export fails if the probabilities differ from PyTorch's by more than 1e-4 or a
saliency map's Pearson correlation with PyTorch's is below 0.9999.

``--quantize int8`` also writes ``<out stem>.int8.onnx``, statically quantised with ONNX
Runtime's quantiser calibrated on images of an HDF5 dataset (see `gazecxr.inference.quantize`).

``--format pretrained --out DIR`` writes the shareable folder of `gazecxr.inference.pretrained`
instead (``model.safetensors``, ``config.json``, model card ``README.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gazecxr import __version__
from gazecxr.cli.options import prog_name, run_main
from gazecxr.config.errors import CheckFailedError
from gazecxr.data.geometry import Letterbox
from gazecxr.inference.onnx_backend import (
    INPUT_NAME,
    META_CHECKPOINT,
    META_CLASSES,
    META_INPUT_SIZE,
    META_LINEAGE,
    META_PREPROCESSING,
    META_SHA256,
    META_TASK,
    META_VERSION,
    OUTPUT_NAMES,
    add_metadata,
    open_session,
    pearson_rows,
)
from gazecxr.inference.predictor import PREPROCESSING, entry_input_size, write_atomic
from gazecxr.inference.pretrained import export_pretrained
from gazecxr.models.cooperative import GazeCXRModel
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.tasks import TaskSpec, task_from_record
from gazecxr.training.checkpoint_io import load_full_model
from gazecxr.training.registry import Registry

EXPORTERS = ("dynamo", "torchscript")
OPSET = 18
PROBABILITY_TOLERANCE = 1e-4
SALIENCY_MIN_PEARSON = 0.9999


class ExportedGraph(nn.Module):
    """The part of `GazeCXRModel` that is exported: canvases → (saliency maps, class probabilities)."""

    def __init__(self, model: GazeCXRModel, task: TaskSpec) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``saliency`` (N, H, W), each map summing to 1, and ``probabilities`` (N, classes): a softmax
        over exclusive classes, or each finding's sigmoid for a multi-label model."""
        outputs = self.model(image)
        return saliency_from_logits(outputs["saliency_logits"])[:, 0], self.task.probabilities(outputs["class_logits"])


@dataclass(frozen=True)
class Verification:
    """How the exported graph compares with PyTorch on the sample inputs."""

    samples: int
    probabilities_max_abs_diff: float
    saliency_max_abs_diff: float
    saliency_min_pearson: float

    @property
    def passed(self) -> bool:
        """Within `PROBABILITY_TOLERANCE` and `SALIENCY_MIN_PEARSON`."""
        return (self.probabilities_max_abs_diff <= PROBABILITY_TOLERANCE
                and self.saliency_min_pearson >= SALIENCY_MIN_PEARSON)


def sample_canvases(input_size: tuple[int, int], count: int = 3, seed: int = 0) -> np.ndarray:
    """(count, H, W) float32 canvases in [0, 1]: letterboxed smooth phantoms with noise, of
    different aspect ratios, so that both the image region and the padding are exercised."""
    rng = np.random.default_rng(seed)
    h, w = input_size
    out = []
    for k in range(count):
        shape = (h, max(8, int(w * (0.6 + 0.25 * k)))) if k % 2 else (max(8, int(h * (0.7 + 0.2 * k))), w)
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / np.array(shape, float).reshape(2, 1, 1)
        phantom = np.exp(-((yy - 0.5) ** 2 + (xx - 0.3 - 0.2 * k) ** 2) / 0.05) + 0.3 * rng.random(shape)
        phantom = (phantom - phantom.min()) / (phantom.max() - phantom.min())
        out.append(Letterbox.fit(shape, input_size).image_to_canvas(phantom.astype(np.float32)))
    return np.stack(out).astype(np.float32)


def verify(graph: ExportedGraph, session: Any, canvases: np.ndarray) -> Verification:
    """Compare ONNX Runtime's outputs on ``canvases`` with PyTorch's, one batch of all and one of a
    single image (the batch dimension is dynamic)."""
    images = canvases[:, None]
    with torch.no_grad():
        saliency, probabilities = (t.numpy() for t in graph(torch.from_numpy(images)))
    ort_saliency, ort_probabilities = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    single_saliency, single_probabilities = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images[:1]})
    ort_saliency = np.concatenate([single_saliency, ort_saliency])
    ort_probabilities = np.concatenate([single_probabilities, ort_probabilities])
    saliency = np.concatenate([saliency[:1], saliency])
    probabilities = np.concatenate([probabilities[:1], probabilities])
    return Verification(
        samples=len(canvases),
        probabilities_max_abs_diff=float(np.abs(ort_probabilities - probabilities).max()),
        saliency_max_abs_diff=float(np.abs(ort_saliency - saliency).max()),
        saliency_min_pearson=float(pearson_rows(ort_saliency, saliency).min()),
    )


def _torch_export(graph: ExportedGraph, example: Tensor, path: Path, exporter: str) -> None:
    """Write the ONNX graph of ``graph`` (dynamic batch) to ``path`` as one file."""
    names = {"input_names": [INPUT_NAME], "output_names": list(OUTPUT_NAMES), "opset_version": OPSET}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(graph, (example,), dynamo=True, verbose=False,
                                        dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1)}}, **names)
            program.save(str(path), external_data=False)
        elif exporter == "torchscript":
            torch.onnx.export(graph, (example,), str(path), dynamo=False, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAMES[0]: {0: "batch"},
                                            OUTPUT_NAMES[1]: {0: "batch"}}, **names)
        else:
            raise ValueError(f"unknown exporter {exporter!r}; choose one of {list(EXPORTERS)}")


@dataclass(frozen=True)
class ExportResult:
    """What `export_onnx` wrote and how it verified."""

    path: str
    checkpoint: str
    exporter: str
    input_size: tuple[int, int]
    bytes: int
    verification: Verification

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (verification included)."""
        return {**asdict(self), "verification": {**asdict(self.verification), "passed": self.verification.passed}}


def export_onnx(checkpoints: str | os.PathLike, run: str, out: str | os.PathLike,
                exporter: str = "dynamo", samples: int = 3) -> ExportResult:
    """Export stage-3 entry ``run`` of the registry at ``checkpoints`` to the ONNX file ``out``.

    The file is written under a temporary name, verified with ONNX Runtime on ``samples``
    sample canvases, and renamed to ``out`` only if it passes; otherwise RuntimeError (and
    ``out`` is left as it was).
    """
    registry = Registry(checkpoints)
    model, lineage = load_full_model(registry, run)
    entry = lineage[0]
    input_size = entry_input_size(entry)
    task_section = entry.architecture.get("task")
    task, _ = task_from_record(task_section)
    graph = ExportedGraph(model.cpu(), task).eval()
    canvases = sample_canvases(input_size, samples)
    metadata = {
        META_CHECKPOINT: entry.id, META_SHA256: entry.sha256, META_INPUT_SIZE: json.dumps(list(input_size)),
        META_CLASSES: json.dumps(list(task.names)), META_TASK: json.dumps(task_section), META_PREPROCESSING: PREPROCESSING, META_VERSION: __version__,
        META_LINEAGE: json.dumps([{"id": e.id, "stage": e.stage, "sha256": e.sha256} for e in lineage]),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: list[Verification] = []

    def write(tmp: Path) -> None:
        _torch_export(graph, torch.from_numpy(canvases[:2, None]), tmp, exporter)
        add_metadata(tmp, metadata)
        check = verify(graph, open_session(tmp), canvases)
        if not check.passed:
            raise CheckFailedError(
                f"the ONNX export of {entry.id} does not match PyTorch: probabilities differ by up to "
                f"{check.probabilities_max_abs_diff:.3g} (limit {PROBABILITY_TOLERANCE}), saliency Pearson "
                f"{check.saliency_min_pearson:.6f} (minimum {SALIENCY_MIN_PEARSON}); {out} was not written")
        result.append(check)

    write_atomic(out, write)
    return ExportResult(str(out), entry.id, exporter, input_size, out.stat().st_size, result[0])


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m gazecxr.inference.export`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.inference.export"),
        description="Export a trained three-stage model (stage-3 registry entry) to one ONNX file with a dynamic "
                    "batch size: input 'image' (N,1,H,W) canvases in [0,1], outputs 'saliency' (N,H,W) and "
                    "'probabilities' (N,classes). The file records the registry id, sha256, input size, class "
                    "names and preprocessing, and is verified against PyTorch with ONNX Runtime before it is "
                    "kept (probabilities within 1e-4, saliency Pearson >= 0.9999). --format pretrained writes a "
                    "shareable folder instead: model.safetensors, config.json (architecture, task, input size, "
                    "preprocessing, lineage, metrics, synthetic-data flag) and a model card README.md, checked to "
                    "give the checkpoint's outputs exactly. Prints a JSON summary.",
        epilog="Examples: gazecxr export --checkpoint best --format onnx --out model.onnx; then "
               "gazecxr predict scans/*.dcm --out predictions --backend onnxruntime --model model.onnx. "
               "gazecxr export --checkpoint best --format pretrained --out shared/model; then "
               "gazecxr predict scans/*.dcm --checkpoints shared/model --out predictions",
    )
    parser.add_argument("--checkpoint", default="best", metavar="REF",
                        help="stage-3 entry: id, id prefix, latest, best or a tag (default: %(default)s)")
    parser.add_argument("--checkpoints", default="checkpoints", metavar="DIR",
                        help="checkpoint registry root (default: %(default)s)")
    parser.add_argument("--format", default="onnx", choices=["onnx", "pretrained"],
                        help="onnx: one .onnx file; pretrained: a folder with model.safetensors, config.json and "
                             "a model card README.md (Hugging Face convention) (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE|DIR",
                        help="the .onnx file to write (--format pretrained: the folder)")
    parser.add_argument("--synthetic", choices=["yes", "no"], help="pretrained: whether the training data were "
                        "synthetic, when the training HDF5 files are no longer there to say it")
    parser.add_argument("--evaluation", type=Path, metavar="METRICS_JSON", help="pretrained: the metrics.json of "
                        "a test evaluation; its cells with intervals go into the model card")
    parser.add_argument("--overwrite", action="store_true", help="pretrained: replace an existing folder")
    parser.add_argument("--exporter", default="dynamo", choices=EXPORTERS,
                        help="torch.onnx exporter: dynamo (torch.export, default) or torchscript (legacy)")
    parser.add_argument("--quantize", choices=["int8"], help="also write <stem>.int8.onnx, statically quantised "
                        "(kept only if it stays close to the float model; needs --calibration)")
    parser.add_argument("--calibration", type=Path, metavar="H5",
                        help="converted HDF5 dataset whose images calibrate the int8 model")
    parser.add_argument("--calibration-images", type=int, default=16, metavar="N",
                        help="images for calibration; as many again are held out to check it (default: %(default)s)")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 verification or quantisation failed, 2 setup error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quantize and args.calibration is None:
        parser.error("--quantize int8 needs --calibration H5")
    if args.format == "pretrained":
        if args.quantize:
            parser.error("--quantize applies to --format onnx")
        return _main_pretrained(args)
    if args.synthetic or args.evaluation or args.overwrite:
        parser.error("--synthetic, --evaluation and --overwrite apply to --format pretrained")
    result = export_onnx(args.checkpoints, args.checkpoint, args.out, args.exporter)
    summary: dict[str, Any] = {"export": result.to_dict()}
    check = result.verification
    print(f"wrote {result.path} ({result.bytes / 2**20:.1f} MiB) from {result.checkpoint}: probabilities max abs diff "
          f"{check.probabilities_max_abs_diff:.2e}, saliency max abs diff {check.saliency_max_abs_diff:.2e}, "
          f"min Pearson {check.saliency_min_pearson:.6f}", file=sys.stderr)
    code = 0
    if args.quantize:
        from gazecxr.inference.quantize import quantize_int8

        quantized = quantize_int8(args.out, args.calibration, args.calibration_images)
        summary["int8"] = quantized.to_dict()
        print(quantized.describe(), file=sys.stderr)
        code = 0 if quantized.kept else 1
    print(json.dumps(summary, indent=2))
    return code


def _main_pretrained(args: argparse.Namespace) -> int:
    synthetic = None if args.synthetic is None else args.synthetic == "yes"
    result = export_pretrained(args.checkpoints, args.checkpoint, args.out, synthetic=synthetic,
                               evaluation=args.evaluation, overwrite=args.overwrite)
    print(f"wrote {result.path} ({', '.join(result.files)}) from {result.checkpoint}; re-read and checked "
          "to give the checkpoint's outputs exactly", file=sys.stderr)
    print(json.dumps({"export": result.to_dict()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
