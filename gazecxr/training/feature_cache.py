"""Frozen-feature cache: what frozen encoders compute for a split, computed once and reused.

When a stage's encoders are frozen and its inputs are not augmented, their output for a
record never changes, so recomputing it every epoch is waste. A :class:`FeatureStore` holds
those per-record features for one split, in the dataset's order:

- in memory, while the stage's stores fit ``train.feature_cache_memory_mb``;
- otherwise on disk under ``runs.root/cache/<stage>-<split>-<digest>/``: one ``.npy`` file per
  feature (memory-mapped when read), ``index.npy``/``labels.npy`` and ``manifest.json``.

What is stored is what the trainable part consumes (``frozen_features`` of the task):
stage 2 the DenseNet tap map (N, C, H/32, W/32); stage 3 both features already average-pooled
as the fusion head pools them, so the head gives the same logits as on the full maps: for
the linear head 1×1 vectors (1920 + 64 floats per image for DenseNet-201), for the conv head
maps at the DenseNet feature's resolution (the decoder map pooled down to it), never the
full-resolution decoder map (64×640×512 floats per image).

A cache is identified by its :class:`CacheKey`: the sha256 of every frozen registry
checkpoint and their stored architecture, the dataset file's identity (resolved path, size,
modification time), the input geometry, the split, which features are stored, the device
type and autocast precision, and the package version. The directory name carries the key's
digest and ``manifest.json`` the full key: a cache whose manifest, array shapes or record
rows do not match is reported as stale and rebuilt, never reused. Caches are written into a
temporary directory and renamed into place, so a killed run never leaves a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from gazecxr import __version__
from gazecxr.config.errors import ConfigError, InputError
from gazecxr.training.distributed import SINGLE, DistContext, barrier, broadcast_object
from gazecxr.training.runtime import autocast

CACHE_MODES = ("auto", "memory", "disk", "off")
"""``train.feature_cache``: auto (memory within the budget, else disk), memory, disk, off."""
MANIFEST = "manifest.json"
FORMAT_VERSION = 1

Extractor = Callable[[Tensor], dict[str, Tensor]]
"""Images (N, 1, H, W) on the device → per-sample features {name: (N, ...)}."""


@dataclass(frozen=True)
class CacheKey:
    """Everything cached features depend on; a different key never reuses a cache."""

    stage: str
    split: str
    checkpoints: tuple[str, ...]
    architecture: Mapping[str, Any]
    features: Mapping[str, Any]
    data: Mapping[str, Any]
    geometry: tuple[int, int]
    precision: str
    package_version: str = __version__

    def as_dict(self) -> dict[str, Any]:
        """The key as plain JSON values (what ``manifest.json`` stores)."""
        record = {"stage": self.stage, "split": self.split, "checkpoints": list(self.checkpoints),
                  "architecture": self.architecture, "features": self.features, "data": self.data,
                  "geometry": list(self.geometry), "precision": self.precision,
                  "package_version": self.package_version, "format": FORMAT_VERSION}
        return json.loads(json.dumps(record, sort_keys=True, default=str))

    def digest(self) -> str:
        """sha256 of the key's canonical JSON."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def directory(self, root: str | Path) -> Path:
        """Where the disk cache of this key lives under ``root``."""
        return Path(root) / f"{self.stage}-{self.split}-{self.digest()[:20]}"


def data_identity(path: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """Resolved path, size and modification time (ns) of a dataset file (of each, for a list)."""
    if not isinstance(path, (str, Path)):
        return {"files": [data_identity(p) for p in path]}
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def precision_name(device: torch.device, dtype: torch.dtype | None) -> str:
    """Device type and autocast dtype, e.g. ``cpu/float32`` or ``cuda/bfloat16``."""
    return f"{device.type}/{str(dtype or torch.float32).removeprefix('torch.')}"


@dataclass
class FeatureStore:
    """Cached per-record features of one split, in dataset order.

    ``arrays``: name → float32 (N, ...) array, in memory or memory-mapped from ``location``
    (None for an in-memory store); ``index``: each record's row in the dataset file;
    ``labels``: the records' targets (class labels, or multi-hot findings as 0/1).
    """

    arrays: dict[str, np.ndarray]
    index: np.ndarray
    labels: np.ndarray
    location: Path | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        """Bytes of all feature arrays."""
        return sum(a.nbytes for a in self.arrays.values())

    def in_memory(self) -> FeatureStore:
        """The same store with every array read into memory."""
        return FeatureStore({k: np.array(v) for k, v in self.arrays.items()}, np.array(self.index),
                            np.array(self.labels), None)


@dataclass
class MemoryBudget:
    """Bytes the in-memory stores of one stage may still take."""

    remaining: float
    used: int = 0

    @classmethod
    def megabytes(cls, mb: float) -> MemoryBudget:
        """A budget of ``mb`` MiB."""
        return cls(float(mb) * 2**20)

    def take(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if they fit; returns whether they did."""
        if nbytes > self.remaining:
            return False
        self.remaining -= nbytes
        self.used += nbytes
        return True


class FeatureDataset(Dataset):
    """Cached features alone, fetched a batch at a time: ``dataset[[i, j, ...]]`` is a batch
    dict of the features, ``label`` and ``index`` (for a loader with a batch sampler)."""

    batched = True

    def __init__(self, store: FeatureStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, positions: list[int]) -> dict[str, Tensor]:
        rows = np.asarray(positions, dtype=np.int64)
        batch = {name: torch.from_numpy(np.ascontiguousarray(a[rows])) for name, a in self.store.arrays.items()}
        batch["label"] = torch.from_numpy(self.store.labels[rows].astype(np.int64))
        batch["index"] = torch.from_numpy(self.store.index[rows].astype(np.int64))
        return batch


class WithFeatures(Dataset):
    """Items of ``base`` (a dataset without augmentation) with their cached features added."""

    def __init__(self, base: Dataset, store: FeatureStore):
        if not np.array_equal(np.asarray(base.indices), store.index):
            raise ValueError("the feature cache holds other records than the dataset it is joined with")
        self.base, self.store = base, store

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        item.update({name: torch.from_numpy(np.array(a[i])) for name, a in self.store.arrays.items()})
        return item


def load_or_build(
    key: CacheKey,
    dataset: Dataset,
    extract: Extractor,
    *,
    mode: str,
    root: str | Path,
    budget: MemoryBudget,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    batch_size: int = 16,
    num_workers: int = 0,
    ctx: DistContext = SINGLE,
    progress: bool = False,
) -> FeatureStore:
    """The features of ``dataset`` (a split without augmentation, with ``indices`` and ``labels``).

    A valid disk cache of ``key`` is reused; otherwise rank 0 computes the features with
    ``extract`` (under ``torch.inference_mode`` and autocast) into memory or into a new disk
    cache, as ``mode`` and ``budget`` decide, and every rank gets the same store.
    """
    if mode not in ("auto", "memory", "disk"):
        raise ConfigError(f"feature cache mode must be auto, memory or disk here, got {mode!r}")
    if len(dataset) == 0:
        raise InputError(f"the {key.split!r} split is empty")
    directory = key.directory(root)
    store = None
    if ctx.is_main:
        store = open_cache(directory, key, dataset)
        if store is None:
            store = _build(key, dataset, extract, mode, directory, budget, device, dtype, channels_last,
                           batch_size, num_workers, progress)
        elif mode == "memory" or (mode == "auto" and budget.take(store.nbytes)):
            store = store.in_memory()
    if not ctx.enabled:
        return store
    shared = broadcast_object(store if store is None or store.location is None else str(store.location), ctx)
    barrier(ctx)
    if isinstance(shared, FeatureStore):
        return shared
    opened = open_cache(Path(shared), key, dataset)
    if opened is None:
        raise RuntimeError(f"rank {ctx.rank} cannot read the feature cache {shared} rank 0 wrote")
    return opened


def open_cache(directory: Path, key: CacheKey, dataset: Dataset) -> FeatureStore | None:
    """The memory-mapped disk cache in ``directory`` if it exists and is valid for ``key`` and
    ``dataset``; None when absent, and None with a warning on stderr when stale or damaged."""
    if not directory.is_dir():
        return None
    problem = _validate(directory, key, dataset)
    if problem is None:
        manifest = json.loads((directory / MANIFEST).read_text())
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in manifest["arrays"]}
        return FeatureStore(arrays, np.load(directory / "index.npy"), np.load(directory / "labels.npy"), directory)
    print(f"warning: feature cache {directory} is stale or damaged ({problem}); rebuilding it", file=sys.stderr)
    return None


def _validate(directory: Path, key: CacheKey, dataset: Dataset) -> str | None:
    """Why the cache in ``directory`` cannot serve ``key`` and ``dataset``, or None when it can."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        return f"unreadable {MANIFEST}: {err}"
    stored = manifest.get("key")
    if stored != key.as_dict():
        diff = sorted(k for k in set(stored or {}) | set(key.as_dict())
                      if (stored or {}).get(k) != key.as_dict().get(k))
        return f"built for another key (differs in {', '.join(diff)})"
    n = len(dataset)
    try:
        index = np.load(directory / "index.npy")
        labels = np.load(directory / "labels.npy")
        for name, spec in manifest["arrays"].items():
            array = np.load(directory / f"{name}.npy", mmap_mode="r")
            if list(array.shape) != [n, *spec["shape"]] or str(array.dtype) != spec["dtype"]:
                return f"{name}.npy has shape {array.shape} {array.dtype}, expected {[n, *spec['shape']]}"
    except (OSError, ValueError, KeyError) as err:
        return f"unreadable arrays: {err}"
    if not np.array_equal(index, np.asarray(dataset.indices)) or not np.array_equal(labels, _targets(dataset)):
        return "its records differ from the dataset's"
    return None


def _targets(dataset: Dataset) -> np.ndarray:
    """The training targets of a split: ``targets`` (multi-label task) or the class ``labels``."""
    return getattr(dataset, "targets", dataset.labels)


def _build(key: CacheKey, dataset: Dataset, extract: Extractor, mode: str, directory: Path, budget: MemoryBudget,
           device: torch.device, dtype: torch.dtype | None, channels_last: bool, batch_size: int,
           num_workers: int, progress: bool) -> FeatureStore:
    """Compute the features of ``dataset`` into memory or into a new disk cache at ``directory``."""
    n = len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())  # leaves the global RNG alone
    tmp: Path | None = None
    arrays: dict[str, np.ndarray] = {}
    position = 0
    bar = tqdm(loader, desc=f"caching {key.stage} {key.split} features", leave=False, disable=not progress,
               unit="batch", dynamic_ncols=True)
    for batch in bar:
        image = batch["image"].to(device, non_blocking=True)
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(device, dtype):
            features = {k: v.float().cpu().numpy() for k, v in extract(image).items()}
        if not arrays:
            shapes = {k: v.shape[1:] for k, v in features.items()}
            nbytes = sum(4 * n * int(np.prod(s)) for s in shapes.values())
            if mode == "memory" or (mode == "auto" and budget.take(nbytes)):
                arrays = {k: np.empty((n, *s), np.float32) for k, s in shapes.items()}
            else:
                directory.parent.mkdir(parents=True, exist_ok=True)
                tmp = directory.parent / f".tmp-{directory.name}-{os.getpid()}-{secrets.token_hex(4)}"
                tmp.mkdir()
                arrays = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=np.float32,
                                                       shape=(n, *s)) for k, s in shapes.items()}
        count = len(image)
        for k, v in features.items():
            arrays[k][position:position + count] = v
        position += count
    index = np.asarray(dataset.indices, dtype=np.int64)
    labels = np.asarray(_targets(dataset), dtype=np.int64)
    if tmp is None:
        return FeatureStore(arrays, index, labels, None)
    return _commit(tmp, directory, key, arrays, index, labels, dataset)


def _commit(tmp: Path, directory: Path, key: CacheKey, arrays: dict[str, np.ndarray], index: np.ndarray,
            labels: np.ndarray, dataset: Dataset) -> FeatureStore:
    """Finish the cache written in ``tmp`` (manifest last) and rename it to ``directory``."""
    try:
        for array in arrays.values():
            array.flush()
        np.save(tmp / "index.npy", index)
        np.save(tmp / "labels.npy", labels)
        manifest = {"key": key.as_dict(), "digest": key.digest(), "records": len(index),
                    "arrays": {k: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for k, a in arrays.items()},
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        arrays.clear()
        if directory.exists():
            if _validate(directory, key, dataset) is None:
                shutil.rmtree(tmp)
                return open_cache(directory, key, dataset)
            trash = directory.parent / f".tmp-stale-{directory.name}-{secrets.token_hex(4)}"
            os.rename(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    store = open_cache(directory, key, dataset)
    if store is None:
        raise RuntimeError(f"the feature cache just written to {directory} does not validate")
    return store
