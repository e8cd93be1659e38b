"""Building trained modules back from registry entries (architecture stored with each entry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from gazecxr.config.errors import InputError
from gazecxr.models.cooperative import GazeCXRModel, freeze
from gazecxr.models.factory import create_model
from gazecxr.training.registry import Entry, Registry, check_state_compatible


def offline_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """A model section rebuilt without downloading: weights come from the checkpoint, and an
    encoder keeps the input normalisation its pretrained weights implied."""
    out = dict(section)
    if "pretrained" in out:
        out["imagenet_norm"] = out.get("imagenet_norm") if out.get("imagenet_norm") is not None \
            else out["pretrained"] != "none"
        out["pretrained"] = "none"
    return out


def build_module(entry: Entry, key: str, state: Mapping[str, Any]) -> nn.Module:
    """The ``key`` module of ``entry`` built from its stored architecture, weights loaded."""
    if key not in entry.architecture or key not in state:
        raise InputError(f"checkpoint {entry.id} ({entry.stage}) has no {key!r} module; "
                         f"it holds {sorted(state)}")
    module = create_model(offline_section(entry.architecture[key]))
    weights = state[key]
    upgrade = getattr(module, "upgrade_state_dict", None)  # a network whose key layout changed maps old entries
    if callable(upgrade):
        weights = upgrade(weights)
    check_state_compatible(module, weights)
    module.load_state_dict(weights)
    return module


def load_encoder(registry: Registry, ref: str) -> tuple[nn.Module, Entry]:
    """The stage-1 DenseNet of ``ref``."""
    state, entry = registry.load(ref, stage="stage1")
    return build_module(entry, "encoder", state), entry


SALIENCY_STAGES = ("stage2", "baseline_resse", "baseline_unet")


def load_saliency(registry: Registry, ref: str, stage: str = "stage2") -> tuple[nn.Module, nn.Module | None, Entry]:
    """A saliency UNet entry with the DenseNet it was trained with (None for baselines)."""
    state, entry = registry.load(ref, stage=stage)
    unet = build_module(entry, "unet", state)
    encoder = None
    if getattr(unet, "aux_channels", 0):
        if not entry.parents:
            raise InputError(f"checkpoint {entry.id} needs a DenseNet but records no stage-1 parent")
        encoder, _ = load_encoder(registry, entry.parents[0])
    return unet, encoder, entry


ORACLE_STAGES = ("gazegnn",)
"""Registry stages whose models need the radiologist's gaze at test time; never served."""


def load_full_model(registry: Registry, ref: str = "best") -> tuple[GazeCXRModel, list[Entry]]:
    """The assembled 3-stage model of a stage-3 entry, frozen and in eval mode, and its lineage.

    A reference to an oracle entry (GazeGNN) is refused with an error saying why.
    """
    try:
        state, entry = registry.load(ref, stage="stage3")
    except LookupError:
        _refuse_oracle(registry, ref)
        raise
    classifier = build_module(entry, "classifier", state)
    unet, encoder, saliency_entry = load_saliency(registry, entry.parents[0])
    if encoder is None:
        raise InputError(f"checkpoint {entry.id}: its saliency model {saliency_entry.id} has no DenseNet branch")
    model = GazeCXRModel(encoder, unet, classifier)
    freeze(model)
    return model, registry.lineage(entry.id)


def _refuse_oracle(registry: Registry, ref: str) -> None:
    try:
        other = registry.resolve(ref)
    except LookupError:
        return
    if other.stage in ORACLE_STAGES:
        raise InputError(f"checkpoint {other.id} is a {other.stage} model: it needs the radiologist's gaze at test "
                         "time (an oracle comparison row), so gazecxr.predict does not serve it; give a stage-3 entry")
