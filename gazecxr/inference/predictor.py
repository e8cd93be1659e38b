"""The predictor: a trained three-stage model applied to radiographs, outputs in original geometry.

``gazecxr.predict`` is the public face (``load_predictor``); the ONNX Runtime backend and archive
batch prediction build on ``BasePredictor`` here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gazecxr import CLASS_NAMES
from gazecxr.config.errors import InputError
from gazecxr.data.geometry import Letterbox
from gazecxr.data.images import read_radiograph, scale_to_unit
from gazecxr.explain.gradcam import gradcam_from_tap
from gazecxr.models.cooperative import GazeCXRModel
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.tasks import ExclusiveClasses, TaskSpec, task_from_record
from gazecxr.training.registry import Entry

ImageInput = str | os.PathLike | np.ndarray
"""One radiograph: a ``.dcm``/``.png``/``.jpg`` path or a 2-D greyscale array."""

DEFAULT_BATCH_SIZE = 8

PREPROCESSING = (
    "greyscale radiograph (DICOM: rescale slope/intercept applied, MONOCHROME1 inverted; PNG/JPEG: "
    "converted to grey) scaled per image to [0, 1] by min-max; letterboxed into the HxW canvas: resized "
    "keeping its aspect ratio (bilinear, antialiased, PIL), centred, zero padding; input (N, 1, H, W) float32. "
    "Outputs are on the canvas: crop the image region and resize back to the original size "
    "(gazecxr.data.geometry.Letterbox.to_original)."
)
"""What `BasePredictor.predict` does to an input, as exported models record it."""


@dataclass(eq=False)
class Prediction:
    """The model's outputs for one radiograph, in its original geometry.

    ``saliency``: float32 (height, width) of the original image, non-negative, sums to 1 —
    where a radiologist is predicted to look. ``probabilities``: class name → probability
    (sums to 1); ``label``: the most probable class. ``source``: the input's path, or
    ``"array[i]"`` for the i-th array given. ``gradcam``: float32 (height, width) in [0, 1],
    the DenseNet's Grad-CAM for ``label``, when requested (else None). For a multi-label
    (findings) model ``probabilities`` holds every finding's independent sigmoid, ``label`` the most
    probable finding and ``findings`` those at or above their validation-chosen threshold (else None).
    """

    source: str
    saliency: np.ndarray = field(repr=False)
    probabilities: dict[str, float]
    label: str
    gradcam: np.ndarray | None = field(default=None, repr=False)
    findings: list[str] | None = None

    @property
    def original_size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.saliency.shape[0], self.saliency.shape[1]


@dataclass(frozen=True)
class _Prepared:
    """An input read and scaled to [0, 1] at its original size, with its letterbox."""

    source: str
    image: np.ndarray
    letterbox: Letterbox

    def canvas(self) -> np.ndarray:
        """The image letterboxed into the model canvas."""
        return self.letterbox.image_to_canvas(self.image)


def _prepare(item: Any, index: int, canvas: tuple[int, int]) -> _Prepared:
    """Read and check one input; ValueError names it (its path, or ``array[index]``)."""
    if isinstance(item, (str, os.PathLike)):
        source = os.fspath(item)
        image = read_radiograph(source)
    elif isinstance(item, np.ndarray):
        source = f"array[{index}]"
        if item.ndim != 2:
            raise InputError(f"{source}: expected a 2-D greyscale image, got an array of shape {item.shape}")
        if item.size == 0:
            raise InputError(f"{source}: empty array of shape {item.shape}")
        if not (np.issubdtype(item.dtype, np.integer) or np.issubdtype(item.dtype, np.floating)
                or item.dtype == np.bool_):
            raise InputError(f"{source}: unsupported array dtype {item.dtype}; expected integers or floats")
        if not np.isfinite(item).all():
            raise InputError(f"{source}: array contains NaN or infinite values")
        image = scale_to_unit(item)
    else:
        raise InputError(f"input[{index}]: unsupported type {type(item).__name__}; "
                         "expected a path (.dcm, .png, .jpg) or a 2-D numpy array")
    return _Prepared(source, image, Letterbox.fit(image.shape, canvas))


BACKENDS = ("pytorch", "onnxruntime")


class BasePredictor:
    """What every inference backend shares: reading inputs, batching, mapping outputs back.

    ``checkpoint`` is the stage-3 registry entry id, ``input_size`` the (height, width) the
    model was trained at, ``classes`` the class names in logit order. A backend implements
    `run_canvases`; ``supports_gradcam`` says whether it can compute Grad-CAM.
    """

    backend = ""
    supports_gradcam = False

    def __init__(self, checkpoint: str, input_size: tuple[int, int], classes: Sequence[str] = CLASS_NAMES,
                 task: TaskSpec | None = None, thresholds: np.ndarray | None = None) -> None:
        self.checkpoint = checkpoint
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.task = task or ExclusiveClasses()
        self.thresholds = thresholds
        self.classes: tuple[str, ...] = tuple(classes) if task is None else self.task.names

    def predict(self, x: ImageInput | Sequence[ImageInput], gradcam: bool = False,
                batch_size: int = DEFAULT_BATCH_SIZE) -> Prediction | list[Prediction]:
        """Predictions for one input (returns one Prediction) or a list of them (returns a list).

        Inputs are paths (``.dcm``, ``.png``, ``.jpg``) or 2-D arrays; a list is run through
        the model ``batch_size`` images at a time. Raises ValueError naming a bad input.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._check_gradcam(gradcam)
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        out: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = [_prepare(item, start + i, self.input_size)
                     for i, item in enumerate(items[start:start + batch_size])]
            out.extend(self.predict_letterboxed([p.source for p in chunk], [p.letterbox for p in chunk],
                                                np.stack([p.canvas() for p in chunk]), gradcam))
        return out[0] if single else out

    def predict_letterboxed(self, sources: Sequence[str], letterboxes: Sequence[Letterbox], canvases: np.ndarray,
                            gradcam: bool = False) -> list[Prediction]:
        """Predictions for a batch of images already letterboxed into (N, H, W) ``canvases``
        (values in [0, 1]), mapped back to each image's original geometry."""
        self._check_gradcam(gradcam)
        saliency, probabilities, cams = self.run_canvases(np.ascontiguousarray(canvases, np.float32), gradcam)
        labels = probabilities.argmax(1)
        findings = self.task.findings(probabilities, self.thresholds) if self.task.multilabel else None
        return [Prediction(
            source=source,
            saliency=letterbox.to_original(saliency[i], distribution=True),
            probabilities={name: float(p) for name, p in zip(self.classes, probabilities[i].astype(np.float64))},
            label=self.classes[int(labels[i])],
            gradcam=None if cams is None else np.clip(letterbox.to_original(cams[i], distribution=False), 0, 1),
            findings=None if findings is None else findings[i],
        ) for i, (source, letterbox) in enumerate(zip(sources, letterboxes))]

    def run_canvases(self, canvases: np.ndarray, gradcam: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The model on (N, H, W) canvases: saliency maps (N, H, W) (each sums to 1), class
        probabilities (N, classes) and, when ``gradcam``, Grad-CAM maps (N, H, W) in [0, 1]."""
        raise NotImplementedError

    def _check_gradcam(self, gradcam: bool) -> None:
        if gradcam and not self.supports_gradcam:
            raise InputError(f"Grad-CAM needs the PyTorch backend (it back-propagates through the DenseNet); "
                             f"this predictor runs on {self.backend}. Use backend='pytorch' for Grad-CAM.")


class Predictor(BasePredictor):
    """A trained three-stage model ready for inference with PyTorch (frozen, eval mode, on ``device``)."""

    backend = "pytorch"
    supports_gradcam = True

    def __init__(self, model: GazeCXRModel, checkpoint: str, input_size: tuple[int, int],
                 device: torch.device, task: TaskSpec | None = None, thresholds: np.ndarray | None = None) -> None:
        super().__init__(checkpoint, input_size, task=task, thresholds=thresholds)
        self.model = model.to(device).eval()
        self.device = device

    def __repr__(self) -> str:
        return (f"Predictor(checkpoint={self.checkpoint!r}, input_size={self.input_size}, "
                f"device='{self.device}', classes={self.classes})")

    def run_canvases(self, canvases: np.ndarray, gradcam: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One DenseNet pass feeds the UNet and the fusion head (and Grad-CAM when asked)."""
        images = torch.from_numpy(canvases)[:, None].to(self.device)
        with torch.no_grad():
            outputs = self.model(images)
            saliency = saliency_from_logits(outputs["saliency_logits"])[:, 0]
            probabilities = self.task.probabilities(outputs["class_logits"])
        cams = None
        if gradcam:
            cams = gradcam_from_tap(self.model.encoder, outputs["dense_features"], self.input_size,
                                    target=probabilities.argmax(1))[0].cpu().numpy()
        return saliency.cpu().numpy(), probabilities.cpu().numpy(), cams


def entry_input_size(entry: Entry) -> tuple[int, int]:
    """The (height, width) a registry entry's model was trained at; ValueError when not recorded."""
    size = entry.architecture.get("input_size")
    if not (isinstance(size, list) and len(size) == 2):
        raise InputError(f"checkpoint {entry.id} records no input_size [height, width] in its architecture")
    return int(size[0]), int(size[1])


def checked_task(record: dict[str, Any] | None, what: str) -> tuple[TaskSpec, np.ndarray | None]:
    """The task and thresholds of a stored task record; a multi-label task must have thresholds."""
    task, thresholds = task_from_record(record)
    if task.multilabel and thresholds is None:
        raise InputError(f"{what} is a multi-label model but records no decision thresholds")
    return task, thresholds


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temporary path)`` and rename it into place."""
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
