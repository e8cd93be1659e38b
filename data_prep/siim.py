"""Convert SIIM-ACR Pneumothorax Segmentation (stage-1 train-rle.csv + DICOMs) to a gazecxr HDF5 file.

Example:
    python -m data_prep.siim --siim-dir SIIM --out data/siim.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.common import EPILOG, add_output_arguments, convert_public
from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.sources.siim import SIIMSource


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.siim"),
        description=(
            "Convert the SIIM-ACR Pneumothorax Segmentation data (Kaggle 2019, stage-1 layout: train-rle.csv "
            "and dicom-images-train/<study>/<series>/<ImageId>.dcm) into one HDF5 file: letterboxed films, the "
            "pneumothorax label 0/1, the union of each image's masks on the canvas (region_mask) and at "
            "original resolution as run-length strings (region_mask_rle), and splits grouped by the DICOM "
            "PatientID (the only header field kept). No gaze: the file has no heatmaps. A JSON report beside "
            "the output lists every record converted and every record skipped with its reason."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--siim-dir", required=True, help="folder holding train-rle.csv and dicom-images-train/")
    add_output_arguments(parser)
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.source_root = args.siim_dir
    return convert_public(SIIMSource(Path(args.siim_dir)), args, {})


if __name__ == "__main__":
    sys.exit(main())
