"""Convert REFLACX eye-tracking readings + MIMIC-CXR images to a gazecxr HDF5 training file.

Example:
    python -m data_prep.reflacx --reflacx-dir REFLACX --image-dir MIMIC --out data/reflacx.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.common import EPILOG, add_output_arguments, options_from, run_conversion
from gazecxr.cli.options import prog_name
from gazecxr.data.convert import convert_source
from gazecxr.data.heatmap import DEFAULT_SIGMA
from gazecxr.data.provenance import is_synthetic_source
from gazecxr.data.sources.reflacx import ReflacxSource
from gazecxr.data.synthetic.knobs import knobs_attrs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m data_prep.reflacx"),
        description=(
            "Convert REFLACX 1.0.0 (PhysioNet 'reflacx-xray-localization') and its MIMIC-CXR images into one "
            "HDF5 file in the package's contract: one record per image with letterboxed film and the mean of "
            "its readers' normalised heatmaps, plus per-reading heatmaps, fixations, finding certainties "
            "(0-5, phase-1 labels mapped onto the phase-2/3 set), ellipses and chest boxes. Records carry no "
            "Normal/CHF/pneumonia label (-1). A JSON report beside the output lists every record converted "
            "and every record or reading skipped with its reason."
        ),
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--reflacx-dir", required=True, help="REFLACX folder holding main_data/ and gaze_data/")
    parser.add_argument("--image-dir", required=True,
                        help="MIMIC-CXR (DICOM) or MIMIC-CXR-JPG root: the folder that contains files/pXX/...")
    parser.add_argument("--heatmap", choices=("reflacx", "raw"), default="reflacx",
                        help="reflacx: the authors' recipe (per fixation a Gaussian of sigma = 1 degree from the "
                             "row's angular resolution, weighted by duration, limited to the shown region); "
                             "raw: gaze.csv samples blurred with --sigma pixels (the EGD-CXR recipe)")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA,
                        help="Gaussian sigma in original pixels for --heatmap raw")
    parser.add_argument("--voi-lut", action="store_true",
                        help="apply each DICOM's VOI LUT or window centre/width (pydicom apply_voi_lut) before "
                             "scaling to [0, 1]; recorded in the file attributes")
    add_output_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    source = ReflacxSource(Path(args.reflacx_dir), Path(args.image_dir), voi_lut=args.voi_lut)
    recipe = ("1-degree fixation Gaussians (REFLACX authors)" if args.heatmap == "reflacx"
              else "gaze samples blurred with sigma (EGD recipe)")
    return run_conversion(lambda: convert_source(source, args.out, options_from(args, args.heatmap),
                                                 progress=not args.quiet,
                                                 attrs={"heatmap": f"mean of the readers' normalised maps; {recipe}",
                                                        "synthetic": is_synthetic_source(args.reflacx_dir),
                                                        **knobs_attrs(args.reflacx_dir),
                                                        **({"voi_lut": True} if args.voi_lut else {})},
                                                 split_file=args.split_file),
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
