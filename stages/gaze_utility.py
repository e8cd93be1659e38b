"""`python -m stages.gaze_utility --config gaze_utility [--informativeness G…] [--train-sizes N…] [--seeds S]
[--methods …] [--out reports/gaze_utility] [--set K=V …]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gazecxr.cli.options import add_checkpoints_argument, add_out_argument, checkpoints_override, prog_name, run_main
from gazecxr.config import add_config_arguments, load_config
from gazecxr.config.schema import validate_config
from gazecxr.evaluation.studies.gaze_utility import SELECTABLE, run_gaze_utility


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.gaze_utility`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m stages.gaze_utility"),
        description="Gaze-utility benchmark on synthetic phantoms with a known answer: one data set per gaze "
        "informativeness g (the fraction of each simulated reading's dwell time on the class evidence; same "
        "films, labels and splits for every g), the training split cut to each training size, every method "
        "trained through the registry (entries reused, interrupted runs resumed) and scored on the test split. "
        "Reports per (g, size, method) macro AUC, accuracy, saliency CC/KL/HS/NSS against the gaze maps and the "
        "gain of each gaze-using method over the same network without gaze (ours: fusion vs its DenseNet-CL; "
        "mtunet / gazegnn: vs the same method on a no-gaze copy), with patient-bootstrap interval, p and Holm "
        "adjustment; plus a shuffled-gaze control (our model trained with other images' heatmaps).",
        epilog="Writes OUT/metrics.json, OUT/tables.md, OUT/gain_vs_g.png, OUT/saliency_cc_vs_g.png and "
        "OUT/index.html. The grid flags override the config's gaze_utility section.",
    )
    add_config_arguments(parser)
    parser.add_argument("--informativeness", nargs="+", type=float, metavar="G",
                        help="gaze informativeness values in [0, 1] (default: the config's)")
    parser.add_argument("--train-sizes", nargs="+", type=int, metavar="N",
                        help="training-set sizes (default: the config's)")
    parser.add_argument("--seeds", type=int, help="training seeds 0..S-1 (default: the config's)")
    parser.add_argument("--methods", nargs="+", choices=list(SELECTABLE), metavar="METHOD",
                        help="methods (default: the config's): " + ", ".join(SELECTABLE))
    add_checkpoints_argument(parser, default=None)
    add_out_argument(parser, "report directory (default: %(default)s)", default="reports/gaze_utility")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def with_grid(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``config`` with the grid flags given written into its gaze_utility section, validated again."""
    values = {"informativeness": args.informativeness, "train_sizes": args.train_sizes, "seeds": args.seeds,
              "methods": args.methods}
    given = {key: value for key, value in values.items() if value is not None}
    out = {**config, "gaze_utility": {**config.get("gaze_utility", {}), **given}}
    validate_config(out, " ".join(f"--{key.replace('_', '-')}" for key in given) or "the config")
    return out


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the study, print its tables and the report folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    config = load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)])
    run_gaze_utility(with_grid(config, args), args.out, progress=not args.quiet)
    out = Path(args.out)
    print((out / "tables.md").read_text(encoding="utf-8"))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
