"""``python -m gazecxr.config list`` and ``show NAME|PATH|--checkpoint REF [--set KEY=VALUE …] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from gazecxr.cli.options import add_checkpoint_argument, add_checkpoints_argument, prog_name, run_main
from gazecxr.config.loader import PRESETS_DIR, ConfigError, apply_overrides, load_config, resolve_config
from gazecxr.config.schema import validate_config


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m gazecxr.config`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.config"),
        description="Run configurations: the presets shipped with the package and the resolved, validated "
                    "config a command would run with (its inherit chain and --set overrides applied, every key "
                    "checked against the schema before anything else happens).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,show}")
    sub.add_parser("list", help="the preset names (--config NAME) and the first line of each")
    show = sub.add_parser("show", help="print the resolved config as YAML (or --json); exit 2 if it is invalid",
                          description="Print a resolved config (NAME|PATH with --set), or the config stored in a "
                                      "registry entry (--checkpoint REF), after checking it against the schema.")
    show.add_argument("config", metavar="NAME|PATH", nargs="?",
                      help="a shipped preset (paper, demo, explain/siim, ...) or a YAML path")
    add_checkpoint_argument(show, None, "show the config stored in this registry entry instead (id, id prefix, "
                            "latest, best or tag); an entry written before the schema is shown with a warning when "
                            "it does not fit it")
    add_checkpoints_argument(show)
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override a config value (repeatable; the value is parsed as YAML)")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    return parser


def run_presets() -> list[str]:
    """Names of the shipped run configs, sub-folders included (``explain/siim``); not the search spaces."""
    return sorted(str(p.relative_to(PRESETS_DIR).with_suffix("")) for p in PRESETS_DIR.rglob("*.yaml")
                  if p.relative_to(PRESETS_DIR).parts[0] != "tune")


def _entry_config(checkpoints: str, ref: str, overrides: list[str]) -> dict:
    """The config stored in registry entry ``ref``, with ``overrides``; warns when it does not fit the schema."""
    from gazecxr.training.registry import Registry

    entry = Registry(checkpoints).resolve(ref)
    config = apply_overrides(entry.config, overrides)
    try:
        validate_config(config, f"entry {entry.id}", overrides)
    except ConfigError as err:
        if overrides or entry.config_schema is not None:
            raise
        print(f"warning: {err}\n(the entry was written before config validation; it loads as it is)", file=sys.stderr)
    return config


def _first_comment(name: str) -> str:
    for line in resolve_config(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2: the config cannot be loaded or is invalid)."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        names = run_presets()
        width = max(map(len, names)) + 2
        for name in names:
            print(f"{name:<{width}}{_first_comment(name)}")
        return 0
    if (args.config is None) == (args.checkpoint is None):
        print("error: give a config NAME|PATH or --checkpoint REF (one of them)", file=sys.stderr)
        return 2
    config = (_entry_config(args.checkpoints, args.checkpoint, args.overrides) if args.checkpoint
              else load_config(args.config, args.overrides))
    if args.json:
        print(json.dumps(config, indent=2))
    else:
        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
