"""CheXpert source (v1.0 and CheXpert-v1.0-small): ``train.csv`` / ``valid.csv`` with uncertain labels.

Label cells are 1, 0, -1 (uncertain) or blank; blank counts as 0 (the CheXpert paper). The stored
``findings`` keep the codes 1 / 0 / -1 unless a policy is chosen at conversion; the policies of the
paper (:data:`UNCERTAINTY_POLICIES`) map -1 to NaN (``ignore``: masked out of the loss), 0, 1 or, for
``mixed``, 1 for Atelectasis and Edema and 0 otherwise (:func:`apply_uncertainty`). The patient is
taken from the path (``.../train/patient00001/study1/view1_frontal.jpg``); each record's view
(``Frontal``/``Lateral``) and projection (``AP``/``PA``/empty) are stored (``view``, ``projection``), so a
file converted without ``--frontal-only`` can be filtered later (``GazeCXRDataset(..., views=...)``); sex and
age are not stored. ``valid.csv`` is the official evaluation set (``--split official``: its images are the test
split, validation is carved from train by patient).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from gazecxr.data.convert import ConversionReport, ConvertOptions, ReadingSpec, SourceRecord
from gazecxr.data.tables import TableFormatError, check_columns

FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
            "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
            "Fracture", "Support Devices")
"""The 14 CheXpert observations, in the tables' column order."""

COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS)
TABLES = {"train": "train.csv", "test": "valid.csv"}
"""Table per official split: the training table and the official validation (evaluation) table."""

UNCERTAINTY_POLICIES = ("ignore", "zeros", "ones", "mixed")
MIXED_ONES = ("Atelectasis", "Edema")
"""Observations mapped to 1 under the ``mixed`` policy (U-Ones); every other one to 0 (U-Zeros)."""

_PATIENT = re.compile(r"(patient\d+)")


def apply_uncertainty(codes: np.ndarray, policy: str, names: tuple[str, ...] = FINDINGS) -> np.ndarray:
    """Targets (float32) from CheXpert codes (N, F) with 1 / 0 / -1 (blank already 0) under ``policy``;
    values already mapped (0, 1, NaN) pass unchanged, so applying a policy twice changes nothing."""
    if policy not in UNCERTAINTY_POLICIES:
        raise ValueError(f"uncertainty policy must be one of {UNCERTAINTY_POLICIES}, got {policy!r}")
    c = np.array(codes, np.float32, copy=True)
    uncertain = c == -1
    if policy == "ignore":
        c[uncertain] = np.nan
    elif policy in ("zeros", "ones"):
        c[uncertain] = float(policy == "ones")
    else:
        ones = np.array([n in MIXED_ONES for n in names])
        c[uncertain] = np.broadcast_to(ones, c.shape)[uncertain].astype(np.float32)
    return c


def label_codes(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """The observation columns as codes (N, 14) float32: 1, 0, -1; blank -> 0; ValueError naming the
    file, row and value of anything else."""
    values = frame[list(FINDINGS)].apply(pd.to_numeric, errors="coerce")
    bad = values.notna() & ~values.isin([1, 0, -1])
    bad |= values.isna() & frame[list(FINDINGS)].astype(str).apply(lambda s: s.str.strip()).ne("")
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise TableFormatError(f"{path}: row {row + 2}, column {FINDINGS[col]!r}: value "
                               f"{frame.iloc[row][FINDINGS[col]]!r} is not 1, 0, -1 or blank")
    return values.fillna(0).to_numpy(np.float32)


@dataclass
class CheXpertSource:
    """The CheXpert folder ``chexpert_dir`` (holding train.csv / valid.csv and train/, valid/)."""

    chexpert_dir: Path
    uncertainty: str | None = None
    frontal_only: bool = False
    record_fields: tuple[str, ...] = ("view", "projection")
    name: str = "CheXpert"
    finding_names: tuple[str, ...] | None = FINDINGS
    has_gaze: bool = False

    def description(self) -> str:
        policy = self.uncertainty or "codes kept"
        return f"CheXpert ({self.chexpert_dir.name}; uncertain labels: {policy})"

    def image_root(self, first: str) -> tuple[Path, bool]:
        """Where the tables' ``Path`` values point to: (folder they are relative to, whether to drop their first
        component). They start with the release's folder name (``CheXpert-v1.0-small/train/...``), so they are
        relative to the dataset folder's parent — or, for a renamed folder, to the folder itself without that
        first component."""
        if (self.chexpert_dir.parent / first).is_file() or PurePosixPath(first).parts[0] == self.chexpert_dir.name:
            return self.chexpert_dir.parent, False
        if (self.chexpert_dir / first).is_file():
            return self.chexpert_dir, False
        return self.chexpert_dir, True

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """One record per table row (frontal views only with ``frontal_only``)."""
        if self.uncertainty is not None and self.uncertainty not in UNCERTAINTY_POLICIES:
            raise ValueError(f"uncertainty policy must be one of {UNCERTAINTY_POLICIES}, got {self.uncertainty!r}")
        canvas, out = (options.height, options.width), []
        for split, table in TABLES.items():
            path = self.chexpert_dir / table
            if not path.is_file():
                if split == "train":
                    raise TableFormatError(f"{path}: file missing (is --chexpert-dir the CheXpert folder?)")
                continue
            check_columns(path, COLUMNS)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            codes = label_codes(frame, path)
            if self.uncertainty is not None:
                codes = apply_uncertainty(codes, self.uncertainty)
            root, strip = self.image_root(str(frame["Path"].iloc[0]).replace("\\", "/")) if len(frame) else (
                self.chexpert_dir, False)
            for k, row in enumerate(frame.itertuples(index=False)):
                if options.limit is not None and len(out) >= options.limit:
                    break
                rel = str(row[0]).replace("\\", "/")
                if self.frontal_only and str(row[3]).strip() != "Frontal":
                    continue
                match = _PATIENT.search(rel)
                if match is None:
                    report.skip(rel, f"bad path: no patientNNNNN folder in {rel!r}")
                    continue
                film = str(PurePosixPath(*PurePosixPath(rel).parts[1:])) if strip else rel
                out.append(SourceRecord(rel, match.group(1), -1, str(root), film, canvas,
                                        (ReadingSpec(findings=codes[k]),), gaze=False, split=split,
                                        info={"view": str(row[3]).strip(), "projection": str(row[4]).strip()}))
        return out
