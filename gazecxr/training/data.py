"""DataLoaders for training and evaluation from the ``data`` config section."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.transforms import PairedAugment
from gazecxr.tasks import available_tasks, create_task, task_of
from gazecxr.training.distributed import SINGLE, DistContext


def make_augment(section: Mapping[str, Any]) -> PairedAugment | None:
    """The paired augmentation of ``data.augment``, or None when disabled."""
    options = dict(section)
    if not options.pop("enabled", True):
        return None
    options["scale"] = tuple(options.get("scale", (0.95, 1.05)))
    return PairedAugment(**options)


def input_size(config: Mapping[str, Any]) -> list[int]:
    """Model input [height, width] of the configured dataset file (the first, when a list)."""
    files = config["data"]["h5"]
    with h5py.File(files if isinstance(files, str) else files[0], "r") as f:
        return [int(v) for v in f["image"].shape[1:]]


def make_dataset(config: Mapping[str, Any], split: str, augment: bool, labelled_only: bool = False) -> GazeCXRDataset:
    """One split of the configured dataset file(s), with the ``data.augment`` transform when ``augment``.

    ``data.h5`` is one file or a list (split jointly, grouped by patient across files);
    ``data.sources`` optionally keeps only some datasets' records; ``labelled_only`` keeps the
    records that carry a class label (the stages trained on the class task); with a multi-label
    ``task:`` items carry multi-hot finding targets and ``labelled_only`` keeps records with findings."""
    data = config["data"]
    task = task_of(config)
    return GazeCXRDataset(data["h5"], split, transform=make_augment(data["augment"]) if augment else None,
                          labelled_only=labelled_only, sources=data.get("sources"),
                          task=task if task.multilabel else None)


def empty_split_message(config: Mapping[str, Any], split: str, labelled_only: bool) -> str:
    """Why ``split`` of the configured file(s) has no record: empty, or (``labelled_only``) none of its
    records carries the configured task's labels, e.g. a findings file (SIIM-ACR, CXR-P) read with the
    3-class task; then the message names the file's findings and the tasks that read them."""
    data = config["data"]
    task = task_of(config)
    whole = GazeCXRDataset(data["h5"], split, sources=data.get("sources")) if labelled_only else None
    if whole is not None and len(whole):
        found = sorted({n for path in whole.h5_paths for n in _file_findings(path)})
        fitting = [name for name in available_tasks() if (labels := _task_labels(name)) and set(labels) <= set(found)]
        return (f"{data['h5']}: no record of the {split!r} split has a label for task {task.name!r}"
                + (f"; the file holds the findings {found}: set task.name to one of {fitting}"
                   f"{' (e.g. preset cxrp_test / siim_test)' if 'siim_pneumothorax' in fitting else ''}"
                   if fitting else ""))
    return f"{data['h5']}: the {split!r} split is empty"


def _file_findings(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [str(n) for n in f["findings"].attrs["label_names"]] if "findings" in f else []


def _task_labels(name: str) -> tuple[str, ...]:
    task = create_task({"name": name})
    return tuple(task.names) if task.multilabel else ()


class EpochBatchSampler(BatchSampler):
    """A batch sampler that passes ``set_epoch`` on to its sampler (e.g. a DistributedSampler)."""

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped sampler when it uses one."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def make_loader(
    config: Mapping[str, Any],
    split: str,
    batch_size: int,
    train: bool,
    device: torch.device | None = None,
    *,
    augment: bool | None = None,
    dataset: Dataset | None = None,
    dist: DistContext = SINGLE,
    labelled_only: bool = False,
) -> DataLoader:
    """Loader of one split; shuffled and seeded per epoch when ``train``.

    ``augment`` (default: ``train``) applies ``data.augment``; ``dataset`` replaces the split's
    dataset (e.g. one joined with cached features; a dataset with ``batched = True`` is
    indexed by whole batches); ``labelled_only`` keeps records with a class label. Under ``torchrun`` each rank reads its shard through a
    DistributedSampler, which pads the last shard with repeated records (the trainer drops
    them again when it gathers validation outputs). Pinned memory and worker prefetching
    are used on CUDA / with ``data.num_workers > 0``.
    """
    data = config["data"]
    if dataset is None:
        dataset = make_dataset(config, split, train if augment is None else augment, labelled_only)
    if len(dataset) == 0:
        raise InputError(empty_split_message(config, split, labelled_only))
    seed = int(config.get("seed", 0))
    generator = torch.Generator().manual_seed(seed) if train else None
    sampler: Sampler | None = None
    if dist.enabled:
        sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=train,
                                     seed=seed, drop_last=False)
    per_rank = len(sampler) if sampler is not None else len(dataset)
    drop_last = train and per_rank > batch_size
    pin = device is not None and device.type == "cuda"
    if getattr(dataset, "batched", False):
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)
        return DataLoader(dataset, batch_size=None, sampler=EpochBatchSampler(sampler, batch_size, drop_last),
                          pin_memory=pin, generator=generator)
    workers = int(data.get("num_workers", 0))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=generator,
    )
