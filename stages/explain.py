"""`python -m stages.explain --config explain/siim [--models …] [--methods …] [--seeds N] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gazecxr.cli.options import (
    add_checkpoints_argument,
    add_out_argument,
    checkpoints_override,
    prog_name,
    run_main,
)
from gazecxr.config import add_config_arguments, load_config


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.explain`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m stages.explain"),
        description="The explanation-reliability study: train each architecture (timm classifiers and our "
        "stage-1 DenseNet, reusing registry entries of the same key, resuming killed runs), explain every test "
        "(image, finding) pair with each CAM method (pytorch-grad-cam), score the maps against the region "
        "ground truth (masks, boxes, ellipses or gaze) with Diff, EHR-AUC, IoU/Dice at thresholds 0.1-0.7, "
        "CAM-box IoU and T(IoBB), pointing games; baselines uniform, centre bias, radiologist gaze, our gaze "
        "model; one-way ANOVA + Tukey HSD across architectures.",
        epilog="Presets: explain/siim (seed 002 ch. 3), explain/nih14 (seeds 000/003), explain/reflacx, "
        "explain/egd, explain/test (tiny). Writes OUT/<explain.name>/: metrics.json, tables.md (the seed's "
        "Table 3.1 and 3.2 layouts with its numbers beside ours), fig31_cams.png, fig32_ehr_auc.png, "
        "iou_thresholds.png, index.html. Needs the [explain] extra (pytorch-grad-cam, OpenCV).",
    )
    add_config_arguments(parser, "study config: a preset (explain/siim, explain/nih14, …) or a YAML file")
    parser.add_argument("--models", nargs="+", help="architectures (default: explain.architectures)")
    parser.add_argument("--methods", nargs="+", help="CAM methods (default: explain.methods)")
    parser.add_argument("--seeds", type=int, help="training seeds per architecture (default: explain.seeds)")
    add_checkpoints_argument(parser, default=None)
    add_out_argument(parser, "reports directory (default: %(default)s)", default="reports/explain")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the study, print its tables and report folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    from gazecxr.evaluation.studies.explanation import run_study

    config = load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)])
    metrics = run_study(config, args.models, args.methods, args.seeds, args.out, progress=not args.quiet)
    report = Path(args.out) / metrics["name"]
    print((report / "tables.md").read_text(encoding="utf-8"))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
