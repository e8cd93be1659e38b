"""`python -m gazecxr.data summary FILE.h5 [FILE.h5 ...]`: what converted datasets hold."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import h5py

from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.dataset import GazeCXRDataset

OPTIONAL_TABLES = ("fixations", "reading_id", "findings", "ellipses", "lung_mask", "heart_mask", "boxes",
                   "region_mask")


def _file_summary(path: str) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        out: dict[str, Any] = {"file": path, "records": len(f["label"]), "image_shape": list(f["image"].shape),
                               "masks": [k for k in ("lung_mask", "heart_mask") if k in f],
                               "optional": [k for k in OPTIONAL_TABLES if k in f], "attributes": attrs}
        if "fixations" in f:
            out["fixations"] = len(f["fixations"])
        if "reading_id" in f:
            record = f["reading_record"][:]
            per_image = [int((record == r).sum()) for r in range(len(f["label"]))]
            out["readings"] = {"total": len(record), "with_gaze": int(f["reading_has_heatmap"][:].sum()),
                               "images_with_2+_readers": sum(n >= 2 for n in per_image)}
        if "findings" in f:
            names = [str(n) for n in f["findings"].attrs["label_names"]]
            # REFLACX stores certainties 0-5 (present from 3); the public datasets 0/1 (or reader fractions)
            present_at = 3 if "ellipses" in f else 0.5
            present = (f["findings"][:] >= present_at).sum(axis=0)
            out["findings_present"] = {n: int(c) for n, c in zip(names, present)}
            if "ellipses" in f:
                out["ellipses"] = len(f["ellipses"])
        if "boxes" in f:
            out["boxes"] = len(f["boxes"])
            out["records_with_regions"] = int(f["regions_known"][:].sum())
    return out


def summarise(paths: str | list[str]) -> dict:
    """Per-split record, patient, class and source counts (a list of files is split jointly, by
    patient across files) plus each file's optional tables and creation parameters."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    splits = [GazeCXRDataset(paths, s).summary() for s in ("train", "val", "test")]
    files = [_file_summary(p) for p in paths]
    if len(files) == 1:
        return {**files[0], "splits": splits}
    return {"files": files, "splits": splits}


@run_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog_name("python -m gazecxr.data"),
                                     description="Inspect gazecxr HDF5 datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="print records, patients, classes, sources and optional tables "
                                             "(fixations, readings, findings, ellipses) per split as JSON")
    summary.add_argument("file", nargs="+", help="HDF5 file(s) written by data_prep.egd_cxr / data_prep.reflacx; "
                                                 "several files are split jointly, as in training")
    versus = sub.add_parser("gaze-vs-mask", help="how well the gaze localises the finding: per film with gaze and a "
                                                 "mask, the dwell share inside the mask (and the mask's area), CC and "
                                                 "AUC of the gaze map against the mask; means with patient-bootstrap "
                                                 "intervals, as JSON")
    versus.add_argument("file", help="HDF5 file with heatmaps, fixations and region masks (gazecxr convert cxr-p)")
    versus.add_argument("--split", default="all", choices=("train", "val", "test", "all"), help="films of this split")
    versus.add_argument("--bootstrap", type=int, default=1000, help="patient resamples for the intervals (0: none)")
    versus.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    versus.add_argument("--per-film", action="store_true", help="also print every film's scores")
    args = parser.parse_args(argv)
    if args.command == "gaze-vs-mask":
        from gazecxr.evaluation.gaze_vs_mask import gaze_vs_mask

        result = gaze_vs_mask(args.file, args.split, args.bootstrap, args.seed)
        if not args.per_film:
            result.pop("per_film")
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(json.dumps(summarise(args.file), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
