"""Local viewer app: ``python -m gazecxr.inference.app`` (needs the ``[app]`` extra, Gradio).

Pick a stage-3 checkpoint of the registry, then either upload radiographs (DICOM with or without
suffix, PNG, JPEG) or pick a record of a converted HDF5 file, and see the predicted saliency or the
Grad-CAM over the image (opacity slider), the class probabilities and, for an HDF5 record, the gaze
ground truth and the saliency metrics against it. Binds to 127.0.0.1 unless ``--host`` says otherwise;
shows no DICOM header field; a file it cannot read is reported in the page, never as a stack trace.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image

from gazecxr.cli.options import add_checkpoint_argument, add_checkpoints_argument, prog_name, run_main
from gazecxr.config.errors import InputError, MissingExtraError
from gazecxr.data.dataset import SPLITS, GazeCXRDataset
from gazecxr.data.images import read_radiograph
from gazecxr.data.provenance import SYNTHETIC_NOTICE, is_synthetic_h5
from gazecxr.evaluation.saliency_methods import fixation_map, score_maps
from gazecxr.predict import BasePredictor, Prediction, load_predictor
from gazecxr.training.registry import Registry

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DISPLAY_SIZE = 768
"""Longest side of the overlays shown, in pixels."""
MAPS = ("saliency", "Grad-CAM")
_JET = colormaps["jet"](np.linspace(0, 1, 256))[:, :3].astype(np.float32)
_log = logging.getLogger(__name__)


def overlay(image: np.ndarray, heat: np.ndarray | None, opacity: float, size: int = DISPLAY_SIZE) -> np.ndarray:
    """RGB uint8 of a [0, 1] greyscale ``image`` with ``heat`` (scaled to its maximum) in the jet
    colours blended at ``opacity``; shrunk so that its longest side is at most ``size``."""
    grey = np.repeat(np.clip(np.asarray(image, np.float32), 0, 1)[..., None], 3, axis=-1)
    if heat is not None:
        peak = float(np.max(heat))
        level = np.clip(np.asarray(heat, np.float32) / peak, 0, 1) if peak > 0 else np.zeros(heat.shape, np.float32)
        grey = (1 - opacity) * grey + opacity * _JET[np.rint(level * 255).astype(np.int64)]
    picture = Image.fromarray(np.rint(grey * 255).astype(np.uint8))
    scale = size / max(picture.size)
    if scale < 1:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR)
    return np.asarray(picture)


def probability_table(probabilities: dict[str, float]) -> str:
    """Markdown table of class probabilities, most probable first."""
    rows = sorted(probabilities.items(), key=lambda kv: -kv[1])
    return "| class | probability |\n|---|---|\n" + "\n".join(f"| {c} | {p:.3f} |" for c, p in rows)


def checkpoint_choices(registry: Registry) -> list[str]:
    """Stage-3 entry ids of ``registry``, newest first."""
    return [e.id for e in reversed(registry.entries(stage="stage3"))]


def trained_on_synthetic(registry: Registry, entry_id: str) -> bool:
    """Whether the entry's training data file (still present) holds synthetic phantoms."""
    data = registry.resolve(entry_id).config.get("data", {}).get("h5")
    files = data if isinstance(data, list) else [data]
    return any(isinstance(f, str) and Path(f).is_file() and is_synthetic_h5(f) for f in files)


class Viewer:
    """The app's state: the registry, loaded predictors (one per checkpoint) and the HDF5 datasets opened."""

    def __init__(self, checkpoints: str | os.PathLike, device: str | None = None):
        self.registry = Registry(checkpoints)
        self.device = device
        self._predictors: dict[str, BasePredictor] = {}
        self._datasets: dict[tuple[str, str], GazeCXRDataset] = {}

    def predictor(self, entry_id: str) -> BasePredictor:
        if not entry_id:
            raise InputError("no checkpoint chosen: train a model first (stages.stage1/2/3) or pass --checkpoints")
        if entry_id not in self._predictors:
            self._predictors[entry_id] = load_predictor(self.registry.root, run=entry_id, device=self.device)
        return self._predictors[entry_id]

    def notice(self, entry_id: str, h5: str | None = None) -> str:
        """The synthetic-data notice (markdown) for the chosen model and HDF5 file, or ''."""
        try:
            synthetic = bool(entry_id) and trained_on_synthetic(self.registry, entry_id)
            synthetic = synthetic or bool(h5 and Path(h5).is_file() and is_synthetic_h5(h5))
        except (LookupError, OSError, ValueError):
            return ""
        return f"## ⚠ {SYNTHETIC_NOTICE}" if synthetic else ""

    def predict_files(self, entry_id: str, files: Sequence[Any] | None, which: str,
                      opacity: float) -> tuple[list[tuple[np.ndarray, str]], str, str]:
        """Overlays (image, caption), a probabilities report and messages for uploaded files."""
        if not files:
            return [], "", "Upload one or more DICOM, PNG or JPEG files."
        try:
            predictor = self.predictor(entry_id)
        except Exception as err:  # noqa: BLE001 - shown in the page, never as a trace
            return [], "", _message(f"checkpoint {entry_id}", err)
        gallery, tables, messages = [], [], []
        for item in files:
            path = Path(item if isinstance(item, (str, os.PathLike)) else getattr(item, "name", str(item)))
            name = path.name
            try:
                image = read_radiograph(path)
                prediction = predictor.predict(image, gradcam=which == "Grad-CAM")
            except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
                messages.append(_message(name, err).replace(str(path), name))
                continue
            gallery.append((overlay(image, _chosen(prediction, which), opacity),
                            f"{name}: {prediction.label} ({prediction.probabilities[prediction.label]:.2f})"))
            h, w = prediction.original_size
            tables.append(f"**{name}** ({w}×{h} px) — predicted **{prediction.label}**\n\n"
                          + probability_table(prediction.probabilities))
        return gallery, "\n\n".join(tables), "\n\n".join(messages)

    def dataset(self, h5: str, split: str) -> GazeCXRDataset:
        key = (h5, split)
        if key not in self._datasets:
            self._datasets[key] = GazeCXRDataset(h5, split)
        return self._datasets[key]

    def predict_record(self, entry_id: str, h5: str, split: str, position: float, which: str,
                       opacity: float) -> tuple[np.ndarray | None, np.ndarray | None, str, str]:
        """Gaze ground truth and model overlay of one HDF5 record, its labels/probabilities and metrics."""
        try:
            dataset = self.dataset(h5, split)
            if len(dataset) == 0:
                raise InputError(f"{h5}: the {split!r} split is empty")
            i = int(position)
            if not 0 <= i < len(dataset):
                raise InputError(f"record {i} out of range: the {split!r} split has {len(dataset)} records (0…{len(dataset) - 1})")
            predictor = self.predictor(entry_id)
            if tuple(dataset.canvas) != predictor.input_size:
                raise InputError(f"{h5} holds {list(dataset.canvas)} images, the model was trained at "
                                 f"{list(predictor.input_size)}")
            sample = dataset[i]
            image, gt = sample["image"][0].numpy(), sample["heatmap"][0].numpy().astype(np.float64)
            saliency, probabilities, cams = predictor.run_canvases(image[None].astype(np.float32), which == "Grad-CAM")
        except Exception as err:  # noqa: BLE001 - shown in the page, never as a trace
            return None, None, "", _message(f"{h5} record {position}", err)
        probs = {c: float(p) for c, p in zip(predictor.classes, probabilities[0])}
        shown = saliency[0] if cams is None else cams[0]
        distribution = np.asarray(shown, np.float64) / max(float(np.sum(shown)), 1e-12)
        scores = score_maps(distribution[None], gt[None], fixation_map(gt[None]))
        label = predictor.classes[int(sample["label"])] if int(sample["label"]) >= 0 else "none"
        text = (f"**{sample['dicom_id']}** (split {split}, record {i}) — true **{label}**, predicted "
                f"**{max(probs, key=probs.get)}**\n\n{probability_table(probs)}\n\n"
                f"{which} against the gaze ground truth (canvas {image.shape[1]}×{image.shape[0]}): "
                + " · ".join(f"{m.upper()} {float(v[0]):.3f}" for m, v in scores.items())
                + "  (NSS on the top-5 % ground-truth pixels)")
        return overlay(image, gt, opacity), overlay(image, shown, opacity), text, ""


def _chosen(prediction: Prediction, which: str) -> np.ndarray:
    return prediction.gradcam if which == "Grad-CAM" else prediction.saliency


def _message(what: str, err: Exception) -> str:
    """A one-line message for the page; unexpected errors are logged with their trace, not shown."""
    if isinstance(err, (ValueError, LookupError, FileNotFoundError)):
        text = str(err)
    else:
        _log.exception("unexpected error on %s", what)
        text = f"{what}: could not be processed ({type(err).__name__})"
    return f"⚠ {text}"


def app_theme() -> Any:
    """Gradio's default theme with system fonts (no font download: the app works offline)."""
    import gradio as gr

    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def build_app(viewer: Viewer, h5: str | None = None, run: str | None = None) -> Any:
    """The Gradio Blocks of the viewer."""
    import gradio as gr

    choices = checkpoint_choices(viewer.registry)
    default = viewer.registry.resolve(run).id if run else (choices[0] if choices else None)
    with gr.Blocks(title="gazecxr viewer", analytics_enabled=False) as app:
        notice = gr.Markdown(viewer.notice(default, h5), elem_id="notice")
        gr.Markdown("# gazecxr viewer\nPredicted radiologist saliency, Grad-CAM and diagnosis "
                    "(Normal / CHF / pneumonia). Nothing leaves this machine; no DICOM header field is shown.")
        with gr.Row():
            checkpoint = gr.Dropdown(choices, value=default, label="checkpoint (stage-3 registry entry)",
                                     elem_id="checkpoint")
            which = gr.Radio(list(MAPS), value="saliency", label="overlay", elem_id="which")
            opacity = gr.Slider(0, 1, value=0.45, step=0.05, label="overlay opacity", elem_id="opacity")
        with gr.Tab("Files"):
            files = gr.File(file_count="multiple", label="radiographs (DICOM, PNG, JPEG)", elem_id="files")
            run_files = gr.Button("Predict", variant="primary", elem_id="predict-files")
            file_errors = gr.Markdown(elem_id="file-messages")
            gallery = gr.Gallery(label="overlays", columns=4, height=420, object_fit="contain", elem_id="overlays")
            file_probs = gr.Markdown(elem_id="probabilities")
        with gr.Tab("HDF5 record"):
            with gr.Row():
                h5_path = gr.Textbox(h5 or "", label="converted HDF5 file", elem_id="h5")
                split = gr.Dropdown([s for s in SPLITS if s != "all"] + ["all"], value="test", label="split")
                position = gr.Number(0, precision=0, minimum=0, label="record (position in the split)")
            run_record = gr.Button("Show record", variant="primary", elem_id="predict-record")
            record_errors = gr.Markdown(elem_id="record-messages")
            with gr.Row():
                truth = gr.Image(label="gaze ground truth", elem_id="truth")
                predicted = gr.Image(label="model", elem_id="predicted")
            record_text = gr.Markdown(elem_id="record-text")
        file_inputs = [checkpoint, files, which, opacity]
        file_outputs = [gallery, file_probs, file_errors]
        record_inputs = [checkpoint, h5_path, split, position, which, opacity]
        record_outputs = [truth, predicted, record_text, record_errors]
        run_files.click(viewer.predict_files, file_inputs, file_outputs)
        files.upload(viewer.predict_files, file_inputs, file_outputs)
        run_record.click(viewer.predict_record, record_inputs, record_outputs)
        for control in (which, opacity):
            control.change(viewer.predict_files, file_inputs, file_outputs)
        checkpoint.change(viewer.notice, [checkpoint, h5_path], notice)
        h5_path.change(viewer.notice, [checkpoint, h5_path], notice)
    return app


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m gazecxr.inference.app`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.inference.app"),
        description="Local viewer: upload radiographs (DICOM with or without suffix, compressed DICOM, PNG, JPEG) "
                    "or pick a record of a converted HDF5 file, and see the predicted saliency or Grad-CAM over "
                    "the image, the class probabilities and, for an HDF5 record, the gaze ground truth and its "
                    "metrics. Needs the [app] extra (pip install -e .[app]).",
        epilog="Example: python -m gazecxr.inference.app --checkpoints checkpoints --h5 demo_out/synthetic.h5, then open "
               "http://127.0.0.1:7860",
    )
    add_checkpoints_argument(parser)
    add_checkpoint_argument(parser, None, "stage-3 entry selected at start: id, prefix, latest, best or tag "
                            "(default: newest)", old=("--run",))
    parser.add_argument("--h5", default=None, metavar="FILE", help="converted HDF5 file for the record tab")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to bind (default: %(default)s, this machine only; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    """Start the app and serve until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("the app needs Gradio: pip install -e '.[app]'") from err
    viewer = Viewer(args.checkpoints, args.device)
    app = build_app(viewer, args.h5, args.checkpoint)
    print(f"gazecxr viewer on http://{args.host}:{args.port}", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=False, show_error=False,
               inbrowser=False, quiet=True, theme=app_theme())
    return 0


if __name__ == "__main__":
    sys.exit(main())
