"""Run configuration: YAML presets shipped with the package, inheritance, ``--set`` overrides."""

from gazecxr.config.loader import (
    INHERIT_KEY,
    PRESETS_DIR,
    ConfigError,
    add_config_arguments,
    apply_overrides,
    config_hash,
    deep_merge,
    dump_config,
    load_config,
    load_yaml_config,
    parse_override,
    parse_yaml,
    preset_names,
    resolve_config,
)

__all__ = [
    "INHERIT_KEY",
    "PRESETS_DIR",
    "ConfigError",
    "add_config_arguments",
    "apply_overrides",
    "config_hash",
    "deep_merge",
    "dump_config",
    "load_config",
    "load_yaml_config",
    "parse_override",
    "parse_yaml",
    "preset_names",
    "resolve_config",
]
