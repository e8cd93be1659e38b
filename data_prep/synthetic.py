"""CLI: write a synthetic chest-film + eye-gaze dataset in the exact raw EGD-CXR layout."""

from __future__ import annotations

import argparse
import json
import sys

from gazecxr.cli.options import prog_name, run_main
from gazecxr.data.synthetic import generate, reference_sigma
from gazecxr.data.synthetic.knobs import Knobs
from gazecxr.data.synthetic.chexpert_writer import generate_chexpert
from gazecxr.data.synthetic.cxr_p_writer import generate_cxr_p
from gazecxr.data.synthetic.nih14_writer import generate_nih14
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx
from gazecxr.data.synthetic.siim_writer import generate_siim
from gazecxr.data.synthetic.vindr_writer import generate_vindr

PUBLIC_WRITERS = {"nih14": generate_nih14, "siim": generate_siim, "cxr-p": generate_cxr_p, "chexpert": generate_chexpert,
                  "vindr": generate_vindr}
"""Writers of the public-image layouts (gaze-less, but CXR-P: gaze on SIIM-ACR films); the knobs do not apply."""

_DESCRIPTION = """\
Write a synthetic dataset (chest-film phantoms of Normal / CHF / pneumonia in roughly equal
numbers, with simulated radiologist gaze) in the exact raw EGD-CXR 1.0.0 + MIMIC-CXR layout,
so that the real-data converter reads it unchanged:

  OUT/EGD/master_sheet.csv, eye_gaze.csv (60 Hz samples), fixations.csv, bounding_boxes.csv
  OUT/EGD/audio_segmentation_transcripts/<dicom_id>/{left_lung,right_lung,mediastinum,aortic_knob}.png
  OUT/MIMIC/files/pXX/p<patient>/s<study>/<dicom_id>.dcm   (12-bit DICOM, some MONOCHROME1)

With --format reflacx the same phantoms are written in the REFLACX 1.0.0 layout instead:

  OUT/REFLACX/main_data/metadata_phase_{1,2,3}.csv and main_data/<id>/fixations.csv, ellipses, chest box, ...
  OUT/REFLACX/gaze_data/<id>/gaze.csv   (1000 Hz, blinks as empty fields; CRLF like the real files)
  OUT/MIMIC/files/pXX/p<patient>/s<study>/<dicom_id>.dcm

with five readers on every fifth image (one discarded reading per phase-2 image) and planted,
visible findings (ellipses + certainties). Convert it with python -m data_prep.reflacx.

Phantom knobs (both layouts; defaults give the unmodified phantoms, non-default values are
recorded in EGD/ or REFLACX/synthetic_knobs.json and by the converter in the HDF5 attribute
synthetic_knobs): --evidence-contrast c scales how much a diseased film differs from a normal one
(consolidation and perihilar-haze density, CHF heart-size excess), --evidence-size s scales the
consolidation radius and the haze widths, --distractors k puts k consolidation-like blobs of half
the density into the lungs of every film, and --gaze-informativeness g makes every reading spend
exactly the fraction g of its on-film dwell time on the class evidence (consolidation disc / perihilar
zones inside the lungs) and the rest sweeping the lungs uniformly, independent of the evidence.
Changing only g keeps the films, labels and identifiers.

Shortcut (both layouts): --shortcut-strength p draws on every film a marker state, 0 no marker,
1 a drain-like tube across the image-left lung, 2 across the image-right lung; a film's state is
its class index (Normal 0, CHF 1, pneumonia 2) with probability p and otherwise uniform over the
three states independently of the class. --shortcut-shifted draws every state independently of the
class (the shifted test set). The simulated readers never look at the marker. --evidence writes the
known answer beside the tables: EGD/ (or REFLACX/) synthetic_evidence/<dicom_id>.png, each film's
true evidence region, and synthetic_shortcut.csv (dicom_id, marker_state, label).

The output is a deterministic function of --seed and the knobs. All DICOM patient metadata is fake.
"""


def _epilog() -> str:
    return (f"Real MIMIC-CXR films are about 3000 px high and the reference heatmap sigma is 75.5 px, so\n"
            f"convert a synthetic set with sigma = 75.5 * size / 3000 original pixels\n"
            f"(size 1024 -> sigma {reference_sigma(1024):.1f}; size 512 -> {reference_sigma(512):.1f}).")


@run_main
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the dataset, print its summary as JSON."""
    parser = argparse.ArgumentParser(prog=prog_name("python -m data_prep.synthetic"), description=_DESCRIPTION,
                                     epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset directory to create (EGD/ and MIMIC/ go inside)")
    parser.add_argument("--n", type=int, default=300, help="number of images (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--size", type=int, default=1024,
                        help="nominal image height in pixels; heights vary by +-15%% (default: 1024)")
    parser.add_argument("--format", choices=("egd", "reflacx", *PUBLIC_WRITERS), default="egd",
                        help="raw layout to write: EGD-CXR (default), REFLACX, or a public dataset without gaze: "
                             "nih14 (OUT/NIH: Data_Entry_2017.csv, BBox_List_2017.csv, split lists, PNGs), siim "
                             "(OUT/SIIM: train-rle.csv, JPEG-baseline DICOMs), cxr-p (OUT/CXR-P: the SIIM layout with gaze: "
                             "cxr_gaze_data.pkl and .json, train_list.csv, test_list.csv), chexpert (OUT/CheXpert-v1.0-small: "
                             "train.csv, valid.csv, JPEGs), vindr (OUT/VinDr: annotations/, train/, test/ DICOMs); "
                             "each with planted lesions whose boxes / masks are the tables' ground truth")
    parser.add_argument("--evidence-contrast", type=float, default=1.0, metavar="C",
                        help="scale of the class evidence's density contrast, >= 0 (default: 1)")
    parser.add_argument("--evidence-size", type=float, default=1.0, metavar="S",
                        help="scale of the consolidation radius and perihilar-haze widths, in (0, 3] (default: 1)")
    parser.add_argument("--distractors", type=int, default=0, metavar="K",
                        help="consolidation-like blobs at half density in every film's lungs (default: 0)")
    parser.add_argument("--gaze-informativeness", type=float, default=None, metavar="G",
                        help="fraction in [0, 1] of each reading's on-film dwell time on the class evidence, "
                        "the rest a uniform lung sweep (default: the unmodified reading)")
    parser.add_argument("--shortcut-strength", type=float, default=None, metavar="P",
                        help="probability in [0, 1] that a film's tube marker state is its class, else independent "
                             "of it (default: no marker)")
    parser.add_argument("--shortcut-shifted", action="store_true",
                        help="draw every marker state independently of the class (needs --shortcut-strength)")
    parser.add_argument("--evidence", action="store_true",
                        help="also write each film's true evidence mask and marker state (synthetic_evidence/, "
                             "synthetic_shortcut.csv) into EGD/ or REFLACX/")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    writer = generate_reflacx if args.format == "reflacx" else generate
    if args.format in PUBLIC_WRITERS:
        summary = PUBLIC_WRITERS[args.format](args.out, n=args.n, seed=args.seed, size=args.size,
                                              progress=not args.quiet, overwrite=args.overwrite)
        print(json.dumps(summary, indent=2))
        return 0
    knobs = Knobs(evidence_contrast=args.evidence_contrast, evidence_size=args.evidence_size,
                  distractors=args.distractors, gaze_informativeness=args.gaze_informativeness,
                  shortcut_strength=args.shortcut_strength, shortcut_shifted=args.shortcut_shifted)
    summary = writer(args.out, n=args.n, seed=args.seed, size=args.size, progress=not args.quiet,
                     overwrite=args.overwrite, knobs=knobs, evidence=args.evidence)
    print(json.dumps(summary, indent=2))
    if args.format == "egd":
        print(f"Convert with heatmap sigma {summary['suggested_sigma']:.1f} px (75.5 * size / 3000).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
