"""`python -m gazecxr.models summary --config FILE [--set ...] [--json]`: every network's parameter count."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gazecxr.cli.options import prog_name
from gazecxr.config import ConfigError, add_config_arguments, load_config
from gazecxr.models.factory import create_model

PEER_TITLES = {"mtunet": "MT-UNet (classification + saliency)", "irnetv2": "Inception-ResNet-v2 (timm)",
               "gazegnn": "GazeGNN, Pyramid ViG (uses test-time gaze: oracle)",
               "gaze_token_mask": "EG-ViT gaze token mask, ViT (gaze at training only)",
               "gdvig": "GD-ViG, gaze-map generator + gaze-distance ViG (gaze at training only)",
               "gaze_mtl": "Gaze-MTL, CNN + gaze-statistics heads (gaze at training only)"}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_summary(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per network of ``config`` (name, what it is, parameters), built on the meta device
    (no memory, no weights); our 3-stage model's total comes after its parts."""
    model = config["model"]
    rows = []
    with torch.device("meta"):
        encoder = create_model({**model["encoder"], "pretrained": "none"})
        unet = create_model({**model["unet"], "aux_channels": encoder.feature_channels})
        fusion = create_model({**model["classifier"], "dense_channels": encoder.feature_channels,
                               "decoder_channels": unet.decoder_channels})
        ours = [("densenet", "stage 1: DenseNet encoder + classifier (DNet201 rows)", encoder),
                ("resse_unet", "stage 2: dual-encoder Res-SE UNet (DenseNet not counted)", unet),
                ("fusion", "stage 3: fusion classifier", fusion)]
        rows += [{"name": n, "what": w, "parameters": _count(m)} for n, w, m in ours]
        rows.append({"name": "full", "what": "our 3-stage model (sum of the three)",
                     "parameters": sum(r["parameters"] for r in rows)})
        baselines = [("resse_unet_only", "baseline: Res-SE UNet without the DenseNet branch",
                      {**model["unet"], "aux_channels": 0}),
                     ("standard_unet", "baseline: standard UNet (smp)", config["stage2"]["baseline_unet"])]
        baselines += [(name, f"peer: {PEER_TITLES.get(name, name)}", section["model"])
                      for name, section in config.get("peers", {}).items()]
        for name, what, section in baselines:
            section = {**section, "pretrained": "none"} if "pretrained" in section else section
            rows.append({"name": name, "what": what, "parameters": _count(create_model(section))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.models"),
        description="Model utilities. 'summary' prints the parameter count of every network a config builds: "
                    "our three stages, the saliency baselines and the peer methods (MT-UNet, IRNetv2, GazeGNN).")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="parameter count of every network of a config")
    add_config_arguments(summary)
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        rows = parameter_summary(load_config(args.config, args.overrides))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<16} {row['parameters']:>14,}  {row['what']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
