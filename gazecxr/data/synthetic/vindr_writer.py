"""Writes a synthetic dataset in the VinDr-CXR 1.0.0 layout.

``DIR/VinDr/annotations/annotations_train.csv`` (three readers per image out of R1…R17, each box drawn
around a planted lesion with the reader's own jitter, a reader who misses everything writes a
``No finding`` row with empty box fields), ``annotations_test.csv`` (consensus, no ``rad_id``),
``image_labels_train.csv`` (one row per reader) and ``image_labels_test.csv``, and DICOM films
``train/<image_id>.dicom`` / ``test/<image_id>.dicom``: 12-, 14- or 16-bit, every third MONOCHROME1,
every fourth with a window centre/width (VOI) that the ``--voi-lut`` option applies.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pydicom.uid
from tqdm import tqdm

from gazecxr.data.sources.vindr import LABEL_ALIASES, NO_FINDING, RELEASE_LABELS
from gazecxr.data.synthetic.phantom import sample_film_size
from gazecxr.data.synthetic.public_common import fake_dicom, phantom_with, streams, write_atomically

PLANTED = {"Cardiomegaly": ("cardiomegaly", 0.0), "Nodule/Mass": ("blob", 0.05), "Consolidation": ("blob", 0.10),
           "Pleural effusion": ("effusion", 0.0), "Pneumothorax": ("pneumothorax", 0.0)}
IMAGE_LABELS = RELEASE_LABELS
"""Finding columns of the synthetic image-label tables: the release's 28 labels, in its order."""
TEST_SPELLING = {stored: spelled for spelled, stored in LABEL_ALIASES.items()}
"""``image_labels_test.csv`` spells some labels as the release does (``Other disease``)."""
READERS = tuple(f"R{k}" for k in range(1, 18))
_STREAM = 24


def generate_vindr(out_dir: str | os.PathLike, n: int = 30, seed: int = 0, size: int = 384,
                   progress: bool = True, overwrite: bool = False) -> dict:
    """Write ``n`` synthetic films (a fifth of them the test set) in the VinDr-CXR layout under ``out_dir``/VinDr."""
    out, counts = write_atomically(out_dir, overwrite, lambda root: _write(root, n, seed, size, progress),
                                   n, size, "VinDr")
    return {**counts, "seed": seed, "size": size, "paths": {"root": str(out), "vindr": str(out / "VinDr")}}


def _save(path: Path, rng: np.random.Generator, image: np.ndarray, i: int, image_id: str) -> None:
    bits = (12, 14, 16)[i % 3]
    monochrome1 = i % 3 == 1
    top = 2 ** bits - 1
    stored = np.rint((1.0 - image if monochrome1 else image) * top * rng.uniform(0.8, 1.0)).astype(np.uint16)
    uid = pydicom.uid.generate_uid(entropy_srcs=["vindr", image_id])
    ds = fake_dicom(rng, sop_uid=uid, study_uid=pydicom.uid.generate_uid(entropy_srcs=["study", image_id]),
                    series_uid=pydicom.uid.generate_uid(entropy_srcs=["series", image_id]), patient_id="")
    ds.Rows, ds.Columns = stored.shape
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if i % 4 == 0:
        ds.WindowCenter, ds.WindowWidth = round(0.5 * top), round(0.6 * top)
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _write(root: Path, n: int, seed: int, size: int, progress: bool) -> dict:
    (root / "annotations").mkdir(parents=True)
    boxes = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    n_test = max(1, n // 5)
    n_boxes = 0
    for i in tqdm(range(n), desc="synthetic VinDr", unit="img", disable=not progress):
        meta, image_rng, _ = streams(seed, _STREAM, i)
        split = "test" if i >= n - n_test else "train"
        image_id = meta.bytes(16).hex()
        chosen = [] if meta.random() < 0.35 else list(meta.choice(list(PLANTED), int(meta.integers(1, 3)),
                                                                   replace=False))
        height, width = sample_film_size(image_rng, size)
        phantom, lesions = phantom_with(image_rng, chosen, PLANTED, height, width)
        _save(root / split / f"{image_id}.dicom", meta, phantom.image, i, image_id)
        readers = [""] if split == "test" else list(meta.choice(READERS, 3, replace=False))
        for k, reader in enumerate(readers):
            noticed = chosen if split == "test" or k == 0 else [f for f in chosen if meta.random() > 0.2]
            for finding in noticed:
                box = lesions[finding].box + (0 if split == "test" else meta.normal(0, 0.01 * size, 4))
                box = np.clip(np.round(box, 2), 0, [width, height, width, height])
                boxes[split].append([image_id, reader, finding, *(f"{v:.2f}" for v in box)])
                n_boxes += 1
            if not noticed:
                boxes[split].append([image_id, reader, NO_FINDING, "", "", "", ""])
            flags = {name: int(name in noticed) for name in IMAGE_LABELS}
            flags["Pneumonia"] = int("Consolidation" in noticed)
            flags[NO_FINDING] = int(not noticed)
            labels[split].append([image_id, reader, *(str(flags[name]) for name in IMAGE_LABELS)])
    for split in ("train", "test"):
        reader = ["rad_id"] if split == "train" else []
        drop = (lambda row: row) if split == "train" else (lambda row: [row[0], *row[2:]])
        _csv(root / "annotations" / f"annotations_{split}.csv",
             ["image_id", *reader, "class_name", "x_min", "y_min", "x_max", "y_max"], [drop(r) for r in boxes[split]])
        names = IMAGE_LABELS if split == "train" else tuple(TEST_SPELLING.get(n, n) for n in IMAGE_LABELS)
        _csv(root / "annotations" / f"image_labels_{split}.csv", ["image_id", *reader, *names],
             [drop(r) for r in labels[split]])
    return {"n_images": n, "n_test": n_test, "n_boxes": n_boxes}


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
