"""Convert CheXpert (v1.0 or CheXpert-v1.0-small: train.csv, valid.csv, JPEGs) to a gazecxr HDF5 file.

Example:
    python -m data_prep.chexpert --chexpert-dir CheXpert-v1.0-small --out data/chexpert.h5 --frontal-only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.common import EPILOG, add_output_arguments, convert_public
from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.sources.chexpert import UNCERTAINTY_POLICIES, CheXpertSource


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.chexpert"),
        description=(
            "Convert CheXpert (train.csv / valid.csv with their JPEGs) into one HDF5 file: letterboxed films, "
            "the 14 observations as findings — the codes 1 / 0 / -1 (uncertain; blank = 0) unless "
            "--uncertainty maps them — and splits grouped by the patient of the path. Sex, age and AP/PA are "
            "not stored. The uncertainty policy can also be chosen at training time (task chexpert14, option "
            "uncertainty), so one file with the codes serves all four. A JSON report beside the output lists "
            "every record converted and every record skipped with its reason."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--chexpert-dir", required=True, help="folder holding train.csv, valid.csv, train/, valid/")
    parser.add_argument("--uncertainty", choices=("keep", *UNCERTAINTY_POLICIES), default="keep",
                        help="keep: store -1 for uncertain; ignore: NaN (masked out of the loss); zeros / ones: "
                             "0 / 1; mixed: 1 for Atelectasis and Edema, 0 otherwise (CheXpert paper)")
    parser.add_argument("--frontal-only", action="store_true", help="convert frontal views only")
    add_output_arguments(parser, official="valid.csv as the test split, train.csv the rest")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.source_root = args.chexpert_dir
    policy = None if args.uncertainty == "keep" else args.uncertainty
    source = CheXpertSource(Path(args.chexpert_dir), uncertainty=policy, frontal_only=args.frontal_only)
    return convert_public(source, args, {"uncertainty_policy": args.uncertainty, "frontal_only": args.frontal_only})


if __name__ == "__main__":
    sys.exit(main())
