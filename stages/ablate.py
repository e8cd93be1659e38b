"""`python -m stages.ablate --config FILE [--seeds 3] [--out reports/ablation] [--set K=V ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gazecxr.config import ConfigError, add_config_arguments, load_config
from gazecxr.evaluation.ablation import run_ablation


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.ablate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m stages.ablate",
        description="Train and evaluate the paper's comparison set on the configured data, once per seed "
        "(config seed = 0..S-1). Saliency: standard UNet (stage2.variant=unet), Res-SE UNet alone (resse), the "
        "full dual-encoder model (full), and the uniform and centre-bias maps; scored by KL, CC, HS and NSS. "
        "Classification: DenseNet without contrastive pretraining (stage1.contrastive.enabled=false), with it "
        "(stage 1 default), and the fusion classifier (stage 3); scored by per-class, macro and micro AUC and "
        "accuracy. A seed's full model and fusion classifier build on that seed's own entries. Registry "
        "entries tagged 'ablation' with the same resolved config are reused, so a rerun only evaluates and an "
        "interrupted one resumes.",
        epilog="Writes OUT/metrics.json and OUT/tables.md: mean ± std over seeds of per-seed test values, "
        "paired two-sided t-tests of the full model (full / fusion) against every row over images pooled "
        "across seeds, and the paper's published numbers (Tables 4.1, 4.2) beside ours.",
    )
    add_config_arguments(parser)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..S-1 (default: %(default)s)")
    parser.add_argument("--out", default="reports/ablation", help="report directory (default: %(default)s)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split to evaluate (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ablation, print its tables and the report folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        run_ablation(config, args.seeds, args.out, args.split, progress=not args.quiet)
    except (ConfigError, FileNotFoundError, LookupError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print((out / "tables.md").read_text(encoding="utf-8"))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
