"""Reading radiographs: DICOM (pydicom) or PNG/JPEG, to float32 in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_rescale

DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageReadError(ValueError):
    """A radiograph that cannot be read; the message names the file and the problem."""


def scale_to_unit(pixels: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to float32 [0, 1] (a constant image becomes all zeros)."""
    pixels = np.asarray(pixels, np.float32)
    lo, hi = float(pixels.min()), float(pixels.max())
    if hi <= lo:
        return np.zeros_like(pixels)
    return (pixels - lo) / (hi - lo)


def read_dicom(path: str | Path) -> np.ndarray:
    """Pixel data of a DICOM radiograph as float32 in [0, 1], bright = dense.

    Applies the rescale slope/intercept and inverts MONOCHROME1. Only pixel data and the
    attributes needed to interpret it are read; no patient metadata leaves this function.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, TypeError, KeyError, EOFError, OSError) as err:
        raise ImageReadError(f"{path}: unreadable DICOM ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected a single-frame greyscale DICOM, got pixel array of shape {pixels.shape}")
    pixels = apply_rescale(pixels, ds).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return scale_to_unit(pixels)


def read_raster(path: str | Path) -> np.ndarray:
    """A PNG/JPEG radiograph (8 or 16 bit, colour converted to grey) as float32 in [0, 1]."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                pixels = np.asarray(img, np.float32)
            else:
                pixels = np.asarray(img.convert("L"), np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected a greyscale image, got shape {pixels.shape}")
    return scale_to_unit(pixels)


def read_radiograph(path: str | Path) -> np.ndarray:
    """Read a radiograph by its suffix (``.dcm``, ``.png``, ``.jpg``) as float32 in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file")
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return read_dicom(path)
    if suffix in RASTER_SUFFIXES:
        return read_raster(path)
    raise ImageReadError(f"{path}: unsupported image type {suffix!r}; expected one of {DICOM_SUFFIXES + RASTER_SUFFIXES}")


def locate_image(image_root: str | Path, relative: str) -> Path:
    """The file for a master-sheet ``path``: the DICOM, else the MIMIC-CXR-JPG ``.jpg`` copy."""
    dicom = Path(image_root) / relative
    if dicom.is_file():
        return dicom
    jpg = dicom.with_suffix(".jpg")
    if jpg.is_file():
        return jpg
    raise ImageReadError(f"{dicom}: image missing (no DICOM and no .jpg at the same path)")
