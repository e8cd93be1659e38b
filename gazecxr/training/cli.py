"""The command line shared by ``python -m stages.stage1`` … ``stage3`` and ``stages.peer``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial

from gazecxr.cli.options import add_checkpoints_argument, add_out_argument, checkpoints_override, prog_name
from gazecxr.config import ConfigError, add_config_arguments, load_config
from gazecxr.training.distributed import teardown
from gazecxr.training.peers import PEER_METHODS, run_peer
from gazecxr.training.stages import STAGES

DESCRIPTIONS = {
    "stage1": "Stage 1: contrastive (triplet) pretraining of DenseNet-201 on the class labels, then "
              "cross-entropy fine-tuning for Normal/CHF/pneumonia.",
    "stage2": "Stage 2: train the Res-SE UNet saliency model against gaze heatmaps with a KL loss, the "
              "stage-1 DenseNet frozen as its second encoder (stage2.variant=resse|unet trains the "
              "baselines instead).",
    "stage3": "Stage 3: train the multi-scale fusion classifier on the frozen DenseNet and frozen "
              "saliency UNet features.",
}


PEER_DESCRIPTION = (
    "Train one of the paper's peer methods on the configured split: mtunet (MT-UNet, class and saliency "
    "jointly with learned loss weights), gazegnn (GazeGNN, a Vision GNN fed the radiologist's fixations; "
    "it needs gaze at test time, so it is an oracle row and is not served by gazecxr.predict) or irnetv2 "
    "(Inception-ResNet-v2); or one of the field's gaze mechanisms, which use gaze at training time only: "
    "gaze_token_mask (EG-ViT), gdvig (GD-ViG), gaze_mtl (Gaze-MTL). Settings: the peers.<method> config section."
)


def build_parser(stage: str) -> argparse.ArgumentParser:
    description = PEER_DESCRIPTION if stage == "peer" else DESCRIPTIONS[stage]
    parser = argparse.ArgumentParser(
        prog=prog_name(f"python -m stages.{stage}"),
        description=description + " The best model is saved to the checkpoint registry "
        "(--checkpoints DIR, default: the config's registry.root) with its resolved config, metrics and "
        "lineage; per-epoch state, a JSONL log and TensorBoard files go to the run directory (--out DIR, "
        "default: runs.root/<stage>/<run>).",
        epilog="Examples: --config demo --set train.lr=3e-4 --set data.num_workers=2; "
               "resume a killed run with --resume (latest run) or --resume --out DIR.",
    )
    if stage == "peer":
        parser.add_argument("--method", required=True, choices=PEER_METHODS, help="the peer method to train")
    add_config_arguments(parser)
    add_checkpoints_argument(parser, default=None)
    add_out_argument(parser, "run directory (default: a new one under runs.root)", old=("--run-dir",))
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (default: the latest run of this stage) "
                             "from its last completed epoch")
    parser.add_argument("--tag", dest="tags", action="append", default=[], help="extra registry tag (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(stage: str, argv: list[str] | None = None) -> int:
    """Parse arguments, run ``stage`` and print its registry entry as JSON."""
    args = build_parser(stage).parse_args(argv)
    try:
        config = load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)])
        runner = partial(run_peer, args.method) if stage == "peer" else STAGES[stage]
        entry = runner(config, run_dir=args.out, resume=args.resume, progress=not args.quiet, tags=args.tags)
    except (ConfigError, FileNotFoundError, FileExistsError, LookupError, ValueError) as err:
        teardown(wait=False)
        print(f"error: {err}", file=sys.stderr)
        return 2
    teardown()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(json.dumps({"id": entry.id, "stage": entry.stage, "parents": entry.parents,
                      "metrics": entry.metrics, "path": str(entry.path)}, indent=2))
    return 0
