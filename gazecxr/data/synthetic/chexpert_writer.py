"""Writes a synthetic dataset in the CheXpert-v1.0-small layout.

``DIR/CheXpert-v1.0-small/train.csv`` and ``valid.csv`` (the 19 columns; label cells 1.0, 0.0, -1.0
or blank as the release writes them; ``valid.csv`` without uncertain or blank cells) and 8-bit JPEGs at
``train/patientNNNNN/studyN/viewN_frontal.jpg`` (every fourth study also a ``view2_lateral.jpg``).
Observations drawn into the frontal film: Cardiomegaly (a CHF phantom's heart), Lung Opacity
(consolidation-like blob), Pleural Effusion and Pneumothorax; each present one is labelled 1 or (every
third in train.csv) -1 (uncertain); absent ones are blank or 0.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from gazecxr.data.sources.chexpert import COLUMNS, FINDINGS
from gazecxr.data.synthetic.phantom import sample_film_size
from gazecxr.data.synthetic.public_common import phantom_with, streams, write_atomically

PLANTED = {"Cardiomegaly": ("cardiomegaly", 0.0), "Lung Opacity": ("blob", 0.10),
           "Pleural Effusion": ("effusion", 0.0), "Pneumothorax": ("pneumothorax", 0.0)}
FOLDER = "CheXpert-v1.0-small"
_STREAM = 23


def generate_chexpert(out_dir: str | os.PathLike, n: int = 40, seed: int = 0, size: int = 320,
                      progress: bool = True, overwrite: bool = False) -> dict:
    """Write ``n`` synthetic studies (frontal films, some laterals) in the CheXpert layout under ``out_dir``."""
    out, counts = write_atomically(out_dir, overwrite, lambda root: _write(root, n, seed, size, progress),
                                   n, size, FOLDER)
    return {**counts, "seed": seed, "size": size, "paths": {"root": str(out), "chexpert": str(out / FOLDER)}}


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _write(root: Path, n: int, seed: int, size: int, progress: bool) -> dict:
    root.mkdir(parents=True)
    tables: dict[str, list[list[str]]] = {"train": [], "valid": []}
    n_valid = max(1, n // 5)
    patient, uncertain, present = 0, 0, 0
    for i in tqdm(range(n), desc="synthetic CheXpert", unit="study", disable=not progress):
        meta, image_rng, _ = streams(seed, _STREAM, i)
        split = "valid" if i >= n - n_valid else "train"
        patient += 1 if i == 0 or meta.random() > 0.3 else 0
        study = 1 + sum(1 for row in tables[split] if f"patient{patient:05d}/" in row[0] and "view1" in row[0])
        chosen = [] if meta.random() < 0.35 else list(meta.choice(list(PLANTED), int(meta.integers(1, 3)),
                                                                   replace=False))
        height, width = sample_film_size(image_rng, size)
        phantom, _ = phantom_with(image_rng, chosen, PLANTED, height, width)
        labels: dict[str, float | None] = {}
        for name in FINDINGS:
            if name in chosen:
                present += 1
                labels[name] = -1.0 if split == "train" and present % 3 == 1 else 1.0
            elif name == "No Finding":
                labels[name] = 1.0 if not chosen else None
            else:
                labels[name] = None if split == "train" and meta.random() < 0.8 else 0.0
            if split == "valid" and labels[name] is None:
                labels[name] = 0.0
        uncertain += sum(v == -1.0 for v in labels.values())
        folder = root / split / f"patient{patient:05d}" / f"study{study}"
        folder.mkdir(parents=True, exist_ok=True)
        views = [("view1_frontal.jpg", "Frontal", "PA" if meta.random() < 0.5 else "AP")]
        if i % 4 == 2:
            views.append(("view2_lateral.jpg", "Lateral", ""))
        sex, age = ("Female" if meta.random() < 0.5 else "Male"), str(int(meta.integers(18, 90)))
        for name, view, ap_pa in views:
            film = phantom.image if view == "Frontal" else np.ascontiguousarray(phantom.image[:, ::-1])
            Image.fromarray(np.rint(film * 255).astype(np.uint8), "L").save(folder / name, quality=90)
            rel = f"{FOLDER}/{split}/patient{patient:05d}/study{study}/{name}"
            tables[split].append([rel, sex, age, view, ap_pa, *(_cell(labels[f]) for f in FINDINGS)])
    for split, rows in tables.items():
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    return {"n_studies": n, "n_images": sum(len(r) for r in tables.values()), "n_patients": patient,
            "n_uncertain_cells": uncertain, "n_valid_images": len(tables["valid"])}
