"""`python -m stages.ablate --config FILE [--seeds 3] [--methods ...] [--out reports/ablation] [--set K=V ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gazecxr.cli.options import add_checkpoints_argument, add_out_argument, checkpoints_override, prog_name, run_main
from gazecxr.config import add_config_arguments, load_config
from gazecxr.evaluation.ablation import SELECTABLE, run_ablation
from gazecxr.evaluation.comparisons import add_bootstrap_arguments


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.ablate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m stages.ablate"),
        description="Train and evaluate every method of the paper's Tables 4.1 and 4.2 on the configured data, "
        "once per seed (config seed = 0..S-1). Saliency: our full dual-encoder model (full), MT-UNet (mtunet), "
        "the Res-SE UNet alone (resse_unet), the standard UNet (standard_unet), and the uniform and "
        "centre-bias maps; scored by KL, CC, HS, NSS, AUC-Judd and sAUC (the last two need recorded "
        "fixations). Classification: our fusion classifier (fusion), MT-UNet, DenseNet with and without "
        "contrastive pretraining (densenet_cl, densenet), Inception-ResNet-v2 (irnetv2) and GazeGNN (gazegnn, "
        "which uses the radiologist's gaze at test time: an oracle); scored by per-class, macro and micro AUC "
        "and accuracy. A multi-label task (task.name: reflacx_findings) compares our methods only (densenet, "
        "densenet_cl, full, fusion and the uniform / centre-bias maps; the 3-class peers are refused), scored by "
        "macro / micro AUROC, macro AP and F1 at the validation thresholds stored in each entry, with paired "
        "tests of per-image mean binary cross-entropy. Peer methods train with the config's peers.* sections. A seed's full model and fusion "
        "classifier build on that seed's own entries. Registry entries tagged 'ablation' with the same method "
        "and resolved config are reused, so a rerun only evaluates and an interrupted one resumes.",
        epilog="Writes OUT/metrics.json, OUT/tables.md and OUT/index.html: mean ± std over seeds of per-seed "
        "test values, each row's parameter count and training time, paired two-sided t-tests of our model "
        "(full / fusion) against every row over images pooled across seeds, and the paper's published numbers "
        "beside ours.",
    )
    add_config_arguments(parser)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..S-1 (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", choices=list(SELECTABLE), metavar="METHOD",
                        help="rows to train and evaluate (default: all): " + ", ".join(SELECTABLE)
                        + "; 'ours' (densenet_cl + full + fusion) is always included, as every row is tested "
                        "against it")
    add_checkpoints_argument(parser, default=None)
    add_out_argument(parser, "report directory (default: %(default)s)", default="reports/ablation")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split to evaluate (default: %(default)s)")
    add_bootstrap_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the ablation, print its tables and the report folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    config = load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)])
    run_ablation(config, args.seeds, args.out, args.split, progress=not args.quiet, methods=args.methods,
                 bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed)
    out = Path(args.out)
    print((out / "tables.md").read_text(encoding="utf-8"))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
