"""Reading radiographs as people hold them, to float32 greyscale in [0, 1].

DICOM is recognised by its ``DICM`` preamble whatever the file is called (or by a ``.dcm`` /
``.dicom`` suffix); compressed transfer syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) are
decoded by pydicom's pixel-data plugins (pylibjpeg with its libjpeg, openjpeg and rle plugins).
PNG and JPEG are recognised by their signatures: 8- or 16-bit, grey, palette, RGB or RGBA (colour
becomes grey by ITU-R 601 luma; JPEG EXIF orientation is applied).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_rescale, apply_voi_lut

from gazecxr.config.errors import InputError

DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"
RASTER_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
"""PNG and JPEG file signatures."""

LUMA_601 = np.array([0.299, 0.587, 0.114], np.float32)
"""RGB → grey weights (ITU-R BT.601, the ones Pillow's ``convert("L")`` uses)."""

_SINGLE_FRAME_HINT = "expected one greyscale or colour radiograph"


class ImageReadError(InputError):
    """A radiograph that cannot be read; the message names the file and the problem."""


def scale_to_unit(pixels: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to float32 [0, 1] (a constant image becomes all zeros)."""
    pixels = np.asarray(pixels, np.float32)
    lo, hi = float(pixels.min()), float(pixels.max())
    if hi <= lo:
        return np.zeros_like(pixels)
    return (pixels - lo) / (hi - lo)


def image_kind(path: str | Path) -> str:
    """``"dicom"`` or ``"raster"`` (PNG/JPEG) by the file's first bytes, else by its suffix."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    if head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC:
        return "dicom"
    if head.startswith(RASTER_SIGNATURES):
        return "raster"
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in RASTER_SUFFIXES:
        return "raster"
    raise ImageReadError(f"{path}: unsupported image type: not a DICOM (no 'DICM' preamble), PNG or JPEG file"
                         + (f" (suffix {suffix!r})" if suffix else ""))


def _decode_dicom(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """The dataset and its decoded pixel array; ImageReadError for files that are not one radiograph."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, AttributeError, ValueError, TypeError, KeyError, EOFError, OSError) as err:
        raise ImageReadError(f"{path}: unreadable DICOM ({type(err).__name__}: {err})") from err
    if "PixelData" not in ds:
        sop = ds.get("SOPClassUID")
        kind = f" ({sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise ImageReadError(f"{path}: DICOM without pixel data, not an image{kind}; {_SINGLE_FRAME_HINT}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(f"{path}: multi-frame DICOM ({frames} frames); {_SINGLE_FRAME_HINT}")
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as err:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        label = name if name == str(syntax) else f"{name} ({syntax})"
        raise ImageReadError(f"{path}: cannot decode DICOM pixel data in transfer syntax {label}: "
                             f"{str(err).splitlines()[0]}") from err
    except (AttributeError, ValueError, TypeError, KeyError, EOFError, OSError) as err:
        raise ImageReadError(f"{path}: unreadable DICOM pixel data ({type(err).__name__}: {err})") from err
    return ds, pixels


def read_dicom(path: str | Path, voi_lut: bool = False) -> np.ndarray:
    """Pixel data of a single-frame DICOM radiograph as float32 in [0, 1], bright = dense.

    Applies the rescale slope/intercept, with ``voi_lut`` the file's VOI LUT or window centre/width
    (pydicom's ``apply_voi_lut``; nothing when it has neither), inverts MONOCHROME1 and turns colour
    into grey.
    Only pixel data and the attributes needed to interpret it are read; no patient metadata
    leaves this function.
    """
    path = Path(path)
    ds, pixels = _decode_dicom(path)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        return scale_to_unit(pixels.astype(np.float32) @ LUMA_601)
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: pixel array of shape {pixels.shape}; {_SINGLE_FRAME_HINT}")
    pixels = apply_rescale(pixels, ds).astype(np.float32)
    if voi_lut:
        pixels = np.asarray(apply_voi_lut(pixels, ds), np.float32)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return scale_to_unit(pixels)


def read_raster(path: str | Path) -> np.ndarray:
    """A PNG/JPEG radiograph (8 or 16 bit; colour, palette and alpha images to grey) as float32 in [0, 1]."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                pixels = np.asarray(img, np.float32)
            else:
                pixels = np.asarray(img.convert("L"), np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected a greyscale image, got shape {pixels.shape}")
    return scale_to_unit(pixels)


def read_radiograph(path: str | Path, voi_lut: bool = False) -> np.ndarray:
    """Read a DICOM, PNG or JPEG radiograph (recognised by content, see `image_kind`) as float32 in [0, 1];
    ``voi_lut`` applies a DICOM's VOI LUT / window (see `read_dicom`)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file")
    return read_dicom(path, voi_lut) if image_kind(path) == "dicom" else read_raster(path)


def locate_image(image_root: str | Path, relative: str) -> Path:
    """The file for a master-sheet ``path``: the DICOM, else the MIMIC-CXR-JPG ``.jpg`` copy."""
    dicom = Path(image_root) / relative
    if dicom.is_file():
        return dicom
    jpg = dicom.with_suffix(".jpg")
    if jpg.is_file():
        return jpg
    raise ImageReadError(f"{dicom}: image missing (no DICOM and no .jpg at the same path)")
