"""Writes a synthetic dataset in the exact REFLACX 1.0.0 layout (+ MIMIC-CXR DICOM films).

``DIR/REFLACX/main_data/metadata_phase_{1,2,3}.csv`` and ``main_data/<id>/...``,
``DIR/REFLACX/gaze_data/<id>/gaze.csv`` (1000 Hz, blinks as empty fields) and
``DIR/MIMIC/files/pXX/p<patient>/s<study>/<dicom_id>.dcm``. Every tenth image is read by
five radiologists in phase 1, every tenth (offset 5) by five in phase 2 (one of those
readings discarded), the rest once in phase 3. Readers share the film's evidence (they
dwell on the planted findings they notice) but scan in their own order, pace and bias.
Planted findings are drawn into the film: the class evidence of the EGD phantoms
(enlarged heart + oedema for CHF, consolidation for pneumonia) plus small nodules. The
knobs of `gazecxr.data.synthetic.knobs` apply as in the EGD layout; with a ``gaze_informativeness``
each reader's fixations are that knob's reading (no extra dwells on the noticed findings), in the
reader's own pace, order and bias. Non-default knobs are recorded in
``REFLACX/synthetic_knobs.json``. ``REFLACX/SYNTHETIC.txt`` marks the folder as synthetic, as in the
EGD layout; the converter carries it into the HDF5 attribute ``synthetic`` that reports show. The
shortcut marker is drawn after the planted findings, with its own random numbers; readers never look at it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from gazecxr.data.provenance import SYNTHETIC_MARKER, SYNTHETIC_MARKER_TEXT
from gazecxr.data.sources.reflacx_format import (
    CHEST_BOX,
    CHEST_BOX_COLUMNS,
    ELLIPSE_COORDINATES,
    ELLIPSES,
    FIXATION_COLUMNS,
    FIXATIONS,
    GAZE,
    GAZE_COLUMNS,
    GAZE_DIR,
    LABELS,
    LABELS_PHASE_1,
    MAIN_DIR,
    METADATA,
    METADATA_COLUMNS,
    PHASE_1_TO_LABELS,
    TIMESTAMPS,
    TRANSCRIPTION,
)
from gazecxr.data.synthetic.evidence import EVIDENCE_DIR, SHORTCUT_TABLE, EvidenceWriter
from gazecxr.data.synthetic.gaze import Reading, simulate_reading
from gazecxr.data.synthetic.knobs import DEFAULT_KNOBS, Knobs, write_knobs
from gazecxr.data.synthetic.phantom import (
    CHF,
    PNEUMONIA,
    Phantom,
    draw_phantom,
    evidence_mask,
    sample_film_size,
)
from gazecxr.data.synthetic.shortcut import add_shortcut
from gazecxr.data.synthetic.writer import (
    _dicom_header,
    _hex_id,
    _Patient,
    _rng,
    _save_film,
    _unique,
)

READERS = 5
SAMPLE_RATE = 1000.0
_STREAM = 7
_NODULE_P = 0.5


def generate_reflacx(out_dir: str | os.PathLike, n: int = 50, seed: int = 0, size: int = 512,
                     progress: bool = True, overwrite: bool = False, knobs: Knobs = DEFAULT_KNOBS,
                     evidence: bool = False) -> dict:
    """Write ``n`` synthetic films with REFLACX readings under ``out_dir`` (atomically), drawn with
    ``knobs``; with ``evidence`` also each film's evidence mask and marker state
    (`gazecxr.data.synthetic.evidence`) into ``REFLACX/``. Return counts."""
    if n < 1 or size < 64:
        raise ValueError(f"need n >= 1 and size >= 64, got n={n}, size={size}")
    out = Path(out_dir).absolute()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (CLI: --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        counts = _Writer(tmp, seed, size, knobs, evidence).write(n, progress)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**counts, "seed": seed, "size": size, "knobs": knobs.as_dict(),
            "paths": {"root": str(out), "reflacx": str(out / "REFLACX"), "mimic": str(out / "MIMIC"),
                      **({"evidence": str(out / "REFLACX" / EVIDENCE_DIR),
                          "shortcut": str(out / "REFLACX" / SHORTCUT_TABLE)} if evidence else {})}}


def _phase(i: int) -> tuple[int, int]:
    """(phase, number of readers) of image ``i``."""
    return (1, READERS) if i % 10 == 0 else (2, READERS) if i % 10 == 5 else (3, 1)


def _pixel_box(phantom: Phantom, x: float, y: float, rx: float, ry: float) -> np.ndarray:
    cols, rows = phantom.pose.to_pixel(np.array([x - rx, x + rx]), np.array([y - ry, y + ry]))
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()])


def _mask_box(mask: np.ndarray) -> np.ndarray:
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], np.float64)


def plant_findings(phantom: Phantom, rng: np.random.Generator) -> list[tuple[str, np.ndarray, float]]:
    """Findings visible in the film as (label, box xmin/ymin/xmax/ymax, base certainty); draws nodules."""
    findings = []
    lungs = phantom.masks["right_lung"] | phantom.masks["left_lung"]
    if phantom.label == CHF:
        findings += [("Enlarged cardiac silhouette", _mask_box(phantom.masks["heart"]), 4.5),
                     ("Pulmonary edema", _mask_box(lungs), 3.5)]
    if phantom.label == PNEUMONIA:
        ox, oy, r = phantom.anatomy.opacity
        findings.append(("Consolidation", _pixel_box(phantom, ox, oy, r, r), 4.5))
    if rng.random() < _NODULE_P:
        side = int(rng.integers(2))
        cx, cy, a, b = phantom.anatomy.lungs[side]
        nx, ny = cx + rng.uniform(-0.4, 0.4) * a, cy + rng.uniform(-0.5, 0.4) * b
        radius = 0.035 * (a + b)
        col, row = phantom.pose.to_pixel(nx, ny)
        pix_r = radius * phantom.pose.sy
        rows, cols = np.ogrid[:phantom.shape[0], :phantom.shape[1]]
        blob = np.exp(-0.5 * (((cols - col) ** 2 + (rows - row) ** 2) / pix_r ** 2)).astype(np.float32)
        np.clip(phantom.image + 0.35 * blob, 0.0, 1.0, out=phantom.image)
        findings.append(("Lung nodule or mass", _pixel_box(phantom, nx, ny, 2 * radius, 2 * radius), 4.0))
    return findings


class _Writer:
    def __init__(self, root: Path, seed: int, size: int, knobs: Knobs = DEFAULT_KNOBS, evidence: bool = False):
        self.main, self.gaze_dir, self.mimic = root / "REFLACX" / MAIN_DIR, root / "REFLACX" / GAZE_DIR, root / "MIMIC"
        self.main.mkdir(parents=True)
        self.evidence = EvidenceWriter(self.main.parent) if evidence else None
        self.seed, self.size, self.knobs = seed, size, knobs
        self.used_patients: set[str] = set()
        self.used_studies: set[str] = set()
        self.used_ids: set[str] = set()
        self.metadata: dict[int, list[dict]] = {1: [], 2: [], 3: []}
        self.trials = {1: 0, 2: 0, 3: 0}
        self.counts = {"n_images": 0, "n_readings": 0, "n_discarded": 0, "n_multi_reader_images": 0}
        style_rng = _rng(seed, _STREAM, 10 ** 6)
        self.styles = [(style_rng.uniform(0.8, 1.3), style_rng.normal(0, 0.01, 2)) for _ in range(READERS)]

    def write(self, n: int, progress: bool) -> dict:
        for i in tqdm(range(n), desc="synthetic REFLACX", unit="img", disable=not progress):
            self._image(i)
        for phase, rows in self.metadata.items():
            names = LABELS_PHASE_1 if phase == 1 else LABELS
            _csv(self.main / METADATA.format(phase=phase), pd.DataFrame(rows, columns=[*METADATA_COLUMNS, *names]))
        (self.main.parent / SYNTHETIC_MARKER).write_text(SYNTHETIC_MARKER_TEXT, encoding="utf-8")
        write_knobs(self.main.parent, self.knobs)
        if self.evidence is not None:
            self.evidence.finish()
        return self.counts

    def _image(self, i: int) -> None:
        meta_rng, image_rng, find_rng = (np.random.default_rng(s) for s in
                                         np.random.SeedSequence(self.seed, spawn_key=(_STREAM, i)).spawn(3))
        label = int(_rng(self.seed, _STREAM + 1, i // 3).permutation(3)[i % 3])
        height, width = sample_film_size(image_rng, self.size)
        phantom = draw_phantom(image_rng, label, height, width, self.knobs,
                               _rng(self.seed, _STREAM + 3, i) if self.knobs.distractors else None)
        findings = plant_findings(phantom, find_rng)
        marker = add_shortcut(phantom, self.knobs, _rng(self.seed, _STREAM + 4, i))
        patient = _Patient(_unique(meta_rng, 10_000_000, 20_000_000, self.used_patients), "F", 50)
        study, dicom_id = _unique(meta_rng, 50_000_000, 60_000_000, self.used_studies), _hex_id(meta_rng)
        if self.evidence is not None:
            self.evidence.add(dicom_id, evidence_mask(phantom), marker, label)
        rel = f"files/p{patient.patient_id[:2]}/p{patient.patient_id}/s{study}/{dicom_id}.dcm"
        ds, value_range = _dicom_header(meta_rng, dicom_id=dicom_id, patient=patient, study_id=study, size=self.size,
                                        uid_key=("reflacx", self.seed, i))
        _save_film(self.mimic / rel, ds, phantom, value_range, None)
        phase, readers = _phase(i)
        self.trials[phase] += 1
        split = ("train", "validate", "test")[int(meta_rng.choice(3, p=[0.7, 0.1, 0.2]))]
        self.counts["n_images"] += 1
        self.counts["n_multi_reader_images"] += readers > 1
        chest = _mask_box(phantom.masks["right_lung"] | phantom.masks["left_lung"]) + np.array([-8, -8, 8, 8])
        for reader in meta_rng.permutation(READERS)[:readers]:
            rng = _rng(self.seed, _STREAM + 2, i, int(reader))
            reading_id = self._reading_id(phase, rng)
            discarded = phase == 2 and reader == 0
            noticed = [(name, box, float(np.clip(np.round(base + rng.normal(0, 0.7)), 1, 5)))
                       for name, box, base in findings if rng.random() > 0.15]
            self._metadata_row(phase, reading_id, split, discarded, rel, dicom_id, patient, width, height, noticed, rng)
            folder = self.main / reading_id
            folder.mkdir()
            _csv(folder / CHEST_BOX, pd.DataFrame([np.round(chest + rng.normal(0, 3, 4)).astype(int)],
                                                   columns=list(CHEST_BOX_COLUMNS)))
            self._ellipses(folder / ELLIPSES, phase, noticed, rng)
            self.counts["n_readings"] += 1
            if discarded:
                self.counts["n_discarded"] += 1
                continue
            reading = self._simulate(phantom, noticed, int(reader), rng)
            self._gaze_tables(folder, self.gaze_dir / reading_id, reading, phantom, rng)
            words = ["no", "acute", "findings"] if not noticed else [w for n, *_ in noticed for w in n.lower().split()]
            _csv(folder / TIMESTAMPS, pd.DataFrame({"word": words, "timestamp_start_word": np.arange(len(words)) * 0.5,
                                                    "timestamp_end_word": np.arange(len(words)) * 0.5 + 0.4}))
            with open(folder / TRANSCRIPTION, "w", newline="") as handle:
                handle.write(" ".join(words) + ".")

    def _reading_id(self, phase: int, rng: np.random.Generator) -> str:
        while True:
            prefix = f"P{phase}{self.trials[phase]:02}" if phase < 3 else "P300"
            reading_id = f"{prefix}R{int(rng.integers(0, 1_000_000)):06}"
            if reading_id not in self.used_ids:
                self.used_ids.add(reading_id)
                return reading_id

    def _metadata_row(self, phase, reading_id, split, discarded, rel, dicom_id, patient, width, height, noticed, rng):
        names = LABELS_PHASE_1 if phase == 1 else LABELS
        row = {"id": reading_id, "split": split, "eye_tracking_data_discarded": discarded,
               "image": f"physionet.org/files/mimic-cxr/2.0.0/{rel}", "dicom_id": dicom_id,
               "subject_id": patient.patient_id, "image_size_x": width, "image_size_y": height}
        row.update({n: 0 for n in names})
        row["Support devices"] = False
        row["Other"] = "" if rng.random() < 0.8 else "small, \"linear\" scar"
        if phase == 1:
            row["Quality issue"] = bool(rng.random() < 0.1)
        for name, _, cert in noticed:
            target = next(k for k, v in PHASE_1_TO_LABELS.items() if v == name) if phase == 1 else name
            row[target] = int(cert)
        self.metadata[phase].append(row)

    def _ellipses(self, path: Path, phase: int, noticed, rng) -> None:
        names = LABELS_PHASE_1 if phase == 1 else LABELS
        rows = []
        for name, box, cert in noticed:
            target = next(k for k, v in PHASE_1_TO_LABELS.items() if v == name) if phase == 1 else name
            drawn = np.round(box + rng.normal(0, 4, 4)).astype(int)
            drawn = np.concatenate([np.minimum(drawn[:2], drawn[2:]), np.maximum(drawn[:2], drawn[2:])])
            row = dict(zip(ELLIPSE_COORDINATES, [*drawn, int(cert)]))
            row.update({n: n == target for n in names})
            rows.append(row)
        _csv(path, pd.DataFrame(rows, columns=[*ELLIPSE_COORDINATES, *names]))

    def _simulate(self, phantom: Phantom, noticed, reader: int, rng: np.random.Generator) -> Reading:
        """The shared scan of the film plus dwells on noticed findings, in the reader's own style."""
        base = simulate_reading(phantom, rng, self.knobs.gaze_informativeness)
        pace, bias = self.styles[reader]
        xs, ys, durs = [base.fix_x], [base.fix_y], [base.fix_dur * pace]
        for _, box, _ in noticed if self.knobs.gaze_informativeness is None else ():
            k = int(rng.integers(3, 6))
            xs.append(rng.uniform(box[0], box[2], k))
            ys.append(rng.uniform(box[1], box[3], k))
            durs.append(rng.gamma(3.0, 0.15, k) * pace + 0.1)
        x = np.concatenate(xs) + bias[0] * phantom.shape[1]
        y = np.concatenate(ys) + bias[1] * phantom.shape[0]
        dur = np.concatenate(durs)
        order = np.argsort(rng.random(x.size)) if reader % 2 else np.arange(x.size)
        x, y, dur = x[order], y[order], dur[order]
        gap = rng.uniform(0.02, 0.06, x.size)
        start = np.concatenate([[0.0], np.cumsum(dur + gap)[:-1]]) + rng.uniform(-0.3, 1.0)
        return Reading(fix_x=x, fix_y=y, fix_start=start, fix_dur=dur, t=np.zeros(0), x=np.zeros(0),
                       y=np.zeros(0), fix_index=np.zeros(0, int), valid=np.zeros(0, bool))

    def _gaze_tables(self, folder: Path, gaze_folder: Path, reading: Reading, phantom: Phantom, rng) -> None:
        height, width = phantom.shape
        n = reading.fix_x.size
        ppd = height / 28.0
        zoom = np.where(rng.random(n) < 0.2, rng.choice([1.5, 2.0], n), 1.0)
        half_w, half_h = width / (2 * zoom), height / (2 * zoom)
        cx = np.clip(reading.fix_x, half_w, width - half_w)
        cy = np.clip(reading.fix_y, half_h, height - half_h)
        shown = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1)
        shown = np.where(zoom[:, None] > 1, shown, [0, 0, width, height])
        table = {
            "timestamp_start_fixation": np.round(reading.fix_start, 3),
            "timestamp_end_fixation": np.round(reading.fix_start + reading.fix_dur, 3),
            "x_position": np.round(reading.fix_x).astype(int), "y_position": np.round(reading.fix_y).astype(int),
            "pupil_area_normalized": np.round(rng.uniform(0.8, 1.2, n), 3),
            "angular_resolution_x_pixels_per_degree": np.round(ppd * zoom).astype(int),
            "angular_resolution_y_pixels_per_degree": np.round(ppd * zoom).astype(int),
            "window_width": np.full(n, 1.0), "window_level": np.full(n, 0.5),
            "xmin_shown_from_image": np.round(shown[:, 0]).astype(int),
            "ymin_shown_from_image": np.round(shown[:, 1]).astype(int),
            "xmax_shown_from_image": np.round(shown[:, 2]).astype(int),
            "ymax_shown_from_image": np.round(shown[:, 3]).astype(int),
            "xmin_in_screen_coordinates": np.full(n, 240), "ymin_in_screen_coordinates": np.zeros(n, int),
            "xmax_in_screen_coordinates": np.full(n, 1680), "ymax_in_screen_coordinates": np.full(n, 1080),
        }
        _csv(folder / FIXATIONS, pd.DataFrame(table, columns=list(FIXATION_COLUMNS)))
        t = np.arange(reading.fix_start[0], reading.fix_start[-1] + reading.fix_dur[-1], 1 / SAMPLE_RATE)
        k = np.clip(np.searchsorted(reading.fix_start, t, side="right") - 1, 0, n - 1)
        jitter = 0.004 * max(height, width)
        samples = pd.DataFrame({c: np.asarray(table[c])[k] for c in FIXATION_COLUMNS[2:]})
        samples.insert(0, "timestamp_sample", np.round(t, 3))
        samples["x_position"] = np.round(reading.fix_x[k] + jitter * rng.standard_normal(t.size)).astype(int)
        samples["y_position"] = np.round(reading.fix_y[k] + jitter * rng.standard_normal(t.size)).astype(int)
        samples = samples.astype({"x_position": object, "y_position": object, "pupil_area_normalized": object})
        for start in rng.uniform(t[0], t[-1], int(rng.integers(1, 4))):
            blink = (t >= start) & (t < start + rng.uniform(0.08, 0.2))
            samples.loc[blink, ["x_position", "y_position", "pupil_area_normalized"]] = ""
        gaze_folder.mkdir(parents=True)
        _csv(gaze_folder / GAZE, samples[list(GAZE_COLUMNS)])


def _csv(path: Path, frame: pd.DataFrame) -> None:
    """pandas CSV with CRLF line ends and no index column, as the REFLACX files."""
    frame.to_csv(path, index=False, lineterminator="\r\n")
