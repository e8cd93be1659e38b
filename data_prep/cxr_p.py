"""Convert CXR-P (Saab et al.'s gaze on SIIM-ACR films) + the SIIM-ACR stage-1 layout to a gazecxr HDF5 file.

Example:
    python -m data_prep.cxr_p --siim-dir SIIM --gaze cxr_gaze_data.pkl \\
        --split-file train_list.csv test_list.csv --out data/cxr_p.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.common import EPILOG, add_output_arguments, options_from, run_conversion
from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.sources.cxr_p import CXRP_SIGMA, convert_cxr_p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.cxr_p"),
        description=(
            "Convert CXR-P, radiologists' gaze on SIIM-ACR stage-1 films (Saab et al., MICCAI 2021: "
            "cxr_gaze_data.pkl, or its JSON column copy), with the SIIM-ACR films and masks (train-rle.csv, "
            "dicom-images-train/) into one HDF5 file: letterboxed films, gaze heatmaps from the dwell-weighted "
            "fixations (t / 60 s, each map summing to 1), fixations, the pneumothorax label and masks, has_gaze "
            "per film (a film without gaze keeps an all-zero map) and splits grouped by the DICOM PatientID "
            "(the only header field kept). The pickle is read without running code: anything but plain data "
            "is refused. A JSON report beside the output lists every record converted (with its gaze points "
            "off the film) and skipped, and the split-list labels the mask table overrules."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        conflict_handler="resolve",
    )
    parser.add_argument("--siim-dir", required=True, help="folder holding train-rle.csv and dicom-images-train/")
    parser.add_argument("--gaze", required=True, help="cxr_gaze_data.pkl or its JSON copy (.json)")
    parser.add_argument("--sigma", type=float, default=CXRP_SIGMA,
                        help="Gaussian σ of the heatmap in original-film pixels (the EGD-CXR 75.5 px at ~3000 px "
                             "scaled to SIIM's 1024-px films; for synthetic films use 75.5 * size / 3000)")
    add_output_arguments(parser)
    parser.add_argument("--split-file", nargs=2, default=None, metavar=("TRAIN", "TEST"),
                        help="the EG-ViT / GD-ViG split lists train_list.csv and test_list.csv (no header, rows "
                             "<path>/{idx}_{t1}_{t2}_{label}.jpg,{label}); unlisted films are skipped, "
                             "--val-fraction of train becomes val (by patient, --seed); replaces --split")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from(args, "fixations")
    lists = None if args.split_file is None else (Path(args.split_file[0]), Path(args.split_file[1]))
    return run_conversion(lambda: convert_cxr_p(args.siim_dir, args.gaze, args.out, options, progress=not args.quiet,
                                                split_lists=lists),
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
