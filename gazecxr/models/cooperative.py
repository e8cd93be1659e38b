"""The assembled three-stage model and helpers to freeze its stages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from torch import Tensor, nn

from .densenet import DenseNetEncoder
from .factory import create_model
from .fusion import FusionClassifier
from .weights import WEIGHTS_FILE, WeightsFileError, load_tensors, read_pretrained_config

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def freeze(module: ModuleT) -> ModuleT:
    """Stop gradients to all parameters of `module` and put it in eval mode; returns `module`."""
    module.requires_grad_(False)
    return module.eval()


def is_frozen(module: nn.Module) -> bool:
    """True if `module` has parameters and none of them requires a gradient."""
    flags = [p.requires_grad for p in module.parameters()]
    return bool(flags) and not any(flags)


class GazeCXRModel(nn.Module):
    """DenseNet encoder + saliency UNet + fusion classifier, sharing one DenseNet pass.

    `unet` is a ResSEUNet or StandardUNet; it receives the DenseNet feature map when its
    ``aux_channels`` is non-zero. Without a `classifier` (after stage 2) the class logits are
    the DenseNet's own. Frozen children (see `freeze`) stay in eval mode when ``train()`` is
    called, so their batch-norm statistics do not change.
    """

    def __init__(self, encoder: DenseNetEncoder, unet: nn.Module, classifier: FusionClassifier | None = None) -> None:
        super().__init__()
        if unet.aux_channels not in (0, encoder.feature_channels):
            raise ValueError(
                f"unet aux_channels={unet.aux_channels} but the encoder's {encoder.tap} feature has "
                f"{encoder.feature_channels} channels"
            )
        if classifier is not None and (
            classifier.dense_channels != encoder.feature_channels or classifier.decoder_channels != unet.decoder_channels
        ):
            raise ValueError(
                f"classifier expects ({classifier.dense_channels}, {classifier.decoder_channels}) channels, "
                f"the encoder and unet give ({encoder.feature_channels}, {unet.decoder_channels})"
            )
        self.encoder = encoder
        self.unet = unet
        self.classifier = classifier

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``saliency_logits`` (N,1,H,W), ``class_logits``, ``encoder_logits`` (N,3) and ``dense_features``."""
        encoded = self.encoder.forward_features(x)
        dense = encoded["tap"]
        saliency = self.unet(x, aux=dense if self.unet.aux_channels else None)
        class_logits = (
            encoded["logits"] if self.classifier is None else self.classifier(dense, saliency["decoder"])
        )
        return {
            "saliency_logits": saliency["logits"],
            "class_logits": class_logits,
            "encoder_logits": encoded["logits"],
            "dense_features": dense,
        }

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> GazeCXRModel:
        """The frozen, eval-mode model of a pretrained folder (``config.json`` + ``model.safetensors``,
        written by ``gazecxr export --format pretrained``): built from the folder's architecture
        sections, weights loaded strictly; no pickle is read and nothing is downloaded."""
        config = read_pretrained_config(directory)
        parts = config["architecture"]
        model = cls(*(create_model(parts[key]) for key in ("encoder", "unet", "classifier")))
        tensors, _ = load_tensors(Path(directory) / WEIGHTS_FILE)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as err:
            raise WeightsFileError(f"{Path(directory) / WEIGHTS_FILE} does not fit the architecture in its "
                                   f"config.json: {err}") from None
        return freeze(model)

    def train(self, mode: bool = True) -> GazeCXRModel:
        """Set training mode, keeping frozen children in eval mode."""
        super().train(mode)
        for child in self.children():
            if is_frozen(child):
                child.eval()
        return self
