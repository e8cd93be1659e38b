"""`python -m stages.evaluate --config FILE [--checkpoint ID] [--out reports] [--split test] [--set K=V ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gazecxr.cli.options import add_checkpoints_argument, add_out_argument, checkpoints_override, prog_name, run_main
from gazecxr.config import add_config_arguments, load_config
from gazecxr.evaluation.report import evaluate
from gazecxr.evaluation.comparisons import add_bootstrap_arguments


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.evaluate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m stages.evaluate"),
        description="Evaluate a trained 3-stage model on one split. Saliency methods: 'full' (the model), "
        "'uniform', 'center_bias' (mean training heatmap), 'gradcam' (stage-1 DenseNet) and the best "
        "registry entries of 'resse_unet', 'standard_unet' and 'mtunet' if trained; scored by KL, CC, HS, NSS, "
        "AUC-Judd and sAUC (NSS, AUC-Judd and sAUC on the file's recorded fixations; without them NSS falls "
        "back to the densest 5 % of the ground truth and the AUCs are not available) with paired t-tests of "
        "'full' against each. Classification methods: 'full' (fusion classifier), 'stage1' (DenseNet alone) "
        "and the best registry entries of 'mtunet', 'irnetv2' and 'gazegnn' (uses test-time gaze: oracle): "
        "per-class, macro and micro AUC, accuracy, confusion matrix, ECE, paired tests of 'full' against each; "
        "every method's parameter count and training time.",
        epilog="Writes OUT/<stage-3 id>/: metrics.json (all metrics, tests, checkpoint lineage, notes on "
        "the metric conventions), tables.md (the paper's Tables 4.1 and 4.2 layout with its numbers beside "
        "ours, and the t-tests), roc_curves.png, confusion_full.png, reliability.png and overlays.png "
        "(image | gaze ground truth | predicted saliency | Grad-CAM for a few images per class).",
    )
    add_config_arguments(parser, "YAML config (the one the model was trained with)")
    add_checkpoints_argument(parser, default=None)
    parser.add_argument("--checkpoint", default="best", metavar="REF",
                        help="stage-3 registry reference: id, id prefix, latest, best or tag (default: %(default)s)")
    add_out_argument(parser, "reports directory (default: %(default)s)", default="reports")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split to evaluate (default: %(default)s)")
    add_bootstrap_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the evaluation, print its tables and the report folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    config = load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)])
    metrics = evaluate(config, args.checkpoint, args.out, args.split, progress=not args.quiet,
                       bootstrap=args.bootstrap, seed=args.bootstrap_seed)
    report_dir = Path(metrics["report_dir"])
    print((report_dir / "tables.md").read_text(encoding="utf-8"))
    print(f"report: {report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
