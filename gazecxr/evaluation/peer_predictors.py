"""Predictors (`gazecxr.evaluation.saliency_methods` protocol) for the peer methods' registry entries."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from gazecxr.data.gaze_maps import fixation_duration_map
from gazecxr.evaluation.method_outputs import MethodOutputs, Predictor, uses_gaze
from gazecxr.models.cooperative import freeze
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.training.checkpoint_io import build_module
from gazecxr.training.peers import MECHANISM_METHODS, PEER_METHODS
from gazecxr.training.registry import Entry, Registry


def mtunet_predictor(name: str, net: nn.Module) -> Predictor:
    """MT-UNet's saliency map and class probabilities as method ``name``."""

    def predict(images: Tensor, regions: Tensor) -> MethodOutputs:
        with torch.no_grad():
            out = net(images)
        return MethodOutputs(saliency={name: saliency_from_logits(out["saliency_logits"].float())[:, 0]},
                             probs={name: torch.softmax(out["class_logits"].float(), 1)})

    return predict


def classifier_predictor(name: str, net: nn.Module) -> Predictor:
    """An image classifier's (logits = ``net(images)``) class probabilities as method ``name``."""

    def predict(images: Tensor, regions: Tensor) -> MethodOutputs:
        with torch.no_grad():
            return MethodOutputs(probs={name: torch.softmax(net(images).float(), 1)})

    return predict


def gaze_maps(fixations: list[np.ndarray], size: tuple[int, int], device: torch.device) -> Tensor:
    """Per-pixel gaze maps (N, 1, H, W) of each image's fixations (K, 3) on an (H, W) canvas."""
    maps = np.stack([fixation_duration_map(f, size) for f in fixations])
    return torch.from_numpy(maps)[:, None].to(device)


def gazegnn_predictor(name: str, net: nn.Module) -> Predictor:
    """GazeGNN's class probabilities as method ``name``, from the images and the batch's fixations
    (an oracle, marked with `uses_gaze`: it is called with ``fixations=``, a list of (K, 3) arrays)."""

    def predict(images: Tensor, regions: Tensor, fixations: list[np.ndarray]) -> MethodOutputs:
        if len(fixations) != len(images):
            raise ValueError(f"GazeGNN got {len(fixations)} fixation arrays for {len(images)} images")
        gaze = gaze_maps(fixations, tuple(images.shape[-2:]), images.device)
        with torch.no_grad():
            return MethodOutputs(probs={name: torch.softmax(net(images, gaze).float(), 1)})

    return uses_gaze(predict)


_PREDICTORS = {"mtunet": mtunet_predictor, "irnetv2": classifier_predictor, "gazegnn": gazegnn_predictor,
               **{method: classifier_predictor for method in MECHANISM_METHODS}}
"""Peer stage → its predictor; the gaze mechanisms classify the images alone (their gaze is training-only)."""


def peer_entry_predictor(registry: Registry, entry: Entry, name: str, device: torch.device) -> Predictor:
    """The model of a peer-method entry (`PEER_METHODS`) as method ``name``, frozen on ``device``."""
    if entry.stage not in PEER_METHODS:
        raise ValueError(f"checkpoint {entry.id} is a {entry.stage!r} entry, not one of {list(PEER_METHODS)}")
    state, entry = registry.load(entry.id, stage=entry.stage)
    net = freeze(build_module(entry, entry.stage, state)).to(device)
    return _PREDICTORS[entry.stage](name, net)
