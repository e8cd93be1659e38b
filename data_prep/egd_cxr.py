"""Convert EGD-CXR eye-gaze records + MIMIC-CXR images to a gazecxr HDF5 training file.

Example:
    python -m data_prep.egd_cxr --egd-dir EGD --image-dir MIMIC --out data/egd_cxr.h5
"""

from __future__ import annotations

import argparse
import json
import sys

from gazecxr.data.convert import ConvertOptions, StrictConversionError, convert, report_path
from gazecxr.data.egd_tables import TableFormatError
from gazecxr.data.heatmap import DEFAULT_SIGMA


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.egd_cxr",
        description=(
            "Convert the EGD-CXR eye-gaze dataset (PhysioNet 'egd-cxr' 1.0.0) and its MIMIC-CXR "
            "images into one HDF5 file: letterboxed images, gaze heatmaps (each summing to 1), "
            "labels (Normal/CHF/pneumonia), patient-grouped train/val/test splits and the geometry "
            "needed to map outputs back to the original image. A JSON report beside the output "
            "lists every record converted and every record skipped with its reason."
        ),
        epilog="Exit status: 0 when at least one record was converted (1 with --strict if any "
               "record was skipped); 2 on bad arguments or a malformed CSV.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--egd-dir", required=True,
                        help="EGD-CXR folder holding master_sheet.csv, eye_gaze.csv, fixations.csv, ...")
    parser.add_argument("--image-dir", required=True,
                        help="MIMIC-CXR (DICOM) or MIMIC-CXR-JPG root: the folder that contains files/pXX/...")
    parser.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    parser.add_argument("--height", type=int, default=640, help="model input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=512, help="model input width (multiple of 32)")
    parser.add_argument("--gaze", choices=("raw", "fixations"), default="raw",
                        help="raw: every eye_gaze.csv sample, equal weight (the paper); "
                             "fixations: fixations.csv weighted by duration FPOGD")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA,
                        help="Gaussian σ of the heatmap in original-image pixels (75.5 = the "
                             "paper's 501-px OpenCV kernel on ~3000-px MIMIC images)")
    parser.add_argument("--split", choices=("paper", "ratio"), default="paper",
                        help="paper: --test-size random test images, rest train with --val-fraction "
                             "as val; ratio: 70/10/20 stratified by class. Always grouped by patient_id.")
    parser.add_argument("--test-size", type=int, default=100, help="test images for --split paper")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="validation fraction of the non-test images for --split paper")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N master-sheet rows")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding images in parallel")
    parser.add_argument("--strict", action="store_true",
                        help="fail (and write no HDF5) if any record is skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = ConvertOptions(
        height=args.height, width=args.width, gaze=args.gaze, sigma=args.sigma, split=args.split,
        test_size=args.test_size, val_fraction=args.val_fraction, seed=args.seed, limit=args.limit,
        workers=args.workers, strict=args.strict,
    )
    try:
        report = convert(args.egd_dir, args.image_dir, args.out, options, progress=not args.quiet)
    except TableFormatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StrictConversionError as err:
        for skip in err.report.skipped:
            print(f"skipped {skip['dicom_id']}: {skip['reason']}", file=sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for skip in report.skipped:
        print(f"skipped {skip['dicom_id']}: {skip['reason']}", file=sys.stderr)
    print(json.dumps(report.summary(), indent=2))
    print(f"wrote {args.out} and {report_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
