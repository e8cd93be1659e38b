"""``python -m gazecxr.config list`` and ``show NAME|PATH [--set KEY=VALUE …] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from gazecxr.cli.options import prog_name
from gazecxr.config.loader import ConfigError, load_config, preset_names, resolve_config


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m gazecxr.config`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.config"),
        description="Run configurations: the presets shipped with the package and the resolved, validated "
                    "config a command would run with (its inherit chain and --set overrides applied, every key "
                    "checked against the schema before anything else happens).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,show}")
    sub.add_parser("list", help="the preset names (--config NAME) and the first line of each")
    show = sub.add_parser("show", help="print the resolved config as YAML (or --json); exit 2 if it is invalid")
    show.add_argument("config", metavar="NAME|PATH", help="a shipped preset (paper, demo, test, ...) or a YAML path")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override a config value (repeatable; the value is parsed as YAML)")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    return parser


def _first_comment(name: str) -> str:
    for line in resolve_config(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2: the config cannot be loaded or is invalid)."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        names = preset_names()
        width = max(map(len, names)) + 2
        for name in names:
            print(f"{name:<{width}}{_first_comment(name)}")
        return 0
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(config, indent=2))
    else:
        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
