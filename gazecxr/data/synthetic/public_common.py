"""What the public-dataset synthetic writers share: atomic output folders, seeded streams, phantoms with
planted findings, and fake DICOM headers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom.uid
from pydicom.dataset import FileDataset, FileMetaDataset

from gazecxr.config.errors import InputError, OutputExistsError
from gazecxr.data.provenance import SYNTHETIC_MARKER, SYNTHETIC_MARKER_TEXT
from gazecxr.data.synthetic.lesions import Lesion, plant
from gazecxr.data.synthetic.phantom import CHF, NORMAL, Phantom, draw_phantom
from gazecxr.data.synthetic.writer import FAKE_BIRTH_DATE, FAKE_PHI_MARKER



def write_atomically(out_dir: str | os.PathLike, overwrite: bool, write: Callable[[Path], dict],
                     n: int, size: int, folder: str) -> tuple[Path, dict]:
    """Run ``write(tmp / folder)`` in a temporary sibling of ``out_dir``, mark ``folder`` as synthetic
    (``SYNTHETIC_MARKER``) and rename it all into place; refuse a non-empty ``out_dir`` unless
    ``overwrite``. Returns ``out_dir`` and what ``write`` returned."""
    if n < 1 or size < 64:
        raise InputError(f"need n >= 1 and size >= 64, got n={n}, size={size}")
    out = Path(out_dir).absolute()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise OutputExistsError(f"{out} exists and is not an empty folder; pass overwrite=True (CLI: --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        summary = write(tmp / folder)
        (tmp / folder / SYNTHETIC_MARKER).write_text(SYNTHETIC_MARKER_TEXT, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, summary


def streams(seed: int, stream: int, i: int, k: int = 3) -> list[np.random.Generator]:
    """``k`` independent generators for image ``i`` of ``stream`` under ``seed``."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed, spawn_key=(stream, i)).spawn(k)]


def phantom_with(rng: np.random.Generator, findings: list[str], kinds: dict[str, tuple[str, float]],
                 height: int, width: int) -> tuple[Phantom, dict[str, Lesion]]:
    """A phantom (a CHF film when ``kinds`` maps a finding to "cardiomegaly") with each finding planted;
    ``kinds`` maps a finding name to (lesion kind, blob radius as a fraction of the height)."""
    heart = any(kinds[f][0] == "cardiomegaly" for f in findings)
    phantom = draw_phantom(rng, CHF if heart else NORMAL, height, width)
    return phantom, {f: plant(phantom, kinds[f][0], rng, radius=kinds[f][1]) for f in findings}


def fake_dicom(rng: np.random.Generator, *, sop_uid: str, study_uid: str, series_uid: str, patient_id: str,
               syntax: str = pydicom.uid.ExplicitVRLittleEndian) -> FileDataset:
    """A DX DICOM header with clearly fake identifying fields (``FAKE_PHI_MARKER``), ``patient_id`` as
    PatientID; pixel attributes are left to the caller."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(sop_uid, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PatientName = f"{FAKE_PHI_MARKER}^PHANTOM"
    ds.PatientID = patient_id
    ds.PatientBirthDate = FAKE_BIRTH_DATE
    ds.PatientSex = "F" if rng.random() < 0.5 else "M"
    ds.PatientAge = f"{int(rng.integers(18, 90)):03d}Y"
    ds.InstitutionName = f"{FAKE_PHI_MARKER} SYNTHETIC HOSPITAL"
    ds.SamplesPerPixel = 1
    return ds
