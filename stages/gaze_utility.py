"""`python -m stages.gaze_utility --config gaze_utility/quick [--informativeness G…] [--shortcuts P…]
[--train-sizes N…] [--seeds S] [--methods …] [--pilot C…] [--out reports/gaze_utility] [--set K=V …]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gazecxr.cli.options import add_checkpoints_argument, add_out_argument, checkpoints_override, prog_name, run_main
from gazecxr.config import add_config_arguments, load_config
from gazecxr.config.schema import validate_config
from gazecxr.evaluation.studies.gaze_pilot import run_pilot
from gazecxr.evaluation.studies.gaze_utility import SELECTABLE, run_gaze_utility


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.gaze_utility`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m stages.gaze_utility"),
        description="Does radiologist gaze make the classifier better? A known-answer benchmark on synthetic "
        "phantoms: one data set per gaze informativeness g and shortcut strength p (a drain-like marker inside "
        "a lung agrees with the class in a share p of training and validation films), tested on an iid and a "
        "shifted test set (marker independent of the class). Every method is fit on training and validation "
        "only, against the same small CNN backbone without gaze, with controls: evidence_oracle (positive), "
        "shuffled gaze and g = 0 (negative), test_time_gaze (leaking, reported apart). Gains carry paired "
        "patient-bootstrap intervals and Holm-adjusted p; gaze effects compare each method at the largest g "
        "with itself at the smallest.",
        epilog="Writes OUT/metrics.json (the 'gains' rows), OUT/tables.md, OUT/gain_vs_g.png, "
        "OUT/gain_vs_shortcut.png and OUT/index.html; with --pilot, OUT/pilot.json and OUT/pilot.md only. Fits "
        "are stored in the registry (--checkpoints) and reused, so an interrupted run resumes. The grid flags "
        "override the config's gaze_utility section.",
    )
    add_config_arguments(parser)
    parser.add_argument("--informativeness", nargs="+", type=float, metavar="G",
                        help="gaze informativeness values in [0, 1] (default: the config's)")
    parser.add_argument("--shortcuts", nargs="+", type=float, metavar="P",
                        help="shortcut strengths in [0, 1] (default: the config's)")
    parser.add_argument("--train-sizes", nargs="+", type=int, metavar="N",
                        help="training-set sizes (default: the config's)")
    parser.add_argument("--seeds", type=int, help="training seeds 0..S-1 (default: the config's)")
    parser.add_argument("--methods", nargs="+", choices=list(SELECTABLE), metavar="METHOD",
                        help="methods (default: the config's; the no-gaze baseline always runs): "
                        + ", ".join(SELECTABLE))
    parser.add_argument("--pilot", nargs="+", type=float, metavar="C",
                        help="instead of the study, the difficulty pilot: the no-gaze baseline at each evidence "
                        "contrast C, without shortcut, on films and seeds the study never uses")
    add_checkpoints_argument(parser, default=None)
    add_out_argument(parser, "report directory (default: %(default)s)", default="reports/gaze_utility")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def with_grid(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``config`` with the grid flags given written into its gaze_utility section, validated again."""
    values = {"informativeness": args.informativeness, "shortcuts": args.shortcuts, "train_sizes": args.train_sizes,
              "seeds": args.seeds, "methods": args.methods}
    given = {key: value for key, value in values.items() if value is not None}
    out = {**config, "gaze_utility": {**config.get("gaze_utility", {}), **given}}
    validate_config(out, " ".join(f"--{key.replace('_', '-')}" for key in given) or "the config")
    return out


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the study (or its pilot), print its tables and the report folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    config = with_grid(load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)]), args)
    if args.pilot:
        run_pilot(config, args.pilot, args.out, progress=not args.quiet)
    else:
        run_gaze_utility(config, args.out, progress=not args.quiet)
    out = Path(args.out)
    print((out / ("pilot.md" if args.pilot else "tables.md")).read_text(encoding="utf-8"))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
