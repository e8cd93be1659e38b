"""Stage 1: DenseNet image encoder and 3-class classifier (torchvision DenseNet).

Feature taps (both at stride 32 of the input):

- ``denseblock4`` (default, as the released code's hook): output of the last dense block,
  1920 channels for densenet201 (1024 for densenet121).
- ``transition3`` (the paper text's "all layers before the last dense block"): output of the
  third transition layer (BN-ReLU-conv1x1-avgpool2), 896 channels for densenet201
  (512 for densenet121). Its 2x2 average pooling brings it to 1/32, the same stride as
  ``denseblock4``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models
from torchvision.models import DenseNet

from .factory import register_model

TAPS = ("denseblock4", "transition3")
ARCHS = ("densenet121", "densenet201", "custom")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_NAMED_ARCHS = {
    "densenet121": (models.densenet121, models.DenseNet121_Weights.IMAGENET1K_V1),
    "densenet201": (models.densenet201, models.DenseNet201_Weights.IMAGENET1K_V1),
}
_HEAD_KEYS = ("classifier.weight", "classifier.bias")
_BN_COUNTER = "num_batches_tracked"  # absent from files saved before PyTorch 0.4.1, such as torchvision's
# torchvision's released ImageNet files name dense-layer parameters "norm.1" instead of "norm1".
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@register_model("densenet")
class DenseNetEncoder(nn.Module):
    """DenseNet classifier that also exposes an intermediate feature map for the other stages.

    Input: (N, 1, H, W) grey images in [0, 1] (3-channel input is accepted as is).
    `pretrained`: ``"none"``, ``"imagenet"`` (torchvision download) or a path to a
    torchvision-format DenseNet state dict; a classifier of a different size in the file
    (e.g. ImageNet's 1000 classes) is skipped and the new head is kept.
    `imagenet_norm`: normalise with ImageNet mean/std inside the module; by default on
    exactly when pretrained weights (ImageNet or a file) are loaded.
    `growth_rate`, `block_config`, `num_init_features`: only for ``arch="custom"``
    (torchvision defaults when left out).
    """

    def __init__(
        self,
        arch: str = "densenet201",
        tap: str = "denseblock4",
        pretrained: str = "none",
        num_classes: int = 3,
        imagenet_norm: bool | None = None,
        growth_rate: int | None = None,
        block_config: tuple[int, int, int, int] | list[int] | None = None,
        num_init_features: int | None = None,
    ) -> None:
        super().__init__()
        if tap not in TAPS:
            raise ValueError(f"unknown tap {tap!r}; valid taps: {list(TAPS)}")
        self.arch = arch
        self.tap = tap
        self.net = _build_densenet(arch, num_classes, growth_rate, block_config, num_init_features)
        if pretrained != "none":
            _load_torchvision_state(self.net, _pretrained_state(arch, pretrained), source=pretrained)
        self.imagenet_norm = pretrained != "none" if imagenet_norm is None else imagenet_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_channels(self) -> int:
        """Channels of the tapped feature map."""
        if self.tap == "denseblock4":
            return self.net.features.norm5.num_features
        return self.net.features.transition3.conv.out_channels

    @property
    def embedding_dim(self) -> int:
        """Size of the pooled embedding returned by `embed`."""
        return self.net.classifier.in_features

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, num_classes)."""
        return self.forward_features(x)["logits"]

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """One pass: ``tap`` feature map, pooled ``embedding`` and class ``logits``."""
        h = self._to_rgb(x)
        tapped = h
        for name, layer in self.net.features.named_children():
            h = layer(h)
            if name == self.tap:
                tapped = h
        embedding = F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1)
        return {"tap": tapped, "embedding": embedding, "logits": self.net.classifier(embedding)}

    def features_only(self, x: Tensor) -> Tensor:
        """The ``tap`` feature map alone, as in ``forward_features``; the layers after the tap and
        the classifier head (unused by stages 2 and 3) are not run."""
        h = self._to_rgb(x)
        for name, layer in self.net.features.named_children():
            h = layer(h)
            if name == self.tap:
                return h
        raise RuntimeError(f"tap {self.tap!r} is not a layer of this DenseNet")

    def logits_from_tap(self, tap: Tensor) -> Tensor:
        """Class logits computed from a ``tap`` feature map (the layers after the tap), e.g. for Grad-CAM."""
        layers = list(self.net.features.named_children())
        start = next(i for i, (name, _) in enumerate(layers) if name == self.tap) + 1
        h = tap
        for _, layer in layers[start:]:
            h = layer(h)
        return self.net.classifier(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))

    def embed(self, x: Tensor) -> Tensor:
        """Globally pooled final features (the classifier's input), e.g. for a metric loss."""
        return self.forward_features(x)["embedding"]

    def _to_rgb(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected input of shape (N, 1, H, W) or (N, 3, H, W), got {tuple(x.shape)}")
        x = x.expand(-1, 3, -1, -1)
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        return x


def _build_densenet(
    arch: str,
    num_classes: int,
    growth_rate: int | None,
    block_config: tuple[int, ...] | list[int] | None,
    num_init_features: int | None,
) -> DenseNet:
    custom = {"growth_rate": growth_rate, "block_config": block_config, "num_init_features": num_init_features}
    given = {key: value for key, value in custom.items() if value is not None}
    if arch in _NAMED_ARCHS:
        if given:
            raise ValueError(f"{sorted(given)} only apply to arch 'custom', not {arch!r}")
        builder, _ = _NAMED_ARCHS[arch]
        return builder(weights=None, num_classes=num_classes)
    if arch != "custom":
        raise ValueError(f"unknown arch {arch!r}; valid archs: {list(ARCHS)}")
    if "block_config" in given:
        given["block_config"] = tuple(given["block_config"])
        if len(given["block_config"]) != 4:
            raise ValueError(f"block_config needs 4 dense blocks, got {given['block_config']}")
    return DenseNet(num_classes=num_classes, **given)


def _pretrained_state(arch: str, pretrained: str) -> dict[str, Tensor]:
    if pretrained == "imagenet":
        return _download_imagenet(arch)
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} not found; use pretrained: none, imagenet or a path to a state dict"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return state


def _download_imagenet(arch: str) -> dict[str, Tensor]:
    if arch not in _NAMED_ARCHS:
        raise ValueError(f"no ImageNet weights for arch {arch!r}; use one of {sorted(_NAMED_ARCHS)}")
    _, weights = _NAMED_ARCHS[arch]
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as err:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        filename = weights.url.rsplit("/", 1)[-1]
        raise RuntimeError(
            f"could not download the ImageNet weights of {arch} from {weights.url} ({err}). "
            f"Offline, either set 'pretrained: none' to train from scratch, or 'pretrained: /path/to/{filename}' "
            f"(a torchvision state dict), or copy {filename} into {cache} (torchvision's cache, "
            f"set by $TORCH_HOME) so that 'pretrained: imagenet' finds it."
        ) from err


def _load_torchvision_state(net: DenseNet, state: dict[str, Tensor], source: str) -> None:
    """Load a torchvision DenseNet state dict into `net`; mismatching keys or shapes raise ValueError."""
    state = {_modern_key(key): value for key, value in state.items()}
    own = net.state_dict()
    allowed_missing: set[str] = set()
    if any(key in state and state[key].shape != own[key].shape for key in _HEAD_KEYS):
        state = {key: value for key, value in state.items() if key not in _HEAD_KEYS}
        allowed_missing = set(_HEAD_KEYS)
    missing = sorted(key for key in set(own) - set(state) - allowed_missing if not key.endswith(_BN_COUNTER))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(key for key in set(state) & set(own) if state[key].shape != own[key].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights from {source} do not fit this DenseNet (is it a torchvision state dict of the same arch?): "
            f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(mismatched)} with other shapes {mismatched[:3]}"
        )
    net.load_state_dict(state, strict=False)


def _modern_key(key: str) -> str:
    match = _LEGACY_KEY.match(key)
    return match.group(1) + match.group(2) if match else key
