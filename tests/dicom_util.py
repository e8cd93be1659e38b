"""Writing small test DICOMs with pydicom."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                slope: float | None = None, intercept: float | None = None) -> Path:
    """A single-frame 16-bit (12 stored) greyscale DICOM with fake patient metadata."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = DX_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "FAKE^PATIENT", "PHI-12345", "19000101"
    ds.StudyDate = "21000101"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def compress_dicom(source: Path, path: Path, syntax: str) -> Path:
    """``source`` re-encoded in transfer syntax ``syntax`` at ``path``: RLE, JPEG 2000 and JPEG-LS by
    pydicom's encoders, JPEG Lossless (process 14, selection value 1) by libjpeg-turbo through imagecodecs."""
    ds = pydicom.dcmread(source)
    if syntax == JPEGLosslessSV1:
        frame = imagecodecs.jpeg8_encode(ds.pixel_array, lossless=True, predictor=1, bitspersample=ds.BitsStored)
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    else:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path
