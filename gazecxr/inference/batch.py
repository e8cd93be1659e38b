"""Archive-scale batch prediction: many images, N reader processes, compressed shards, resumable.

Layout of the output directory::

    predictions.csv        one row per image: source, status (ok | error), label, one probability
                           column per class, original height and width, shard, key, error
    shards/<first>.npz     one compressed file per batch: the batch's saliency maps in original
                           geometry (``saliency_<k>``, uint16 relative to the map's peak, which is
                           ``peaks[k]``: read them with `read_saliency`) and its rows (``sources``,
                           ``probabilities``, ``sizes``, ``errors``)
    summary.json           counts, checkpoint and backend of the last completed run

A shard is written under a temporary name and renamed; only then are its rows appended to
the CSV (flushed and fsynced). On start, leftovers of a killed run are reconciled: a torn
last CSV line is dropped, shards whose rows never reached the CSV are added from the shards
themselves, temporary files are removed. Images with a row are skipped, so a killed run
loses at most the batch in flight and no image is written twice. An unreadable image gets
an ``error`` row and the run goes on. Under ``torchrun`` the remaining images are split over
the ranks; each appends to its own ``predictions.rank<R>.csv``, merged by rank 0 at the end
(or at the next start, if a run was killed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from gazecxr.config.errors import InputError, InputNotFoundError
from gazecxr.data.geometry import Letterbox
from gazecxr.data.images import DICOM_SUFFIXES, RASTER_SUFFIXES, read_radiograph
from gazecxr.inference.predictor import BasePredictor, write_atomic
from gazecxr.training import distributed
from gazecxr.training.distributed import DistContext

CSV_NAME = "predictions.csv"
SHARD_DIR = "shards"
SUMMARY_NAME = "summary.json"
IMAGE_SUFFIXES = DICOM_SUFFIXES + RASTER_SUFFIXES
_TMP = ".tmp-"
_LEVELS = 65535
"""Saliency maps are stored as uint16 fractions of their peak: relative precision 1.5e-5 of the
peak, and about 3x smaller and faster to compress than float32 (whose noisy low bits deflate badly)."""


def csv_columns(classes: Sequence[str]) -> list[str]:
    """The CSV header for these class names."""
    return ["source", "status", "label", *(f"p_{name}" for name in classes), "height", "width", "shard", "key",
            "error"]


def list_inputs(path: str | os.PathLike) -> list[tuple[str, Path]]:
    """(source, file) of each image to predict, duplicates dropped, in order.

    ``path`` is a directory (its ``.dcm``/``.dicom``/``.png``/``.jpg``/``.jpeg`` files, recursively,
    sorted; sources relative to it) or a text file with one path per line (blank lines and
    ``#`` comments skipped; relative paths are relative to the list file's directory; sources
    as written).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        pairs = [(p.relative_to(path).as_posix(), p) for p in files]
    elif path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [line for line in lines if line and not line.startswith("#")]
        pairs = [(name, Path(name) if Path(name).is_absolute() else path.parent / name) for name in names]
    else:
        raise InputNotFoundError(f"{path}: no such input list file or directory")
    first: dict[str, Path] = {}
    for source, file in pairs:
        first.setdefault(source, file)
    return list(first.items())


class _ImageFiles(Dataset):
    """Reads and letterboxes images in DataLoader workers; a bad file yields its error."""

    def __init__(self, items: Sequence[tuple[int, str, Path]], canvas: tuple[int, int]) -> None:
        self.items = list(items)
        self.canvas = canvas

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        position, source, path = self.items[i]
        item: dict[str, Any] = {"position": position, "source": source, "error": ""}
        try:
            image = read_radiograph(path)
            item["letterbox"] = Letterbox.fit(image.shape, self.canvas)
            item["canvas"] = item["letterbox"].image_to_canvas(image)
        except (ValueError, OSError) as err:
            item["error"] = str(err) or type(err).__name__
        return item


def _read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a journal CSV; a torn last line (killed mid-write) is dropped and cut from the file."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return list(csv.DictReader(io.StringIO(text)))


def _shard_rows(path: Path, classes: Sequence[str]) -> list[dict[str, str]]:
    """The CSV rows of a shard, from the shard's own record of its batch."""
    with np.load(path) as shard:
        return _rows(shard, path.name, classes)


def _rows(arrays: Any, shard: str, classes: Sequence[str]) -> list[dict[str, str]]:
    """CSV rows of a batch from its shard arrays (``sources``, ``errors``, ``probabilities``, ``sizes``)."""
    errors, probabilities, sizes = arrays["errors"].tolist(), arrays["probabilities"], arrays["sizes"]
    return [_row(classes, source, probabilities[k], sizes[k], shard, k, errors[k])
            for k, source in enumerate(arrays["sources"].tolist())]


def _new_rows(rows: Iterable[dict[str, str]], known: set[str]) -> list[dict[str, str]]:
    """The rows whose source is not in ``known`` (first of each), adding their sources to it."""
    out = []
    for row in rows:
        if row["source"] not in known:
            known.add(row["source"])
            out.append(row)
    return out


def _row(classes: Sequence[str], source: str, probabilities: np.ndarray, size: np.ndarray, shard: str, k: int,
         error: str) -> dict[str, str]:
    ok = not error
    row = {"source": source, "status": "ok" if ok else "error",
           "label": classes[int(np.argmax(probabilities))] if ok else "",
           "height": str(int(size[0])) if ok else "", "width": str(int(size[1])) if ok else "",
           "shard": shard, "key": f"saliency_{k}" if ok else "", "error": error}
    row.update({f"p_{name}": f"{float(p):.6g}" if ok else "" for name, p in zip(classes, probabilities)})
    return row


def _append(handle: TextIO, columns: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    """Append rows in one write, flushed to disk."""
    buffer = io.StringIO()
    csv.DictWriter(buffer, columns, lineterminator="\n").writerows(rows)
    handle.write(buffer.getvalue())
    handle.flush()
    os.fsync(handle.fileno())


def reconcile(out: Path, classes: Sequence[str]) -> list[dict[str, str]]:
    """Bring ``predictions.csv`` up to date with everything a previous (possibly killed) run
    wrote: rank journals merged, shards without rows added, temporary files removed. Returns
    all rows. Call it while no other process writes to ``out``."""
    columns = csv_columns(classes)
    main = out / CSV_NAME
    rows = _read_rows(main)
    if rows and list(rows[0]) != columns:
        raise InputError(f"{main}: columns {list(rows[0])} do not match this model's {columns}; "
                         "use another --out for another model")
    known = {row["source"] for row in rows}
    added: list[dict[str, str]] = []
    parts = sorted(out.glob("predictions.rank*.csv"))
    for part in parts:
        added += _new_rows(_read_rows(part), known)
    shard_dir = out / SHARD_DIR
    for stale in shard_dir.glob(f"{_TMP}*"):
        stale.unlink(missing_ok=True)
    referenced = {row["shard"] for row in rows + added}
    for shard in sorted(shard_dir.glob("*.npz")):
        if shard.name not in referenced:
            added += _new_rows(_shard_rows(shard, classes), known)
    if added or not main.exists():
        with open(main, "a", encoding="utf-8", newline="") as handle:
            if handle.tell() == 0:
                handle.write(",".join(columns) + "\n")
            _append(handle, columns, added)
    for part in parts:
        part.unlink()
    return rows + added


@dataclass(frozen=True)
class BatchSummary:
    """Counts of a batch-prediction run: images listed, skipped (written by an earlier run), and
    of all listed images, those with a prediction (``ok``) and those that ``failed``."""

    total: int
    skipped: int
    ok: int
    failed: int
    out: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {"total": self.total, "skipped": self.skipped, "ok": self.ok, "failed": self.failed,
                "out": self.out}


def _shard_arrays(batch: Sequence[dict[str, Any]], predictions: dict[int, Any],
                  classes: Sequence[str]) -> dict[str, np.ndarray]:
    """A batch's shard content: its rows and the saliency map of each image predicted."""
    arrays: dict[str, np.ndarray] = {
        "sources": np.array([item["source"] for item in batch]),
        "errors": np.array([item["error"] for item in batch]),
        "probabilities": np.full((len(batch), len(classes)), np.nan, np.float32),
        "sizes": np.zeros((len(batch), 2), np.int64),
        "peaks": np.zeros(len(batch), np.float32),
    }
    for k, prediction in predictions.items():
        arrays["probabilities"][k] = [prediction.probabilities[name] for name in classes]
        arrays["sizes"][k] = prediction.original_size
        peak = float(prediction.saliency.max())
        arrays["peaks"][k] = peak
        arrays[f"saliency_{k}"] = np.round(prediction.saliency * (_LEVELS / peak)).astype(np.uint16)
    return arrays


def read_saliency(shard: str | os.PathLike, key: str) -> np.ndarray:
    """The saliency map ``key`` (a CSV row's ``key``) of ``shard``: float32 in original geometry,
    non-negative, summing to 1."""
    with np.load(shard) as arrays:
        quantised, peak = arrays[key], float(arrays["peaks"][int(key.rsplit("_", 1)[1])])
    saliency = quantised.astype(np.float64) * (peak / _LEVELS)
    return (saliency / saliency.sum()).astype(np.float32)


def _write_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    write_atomic(path, write)


def predict_archive(predictor: BasePredictor, inputs: str | os.PathLike, out: str | os.PathLike,
                    workers: int = 0, batch_size: int = 8, progress: bool = True) -> BatchSummary:
    """Predict every image of ``inputs`` (see `list_inputs`) into ``out`` (see the module doc),
    skipping images a previous run already wrote; under ``torchrun`` each rank takes its share."""
    if batch_size < 1 or workers < 0:
        raise InputError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    out = Path(out)
    items = list_inputs(inputs)
    ctx = distributed.setup("cpu")
    try:
        summary = _run(predictor, items, out, workers, batch_size, progress, ctx)
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()
    return summary


def _run(predictor: BasePredictor, items: list[tuple[str, Path]], out: Path, workers: int, batch_size: int,
         progress: bool, ctx: DistContext) -> BatchSummary:
    classes, columns = predictor.classes, csv_columns(predictor.classes)
    if ctx.is_main:
        (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        done = {row["source"] for row in reconcile(out, classes)}
    distributed.barrier(ctx)
    done = distributed.broadcast_object(done if ctx.is_main else None, ctx)
    remaining = [(position, source, path) for position, (source, path) in enumerate(items) if source not in done]
    mine = remaining[ctx.rank::ctx.world_size]
    journal = out / (CSV_NAME if not ctx.enabled else f"predictions.rank{ctx.rank}.csv")
    loader = DataLoader(_ImageFiles(mine, predictor.input_size), batch_size=batch_size, num_workers=workers,
                        collate_fn=list)
    with open(journal, "a", encoding="utf-8", newline="") as handle, \
            tqdm(total=len(mine), desc=f"predict (rank {ctx.rank})" if ctx.enabled else "predict", unit="image",
                 disable=not progress, file=sys.stderr) as bar:
        if ctx.enabled and handle.tell() == 0:
            handle.write(",".join(columns) + "\n")
        for batch in loader:
            good = [k for k, item in enumerate(batch) if not item["error"]]
            predictions = {}
            if good:
                chosen = [batch[k] for k in good]
                results = predictor.predict_letterboxed([i["source"] for i in chosen], [i["letterbox"] for i in chosen],
                                                        np.stack([i["canvas"] for i in chosen]))
                predictions = dict(zip(good, results))
            shard = out / SHARD_DIR / f"{batch[0]['position']:09d}.npz"
            arrays = _shard_arrays(batch, predictions, classes)
            _write_shard(shard, arrays)
            _append(handle, columns, _rows(arrays, shard.name, classes))
            bar.update(len(batch))
    distributed.barrier(ctx)
    summary = None
    if ctx.is_main:
        wanted = {source for source, _ in items}
        statuses = Counter(row["status"] for row in reconcile(out, classes) if row["source"] in wanted)
        summary = BatchSummary(len(items), len(items) - len(remaining), statuses["ok"], statuses["error"], str(out))
        record = {**summary.to_dict(), "checkpoint": predictor.checkpoint, "backend": predictor.backend,
                  "ranks": ctx.world_size, "workers": workers, "batch_size": batch_size}
        text = json.dumps(record, indent=2) + "\n"
        write_atomic(out / SUMMARY_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return distributed.broadcast_object(summary, ctx)
