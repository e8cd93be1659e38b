"""Search spaces declared in YAML: dotted config keys → optuna distributions, plus the sampler
and pruner settings of a study.

A space file looks like::

    params:
      train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      train.batch_size: {type: categorical, choices: [8, 16, 32]}
      data.augment.strength: {type: float, low: 0.0, high: 1.5}
    pruner: {type: median, n_startup_trials: 5, n_warmup_steps: 3}
    sampler: {n_startup_trials: 10}

Each suggested value is applied to the config as the override ``key=value``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from gazecxr.config import ConfigError, apply_overrides, parse_yaml, resolve_config
from gazecxr.config.schema import validate_config

PARAM_FIELDS: dict[str, dict[str, set[str]]] = {
    "float": {"required": {"low", "high"}, "optional": {"log", "step"}},
    "int": {"required": {"low", "high"}, "optional": {"log", "step"}},
    "categorical": {"required": {"choices"}, "optional": set()},
}
"""Distribution types of a parameter and the fields each takes."""

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}
"""``pruner.type`` → optuna pruner; the other ``pruner`` keys are its constructor arguments."""

DEFAULT_PRUNER: dict[str, Any] = {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 2}
"""Median pruning once 5 trials have finished, never before a trial's third epoch."""

TOP_LEVEL_KEYS = {"params", "pruner", "sampler"}


@dataclass(frozen=True)
class Param:
    """One tuned config key and its distribution."""

    key: str
    type: str
    options: dict[str, Any]

    def suggest(self, trial: optuna.Trial) -> Any:
        """A value for this key from ``trial`` (recorded under the dotted key as its name)."""
        if self.type == "float":
            return trial.suggest_float(self.key, **self.options)
        if self.type == "int":
            return trial.suggest_int(self.key, **self.options)
        return trial.suggest_categorical(self.key, self.options["choices"])


@dataclass(frozen=True)
class SearchSpace:
    """The tuned parameters of a study and its sampler (TPE options) and pruner settings."""

    params: tuple[Param, ...]
    pruner: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PRUNER))
    sampler: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Dotted config key → suggested value, for every parameter."""
        return {param.key: param.suggest(trial) for param in self.params}

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The optuna pruner the ``pruner`` section describes."""
        options = dict(self.pruner)
        kind = options.pop("type", "median")
        return PRUNERS[kind](**options)

    def make_sampler(self, seed: int) -> optuna.samplers.TPESampler:
        """A TPE sampler seeded with ``seed``, with the ``sampler`` section's options."""
        return optuna.samplers.TPESampler(seed=seed, **self.sampler)


def _param(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where}: params.{key} must be a mapping with a 'type' ({', '.join(PARAM_FIELDS)})")
    kind = spec["type"]
    if kind not in PARAM_FIELDS:
        raise ConfigError(f"{where}: params.{key}: unknown type {kind!r}; valid: {', '.join(PARAM_FIELDS)}")
    options = {k: v for k, v in spec.items() if k != "type"}
    allowed = PARAM_FIELDS[kind]
    missing = sorted(allowed["required"] - set(options))
    unknown = sorted(set(options) - allowed["required"] - allowed["optional"])
    if missing or unknown:
        raise ConfigError(f"{where}: params.{key} ({kind}): missing {missing or 'nothing'}, "
                          f"unknown {unknown or 'nothing'}")
    if kind == "categorical":
        choices = options["choices"]
        if not isinstance(choices, list) or not choices or not all(
                c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}: params.{key}: choices must be a non-empty list of numbers, "
                              "strings, booleans or null")
    elif not options["low"] <= options["high"]:
        raise ConfigError(f"{where}: params.{key}: low must not exceed high")
    return Param(key, kind, options)


def parse_space(data: Any, where: str = "search space") -> SearchSpace:
    """A search space from its parsed YAML mapping; ConfigError names what is wrong."""
    if not isinstance(data, Mapping) or not isinstance(data.get("params"), Mapping) or not data["params"]:
        raise ConfigError(f"{where}: needs a non-empty 'params' mapping of dotted config keys")
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; valid: {sorted(TOP_LEVEL_KEYS)}")
    given = dict(data.get("pruner") or {})
    pruner = {**DEFAULT_PRUNER, **given} if given.get("type", "median") == "median" else given
    if pruner["type"] not in PRUNERS:
        raise ConfigError(f"{where}: unknown pruner type {pruner['type']!r}; valid: {', '.join(PRUNERS)}")
    params = tuple(_param(str(key), spec, where) for key, spec in data["params"].items())
    space = SearchSpace(params, pruner, dict(data.get("sampler") or {}))
    try:
        space.make_pruner()
        space.make_sampler(0)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: invalid pruner or sampler settings ({err})") from err
    return space


def load_space(path: str | Path) -> SearchSpace:
    """The search space of a YAML file, or of a shipped one by name (``tune/stage1``)."""
    path = resolve_config(path)
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: search-space file not found") from err
    return parse_space(parse_yaml(text), str(path))


def overrides_for(params: Mapping[str, Any]) -> list[str]:
    """``key=value`` override strings for suggested values (values written as YAML flow scalars)."""
    return [f"{key}={json.dumps(value)}" for key, value in params.items()]


def apply_params(config: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the suggested values applied as overrides."""
    return apply_overrides(config, overrides_for(params))


def shadowing_sections(config: Mapping[str, Any], stage: int) -> list[tuple[str, ...]]:
    """Paths of the per-phase ``train`` sections of ``stage`` that override the top-level ``train``."""
    if stage == 1:
        phases = [("stage1", "finetune")]
        if config["stage1"]["contrastive"].get("enabled", True):
            phases.insert(0, ("stage1", "contrastive"))
        return phases
    return [(f"stage{stage}",)]


def check_space(space: SearchSpace, config: Mapping[str, Any], stage: int) -> None:
    """Raise ConfigError when a tuned key is not in ``config``, when one of its bounds or choices does
    not fit the config schema (``train.batch_size: {type: float, ...}``), or when it would have no
    effect on ``stage`` (a ``train.X`` key that the stage's own ``train`` section sets)."""
    first = {p.key: p.options["choices"][0] if p.type == "categorical" else p.options["low"] for p in space.params}
    apply_params(config, first)
    for param in space.params:
        values = param.options["choices"] if param.type == "categorical" else [param.options["low"],
                                                                               param.options["high"]]
        for value in values:
            try:
                validate_config(apply_params(config, {param.key: value}), "the config")
            except ConfigError as err:
                raise ConfigError(f"search space: params.{param.key} can take {value!r}, which does not fit "
                                  f"{err}") from None
    for param in space.params:
        parts = param.key.split(".")
        if parts[0] != "train" or len(parts) != 2:
            continue
        for path in shadowing_sections(config, stage):
            section: Any = config
            for key in path:
                section = section[key]
            if parts[1] in (section.get("train") or {}):
                where = ".".join((*path, "train", parts[1]))
                raise ConfigError(f"search space: {param.key} has no effect because the config sets {where}; "
                                  f"tune {where} instead")

