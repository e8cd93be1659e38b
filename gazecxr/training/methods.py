"""The comparison's methods as training runs: which stage (or peer method) trains each and with which
config settings, and training them per seed with reuse of registry entries.

A method's entries are tagged ``ablation``, ``method=<name>`` and ``seed=<seed>``; an entry with the same
method and resolved config hash (`ablation_key`) is reused instead of trained again, so a rerun only
evaluates and an interrupted one resumes. The ablation (``gazecxr.evaluation.ablation``) and the
gaze-utility study train through `train_seed`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gazecxr.config import config_hash
from gazecxr.training.peers import run_peer
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.stages import STAGES

ABLATION_TAG = "ablation"
"""Registry tag of every entry `train_seed` trains."""


@dataclass(frozen=True)
class Method:
    """A trained method of the comparison: the stage (or peer method) that trains it and its config
    settings, given the ids of the same seed's methods trained before it."""

    name: str
    stage: str
    settings: Callable[[Mapping[str, str]], dict[str, Any]]


METHODS: tuple[Method, ...] = (
    Method("densenet", "stage1", lambda ids: {"stage1.contrastive.enabled": False}),
    Method("densenet_cl", "stage1", lambda ids: {"stage1.contrastive.enabled": True}),
    Method("standard_unet", "stage2", lambda ids: {"stage2.variant": "unet"}),
    Method("resse_unet", "stage2", lambda ids: {"stage2.variant": "resse"}),
    Method("full", "stage2", lambda ids: {"stage2.variant": "full", "stage2.encoder": ids["densenet_cl"]}),
    Method("fusion", "stage3", lambda ids: {"stage2.variant": "full", "stage2.encoder": ids["densenet_cl"],
                                            "stage3.saliency": ids["full"]}),
    Method("mtunet", "mtunet", lambda ids: {}),
    Method("irnetv2", "irnetv2", lambda ids: {}),
    Method("gazegnn", "gazegnn", lambda ids: {}),
    Method("gaze_token_mask", "gaze_token_mask", lambda ids: {}),
    Method("gdvig", "gdvig", lambda ids: {}),
    Method("gaze_mtl", "gaze_mtl", lambda ids: {}),
)
"""In training order: stage 2 ``full`` and stage 3 ``fusion`` build on the same seed's entries."""


def _with(config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with the dotted keys of ``values`` set."""
    out = copy.deepcopy(dict(config))
    for dotted, value in values.items():
        *path, last = dotted.split(".")
        node = out
        for key in path:
            node = node[key]
        node[last] = value
    return out


def _runner(stage: str) -> Callable[..., Entry]:
    """The function that trains a method of ``stage``: a stage runner or a peer method's."""
    return STAGES[stage] if stage in STAGES else functools.partial(run_peer, stage)


def ablation_key(method: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """Identity of an ablation run: its method and resolved config hash."""
    return method, config_hash(config)


def method_of(entry: Entry) -> str:
    """The ``method=`` tag of an entry `train_seed` trained ('' for other entries)."""
    return next((t.split("=", 1)[1] for t in entry.tags if t.startswith("method=")), "")


def known_entries(registry: Registry) -> dict[tuple[str, str], Entry]:
    """The entries `train_seed` trained before, by `ablation_key` (what it reuses)."""
    return {ablation_key(method_of(e), e.config): e for e in registry.entries(tag=ABLATION_TAG)}


def train_seed(config: Mapping[str, Any], seed: int, known: dict[tuple[str, str], Entry], bar: tqdm,
               progress: bool, methods: Sequence[Method] = METHODS) -> tuple[dict[str, Entry], dict[str, bool]]:
    """Train (or reuse from ``known``, `ablation_key` → entry) ``methods`` for ``seed``; returns the entries
    and whether each was reused. New entries are added to ``known``."""
    entries: dict[str, Entry] = {}
    reused: dict[str, bool] = {}
    for method in methods:
        bar.set_postfix_str(f"{method.name} seed {seed}")
        run_config = _with(config, {"seed": seed, **method.settings({k: e.id for k, e in entries.items()})})
        key = ablation_key(method.name, run_config)
        reused[method.name] = key in known
        if key not in known:
            run_dir = Path(run_config["runs"]["root"]) / ABLATION_TAG / f"{method.name}-seed{seed}-{key[1]}"
            known[key] = _runner(method.stage)(
                run_config, run_dir=run_dir, resume=(run_dir / "config.yaml").is_file(), progress=progress,
                tags=(ABLATION_TAG, f"method={method.name}", f"seed={seed}"))
        entries[method.name] = known[key]
        bar.update(1)
    return entries, reused
