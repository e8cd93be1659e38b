"""Static int8 quantisation of an exported model with ONNX Runtime's quantiser, kept only if close.

Calibration images come from a converted HDF5 dataset (its ``image`` canvases, letterboxed into
the model's input size when the sizes differ): the first N calibrate the activation ranges
(min-max, QDQ format, uint8 activations, int8 weights), the next N are held out and the int8
model is compared with the float model on them. The int8 file is written (atomically, with the
float model's metadata) only if every held-out saliency map keeps a Pearson correlation of at
least 0.99 with the float model's and every probability is within 0.02.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gazecxr.config.errors import InputError
from gazecxr.data.geometry import Letterbox
from gazecxr.inference.onnx_backend import (
    INPUT_NAME,
    OUTPUT_NAMES,
    add_metadata,
    import_onnxruntime,
    open_session,
    pearson_rows,
    read_metadata,
)

import_onnxruntime()
from onnxruntime.quantization import (  # noqa: E402  (after the check that onnxruntime is installed)
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

MIN_PEARSON = 0.99
MAX_PROBABILITY_DIFF = 0.02


def int8_path(path: str | os.PathLike) -> Path:
    """Where the int8 model of ``path`` goes: ``<stem>.int8.onnx`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.int8.onnx")


def calibration_canvases(h5: str | os.PathLike, count: int, input_size: tuple[int, int]) -> np.ndarray:
    """The first ``count`` images of the HDF5 file as (count, H, W) canvases of ``input_size``."""
    with h5py.File(h5, "r") as file:
        if "image" not in file:
            raise InputError(f"{h5}: no 'image' dataset; expected a file written by the gazecxr converter")
        images = file["image"][:count].astype(np.float32)
    if len(images) < count:
        raise InputError(f"{h5}: {len(images)} images, {count} needed (calibration + held-out)")
    if images.shape[1:] == tuple(input_size):
        return images
    return np.stack([Letterbox.fit(image.shape, input_size).image_to_canvas(image) for image in images])


@dataclass(frozen=True)
class QuantizationResult:
    """The int8 model compared with the float model on held-out images."""

    path: str
    kept: bool
    calibration_images: int
    held_out_images: int
    saliency_min_pearson: float
    probabilities_max_abs_diff: float
    float_ms_per_image: float
    int8_ms_per_image: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    def describe(self) -> str:
        """One line for the console."""
        verdict = f"kept {self.path}" if self.kept else f"NOT kept (limits: Pearson >= {MIN_PEARSON}, " \
                                                         f"probabilities within {MAX_PROBABILITY_DIFF})"
        return (f"int8 on {self.held_out_images} held-out images: saliency min Pearson "
                f"{self.saliency_min_pearson:.4f}, probabilities max abs diff {self.probabilities_max_abs_diff:.4f}, "
                f"{self.int8_ms_per_image:.0f} ms/image vs float {self.float_ms_per_image:.0f}; {verdict}")


class _CanvasReader(CalibrationDataReader):
    """Feeds calibration canvases to the quantiser one at a time."""

    def __init__(self, canvases: np.ndarray) -> None:
        self.batches = iter([canvases[i:i + 1, None] for i in range(len(canvases))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}



def _timed_run(session: Any, canvases: np.ndarray) -> tuple[list[np.ndarray], float]:
    session.run(list(OUTPUT_NAMES), {INPUT_NAME: canvases[:1, None]})
    tic = time.perf_counter()
    outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: canvases[:, None]})
    return outputs, 1000 * (time.perf_counter() - tic) / len(canvases)


def quantize_int8(model: str | os.PathLike, h5: str | os.PathLike, calibration_images: int = 16) -> QuantizationResult:
    """Quantise the exported ``model`` to int8 (see the module doc); returns the comparison, and
    writes `int8_path` only when the result is kept."""

    if calibration_images < 1:
        raise InputError(f"calibration_images must be >= 1, got {calibration_images}")
    model = Path(model)
    float_session = open_session(model)
    metadata = read_metadata(float_session, model)
    raw_metadata = dict(float_session.get_modelmeta().custom_metadata_map)
    canvases = calibration_canvases(h5, 2 * calibration_images, tuple(metadata["gazecxr.input_size"]))
    calibration, held_out = canvases[:calibration_images], canvases[calibration_images:]
    reader = _CanvasReader(calibration)
    out = int8_path(model)
    with tempfile.TemporaryDirectory(prefix="gazecxr-int8-", dir=out.parent) as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        add_metadata(quantized, {**raw_metadata, "gazecxr.quantization":
                                 f"int8 static (QDQ, min-max) calibrated on {calibration_images} images of {Path(h5).name}"})
        (float_saliency, float_probabilities), float_ms = _timed_run(float_session, held_out)
        (int8_saliency, int8_probabilities), int8_ms = _timed_run(open_session(quantized), held_out)
        pearson = float(pearson_rows(int8_saliency, float_saliency).min())
        diff = float(np.abs(int8_probabilities - float_probabilities).max())
        kept = pearson >= MIN_PEARSON and diff <= MAX_PROBABILITY_DIFF
        if kept:  # the temporary directory is beside ``out``: one atomic rename
            os.replace(quantized, out)
    return QuantizationResult(str(out), kept, len(calibration), len(held_out), pearson, diff, float_ms, int8_ms)
