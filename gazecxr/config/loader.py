"""YAML run configuration: loading with inheritance, ``--set`` overrides, hashing."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gazecxr.config.errors import ConfigError
from gazecxr.config.schema import SECTIONS, suggest, validate_config


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``1e-4`` (no decimal point) as a float and only true/false as
    booleans (so ``off``, ``on``, ``yes``, ``no`` stay strings, as in YAML 1.2)."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF))$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text → Python value (safe loader, scientific notation as floats)."""
    return yaml.load(text, Loader=_Loader)


INHERIT_KEY = "inherit"
"""A config may name a base file (relative to itself) that it overrides key by key."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively by ``override`` (mappings merge, other values replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    return data


def load_yaml_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file with its ``inherit`` chain resolved (no overrides applied)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'inherit' chain {[str(p) for p in _seen]}")
    data = _read_yaml(path)
    base_name = data.pop(INHERIT_KEY, None)
    if base_name is None:
        return data
    base = load_yaml_config(path.parent / base_name, (*_seen, path))
    _check_known(data, base, str(path))
    return deep_merge(base, data)


def _check_known(data: Mapping[str, Any], base: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in base and not (prefix == "" and key in SECTIONS):  # a schema section the base leaves out
            raise ConfigError(f"{where}: unknown key {dotted!r}{suggest(key, list(base), prefix)}; "
                              f"valid keys here: {sorted(base)}")
        if key in base and isinstance(value, Mapping) and isinstance(base[key], Mapping) and not _is_free_form(dotted):
            _check_known(value, base[key], where, dotted + ".")


FREE_FORM = ("model.", "stage2.baseline_unet.", "task")
"""Sections whose keys are constructor arguments: not all of them appear in the base config
(``task`` options depend on the task; ``gazecxr.tasks.create_task`` checks them).
Per-stage ``train`` sections are free-form too (they override the top-level ``train``)."""


def _is_free_form(dotted: str) -> bool:
    return dotted.startswith(FREE_FORM) or "train" in dotted.split(".")[1:]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` → (["a","b","c"], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from err
    return parts, value


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides; a key must already exist unless its section is free-form."""
    out = copy.deepcopy(dict(config))
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                dotted = ".".join(parts[: i + 1])
                problem = (f"{dotted!r} is not a section" if part in node else
                           f"unknown key {dotted!r}{suggest(part, list(node), '.'.join(parts[:i]))}")
                raise ConfigError(f"override {text!r}: {problem}; valid keys: {sorted(node)}")
            node = node[part]
        dotted = ".".join(parts)
        if parts[-1] not in node and not _is_free_form(dotted):
            raise ConfigError(f"override {text!r}: unknown key {dotted!r}"
                              f"{suggest(parts[-1], list(node), '.'.join(parts[:-1]))}; valid keys: {sorted(node)}")
        node[parts[-1]] = value
    return out


PRESETS_DIR = Path(__file__).resolve().parent / "presets"
"""The configs shipped with the package (``paper``, ``demo``, ``test``, …), resolvable by name."""


def preset_names() -> list[str]:
    """Names of the shipped configs, e.g. ``["ablation_small", "demo", "paper", "test", …]``."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """The YAML file of a config given by name (``paper``) or path (``my/run.yaml``).

    An existing path wins; otherwise a shipped preset of that name is used, also when given in
    the repository's historical spelling ``configs/<name>.yaml``.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    stem = path.stem if path.suffix in (".yaml", ".yml") and path.parent.name in ("configs", "") else text
    if path.parent.name == "tune" and path.parent.parent.name == "configs":
        stem = f"tune/{path.stem}"
    preset = PRESETS_DIR / f"{stem}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"{text}: no such config file, and no shipped config of that name "
                      f"(shipped: {', '.join(preset_names())})")


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The fully resolved config: file (or shipped preset name), its ``inherit`` chain, then
    ``--set`` overrides, validated against :mod:`gazecxr.config.schema` (ConfigError naming every
    unknown key, with the closest valid one, and every wrong type or range), before any work."""
    config = apply_overrides(load_yaml_config(resolve_config(path)), overrides)
    validate_config(config, str(path), overrides)
    return config


def config_hash(section: Any) -> str:
    """Short stable hash of a (part of a) config, for cache keys and run names."""
    text = json.dumps(section, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dump_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Write a config as YAML."""
    Path(path).write_text(yaml.safe_dump(dict(config), sort_keys=False))


def add_config_arguments(parser: argparse.ArgumentParser,
                         config_help: str = "config: a shipped name (paper, demo, test, ...) or a YAML path") -> None:
    """The ``--config FILE`` and repeatable ``--set SECTION.KEY=VALUE`` options of every command."""
    parser.add_argument("--config", required=True, metavar="NAME|PATH", help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable; the value is parsed as YAML)")
