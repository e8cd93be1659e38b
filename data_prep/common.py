"""What every converter CLI shares: the output, geometry, split and run options, and running a
conversion with the same messages and exit statuses."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from gazecxr.data.convert import (
    ConversionReport,
    ConvertOptions,
    StrictConversionError,
    convert_source,
    report_path,
)
from gazecxr.data.provenance import is_synthetic_source

EPILOG = ("Exit status: 0 when at least one record was converted (1 with --strict if anything was "
          "skipped); 2 on bad arguments, a malformed CSV or when no record could be converted.")


def add_output_arguments(parser: argparse.ArgumentParser, official: str | None = None) -> None:
    """--out, --height/--width, split options, --limit, --workers, --strict, --quiet; ``official`` (the
    dataset's own split lists, described by this text) adds ``--split official``."""
    parser.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    parser.add_argument("--height", type=int, default=640, help="model input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=512, help="model input width (multiple of 32)")
    parser.add_argument("--split", choices=("paper", "ratio", "released", "official") if official else ("paper", "ratio", "released"),
                        default="paper",
                        help="paper: --test-size random test images, rest train with --val-fraction "
                             "as val; ratio: 70/10/20 stratified by class"
                             + (f"; official: {official}, --val-fraction of the rest as val" if official else "")
                             + " (these are grouped by patient); released: the CXRGazeLearn/MT-UNet recipe (seed-0 "
                             "shuffle, per class counter %% 10 -> 20/10/70 test/val/train, image-level: one patient "
                             "can be in several splits)")
    parser.add_argument("--split-file", default=None, metavar="CSV",
                        help="reproduce a published split: a CSV dicom_id,split (train/val/test, used as listed) "
                             "or GD-ViG's EGD-CXR list mimic_part.csv (image_id,class_name,phase: its train images "
                             "become train and val by --val-fraction and --seed, grouped by patient; a class that "
                             "disagrees with the dataset's label is reported, the dataset's kept); unlisted images "
                             "are skipped, listed ids without a record reported; replaces --split")
    parser.add_argument("--test-size", type=int, default=100, help="test images for --split paper")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="validation fraction of the non-test images (--split paper" + ("/official" if official else "")
                             + ", a GD-ViG --split-file)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N images")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding images in parallel")
    parser.add_argument("--strict", action="store_true", help="fail (and write no HDF5) if anything is skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from(args: argparse.Namespace, gaze: str) -> ConvertOptions:
    """ConvertOptions of the parsed arguments, with heatmap recipe ``gaze`` (a gaze-less dataset's CLI has
    no ``--sigma``: the default is recorded)."""
    sigma = getattr(args, "sigma", ConvertOptions.sigma)
    return ConvertOptions(height=args.height, width=args.width, gaze=gaze, sigma=sigma, split=args.split,
                          test_size=args.test_size, val_fraction=args.val_fraction, seed=args.seed,
                          limit=args.limit, workers=args.workers, strict=args.strict)


def convert_public(source: Any, args: argparse.Namespace, attrs: dict[str, Any]) -> int:
    """Convert a gaze-less public dataset ``source`` (no heatmaps, no fixations) with the parsed
    arguments; ``attrs`` are extra root attributes. Returns the exit status."""
    attrs = {"has_gaze": False, "synthetic": is_synthetic_source(args.source_root), **attrs}
    return run_conversion(lambda: convert_source(source, args.out, options_from(args, "none"), progress=not args.quiet,
                                                 fixations=False, attrs=attrs, split_file=args.split_file),
                          args.out)


def _print_skipped(report: ConversionReport) -> None:
    for skip in report.skipped:
        reading = f" {skip['reading_id']}" if skip.get("reading_id") else ""
        print(f"skipped {skip['dicom_id']}{reading}: {skip['reason']}", file=sys.stderr)
    for note in report.notes:
        print(f"note {note['dicom_id']}: {note['note']}", file=sys.stderr)


def run_conversion(convert: Callable[[], ConversionReport], out: str) -> int:
    """Run ``convert``, print skipped records, the summary and where the files went; the exit status
    (a converter's ``main``, under :func:`~gazecxr.cli.options.run_main`, reports the errors)."""
    try:
        report = convert()
    except StrictConversionError as err:
        _print_skipped(err.report)
        raise
    _print_skipped(report)
    print(json.dumps(report.summary(), indent=2))
    print(f"wrote {out} and {report_path(out)}")
    return 0
