"""Convert NIH ChestX-ray14 (tables, box list, official split, PNGs) to a gazecxr HDF5 file.

Example:
    python -m data_prep.nih14 --nih-dir NIH --out data/nih14.h5 --split official
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.common import EPILOG, add_output_arguments, convert_public
from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.sources.nih14 import NIH14Source


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.nih14"),
        description=(
            "Convert NIH ChestX-ray14 (NIH Clinical Center release: Data_Entry_2017.csv or its v2020 copy, "
            "BBox_List_2017.csv, train_val_list.txt / test_list.txt, images_*/images/*.png) into one HDF5 file: "
            "letterboxed films, the 14 findings as 0/1 (torchxrayvision's order), the radiologists' boxes in "
            "canvas and original pixels with their finding, and patient-grouped splits. No gaze: the file has "
            "no heatmaps. Age, sex and view are not stored. A JSON report beside the output lists every record "
            "converted and every record (or box) skipped with its reason."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--nih-dir", required=True, help="folder holding Data_Entry_2017.csv and BBox_List_2017.csv")
    parser.add_argument("--image-dir", default=None,
                        help="folder below which the PNGs are (images/ or images_001/images/ ...); default --nih-dir")
    parser.add_argument("--box-masks", action="store_true",
                        help="also store each record's boxes rasterised as a region_mask (N, H, W) bool")
    add_output_arguments(parser, official="the test images of test_list.txt, the rest from train_val_list.txt")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.source_root = args.nih_dir
    source = NIH14Source(Path(args.nih_dir), Path(args.image_dir or args.nih_dir), box_masks=args.box_masks)
    return convert_public(source, args, {"box_masks": args.box_masks})


if __name__ == "__main__":
    sys.exit(main())
