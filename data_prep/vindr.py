"""Convert VinDr-CXR (PhysioNet 1.0.0: annotations/*.csv, train/ and test/ DICOMs) to a gazecxr HDF5 file.

Example:
    python -m data_prep.vindr --vindr-dir VinDr --out data/vindr.h5 --split official
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.common import EPILOG, add_output_arguments, convert_public
from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.sources.vindr import VinDrSource


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.vindr"),
        description=(
            "Convert VinDr-CXR 1.0.0 into one HDF5 file: letterboxed films, the image labels as findings (the "
            "fraction of the three readers that marked each; the consensus 0/1 on test), every reader's boxes "
            "in canvas and original pixels with their finding and reader (rad_id), one reading per reader. "
            "VinDr has no patient id: each image is its own group. No gaze: the file has no heatmaps. A JSON "
            "report beside the output lists every record converted and every record (or box) skipped."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--vindr-dir", required=True, help="folder holding annotations/, train/ and test/")
    parser.add_argument("--voi-lut", action="store_true",
                        help="apply each DICOM's VOI LUT / window centre and width (pydicom apply_voi_lut) "
                             "before scaling to [0, 1]")
    parser.add_argument("--box-masks", action="store_true",
                        help="also store each record's boxes (all readers) rasterised as a region_mask (N, H, W)")
    add_output_arguments(parser, official="the test/ images as the test split, train/ the rest")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.source_root = args.vindr_dir
    source = VinDrSource(Path(args.vindr_dir), voi_lut=args.voi_lut, box_masks=args.box_masks)
    return convert_public(source, args, {"voi_lut": args.voi_lut, "box_masks": args.box_masks})


if __name__ == "__main__":
    sys.exit(main())
