"""`python -m gazecxr.data summary FILE.h5`: what a converted dataset holds."""

from __future__ import annotations

import argparse
import json
import sys

import h5py

from gazecxr.data.dataset import GazeCXRDataset


def summarise(path: str) -> dict:
    """Per-split record, patient and class counts plus the file's creation parameters."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        shape = list(f["image"].shape)
        masks = [k for k in ("lung_mask", "heart_mask") if k in f]
    splits = [GazeCXRDataset(path, s).summary() for s in ("train", "val", "test")]
    return {"file": path, "image_shape": shape, "masks": masks, "splits": splits, "attributes": attrs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gazecxr.data",
                                     description="Inspect a gazecxr HDF5 dataset.")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="print records, patients and classes per split as JSON")
    summary.add_argument("file", help="HDF5 file written by data_prep.egd_cxr")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(summarise(args.file), indent=2, default=str))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
