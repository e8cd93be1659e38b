"""Class activation maps of any study classifier through pytorch-grad-cam (PyPI ``grad-cam``).

``explain(model, images, targets, method)`` gives one map per image, (N, H, W) float32 in [0, 1]
(min–max per image, the library's ``scale_cam_image``), at the input's size. ``METHODS`` names the
library classes used: GradCAM (the source study's method), GradCAM++, HiResCAM, ScoreCAM, EigenCAM
and LayerCAM. ``target_layer(model)`` picks the layer of each family as the source documents do:

- VGG: the last convolution (its ReLU output, before the final max-pool);
- ResNet: the last residual block (``layer4[-1]``, the final bottleneck);
- ViT: the last block's first LayerNorm (``blocks[-1].norm1``), tokens reshaped to the patch grid
  without the class token (the library's ViT recipe);
- Swin: ``layers[-1].blocks[-1].norm1`` (timm keeps Swin activations channels-last; they are permuted);
- DenseNet (timm): ``features.norm5``; EfficientNet / MobileNet-V2: ``conv_head``;
- our stage-1 DenseNet (``gazecxr.models.densenet.DenseNetEncoder``): its feature tap, the same layer
  ``gazecxr.explain.gradcam`` explains inside ``gazecxr.predict``;
- seed 000's multi-task model (its ``as_classifier()`` view): the shared DenseNet feature map.

The library needs OpenCV (``pip install gazecxr[explain]``); it is imported when a map is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gazecxr.config.errors import MissingExtraError
from gazecxr.models.densenet import DenseNetEncoder
from gazecxr.models.multitask_detector import ClassificationView
from gazecxr.models.timm_classifier import TimmClassifier

__all__ = ["METHODS", "CamTarget", "explain", "target_layer"]

METHODS: dict[str, str] = {
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM",
    "scorecam": "ScoreCAM", "eigencam": "EigenCAM", "layercam": "LayerCAM",
}
"""Study method name → pytorch-grad-cam class name."""

SCORECAM_BATCH = 32
"""Masked images per forward pass of ScoreCAM (one pass per channel of the target layer)."""


@dataclass(frozen=True)
class CamTarget:
    """The layer a CAM is taken at and the reshape of its output to (N, C, h, w) (None: already so)."""

    layer: nn.Module
    reshape: Callable[[Tensor], Tensor] | None = None
    description: str = ""


def _vit_reshape(model: nn.Module) -> Callable[[Tensor], Tensor]:
    grid = tuple(model.patch_embed.grid_size)
    prefix = int(getattr(model, "num_prefix_tokens", 1))

    def reshape(tokens: Tensor) -> Tensor:
        n, _, c = tokens.shape
        return tokens[:, prefix:, :].reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)

    return reshape


def _channels_last_to_first(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


def target_layer(model: nn.Module) -> CamTarget:
    """The CAM target layer of a study classifier (see the module docstring), by model family."""
    if isinstance(model, DenseNetEncoder):
        return CamTarget(getattr(model.net.features, model.tap), None, f"DenseNet tap {model.tap}")
    if isinstance(model, ClassificationView):
        return CamTarget(model.detector.backbone.net.features.norm5, None,
                         "backbone features.norm5 (the map both heads share)")
    net = model.net if isinstance(model, TimmClassifier) else model
    kind = type(net).__name__
    if kind == "VGG":
        convs = [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
        last = convs[-1]
        after = net.features[last + 1] if last + 1 < len(net.features) else None
        index = last + 1 if isinstance(after, nn.ReLU) else last
        return CamTarget(net.features[index], None, f"features[{index}] (last convolution, rectified)")
    if kind == "ResNet":
        return CamTarget(net.layer4[-1], None, "layer4[-1] (last residual block)")
    if kind in ("VisionTransformer", "Eva", "DeiT"):
        return CamTarget(net.blocks[-1].norm1, _vit_reshape(net), "blocks[-1].norm1 (patch tokens)")
    if kind == "SwinTransformer":
        return CamTarget(net.layers[-1].blocks[-1].norm1, _channels_last_to_first, "layers[-1].blocks[-1].norm1")
    if kind == "DenseNet":
        return CamTarget(net.features.norm5, None, "features.norm5 (last dense block, normalised)")
    if kind in ("EfficientNet", "MobileNetV3"):
        return CamTarget(net.conv_head, None, "conv_head (last convolution)")
    raise ValueError(f"no CAM target layer known for a {kind}; supported: VGG, ResNet, VisionTransformer, "
                     "SwinTransformer, DenseNet, EfficientNet, MobileNet, gazecxr DenseNetEncoder")


def _cam_class(method: str) -> type:
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; valid: {sorted(METHODS)}")
    try:
        import pytorch_grad_cam
    except ImportError as err:
        raise MissingExtraError("the explanation methods need pytorch-grad-cam: pip install 'gazecxr[explain]' "
                                "(or pip install grad-cam)") from err
    return getattr(pytorch_grad_cam, METHODS[method])


def explain(model: nn.Module, images: Tensor, targets: Tensor | None, method: str = "gradcam",
            target: CamTarget | None = None) -> np.ndarray:
    """Maps (N, H, W) float32 in [0, 1] of ``method`` for logit ``targets`` (N,) of ``images``
    (N, C, H, W, what ``model`` takes); ``targets`` None explains each image's highest logit.

    The model is put in eval mode (the library does so); its parameters' ``requires_grad`` is left
    as it is, gradients reach the target layer's activations either way.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    target = target or target_layer(model)
    cls = _cam_class(method)
    wanted = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
    with torch.enable_grad(), cls(model=model, target_layers=[target.layer], reshape_transform=target.reshape) as cam:
        if method == "scorecam":
            cam.batch_size = SCORECAM_BATCH
        maps = cam(input_tensor=images, targets=wanted)
    return np.asarray(maps, dtype=np.float32)
