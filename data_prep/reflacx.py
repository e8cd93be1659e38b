"""Convert REFLACX eye-tracking readings + MIMIC-CXR images to a gazecxr HDF5 training file.

Example:
    python -m data_prep.reflacx --reflacx-dir REFLACX --image-dir MIMIC --out data/reflacx.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gazecxr.data.convert import ConvertOptions, StrictConversionError, convert_source, report_path
from gazecxr.data.egd_tables import TableFormatError
from gazecxr.data.heatmap import DEFAULT_SIGMA
from gazecxr.data.sources.reflacx import ReflacxSource


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.reflacx",
        description=(
            "Convert REFLACX 1.0.0 (PhysioNet 'reflacx-xray-localization') and its MIMIC-CXR images into one "
            "HDF5 file in the package's contract: one record per image with letterboxed film and the mean of "
            "its readers' normalised heatmaps, plus per-reading heatmaps, fixations, finding certainties "
            "(0-5, phase-1 labels mapped onto the phase-2/3 set), ellipses and chest boxes. Records carry no "
            "Normal/CHF/pneumonia label (-1). A JSON report beside the output lists every record converted "
            "and every record or reading skipped with its reason."
        ),
        epilog="Exit status: 0 when at least one image was converted (1 with --strict if anything was "
               "skipped); 2 on a malformed CSV.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--reflacx-dir", required=True, help="REFLACX folder holding main_data/ and gaze_data/")
    parser.add_argument("--image-dir", required=True,
                        help="MIMIC-CXR (DICOM) or MIMIC-CXR-JPG root: the folder that contains files/pXX/...")
    parser.add_argument("--out", required=True, help="output HDF5 file (written atomically)")
    parser.add_argument("--height", type=int, default=640, help="model input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=512, help="model input width (multiple of 32)")
    parser.add_argument("--heatmap", choices=("reflacx", "raw"), default="reflacx",
                        help="reflacx: the authors' recipe (per fixation a Gaussian of sigma = 1 degree from the "
                             "row's angular resolution, weighted by duration, limited to the shown region); "
                             "raw: gaze.csv samples blurred with --sigma pixels (the EGD-CXR recipe)")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA,
                        help="Gaussian sigma in original pixels for --heatmap raw")
    parser.add_argument("--split", choices=("paper", "ratio"), default="paper",
                        help="split method, grouped by patient (subject_id)")
    parser.add_argument("--test-size", type=int, default=100, help="test images for --split paper")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation fraction for --split paper")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N images")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding images in parallel")
    parser.add_argument("--strict", action="store_true", help="fail (and write no HDF5) if anything is skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = ConvertOptions(
        height=args.height, width=args.width, gaze=args.heatmap, sigma=args.sigma, split=args.split,
        test_size=args.test_size, val_fraction=args.val_fraction, seed=args.seed, limit=args.limit,
        workers=args.workers, strict=args.strict,
    )
    source = ReflacxSource(Path(args.reflacx_dir), Path(args.image_dir))
    try:
        report = convert_source(source, args.out, options, progress=not args.quiet,
                                attrs={"heatmap": "mean of the readers' normalised maps; "
                                       + ("1-degree fixation Gaussians (REFLACX authors)" if args.heatmap == "reflacx"
                                          else "gaze samples blurred with sigma (EGD recipe)")})
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
        print(f"skipped {skip['dicom_id']} {skip.get('reading_id', '')}: {skip['reason']}", file=sys.stderr)
    print(json.dumps(report.summary(), indent=2))
    print(f"wrote {args.out} and {report_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
