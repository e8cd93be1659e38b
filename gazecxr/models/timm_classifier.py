"""Any timm image classifier as one registry model (``name: timm``), for the explanation study.

``TimmClassifier(arch=...)`` wraps ``timm.create_model(arch, pretrained=False, num_classes, in_chans)``:
the seed's VGG-16/19, ResNet-18/34/50/101 and ViT-S/B/L, DenseNet-121, EfficientNet-B0,
MobileNet-V2, Swin-T — or any other timm name. One class for all of them; nothing downloads.

- ``pretrained``: ``"none"`` (random init) or a path to a local timm/PyTorch state dict (read with
  ``torch.load(weights_only=True)`` and handed to timm, which adapts the first convolution to
  ``in_channels`` and drops a classifier of another size, as for its own ImageNet weights).
- ``size``: ``"full"`` (the named architecture) or ``"tiny"`` (the same timm model class with a few
  channels and one block per stage, `TINY_OVERRIDES`, so tests run in seconds on 64×64 images).
- ``overrides``: further keyword arguments for the timm constructor (e.g. ``drop_path_rate``).
- ``img_size``: the input side for models that fix it at construction (ViT, Swin); others ignore it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from .factory import register_model

SIZES = ("full", "tiny")

STUDY_ARCHS: tuple[str, ...] = (
    "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101",
    "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224",
    "densenet121", "efficientnet_b0", "mobilenetv2_100", "swin_tiny_patch4_window7_224",
)
"""The timm names of the source documents' architectures (seed 002's nine, seed 000's four, a Swin)."""

_FIXED_INPUT = ("vit_", "swin_")
"""Families whose input size is fixed when the model is built (position embeddings, windows)."""

_TINY_CHANNELS = (8, 16, 32, 64)


def _tiny_vgg(arch: str, **kwargs: Any) -> nn.Module:
    """timm's VGG class with the variant's layer pattern at 1/16 of its channels."""
    from timm.models import vgg

    cfg = [v if v == "M" else max(4, int(v) // 16) for v in vgg.cfgs[arch.split("_")[0]]]
    return vgg.VGG(cfg, mlp_ratio=1 / 64, **kwargs)


def _tiny_efficientnet(arch: str, **kwargs: Any) -> nn.Module:
    """timm's own generator of the variant (how it scales B0 … B7) at a quarter width and depth."""
    from timm.models import efficientnet

    generator = efficientnet._gen_mobilenet_v2 if arch.startswith("mobilenetv2") else efficientnet._gen_efficientnet
    return generator(arch, channel_multiplier=0.25, depth_multiplier=0.25, **kwargs)


TINY_OVERRIDES: dict[str, Any] = {
    "resnet": {"layers": (1, 1, 1, 1), "channels": _TINY_CHANNELS, "stem_width": 8},
    "vit_": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    "swin_": {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2), "window_size": 4},
    "densenet": {"growth_rate": 8, "block_config": (1, 1, 1, 1)},
    "vgg": _tiny_vgg,
    "efficientnet": _tiny_efficientnet,
    "mobilenetv2": _tiny_efficientnet,
}
"""Per family (name prefix): the constructor overrides of ``size: tiny``, or a builder for families
whose timm entry point fixes the shape (VGG's layer list, EfficientNet's multipliers)."""


def _family(arch: str) -> str | None:
    return next((prefix for prefix in TINY_OVERRIDES if arch.startswith(prefix)), None)


def _local_state(path: str) -> dict[str, Tensor]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"pretrained weights file {file} not found; use pretrained: none or a path "
                                "to a timm state dict (nothing is downloaded)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{file} does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(state)


def _load_local(net: nn.Module, state: dict[str, Tensor], num_classes: int, in_channels: int) -> None:
    """Load a local state dict through timm's own loader (first-convolution and classifier adaptation),
    with every remote source of the model's pretrained config switched off."""
    cfg = dict(net.pretrained_cfg)
    head = cfg.get("classifier")
    heads = [head] if isinstance(head, str) else list(head or [])
    stored = next((state[f"{h}.weight"].shape[0] for h in heads if f"{h}.weight" in state), num_classes)
    cfg.update(source="", hf_hub_id=None, url=None, file=None, state_dict=state, num_classes=int(stored))
    timm.models.load_pretrained(net, pretrained_cfg=cfg, num_classes=num_classes, in_chans=in_channels)


@register_model("timm")
class TimmClassifier(nn.Module):
    """A timm classifier: ``forward`` gives logits (N, num_classes) of images (N, in_channels, H, W).

    ``net`` is the timm model itself (explanation methods pick their target layer in it).
    """

    def __init__(self, arch: str = "resnet50", num_classes: int = 2, in_channels: int = 1,
                 pretrained: str = "none", size: str = "full", img_size: int = 224,
                 overrides: Mapping[str, Any] | None = None, drop_rate: float = 0.0) -> None:
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
        if not timm.is_model(arch):
            raise ValueError(f"unknown timm architecture {arch!r}; e.g. {list(STUDY_ARCHS)}")
        self.arch, self.size = arch, size
        kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels, "drop_rate": drop_rate}
        if arch.startswith(_FIXED_INPUT):
            kwargs["img_size"] = img_size
        family = _family(arch)
        builder = None
        if size == "tiny":
            if family is None:
                raise ValueError(f"no tiny variant for {arch!r}; tiny families: {sorted(TINY_OVERRIDES)}")
            tiny = TINY_OVERRIDES[family]
            if callable(tiny):
                builder = tiny
            else:
                kwargs.update(tiny)
        kwargs.update(dict(overrides or {}))
        if pretrained != "none":
            if builder is not None:
                raise ValueError(f"pretrained weights cannot be loaded into a tiny {arch!r}")
            self.net = timm.create_model(arch, pretrained=False, **kwargs)
            _load_local(self.net, _local_state(pretrained), num_classes, in_channels)
        elif builder is not None:
            self.net = builder(arch, **kwargs)
        else:
            self.net = timm.create_model(arch, pretrained=False, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, num_classes)."""
        return self.net(x)


def study_model_section(arch: str, size: str = "full", img_size: int = 224) -> dict[str, Any]:
    """The registry model section of a study architecture: a timm name, ``densenet201_stage1`` (our
    stage-1 DenseNet-201, ``name: densenet``) or ``densenet121_multitask`` (seed 000's DenseNet-121 +
    Faster R-CNN, ``name: multitask_frcnn``); tiny: custom DenseNets of one layer per block."""
    if arch == "densenet121_multitask":
        if size == "tiny":
            return {"name": "multitask_frcnn", "arch": "custom", "growth_rate": 8, "block_config": [1, 1, 1, 1],
                    "num_init_features": 16, "hidden": 16, "box_hidden": 32, "anchor_sizes": [8, 16, 32]}
        return {"name": "multitask_frcnn", "arch": "densenet121"}
    if arch == "densenet201_stage1":
        if size == "tiny":
            return {"name": "densenet", "arch": "custom", "growth_rate": 8, "block_config": [1, 1, 1, 1],
                    "num_init_features": 16}
        return {"name": "densenet", "arch": "densenet201"}
    return {"name": "timm", "arch": arch, "size": size, "img_size": img_size}

