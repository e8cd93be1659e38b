"""The ONNX Runtime predictor: the same `Prediction` objects from a model exported by ``gazecxr.inference.export``.

The exported graph takes ``image`` (N, 1, H, W) float32 canvases in [0, 1] and returns
``saliency`` (N, H, W), softmax-normalised over each canvas, and ``probabilities`` (N, classes).
What the predictor needs besides the graph (registry id, input size, class names) is read
from the file's metadata, written under the keys below.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gazecxr.config.errors import InputError, InputNotFoundError, MissingExtraError, UnavailableDeviceError
from gazecxr.inference.predictor import BasePredictor, checked_task

INPUT_NAME = "image"
OUTPUT_NAMES = ("saliency", "probabilities")
META_CHECKPOINT = "gazecxr.checkpoint"
META_SHA256 = "gazecxr.checkpoint_sha256"
META_LINEAGE = "gazecxr.lineage"
META_INPUT_SIZE = "gazecxr.input_size"
META_CLASSES = "gazecxr.classes"
META_PREPROCESSING = "gazecxr.preprocessing"
META_VERSION = "gazecxr.version"
META_TASK = "gazecxr.tasks"
REQUIRED_METADATA = (META_CHECKPOINT, META_INPUT_SIZE, META_CLASSES)


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an ImportError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingExtraError("the ONNX Runtime backend needs the [onnx] extra: pip install 'gazecxr[onnx]' "
                                f"(onnxruntime could not be imported: {err})") from err
    return onnxruntime


def session_options(threads: int | None = None, optimization: str = "all") -> Any:
    """ONNX Runtime session options: graph optimisation ``optimization`` (disable, basic,
    extended, all) and ``threads`` intra-op threads (None: ONNX Runtime's default, one per core)."""
    ort = import_onnxruntime()
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise ValueError(f"unknown optimisation level {optimization!r}; choose one of {list(levels)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


def providers_for(device: str | None) -> list[str]:
    """ONNX Runtime execution providers for ``device`` (None or ``cpu``: CPU; ``cuda``/``cuda:K``: CUDA)."""
    ort = import_onnxruntime()
    name = "cpu" if device is None else str(device)
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UnavailableDeviceError(f"device {name!r}: this onnxruntime has no CUDA provider "
                                         f"(available: {ort.get_available_providers()}); install onnxruntime-gpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise InputError(f"unknown device {name!r} for the ONNX Runtime backend; use cpu or cuda")


def open_session(path: str | os.PathLike, device: str | None = None, threads: int | None = None,
                 optimization: str = "all") -> Any:
    """An ONNX Runtime inference session of the model file at ``path``."""
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such ONNX model file (write one with python -m gazecxr.inference.export)")
    options, providers = session_options(threads, optimization), providers_for(device)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable models
        raise InputError(f"{path}: not a loadable ONNX model ({type(err).__name__}: {err})") from err


def read_metadata(session: Any, path: str | os.PathLike) -> dict[str, Any]:
    """The gazecxr metadata of an exported model, decoded; ValueError when it is missing."""
    raw: Mapping[str, str] = session.get_modelmeta().custom_metadata_map
    missing = [key for key in REQUIRED_METADATA if key not in raw]
    if missing:
        raise InputError(f"{path}: no gazecxr metadata {missing}; was it written by python -m gazecxr.inference.export?")
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != ([INPUT_NAME], list(OUTPUT_NAMES)):
        raise InputError(f"{path}: expected input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}, got {names}")
    return {key: json.loads(value) if key in (META_INPUT_SIZE, META_CLASSES, META_LINEAGE, META_TASK) else value
            for key, value in raw.items() if key.startswith("gazecxr.")}


class OnnxPredictor(BasePredictor):
    """An exported three-stage model run by ONNX Runtime (no Grad-CAM: that needs PyTorch's autograd)."""

    backend = "onnxruntime"

    def __init__(self, session: Any, path: Path, metadata: Mapping[str, Any]) -> None:
        task, thresholds = checked_task(metadata.get(META_TASK), str(path))
        if list(task.names) != list(metadata[META_CLASSES]):
            raise InputError(f"{path}: class names {metadata[META_CLASSES]} do not match its task's {list(task.names)}")
        super().__init__(metadata[META_CHECKPOINT], tuple(metadata[META_INPUT_SIZE]), task=task, thresholds=thresholds)
        self.session = session
        self.path = path
        self.metadata = dict(metadata)

    def __repr__(self) -> str:
        return (f"OnnxPredictor(checkpoint={self.checkpoint!r}, file='{self.path}', input_size={self.input_size}, "
                f"providers={self.session.get_providers()}, classes={self.classes})")

    def run_canvases(self, canvases: np.ndarray, gradcam: bool) -> tuple[np.ndarray, np.ndarray, None]:
        """The exported graph on (N, H, W) canvases."""
        self._check_gradcam(gradcam)
        saliency, probabilities = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: canvases[:, None]})
        return saliency, probabilities, None


def load_onnx_predictor(path: str | os.PathLike, run: str | None = None, device: str | None = None,
                        threads: int | None = None) -> OnnxPredictor:
    """The OnnxPredictor of the exported model at ``path``; ``run``, when given, must be (a prefix
    of) the registry id recorded in the file."""
    path = Path(path)
    session = open_session(path, None if device is None else str(device), threads)
    metadata = read_metadata(session, path)
    if run is not None and not metadata[META_CHECKPOINT].startswith(run):
        raise InputError(f"{path} holds checkpoint {metadata[META_CHECKPOINT]}, not {run!r}")
    return OnnxPredictor(session, path, metadata)


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps (N, ...) and (N, ...), flattened."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(denominator > 0, (a * b).sum(1) / np.where(denominator > 0, denominator, 1), 1.0)


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the metadata of the ONNX file at ``path`` with ``metadata`` (string keys and values)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.doc_string = "gazecxr", "gazecxr three-stage model: saliency and diagnosis"
    onnx.save(model, str(path))
