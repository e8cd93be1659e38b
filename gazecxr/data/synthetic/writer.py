"""Writes a synthetic dataset in the exact raw EGD-CXR 1.0.0 + MIMIC-CXR layout.

``DIR/EGD/`` gets ``master_sheet.csv``, ``eye_gaze.csv``, ``fixations.csv``,
``bounding_boxes.csv`` and ``audio_segmentation_transcripts/<dicom_id>/*.png``;
``DIR/MIMIC/files/pXX/p<patient>/s<study>/<dicom_id>.dcm`` gets the 12-bit DICOM films.
Everything is a deterministic function of the seed and the knobs (`gazecxr.data.synthetic.knobs`),
and image ``i`` does not depend on how many images are written; the films and labels do not
depend on the gaze knob either, so datasets that differ only in ``gaze_informativeness`` hold
the same images. The shortcut marker is drawn with its own random numbers after the film, so it changes
nothing else.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom.uid
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from tqdm import tqdm

from gazecxr import CLASS_NAMES
from gazecxr.data.provenance import SYNTHETIC_MARKER, SYNTHETIC_MARKER_TEXT
from gazecxr.data.sources.egd_format import (
    BOUNDING_BOX_COLUMNS,
    BOUNDING_BOXES,
    EYE_GAZE,
    FIXATIONS,
    GAZE_COLUMNS,
    MASK_FILES,
    MASTER_SHEET,
    MASTER_SHEET_COLUMNS,
    SEGMENTATION_DIR,
)
from gazecxr.data.synthetic.gaze import (
    Reading,
    calibration_reading,
    display_pads,
    gaze_rows,
    simulate_reading,
)
from gazecxr.data.synthetic.knobs import DEFAULT_KNOBS, Knobs, write_knobs
from gazecxr.data.synthetic.evidence import EVIDENCE_DIR, SHORTCUT_TABLE, EvidenceWriter
from gazecxr.data.synthetic.phantom import Phantom, draw_phantom, evidence_mask, sample_film_size
from gazecxr.data.synthetic.shortcut import add_shortcut

IMAGES_PER_SESSION = 20
"""Images read per simulated eye-tracking session; each session opens with a calibration screen."""

FAKE_PHI_MARKER = "FAKE"
"""Every fake identifying DICOM text (name, patient id, accession, institution) contains this."""

FAKE_BIRTH_DATE = "19000101"
"""The PatientBirthDate written into every synthetic DICOM."""

BBOX_NAMES: dict[str, str] = {
    "right lung": "right_lung", "left lung": "left_lung", "mediastinum": "mediastinum",
    "aortic knob": "aortic_knob", "cardiac silhouette": "heart",
}
"""``bounding_boxes.csv`` bbox_name -> phantom mask it is derived from."""

_IMAGE, _LABELS, _CALIBRATION, _DISTRACTORS, _SHORTCUT = 0, 1, 2, 3, 4
_REPEAT_STUDY_P = 0.12

_CLASS_DX = {1: ("Congestive heart failure, unspecified", "I509"), 2: ("Pneumonia, unspecified organism", "J189")}
_OTHER_DX = (
    ("Chest pain, unspecified", "R079"), ("Shortness of breath", "R0602"),
    ("Essential (primary) hypertension", "I10"), ("Cough", "R05"), ("Fever, unspecified", "R509"),
    ("Acute kidney failure, unspecified", "N179"), ("Type 2 diabetes mellitus without complications", "E119"),
    ("Unspecified atrial fibrillation", "I4891"), ("Hypoxemia", "R0902"), ("Syncope and collapse", "R55"),
    ("Dizziness and giddiness", "R42"), ("Altered mental status, unspecified", "R4182"),
)
_FINDINGS = {
    0: {"normal_anatomically": 1.0, "hyperaeration": 0.05},
    1: {"enlarged_cardiac_silhouette": 1.0, "pulmonary_edema__hazy_opacity": 0.8, "vascular_redistribution": 0.5,
        "pleural_effusion_or_thickening": 0.3},
    2: {"consolidation": 0.8, "not_otherwise_specified_opacity___pleural__parenchymal_opacity__": 0.5,
        "linear__patchy_atelectasis": 0.2, "lobar__segmental_collapse": 0.05},
}
"""Radiologist finding columns set to 1 with these probabilities per class (others 0)."""
_CHX = {
    0: {"no_finding__chx": ("1.0", "1.0", "1.0", ""), "support_devices__chx": ("", "", "", "1.0")},
    1: {"cardiomegaly__chx": ("1.0", "1.0", "1.0", "-1.0", ""), "edema__chx": ("1.0", "1.0", "-1.0", ""),
        "enlarged_cardiomediastinum__chx": ("1.0", "", "-1.0"), "pleural_effusion__chx": ("", "1.0", "0.0")},
    2: {"pneumonia__chx": ("1.0", "1.0", "-1.0", ""), "consolidation__chx": ("1.0", "", "-1.0"),
        "lung_opacity__chx": ("1.0", "1.0", ""), "atelectasis__chx": ("", "", "-1.0", "0.0")},
}
"""Report-derived CheXpert columns: value drawn from these choices per class (others empty)."""
_SYMPTOMS = ("shortness of breath", "cough", "fever", "chest pain", "dyspnea on exertion", "leg swelling",
             "hypoxia", "weakness", "tachypnea")
_QUESTIONS = ("pneumonia", "infiltrate", "CHF", "pulmonary edema", "acute cardiopulmonary process", "effusion")
_INDICATIONS = (
    "___{sex} with {s1}, {s2}, evaluate for {q}",
    "History: ___{sex} with {s1}\nEvaluate for {q}",
    '{S1}. Eval for "{q}"',
    "{S1}, r/o {q}",
    "___-year-old {person} with {s1}.\n\nQuestion: {q}?",
    "",
)


def reference_sigma(size: int) -> float:
    """Gaussian sigma (original pixels) matching the real 75.5 px at ~3000 px film height."""
    return 75.5 * size / 3000.0


def generate(out_dir: str | os.PathLike, n: int = 300, seed: int = 0, size: int = 1024,
             progress: bool = True, overwrite: bool = False, knobs: Knobs = DEFAULT_KNOBS,
             evidence: bool = False) -> dict:
    """Write ``n`` synthetic films with gaze in the raw EGD-CXR layout under ``out_dir``.

    ``size`` is the nominal film height in pixels; ``knobs`` set the evidence, the distractors,
    the gaze's informativeness and the shortcut marker (non-default values are recorded in
    ``EGD/synthetic_knobs.json``). ``evidence`` also writes the known answer (each film's evidence mask
    and marker state, `gazecxr.data.synthetic.evidence`) into ``EGD/``. The dataset is written to a temporary
    sibling directory and renamed into place; an existing non-empty ``out_dir`` is refused
    unless ``overwrite``. Returns a summary: counts per class, patients, images, gaze rows,
    the suggested heatmap sigma and the paths written.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir).absolute()
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (CLI: --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        counts = _write_dataset(tmp, n=n, seed=seed, size=size, progress=progress, knobs=knobs, evidence=evidence)
        if out.exists():
            old = tmp.with_name(tmp.name + "-old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    egd = out / "EGD"
    return {
        **counts, "seed": seed, "size": size, "suggested_sigma": reference_sigma(size), "knobs": knobs.as_dict(),
        "paths": {"root": str(out), "egd": str(egd), "mimic": str(out / "MIMIC"),
                  "master_sheet": str(egd / MASTER_SHEET), "eye_gaze": str(egd / EYE_GAZE),
                  "fixations": str(egd / FIXATIONS), "bounding_boxes": str(egd / BOUNDING_BOXES),
                  "masks": str(egd / SEGMENTATION_DIR),
                  **({"evidence": str(egd / EVIDENCE_DIR), "shortcut": str(egd / SHORTCUT_TABLE)} if evidence else {})},
    }


@dataclass(frozen=True)
class _Patient:
    patient_id: str
    gender: str
    age: int


class _Session:
    """Running clock, sample counter and fixation id of one eye-tracking session."""

    def __init__(self, session_id: int, seed: int):
        self.session_id, self.t, self.cnt, self.fid = session_id, 0.0, 0, 0
        self.rng = _rng(seed, _CALIBRATION, session_id)

    def add(self, reading: Reading, *, pause: float, **display) -> tuple[dict, dict]:
        """Gaze rows of the next reading, starting ``pause`` seconds after the previous one ended.

        ``display`` holds the :func:`gaze_rows` keywords height, width, pads, dicom_id,
        media_id and rng.
        """
        t0 = self.t + pause
        tables = gaze_rows(reading, session_id=self.session_id, t0=t0, cnt0=self.cnt, fid0=self.fid, **display)
        self.t = t0 + reading.duration
        self.cnt += reading.t.size
        self.fid += reading.fix_x.size
        return tables


def _rng(seed: int, stream: int, *key: int) -> np.random.Generator:
    """Independent generator for one (stream, key) of the dataset seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *key)))


def _hex_id(rng: np.random.Generator) -> str:
    """A MIMIC-style dicom_id: five dash-separated groups of 8 hex digits."""
    return "-".join(f"{int(v):08x}" for v in rng.integers(0, 2 ** 32, 5))


def _unique(rng: np.random.Generator, low: int, high: int, used: set[str]) -> str:
    """A random integer id in [low, high) not in ``used`` (and record it there)."""
    value = str(int(rng.integers(low, high)))
    while value in used:
        value = str(int(rng.integers(low, high)))
    used.add(value)
    return value


def _write_dataset(root: Path, *, n: int, seed: int, size: int, progress: bool, knobs: Knobs = DEFAULT_KNOBS,
                   evidence: bool = False) -> dict:
    """Write all files under ``root``; films are saved by one background thread."""
    with ThreadPoolExecutor(max_workers=1) as files:
        writer = _DatasetWriter(root, seed=seed, size=size, files=files, knobs=knobs, evidence=evidence)
        for i in tqdm(range(n), desc="synthetic films", unit="img", disable=not progress):
            writer.add(i)
        return writer.finish()


class _DatasetWriter:
    """Adds images one at a time (index order) and finally writes the EGD tables."""

    def __init__(self, root: Path, *, seed: int, size: int, files: ThreadPoolExecutor, knobs: Knobs = DEFAULT_KNOBS,
                 evidence: bool = False):
        self.egd, self.mimic = root / "EGD", root / "MIMIC"
        (self.egd / SEGMENTATION_DIR).mkdir(parents=True)
        self.evidence = EvidenceWriter(self.egd) if evidence else None
        self.seed, self.size, self.files, self.knobs = seed, size, files, knobs
        self.pending: deque[Future] = deque()
        self.rows: list[dict] = []
        self.boxes: list[dict] = []
        self.raw: list[dict[str, np.ndarray]] = []
        self.fixations: list[dict[str, np.ndarray]] = []
        self.used_patients: set[str] = set()
        self.used_studies: set[str] = set()
        self.patient: _Patient | None = None
        self.repeat = False
        self.session: _Session | None = None

    def add(self, i: int) -> None:
        """Draw image ``i`` (film, identifiers, clinical row, reading) and queue its files."""
        meta_rng, image_rng, gaze_rng = (np.random.default_rng(s) for s in
                                         np.random.SeedSequence(self.seed, spawn_key=(_IMAGE, i)).spawn(3))
        label = int(_rng(self.seed, _LABELS, i // 3).permutation(3)[i % 3])
        patient, study_id, dicom_id = self._identity(meta_rng)
        height, width = sample_film_size(image_rng, self.size)
        phantom = draw_phantom(image_rng, label, height, width, self.knobs,
                               _rng(self.seed, _DISTRACTORS, i) if self.knobs.distractors else None)
        marker = add_shortcut(phantom, self.knobs, _rng(self.seed, _SHORTCUT, i))
        if self.evidence is not None:
            self.evidence.add(dicom_id, evidence_mask(phantom), marker, label)
        rel = f"files/p{patient.patient_id[:2]}/p{patient.patient_id}/s{study_id}/{dicom_id}.dcm"
        ds, value_range = _dicom_header(meta_rng, dicom_id=dicom_id, patient=patient, study_id=study_id,
                                        size=self.size, uid_key=("egd", self.seed, i))
        self.pending.append(self.files.submit(_save_film, self.mimic / rel, ds, phantom, value_range,
                                              self.egd / SEGMENTATION_DIR / dicom_id))
        if len(self.pending) > 2:
            self.pending.popleft().result()
        self.boxes += _boxes(dicom_id, phantom)
        pads = display_pads(height, width)
        self.rows.append(_master_row(meta_rng, label=label, dicom_id=dicom_id, path=rel, study_id=study_id,
                                     patient=patient, pads=pads))
        if i % IMAGES_PER_SESSION == 0:
            self.session = _Session(i // IMAGES_PER_SESSION + 1, self.seed)
            self._append(self.session.add(calibration_reading(self.session.rng), height=1080, width=1920,
                                          pads=(0, 0, 0, 0), dicom_id=_hex_id(self.session.rng), media_id=0,
                                          rng=self.session.rng, pause=0.0))
        reading = simulate_reading(phantom, gaze_rng, self.knobs.gaze_informativeness)
        self._append(self.session.add(reading, height=height, width=width,
                                      pads=pads, dicom_id=dicom_id, media_id=i % IMAGES_PER_SESSION + 1,
                                      rng=gaze_rng, pause=gaze_rng.uniform(1.0, 3.0)))

    def finish(self) -> dict:
        """Wait for queued films, write the CSV tables, return the counts."""
        while self.pending:
            self.pending.popleft().result()
        _write_csv(self.egd / MASTER_SHEET, MASTER_SHEET_COLUMNS, self.rows)
        (self.egd / SYNTHETIC_MARKER).write_text(SYNTHETIC_MARKER_TEXT, encoding="utf-8")
        write_knobs(self.egd, self.knobs)
        if self.evidence is not None:
            self.evidence.finish()
        _write_csv(self.egd / BOUNDING_BOXES, BOUNDING_BOX_COLUMNS, self.boxes)
        n_raw = _write_gaze(self.egd / EYE_GAZE, self.raw)
        n_fix = _write_gaze(self.egd / FIXATIONS, self.fixations)
        labels = [next(k for k, name in enumerate(CLASS_NAMES) if row[name] == 1) for row in self.rows]
        return {"n_images": len(self.rows), "n_patients": len(self.used_patients),
                "class_counts": {name: labels.count(k) for k, name in enumerate(CLASS_NAMES)},
                "n_gaze_samples": n_raw, "n_fixations": n_fix}

    def _identity(self, rng: np.random.Generator) -> tuple[_Patient, str, str]:
        """Patient (sometimes the previous image's, as a new study), study id and dicom_id."""
        self.repeat = rng.random() < _REPEAT_STUDY_P and self.patient is not None and not self.repeat
        if not self.repeat:
            self.patient = _Patient(_unique(rng, 10_000_000, 20_000_000, self.used_patients),
                                    "F" if rng.random() < 0.5 else "M", int(rng.integers(21, 92)))
        return self.patient, _unique(rng, 50_000_000, 60_000_000, self.used_studies), _hex_id(rng)

    def _append(self, tables: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
        self.raw.append(tables[0])
        self.fixations.append(tables[1])


def _master_row(rng: np.random.Generator, *, label: int, dicom_id: str, path: str, study_id: str,
                patient: _Patient, pads: tuple[int, int, int, int]) -> dict:
    """One master-sheet row; unset fields stay empty."""
    row = dict.fromkeys(MASTER_SHEET_COLUMNS, "")
    row.update({"dicom_id": dicom_id, "path": path, "study_id": study_id, "patient_id": patient.patient_id,
                "stay_id": str(int(rng.integers(30_000_000, 40_000_000))) if rng.random() < 0.7 else "",
                "gender": patient.gender, "anchor_age": patient.age})
    for side, pad in zip(("top", "bottom", "left", "right"), pads):
        row[f"image_{side}_pad"] = pad
    picks = rng.choice(len(_OTHER_DX), int(rng.integers(1, 6)), replace=False)
    diagnoses = [_OTHER_DX[k] for k in picks]
    if label in _CLASS_DX:
        diagnoses.insert(int(rng.integers(0, 2)), _CLASS_DX[label])
    for k, (name, icd) in enumerate(diagnoses[:9], start=1):
        row[f"dx{k}"], row[f"dx{k}_icd"] = name, icd
    row["normal_reports"] = int(label == 0)
    for k, name in enumerate(CLASS_NAMES):
        row[name] = int(k == label)
    findings = MASTER_SHEET_COLUMNS[MASTER_SHEET_COLUMNS.index(CLASS_NAMES[-1]) + 1:]
    for name in findings:
        if not name.endswith("__chx") and name != "cxr_exam_indication":
            row[name] = int(rng.random() < _FINDINGS[label].get(name, 0.0))
    for name, choices in _CHX[label].items():
        row[name] = choices[int(rng.integers(len(choices)))]
    row["cxr_exam_indication"] = _indication(rng, patient.gender)
    return row


def _indication(rng: np.random.Generator, gender: str) -> str:
    """Free-text exam indication, sometimes with commas, quotes and newlines."""
    s1, s2 = rng.choice(_SYMPTOMS, 2, replace=False)
    template = _INDICATIONS[int(rng.integers(len(_INDICATIONS)))]
    return template.format(sex=gender, s1=s1, s2=s2, S1=s1.capitalize(), q=rng.choice(_QUESTIONS),
                           person="woman" if gender == "F" else "man")


def synthetic_uid(layout: str, seed: int, record: int, kind: str) -> pydicom.uid.UID:
    """The DICOM UID of ``kind`` ("sop", "series", "study") of record ``record`` of the ``layout`` dataset
    written with ``seed``: a hash of those (pydicom root prefix), so two runs write the same UIDs."""
    return pydicom.uid.generate_uid(entropy_srcs=[f"gazecxr-synthetic/{layout}/seed={seed}/record={record}/{kind}"])


def _dicom_header(rng: np.random.Generator, *, dicom_id: str, patient: _Patient, study_id: str,
                  size: int, uid_key: tuple[str, int, int]) -> tuple[FileDataset, tuple[float, float]]:
    """A 12-bit DX/CR DICOM header with clearly fake patient metadata, and the stored-value range
    (value of intensity 0, value of intensity 1) the film's pixels are mapped to. ``uid_key`` (layout,
    seed, record index) determines the UIDs (`synthetic_uid`)."""
    low, high = rng.uniform(0, 300), rng.uniform(3300, 4095)
    monochrome1 = rng.random() < 0.15
    sop_class = (pydicom.uid.DigitalXRayImageStorageForPresentation if rng.random() < 0.85
                 else pydicom.uid.ComputedRadiographyImageStorage)
    sop_uid = synthetic_uid(*uid_key, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(dicom_id, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID = synthetic_uid(*uid_key, "study")
    ds.SeriesInstanceUID = synthetic_uid(*uid_key, "series")
    ds.Modality = "DX" if sop_class == pydicom.uid.DigitalXRayImageStorageForPresentation else "CR"
    ds.PatientName = f"{FAKE_PHI_MARKER}^PHANTOM^{patient.patient_id}"
    ds.PatientID = f"{FAKE_PHI_MARKER}-{patient.patient_id}"
    ds.PatientBirthDate = FAKE_BIRTH_DATE
    ds.PatientSex = patient.gender
    ds.StudyDate = f"{int(rng.integers(2110, 2190))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    ds.StudyTime = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    ds.AccessionNumber = f"{FAKE_PHI_MARKER}{study_id}"
    ds.InstitutionName = f"{FAKE_PHI_MARKER} SYNTHETIC HOSPITAL"
    ds.ReferringPhysicianName = f"{FAKE_PHI_MARKER}^DOCTOR"
    ds.Manufacturer = "gazecxr synthetic phantom"
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    spacing = round(0.139 * 3000.0 / size, 6)
    ds.PixelSpacing = [spacing, spacing]
    if rng.random() < 0.3:
        slope, intercept = [(1.0, -1024.0), (2.0, 0.0), (0.5, 100.0)][int(rng.integers(3))]
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    return ds, ((4095 - low, 4095 - high) if monochrome1 else (low, high))


def _save_film(path: Path, ds: FileDataset, phantom: Phantom, value_range: tuple[float, float],
               mask_dir: Path | None) -> None:
    """Write the film's DICOM (12-bit stored values) and, with ``mask_dir``, its anatomical mask PNGs."""
    low, high = value_range
    stored = np.empty(phantom.shape, dtype="<u2")
    np.rint(low + phantom.image * np.float32(high - low), out=stored, casting="unsafe")
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    if mask_dir is None:
        return
    mask_dir.mkdir()
    for name, (filename, *_) in MASK_FILES.items():
        Image.fromarray(phantom.masks[name].view(np.uint8) * np.uint8(255)).save(mask_dir / filename,
                                                                                 compress_level=1)


def _boxes(dicom_id: str, phantom: Phantom) -> list[dict]:
    """Inclusive pixel extents (x1 <= col <= x2, y1 <= row <= y2) of each non-empty mask."""
    out = []
    for bbox_name, mask_name in BBOX_NAMES.items():
        mask = phantom.masks[mask_name]
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        if cols.size:
            out.append({"dicom_id": dicom_id, "bbox_name": bbox_name, "x1": int(cols[0]),
                        "x2": int(cols[-1]), "y1": int(rows[0]), "y2": int(rows[-1])})
    return out


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _write_gaze(path: Path, chunks: list[dict[str, np.ndarray]]) -> int:
    """Write gaze rows in ``GAZE_COLUMNS`` order; no field needs CSV quoting."""
    columns = [_as_text(np.concatenate([chunk[name] for chunk in chunks])) for name in GAZE_COLUMNS]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write(",".join(GAZE_COLUMNS) + "\n")
        handle.writelines(",".join(row) + "\n" for row in zip(*columns))
    return len(columns[0])


def _as_text(values: np.ndarray) -> np.ndarray:
    """Column values as strings (Python ``str`` of each), converting each distinct value once."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.array([str(v) for v in distinct.tolist()], dtype=object)[inverse]
