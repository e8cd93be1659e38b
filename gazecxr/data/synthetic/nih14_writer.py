"""Writes a synthetic dataset in the NIH ChestX-ray14 layout, quirks included.

``DIR/NIH/Data_Entry_2017.csv`` (the bracketed header, every line ending with an empty column),
``BBox_List_2017.csv`` (``Bbox [x,y,w,h],,,``, ``Infiltrate`` spelling, boxes for about half the
positive images), ``train_val_list.txt`` / ``test_list.txt`` (by patient) and square 8-bit PNGs split
over ``images_001/images/`` and ``images_002/images/`` (every 7th RGBA, every 11th grey+alpha).
Findings are planted lesions of the eight box-list findings; a film's box is its lesion's extent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from gazecxr.data.sources.nih14 import BBOX_LIST, DATA_ENTRY_HEADER, TEST_LIST, TRAIN_VAL_LIST
from gazecxr.data.synthetic.public_common import phantom_with, streams, write_atomically

PLANTED = {"Atelectasis": ("blob", 0.07), "Cardiomegaly": ("cardiomegaly", 0.0), "Effusion": ("effusion", 0.0),
           "Infiltration": ("blob", 0.09), "Mass": ("blob", 0.11), "Nodule": ("blob", 0.04),
           "Pneumonia": ("blob", 0.10), "Pneumothorax": ("pneumothorax", 0.0)}
"""The findings drawn (the box list's eight) as (lesion kind, blob radius / film height)."""

BBOX_SPELLING = {"Infiltration": "Infiltrate"}
_STREAM = 21


def generate_nih14(out_dir: str | os.PathLike, n: int = 60, seed: int = 0, size: int = 256,
                   progress: bool = True, overwrite: bool = False) -> dict:
    """Write ``n`` synthetic ``size``×``size`` films in the NIH ChestX-ray14 layout under ``out_dir``/NIH."""
    out, counts = write_atomically(out_dir, overwrite, lambda root: _write(root, n, seed, size, progress),
                                   n, size, "NIH")
    return {**counts, "seed": seed, "size": size, "paths": {"root": str(out), "nih": str(out / "NIH")}}


def _write(root: Path, n: int, seed: int, size: int, progress: bool) -> dict:
    root.mkdir(parents=True)
    entries, boxes, patients = [], [], {}
    names = list(PLANTED)
    patient, follow_up = 0, 0
    for i in tqdm(range(n), desc="synthetic NIH", unit="img", disable=not progress):
        meta, image_rng, find_rng = streams(seed, _STREAM, i)
        if i == 0 or meta.random() > 0.3:
            patient, follow_up = patient + 1, 0
        else:
            follow_up += 1
        chosen = [] if meta.random() < 0.4 else list(meta.choice(names, int(meta.integers(1, 3)), replace=False))
        phantom, lesions = phantom_with(image_rng, chosen, PLANTED, size, size)
        name = f"{patient:08d}_{follow_up:03d}.png"
        folder = root / ("images_001" if i < n / 2 else "images_002") / "images"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.rint(phantom.image * 255).astype(np.uint8)
        img = Image.fromarray(pixels, "L")
        img = img.convert("RGBA") if i % 7 == 3 else img.convert("LA") if i % 11 == 5 else img
        img.save(folder / name)
        labels = "|".join(sorted(chosen)) if chosen else "No Finding"
        width, height = (int(v) for v in meta.integers(2000, 3000, 2))
        spacing = "0.143" if meta.random() < 0.7 else "0.168"
        entries.append([name, labels, str(follow_up), str(patient), str(int(meta.integers(18, 90))),
                        "M" if meta.random() < 0.5 else "F", "PA" if meta.random() < 0.6 else "AP",
                        str(width), str(height), spacing, spacing, ""])
        patients.setdefault(patient, []).append(name)
        if chosen and meta.random() < 0.6:
            for finding in chosen:
                x0, y0, x1, y1 = lesions[finding].box
                boxes.append([name, BBOX_SPELLING.get(finding, finding), repr(float(x0)), repr(float(y0)),
                              repr(float(x1 - x0)), repr(float(y1 - y0)), "", "", ""])
    _lines(root / "Data_Entry_2017.csv", [[*DATA_ENTRY_HEADER, ""], *entries])
    _lines(root / BBOX_LIST, [["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""], *boxes])
    order = np.random.default_rng(seed).permutation(sorted(patients))
    n_test = max(1, round(0.2 * len(order)))
    test = {int(p) for p in order[:n_test]}
    train_val = [f for p in sorted(patients) if p not in test for f in patients[p]]
    (root / TRAIN_VAL_LIST).write_text("".join(f"{f}\n" for f in train_val))
    (root / TEST_LIST).write_text("".join(f"{f}\n" for p in sorted(test) for f in patients[p]))
    return {"n_images": n, "n_patients": len(patients), "n_boxes": len(boxes),
            "n_with_findings": sum(e[1] != "No Finding" for e in entries), "n_test": n - len(train_val)}


def _lines(path: Path, rows: list[list[str]]) -> None:
    """Comma-joined rows, no quoting (the bracketed header is written as the NIH file has it)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.writelines(",".join(row) + "\n" for row in rows)
