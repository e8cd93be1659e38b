"""DataLoaders for training and evaluation from the ``data`` config section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py
import torch
from torch.utils.data import DataLoader

from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.transforms import PairedAugment


def make_augment(section: Mapping[str, Any]) -> PairedAugment | None:
    """The paired augmentation of ``data.augment``, or None when disabled."""
    options = dict(section)
    if not options.pop("enabled", True):
        return None
    options["scale"] = tuple(options.get("scale", (0.95, 1.05)))
    return PairedAugment(**options)


def input_size(config: Mapping[str, Any]) -> list[int]:
    """Model input [height, width] of the configured dataset file."""
    with h5py.File(config["data"]["h5"], "r") as f:
        return [int(v) for v in f["image"].shape[1:]]


def make_loader(
    config: Mapping[str, Any], split: str, batch_size: int, train: bool, device: torch.device | None = None
) -> DataLoader:
    """Loader of one split; shuffled, augmented and seeded per epoch when ``train``."""
    data = config["data"]
    dataset = GazeCXRDataset(data["h5"], split, transform=make_augment(data["augment"]) if train else None)
    if len(dataset) == 0:
        raise ValueError(f"{data['h5']}: the {split!r} split is empty")
    workers = int(data.get("num_workers", 0))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > batch_size,
        num_workers=workers,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(int(config.get("seed", 0))) if train else None,
    )
