"""SIIM-ACR Pneumothorax Segmentation source (Kaggle 2019, stage-1 layout): masks as relative RLE.

``train-rle.csv`` has the header ``ImageId, EncodedPixels`` (with the space, which also starts every
value); ``-1`` means no pneumothorax and an image with several masks has several rows, whose union
is its mask. The run-length code is the organisers' *relative*, column-major one
(:func:`gazecxr.data.regions.rle_decode`). Films are ``dicom-images-train/<StudyUID>/<SeriesUID>/
<ImageId>.dcm`` (1024×1024 MONOCHROME2, JPEG baseline); the DICOM ``PatientID`` (the competition's
pseudonymous id) groups the split and is the only header field kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from gazecxr.data.convert import ConversionReport, ConvertOptions, ReadingSpec, SourceRecord
from gazecxr.data.regions import EMPTY_RLE, rle_decode, rle_encode
from gazecxr.data.sources.nih14 import index_images
from gazecxr.data.tables import TableFormatError

__all__ = ["FINDINGS", "RLE_TABLE", "DICOM_DIR", "RLE_HEADER", "RleMask", "SIIMSource", "read_rle_table",
           "rle_decode", "rle_encode"]

FINDINGS = ("Pneumothorax",)
RLE_TABLE = "train-rle.csv"
DICOM_DIR = "dicom-images-train"
RLE_HEADER = "ImageId, EncodedPixels"
"""The exact first line of ``train-rle.csv`` (note the space after the comma)."""


@dataclass(frozen=True)
class RleMask:
    """A record's masks as run-length strings, decoded (and united) on the film's size in the worker."""

    rles: tuple[str, ...]

    def decode(self, shape: tuple[int, int]) -> np.ndarray:
        """Union of the masks on an image of ``shape`` (height, width)."""
        mask = np.zeros(shape, bool)
        for rle in self.rles:
            mask |= rle_decode(rle, *shape)
        return mask


def read_rle_table(path: Path) -> dict[str, list[str]]:
    """Run-length strings per ImageId in file order (``[]`` for ``-1`` rows). Raises TableFormatError for
    another header or a malformed row (naming the line)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        first = handle.readline().rstrip("\r\n")
        if first != RLE_HEADER:
            raise TableFormatError(f"{path}: header {first!r} differs from the SIIM-ACR {RLE_HEADER!r}")
        masks: dict[str, list[str]] = {}
        for line, fields in enumerate(csv.reader(handle, skipinitialspace=True), start=2):
            if not fields:
                continue
            if len(fields) != 2 or not fields[0].strip():
                raise TableFormatError(f"{path}:{line}: expected 'ImageId, EncodedPixels', got {fields}")
            image_id, rle = fields[0].strip(), fields[1].strip()
            runs = masks.setdefault(image_id, [])
            if rle != EMPTY_RLE:
                values = rle.split()
                if len(values) % 2 or not all(v.lstrip("-").isdigit() for v in values):
                    raise TableFormatError(f"{path}:{line}: EncodedPixels of {image_id} is not '-1' nor "
                                           f"integer (offset, length) pairs")
                runs.append(rle)
    return masks


def patient_of(path: Path) -> str:
    """The DICOM ``PatientID`` of a film (read without its pixel data)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except (InvalidDicomError, OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable DICOM header ({type(err).__name__}: {err})") from err
    return str(ds.get("PatientID", "") or "")


@dataclass
class SIIMSource:
    """The SIIM-ACR folder ``siim_dir`` holding ``train-rle.csv`` and ``dicom-images-train/``."""

    siim_dir: Path
    name: str = "SIIM-ACR"
    finding_names: tuple[str, ...] | None = FINDINGS
    has_gaze: bool = False
    mask_finding: str = FINDINGS[0]
    stratify_finding: str | None = FINDINGS[0]

    def description(self) -> str:
        return f"SIIM-ACR Pneumothorax ({self.siim_dir.name})"

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """One record per ImageId of the RLE table whose DICOM is found: label 0/1, mask = union of its rows."""
        table = self.siim_dir / RLE_TABLE
        if not table.is_file():
            raise TableFormatError(f"{table}: file missing (is --siim-dir the SIIM-ACR folder?)")
        masks = read_rle_table(table)
        ids = list(masks)[: options.limit] if options.limit is not None else list(masks)
        films = index_images(self.siim_dir / DICOM_DIR, ".dcm")
        canvas, out = (options.height, options.width), []
        for image_id in ids:
            path = films.get(f"{image_id}.dcm")
            if path is None:
                report.skip(image_id, f"image missing: {image_id}.dcm not found below {self.siim_dir / DICOM_DIR}")
                continue
            try:
                patient = patient_of(path)
            except ValueError as err:
                report.skip(image_id, f"unreadable image: {err}")
                continue
            runs = tuple(masks[image_id])
            findings = np.array([float(bool(runs))], np.float32)
            out.append(SourceRecord(image_id, patient or image_id, -1, str(self.siim_dir),
                                    str(path.relative_to(self.siim_dir)), canvas, (ReadingSpec(findings=findings),),
                                    gaze=False, region_mask=RleMask(runs), regions_known=True,
                                    info={"masks": len(runs)}))
        return out
