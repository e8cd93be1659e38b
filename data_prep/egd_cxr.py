"""Convert EGD-CXR eye-gaze records + MIMIC-CXR images to a gazecxr HDF5 training file.

Example:
    python -m data_prep.egd_cxr --egd-dir EGD --image-dir MIMIC --out data/egd_cxr.h5
"""

from __future__ import annotations

import argparse
import sys

from data_prep.common import EPILOG, add_output_arguments, options_from, run_conversion
from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.heatmap import DEFAULT_SIGMA
from gazecxr.data.sources.egd_cxr import convert_egd_cxr


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.egd_cxr"),
        description=(
            "Convert the EGD-CXR eye-gaze dataset (PhysioNet 'egd-cxr' 1.0.0) and its MIMIC-CXR "
            "images into one HDF5 file: letterboxed images, gaze heatmaps (each summing to 1), "
            "labels (Normal/CHF/pneumonia), fixations, patient-grouped train/val/test splits and the "
            "geometry needed to map outputs back to the original image. A JSON report beside the output "
            "lists every record converted and every record skipped with its reason."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--egd-dir", required=True,
                        help="EGD-CXR folder holding master_sheet.csv, eye_gaze.csv, fixations.csv, ...")
    parser.add_argument("--image-dir", required=True,
                        help="MIMIC-CXR (DICOM) or MIMIC-CXR-JPG root: the folder that contains files/pXX/...")
    parser.add_argument("--gaze", choices=("raw", "fixations"), default="raw",
                        help="raw: every eye_gaze.csv sample, equal weight (the paper); "
                             "fixations: fixations.csv weighted by duration FPOGD")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA,
                        help="Gaussian σ of the heatmap in original-image pixels (75.5 = the "
                             "paper's 501-px OpenCV kernel on ~3000-px MIMIC images)")
    parser.add_argument("--voi-lut", action="store_true",
                        help="apply each DICOM's VOI LUT or window centre/width (pydicom apply_voi_lut) before "
                             "scaling to [0, 1]; recorded in the file attributes")
    add_output_arguments(parser)
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from(args, args.gaze)
    return run_conversion(lambda: convert_egd_cxr(args.egd_dir, args.image_dir, args.out, options, progress=not args.quiet,
                                           voi_lut=args.voi_lut, split_file=args.split_file),
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
