"""Writes a synthetic dataset in the SIIM-ACR Pneumothorax (stage-1) layout, quirks included.

``DIR/SIIM/train-rle.csv`` (header ``ImageId, EncodedPixels`` with the space, which also starts every
value; ``-1`` for no pneumothorax; a pneumothorax split into two overlapping masks on every third
positive, so two rows whose union is the mask) and
``DIR/SIIM/dicom-images-train/<StudyUID>/<SeriesUID>/<ImageId>.dcm``: square 8-bit MONOCHROME2 films,
JPEG baseline (process 1) compressed by libjpeg-turbo through ``imagecodecs``, with a pseudonymous
PatientID and fake identifying fields. Half the films carry a planted pneumothorax whose mask is the
ground truth.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pydicom.uid
from pydicom.encaps import encapsulate
from tqdm import tqdm

from gazecxr.config.errors import MissingExtraError
from gazecxr.data.regions import EMPTY_RLE, rle_encode
from gazecxr.data.sources.siim import DICOM_DIR, RLE_HEADER, RLE_TABLE
from gazecxr.data.synthetic.public_common import fake_dicom, phantom_with, streams, write_atomically

_STREAM = 22
_UID_ROOT = "1.2.276.0.7230010.3.1"


def jpeg_baseline(pixels: np.ndarray, level: int = 95) -> bytes:
    """An 8-bit greyscale frame as a baseline JPEG (libjpeg-turbo through ``imagecodecs``)."""
    try:
        import imagecodecs
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingExtraError("the SIIM layout needs a JPEG baseline encoder: pip install imagecodecs "
                           "(pydicom has none of its own)") from err
    return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(pixels, np.uint8), level=level))


def generate_siim(out_dir: str | os.PathLike, n: int = 40, seed: int = 0, size: int = 256,
                  progress: bool = True, overwrite: bool = False) -> dict:
    """Write ``n`` synthetic ``size``×``size`` films in the SIIM-ACR layout under ``out_dir``/SIIM."""
    out, counts = write_atomically(out_dir, overwrite, lambda root: write_siim_layout(root, n, seed, size, progress),
                                   n, size, "SIIM")
    return {**counts, "seed": seed, "size": size, "paths": {"root": str(out), "siim": str(out / "SIIM")}}


def _uid(rng: np.random.Generator, i: int) -> str:
    return f"{_UID_ROOT}.4.8323329.{int(rng.integers(1000, 32000))}.{1517875150 + i}.{int(rng.integers(10**5, 10**6))}"


def write_siim_layout(root: Path, n: int, seed: int, size: int, progress: bool) -> dict:
    """Write the ``n`` films and ``train-rle.csv`` into the new folder ``root``; returns the counts."""
    root.mkdir(parents=True)
    rows, positives, multi = [], 0, 0
    for i in tqdm(range(n), desc="synthetic SIIM", unit="img", disable=not progress):
        meta, image_rng, _ = streams(seed, _STREAM, i)
        positive = i % 2 == 1
        phantom, lesions = phantom_with(image_rng, ["Pneumothorax"] if positive else [],
                                        {"Pneumothorax": ("pneumothorax", 0.0)}, size, size)
        sop = _uid(meta, i)
        study, series = f"{sop[:-7]}.2.{i}", f"{sop[:-7]}.3.{i}"
        ds = fake_dicom(meta, sop_uid=sop, study_uid=study, series_uid=series,
                        patient_id=str(uuid.UUID(bytes=meta.bytes(16), version=4)),
                        syntax=pydicom.uid.JPEGBaseline8Bit)
        pixels = np.rint(phantom.image * 255).astype(np.uint8)
        ds.Rows, ds.Columns = pixels.shape
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = encapsulate([jpeg_baseline(pixels)])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        path = root / DICOM_DIR / study / series / f"{sop}.dcm"
        path.parent.mkdir(parents=True)
        ds.save_as(path, enforce_file_format=True)
        if not positive:
            rows.append((sop, EMPTY_RLE))
            continue
        positives += 1
        mask = lesions["Pneumothorax"].mask
        if positives % 3 == 0:
            multi += 1
            r = np.flatnonzero(mask.any(axis=1))
            cut = r[len(r) // 2]
            upper, lower = mask.copy(), mask.copy()
            upper[cut + 2:] = False
            lower[:cut - 2] = False
            rows += [(sop, rle_encode(upper)), (sop, rle_encode(lower))]
        else:
            rows.append((sop, rle_encode(mask)))
    with open(root / RLE_TABLE, "w", newline="", encoding="utf-8") as handle:
        handle.write(RLE_HEADER + "\n")
        handle.writelines(f"{image_id}, {rle}\n" for image_id, rle in rows)
    return {"n_images": n, "n_pneumothorax": positives, "n_multi_mask": multi, "n_rows": len(rows)}
