"""The study's classifiers (one timm registry entry) and their CAMs through pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from gazecxr.explain.cams import METHODS, explain, target_layer
from gazecxr.explain.gradcam import gradcam
from gazecxr.models import create_model
from gazecxr.models.densenet import DenseNetEncoder
from gazecxr.models.timm_classifier import (
    STUDY_ARCHS,
    TimmClassifier,
    study_model_section,
)

SIZE = 64


@pytest.mark.parametrize("arch", [*STUDY_ARCHS, "densenet201_stage1"])
def test_every_study_architecture_builds_tiny_and_gives_cams_of_the_image_size(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model({**study_model_section(arch, "tiny", SIZE), "num_classes": 2}).eval()
    images = torch.rand(2, 1, SIZE, SIZE)
    assert model(images).shape == (2, 2)
    maps = explain(model, images, torch.tensor([1, 0]), "gradcam")
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    # per-image min–max: a map with any structure spans [0, 1]
    assert all(m.max() == pytest.approx(1, abs=1e-5) and m.min() == pytest.approx(0, abs=1e-6)
               for m in maps if np.ptp(m) > 0)


def test_every_method_runs_and_gradcam_differs_from_eigencam() -> None:
    torch.manual_seed(1)
    images = torch.rand(2, 1, SIZE, SIZE)
    model = TimmClassifier("vit_small_patch16_224", num_classes=2, size="tiny", img_size=SIZE).eval()
    maps = {m: explain(model, images, torch.tensor([0, 1]), m) for m in METHODS}
    assert all(v.shape == (2, SIZE, SIZE) and 0 <= v.min() and v.max() <= 1 + 1e-6 for v in maps.values())
    assert not np.allclose(maps["gradcam"], maps["eigencam"])


@pytest.mark.parametrize("seed", [1, 2])
def test_library_gradcam_equals_our_densenet_path_on_the_same_layer(seed: int) -> None:
    torch.manual_seed(seed)
    encoder = DenseNetEncoder(arch="custom", growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                              num_classes=3).eval()
    images = torch.rand(4, 1, 80, 80)
    targets = torch.tensor([0, 1, 2, 1])
    ours = gradcam(encoder, images, targets).numpy()
    library = explain(encoder, images, targets, "gradcam")
    np.testing.assert_allclose(ours, library, rtol=0, atol=1e-5)
    assert target_layer(encoder).layer is encoder.net.features.denseblock4


def test_target_layers_follow_the_seeds_choice_per_family() -> None:
    vgg = TimmClassifier("vgg16", size="tiny", img_size=SIZE)
    layer = target_layer(vgg).layer
    convs = [m for m in vgg.net.features if isinstance(m, torch.nn.Conv2d)]
    index = list(vgg.net.features).index(convs[-1])
    assert layer is vgg.net.features[index + 1] and isinstance(layer, torch.nn.ReLU)
    resnet = TimmClassifier("resnet50", size="tiny", img_size=SIZE)
    assert target_layer(resnet).layer is resnet.net.layer4[-1]
    vit = TimmClassifier("vit_small_patch16_224", size="tiny", img_size=SIZE)
    target = target_layer(vit)
    assert target.layer is vit.net.blocks[-1].norm1
    tokens = torch.randn(2, 1 + 8 * 8, 32)
    grid = target.reshape(tokens)
    assert grid.shape == (2, 32, 8, 8) and torch.equal(grid[:, :, 0, 1], tokens[:, 2, :])  # class token dropped
    swin = TimmClassifier("swin_tiny_patch4_window7_224", size="tiny", img_size=SIZE)
    assert target_layer(swin).layer is swin.net.layers[-1].blocks[-1].norm1


def test_local_weights_file_is_loaded_with_timm_adapting_channels_and_head(tmp_path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = TimmClassifier("resnet18", num_classes=2, pretrained=str(path))
    assert torch.equal(model.net.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    # grey input: timm sums the RGB filters of the first convolution
    assert torch.allclose(model.net.conv1.weight[:, 0], source.conv1.weight.sum(1))
    assert model.net.fc.out_features == 2
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TimmClassifier("resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_unknown_architecture_and_size_are_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown timm architecture"):
        TimmClassifier("resnet_imaginary")
    with pytest.raises(ValueError, match="size must be one of"):
        TimmClassifier("resnet18", size="huge")
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain(TimmClassifier("resnet18", size="tiny"), torch.rand(1, 1, SIZE, SIZE), None, "gradcam3")
