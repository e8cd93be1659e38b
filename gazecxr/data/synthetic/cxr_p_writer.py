"""Writes a synthetic dataset in the CXR-P layout (Saab et al.'s gaze on SIIM-ACR films), quirks included.

``DIR/CXR-P/`` holds the SIIM-ACR stage-1 layout of :mod:`siim_writer` (``train-rle.csv``,
``dicom-images-train/<Study>/<Series>/<SOP>.dcm``) and beside it:

- ``cxr_gaze_data.pkl``: dict image id → list of ``(x, y, t)`` (x, y in [0, 1] of the film, t merged
  60 Hz samples); ids alternate between ``<Study>/<Series>/<SOP>.dcm`` and the bare SOP; every fifth
  film with gaze has a sample slightly below the film (y > 1);
- ``cxr_gaze_data.json``: the same gaze as a list of ``{"image_id", "gaze_x", "gaze_y", "time"}``;
- ``train_list.csv`` / ``test_list.csv``: the EG-ViT split lists (no header,
  ``<path>/{idx}_{t1}_{t2}_{label}.jpg,{label}``), the last fifth of the films in test.

Every seventh film (from the fourth) has no gaze. One extra film is listed (mask table, gaze, train
list) without a DICOM, and the second train-list row carries the wrong label (the mask table wins).
Readers look at the pneumothorax mask on positives for part of their dwell.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np

from gazecxr.data.regions import EMPTY_RLE
from gazecxr.data.sources.cxr_p_format import GAZE_JSON, GAZE_PICKLE, SOP_PREFIX, TEST_LIST, TRAIN_LIST
from gazecxr.data.sources.siim import DICOM_DIR, RLE_TABLE, RleMask, read_rle_table
from gazecxr.data.sources.nih14 import index_images
from gazecxr.data.synthetic.public_common import streams, write_atomically
from gazecxr.data.synthetic.siim_writer import write_siim_layout

__all__ = ["generate_cxr_p", "ORPHAN_SOP", "FOLDER"]

FOLDER = "CXR-P"
_STREAM = 23
ORPHAN_SOP = f"{SOP_PREFIX}.99999.1517875999.999999"
"""The listed film without a DICOM."""


def generate_cxr_p(out_dir: str | os.PathLike, n: int = 40, seed: int = 0, size: int = 256,
                   progress: bool = True, overwrite: bool = False) -> dict:
    """Write ``n`` synthetic ``size``×``size`` films with gaze in the CXR-P layout under ``out_dir``/CXR-P."""
    out, counts = write_atomically(out_dir, overwrite, lambda root: _write(root, n, seed, size, progress),
                                   n, size, FOLDER)
    root = out / FOLDER
    return {**counts, "seed": seed, "size": size,
            "paths": {"root": str(out), "siim": str(root), "gaze_pickle": str(root / GAZE_PICKLE),
                      "gaze_json": str(root / GAZE_JSON), "train_list": str(root / TRAIN_LIST),
                      "test_list": str(root / TEST_LIST)}}


def _reading(rng: np.random.Generator, mask: np.ndarray, off_film: bool) -> list[tuple[float, float, int]]:
    """5–40 merged points: on a positive, about half inside the mask, the rest over the lungs."""
    h, w = mask.shape
    n = int(rng.integers(5, 41))
    inside = np.argwhere(mask)
    points = []
    for _ in range(n):
        if len(inside) and rng.random() < 0.5:
            r, c = inside[rng.integers(len(inside))]
            x, y = (c + rng.random()) / w, (r + rng.random()) / h
        else:
            x, y = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)
        points.append((float(x), float(y), int(rng.integers(1, 25))))
    if off_film:
        points.append((float(rng.uniform(0.3, 0.7)), float(1 + rng.uniform(0.005, 0.05)), 2))
    return points


def _write(root: Path, n: int, seed: int, size: int, progress: bool) -> dict:
    counts = write_siim_layout(root, n, seed, size, progress)
    masks = read_rle_table(root / RLE_TABLE)
    films = index_images(root / DICOM_DIR, ".dcm")
    sops = list(masks)
    gaze: dict[str, list[tuple[float, float, int]]] = {}
    without, off = [], 0
    for i, sop in enumerate(sops):
        if i % 7 == 3:
            without.append(sop)
            continue
        rng = streams(seed, _STREAM, i, 1)[0]
        mask = RleMask(tuple(masks[sop])).decode((size, size))
        study_series = films[f"{sop}.dcm"].relative_to(root / DICOM_DIR).parent.as_posix()
        image_id = f"{study_series}/{sop}.dcm" if i % 2 == 0 else sop
        off_film = len(gaze) % 5 == 0
        gaze[image_id] = _reading(rng, mask, off_film)
        off += off_film
    gaze[ORPHAN_SOP] = _reading(np.random.default_rng(seed), np.zeros((size, size), bool), off_film=False)
    with open(root / RLE_TABLE, "a", encoding="utf-8") as handle:
        handle.write(f"{ORPHAN_SOP}, {EMPTY_RLE}\n")
    with open(root / GAZE_PICKLE, "wb") as handle:
        pickle.dump(gaze, handle, protocol=4)
    columns = [{"image_id": k, "gaze_x": [p[0] for p in v], "gaze_y": [p[1] for p in v], "time": [p[2] for p in v]}
               for k, v in gaze.items()]
    (root / GAZE_JSON).write_text(json.dumps(columns), encoding="utf-8")
    labels = {sop: int(bool(masks[sop])) for sop in sops}
    n_test = max(1, len(sops) // 5)
    train, test = [*sops[:-n_test], ORPHAN_SOP], sops[-n_test:]
    labels[ORPHAN_SOP] = 0
    flipped = train[1] if len(train) > 2 else None
    for name, listed in ((TRAIN_LIST, train), (TEST_LIST, test)):
        rows = []
        for sop in listed:
            label = labels[sop] if sop != flipped else 1 - labels[sop]
            idx, t1, t2 = sop[len(SOP_PREFIX) + 1:].split(".")
            rows.append(f"/data/siim/png_images/{idx}_{t1}_{t2}_{label}.jpg,{label}\n")
        (root / name).write_text("".join(rows), encoding="utf-8")
    return {**counts, "n_with_gaze": len(gaze) - 1, "n_without_gaze": len(without), "without_gaze": without,
            "n_off_film_films": off, "missing_dicom": ORPHAN_SOP, "label_disagreement": flipped,
            "n_train_listed": len(train), "n_test_listed": len(test)}
