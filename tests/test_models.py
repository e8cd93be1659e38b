"""Shapes, parameter counts, weight loading, freezing and trainability of the networks."""

from __future__ import annotations

import copy
from urllib.error import URLError
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import DenseNet

from gazecxr.losses import SaliencyKLLoss
from gazecxr.models import (
    DenseNetEncoder,
    FusionClassifier,
    GazeCXRModel,
    ResSEUNet,
    StandardUNet,
    available_models,
    create_model,
    freeze,
    saliency_from_logits,
)

TINY_DENSENET = {"arch": "custom", "growth_rate": 4, "block_config": (1, 1, 1, 1), "num_init_features": 8}
TINY_SMP = {"encoder_name": "tu-test_resnet", "decoder_channels": (32, 16, 16, 8, 8)}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Independent parameter-count formulas (all convs before a BN are bias-free; BN has 2 parameters per channel).
def conv_bn(i: int, o: int) -> int:
    return 9 * i * o + 2 * o


def residual_block(i: int, o: int) -> int:
    return conv_bn(i, o) + conv_bn(o, o) + 9 * i * o


def se_block(c: int) -> int:
    hidden = max(1, c // 16)
    return 2 * c * hidden + hidden + c


def up_block(i: int, skip: int, o: int) -> int:
    return conv_bn(i, o) + conv_bn(skip + o, o) + conv_bn(o, o)


def resse_unet_count(f: list[int], aux: int) -> int:
    encoder = sum(residual_block(i, o) + se_block(o) for i, o in zip([1, *f[:-1]], f))
    if aux:
        steps = [(aux, f[4], f[3]), (f[3], f[3], f[2]), (f[2], f[2], f[1]), (f[1], f[1], f[0]), (f[0], f[0], f[0])]
    else:
        steps = [(f[4], f[3], f[3]), (f[3], f[2], f[2]), (f[2], f[1], f[1]), (f[1], f[0], f[0])]
    head = conv_bn(f[0], f[0]) + f[0] + 1
    return encoder + sum(up_block(*step) for step in steps) + head


def densenet_count(growth: int, blocks: tuple[int, ...], init: int, classes: int, bn_size: int = 4) -> int:
    total, channels = 3 * init * 49 + 2 * init, init
    for index, layers in enumerate(blocks):
        for _ in range(layers):
            total += 2 * channels + channels * bn_size * growth + 2 * bn_size * growth + 9 * bn_size * growth * growth
            channels += growth
        if index < len(blocks) - 1:
            total += 2 * channels + channels * (channels // 2)
            channels //= 2
    return total + 2 * channels + channels * classes + classes


@pytest.fixture(scope="module")
def densenet201() -> DenseNetEncoder:
    return DenseNetEncoder(arch="densenet201")


def test_densenet201_channels_and_parameter_count(densenet201):
    torchvision_1000_classes = 20_013_928
    head_1000, head_3 = 1920 * 1000 + 1000, 1920 * 3 + 3
    assert densenet201.feature_channels == 1920
    assert n_params(densenet201) == torchvision_1000_classes - head_1000 + head_3 == 18_098_691
    assert n_params(densenet201) == densenet_count(32, (6, 12, 48, 32), 64, classes=3)
    assert not densenet201.imagenet_norm
    with torch.no_grad():
        out = densenet201.forward_features(torch.rand(1, 1, 64, 64))
    assert out["tap"].shape == (1, 1920, 2, 2)
    assert out["embedding"].shape == (1, 1920)
    assert out["logits"].shape == (1, 3)


def test_transition3_tap_has_896_channels_at_stride_32(densenet201):
    encoder = copy.deepcopy(densenet201)
    encoder.tap = "transition3"
    assert encoder.feature_channels == 896
    with torch.no_grad():
        assert encoder.forward_features(torch.rand(1, 1, 64, 64))["tap"].shape == (1, 896, 2, 2)


def test_densenet121_channels():
    with torch.device("meta"):
        assert DenseNetEncoder(arch="densenet121").feature_channels == 1024
        assert DenseNetEncoder(arch="densenet121", tap="transition3").feature_channels == 512


def test_custom_densenet_shapes_and_one_pass_consistency():
    torch.manual_seed(0)
    encoder = DenseNetEncoder(**TINY_DENSENET).eval()
    x = torch.rand(2, 1, 64, 32)
    out = encoder.forward_features(x)
    assert encoder.feature_channels == 8 and out["tap"].shape == (2, 8, 2, 1)
    assert torch.equal(out["logits"], encoder(x))
    assert torch.equal(out["embedding"], encoder.embed(x))
    assert torch.allclose(encoder(x), encoder(x.repeat(1, 3, 1, 1)))
    assert DenseNetEncoder(**TINY_DENSENET, tap="transition3").feature_channels == 4
    assert n_params(encoder) == densenet_count(4, (1, 1, 1, 1), 8, classes=3) == 4301


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "densenet201", "growth_rate": 8}, "only apply to arch 'custom'"),
        ({"arch": "resnet50"}, "valid archs"),
        ({**TINY_DENSENET, "tap": "denseblock3"}, "valid taps"),
        ({**TINY_DENSENET, "pretrained": "imagenet"}, "no ImageNet weights"),
        ({**TINY_DENSENET, "block_config": (1, 1, 1)}, "4 dense blocks"),
    ],
)
def test_densenet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenseNetEncoder(**kwargs)


def test_imagenet_offline_error_names_alternatives():
    offline = mock.patch("torchvision.models._api.load_state_dict_from_url", side_effect=URLError("no network"))
    with offline, torch.device("meta"), pytest.raises(RuntimeError) as info:
        DenseNetEncoder(arch="densenet121", pretrained="imagenet")
    message = str(info.value)
    assert "pretrained: none" in message
    assert "pretrained: /path/to/densenet121-a639ec97.pth" in message
    assert "checkpoints" in message and "TORCH_HOME" in message


def _tiny_torchvision_densenet(num_classes: int) -> DenseNet:
    torch.manual_seed(1)
    net = DenseNet(growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, num_classes=num_classes)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
    return net


@pytest.mark.parametrize("legacy_keys", [False, True])
def test_weights_file_round_trip(tmp_path, legacy_keys):
    source = _tiny_torchvision_densenet(num_classes=1000)
    state = source.state_dict()
    if legacy_keys:
        state = {
            k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
            for k, v in state.items()
            if not k.endswith("num_batches_tracked")
        }
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    encoder = DenseNetEncoder(**TINY_DENSENET, pretrained=str(path))
    for key, value in source.features.state_dict().items():
        assert torch.equal(encoder.net.features.state_dict()[key], value), key
    assert encoder.net.classifier.out_features == 3
    assert encoder.imagenet_norm


def test_weights_file_with_matching_head_loads_it(tmp_path):
    source = _tiny_torchvision_densenet(num_classes=3)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    encoder = DenseNetEncoder(**TINY_DENSENET, pretrained=str(path), imagenet_norm=False).eval()
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(encoder(x), source.eval()(x.repeat(1, 3, 1, 1)))


def test_weights_file_of_another_network_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(DenseNet(growth_rate=6, block_config=(1, 1, 1, 1), num_init_features=8).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit"):
        DenseNetEncoder(**TINY_DENSENET, pretrained=str(path))
    with pytest.raises(FileNotFoundError):
        DenseNetEncoder(**TINY_DENSENET, pretrained=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    ("width", "aux", "expected"),
    [(0.125, 0, 642_513), (0.125, 1920, 1_726_017), (0.25, 8, None), (1.0, 0, 41_000_189), (1.0, 1920, 48_410_237)],
)
def test_resse_unet_parameter_counts(width, aux, expected):
    with torch.device("meta"):
        unet = ResSEUNet(width=width, aux_channels=aux)
    filters = [round(64 * width * 2**i) for i in range(5)]
    assert unet.filters == filters
    assert n_params(unet) == resse_unet_count(filters, aux)
    if expected is not None:
        assert n_params(unet) == expected


def test_se_hidden_width_is_at_least_one():
    with torch.device("meta"):
        unet = ResSEUNet(width=1 / 64)
    assert unet.filters == [1, 2, 4, 8, 16]
    assert n_params(unet) == resse_unet_count(unet.filters, 0)


@pytest.mark.parametrize("aux_channels", [0, 8])
def test_resse_unet_shapes(aux_channels):
    unet = ResSEUNet(width=0.125, aux_channels=aux_channels)
    aux = torch.rand(2, 8, 2, 1) if aux_channels else None
    out = unet(torch.rand(2, 1, 64, 48), aux=aux)
    assert out["logits"].shape == (2, 1, 64, 48)
    assert out["decoder"].shape == (2, unet.decoder_channels, 64, 48) == (2, 8, 64, 48)


def test_resse_unet_input_errors():
    unet = ResSEUNet(width=0.125, aux_channels=8)
    with pytest.raises(ValueError, match="divisible by 16"):
        unet(torch.rand(1, 1, 40, 32), aux=torch.rand(1, 8, 1, 1))
    with pytest.raises(ValueError, match="aux_channels=8"):
        unet(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="aux_channels=0"):
        ResSEUNet(width=0.125)(torch.rand(1, 1, 32, 32), aux=torch.rand(1, 8, 1, 1))


def test_saliency_from_logits_is_a_distribution_per_image():
    logits = torch.randn(3, 1, 8, 4)
    saliency = saliency_from_logits(logits)
    assert saliency.shape == logits.shape
    assert torch.allclose(saliency.sum(dim=(1, 2, 3)), torch.ones(3))
    assert torch.equal(saliency[0].argmax(), logits[0].argmax())


def test_fusion_classifier_counts_and_shapes():
    dense, decoder = torch.rand(2, 1920, 20, 16), torch.rand(2, 64, 640, 512)
    linear = FusionClassifier()
    assert n_params(linear) == (1984 * 64 + 64) + (64 * 3 + 3) == 127_235
    assert linear(dense, decoder).shape == (2, 3)
    conv = FusionClassifier(dense_channels=8, decoder_channels=4, head="conv", hidden=16)
    assert n_params(conv) == conv_bn(12, 16) + conv_bn(16, 16) + 16 * 3 + 3
    assert conv(torch.rand(2, 8, 2, 2), torch.rand(2, 4, 64, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="valid heads"):
        FusionClassifier(head="mlp")


def test_standard_unet_shapes_and_counts():
    with torch.device("meta"):
        assert n_params(StandardUNet()) == 24_430_097
    tiny = StandardUNet(**TINY_SMP)
    assert n_params(tiny) == 493_177
    out = tiny(torch.rand(2, 1, 64, 32))
    assert out["logits"].shape == (2, 1, 64, 32)
    assert out["decoder"].shape == (2, 8, 64, 32)


def _tiny_model(classifier: bool = True) -> GazeCXRModel:
    torch.manual_seed(0)
    fusion = FusionClassifier(dense_channels=8, decoder_channels=8) if classifier else None
    return GazeCXRModel(
        freeze(DenseNetEncoder(**TINY_DENSENET)), ResSEUNet(width=0.125, aux_channels=8), fusion
    )


def test_cooperative_forward_shapes():
    out = _tiny_model()(torch.rand(2, 1, 64, 32))
    assert out["saliency_logits"].shape == (2, 1, 64, 32)
    assert out["class_logits"].shape == out["encoder_logits"].shape == (2, 3)
    assert out["dense_features"].shape == (2, 8, 2, 1)
    without_classifier = _tiny_model(classifier=False)(torch.rand(2, 1, 64, 32))
    assert torch.equal(without_classifier["class_logits"], without_classifier["encoder_logits"])


def test_paper_configuration_parameter_count():
    with torch.device("meta"):
        model = GazeCXRModel(DenseNetEncoder(), ResSEUNet(aux_channels=1920), FusionClassifier())
    assert [n_params(model.encoder), n_params(model.unet), n_params(model.classifier)] == [
        18_098_691,
        resse_unet_count([64, 128, 256, 512, 1024], 1920),
        127_235,
    ]
    assert n_params(model) == 66_636_163


def test_cooperative_channel_mismatch_is_rejected():
    encoder = DenseNetEncoder(**TINY_DENSENET)
    with pytest.raises(ValueError, match="aux_channels=16"):
        GazeCXRModel(encoder, ResSEUNet(width=0.125, aux_channels=16))
    with pytest.raises(ValueError, match="classifier expects"):
        GazeCXRModel(encoder, ResSEUNet(width=0.125, aux_channels=8), FusionClassifier(dense_channels=8))


def test_frozen_encoder_is_untouched_by_unet_training():
    model = _tiny_model(classifier=False)
    model.train()
    assert not model.encoder.training and model.unet.training
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.requires_grad for p in model.unet.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    x, target = torch.rand(2, 1, 32, 32), torch.rand(2, 32, 32)
    for _ in range(2):
        optimizer.zero_grad()
        SaliencyKLLoss()(model(x)["saliency_logits"], target).backward()
        optimizer.step()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key


def _fit(loss_fn, parameters, steps: int, lr: float = 1e-2) -> tuple[float, float]:
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def _gaussian_maps(n: int, size: int) -> torch.Tensor:
    grid = torch.arange(size, dtype=torch.float32)
    centres = torch.linspace(size * 0.3, size * 0.7, n)
    rows = torch.exp(-((grid[None, :] - centres[:, None]) ** 2) / 18)
    cols = torch.exp(-((grid[None, :] - centres.flip(0)[:, None]) ** 2) / 18)
    maps = rows[:, :, None] * cols[:, None, :]
    return maps / maps.sum(dim=(1, 2), keepdim=True)


def test_densenet_classifier_overfits_tiny_batch():
    torch.manual_seed(0)
    encoder = DenseNetEncoder(**TINY_DENSENET)
    x, y = torch.rand(6, 1, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    first, last = _fit(lambda: F.cross_entropy(encoder(x), y), encoder.parameters(), steps=40, lr=3e-2)
    assert last <= 0.1 * first


@pytest.mark.parametrize("aux_channels", [0, 8])
def test_resse_unet_overfits_tiny_batch(aux_channels):
    torch.manual_seed(0)
    unet = ResSEUNet(width=0.125, aux_channels=aux_channels)
    x, target = torch.rand(2, 1, 32, 32), _gaussian_maps(2, 32)
    aux = torch.rand(2, 8, 1, 1) if aux_channels else None
    first, last = _fit(lambda: SaliencyKLLoss()(unet(x, aux=aux)["logits"], target), unet.parameters(), steps=40)
    assert last <= 0.1 * first


def test_standard_unet_overfits_tiny_batch():
    torch.manual_seed(0)
    unet = StandardUNet(**TINY_SMP)
    x, target = torch.rand(2, 1, 32, 32), _gaussian_maps(2, 32)
    first, last = _fit(lambda: SaliencyKLLoss()(unet(x)["logits"], target), unet.parameters(), steps=40)
    assert last <= 0.1 * first


@pytest.mark.parametrize("head", ["linear", "conv"])
def test_fusion_classifier_overfits_tiny_batch(head):
    torch.manual_seed(0)
    fusion = FusionClassifier(dense_channels=8, decoder_channels=4, head=head, hidden=16, dropout=0.0)
    dense, decoder, y = torch.randn(6, 8, 2, 2), torch.randn(6, 4, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    first, last = _fit(lambda: F.cross_entropy(fusion(dense, decoder), y), fusion.parameters(), steps=60)
    assert last <= 0.1 * first


def test_factory_builds_registered_models():
    assert available_models() == ["bench_cnn", "bench_fusion_head", "bench_saliency_decoder", "bench_saliency_pool_head",
                                  "densenet", "eg_vit", "fusion", "gaze_mtl", "gazegnn", "gdvig", "irnetv2", "mtunet",
                                  "multitask_frcnn", "resse_unet", "standard_unet", "timm"]
    cnn = create_model({"name": "bench_cnn", "widths": [4, 8]})
    assert cnn(torch.zeros(2, 1, 32, 32)).shape == (2, 3) and cnn.out_channels == 8
    unet = create_model({"name": "resse_unet", "width": 0.125, "aux_channels": 8})
    assert isinstance(unet, ResSEUNet) and unet.aux_channels == 8
    encoder = create_model({"name": "densenet", **TINY_DENSENET, "block_config": [1, 1, 1, 1]})
    assert isinstance(encoder, DenseNetEncoder) and encoder.feature_channels == 8
    assert isinstance(create_model({"name": "fusion", "head": "conv"}), FusionClassifier)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"name": "unet3plus"}, r"valid names: \[.bench_cnn., .bench_fusion_head., .bench_saliency_decoder., "
                                r".bench_saliency_pool_head., .densenet., .eg_vit., .fusion., .gaze_mtl., .gazegnn., "
                                r".gdvig., .irnetv2., .mtunet., .multitask_frcnn., .resse_unet."),
        ({"name": "resse_unet", "widht": 0.5}, r"unknown key\(s\) \['widht'\].*'width'"),
        ({"width": 0.5}, "needs a 'name' key"),
    ],
)
def test_factory_errors(section, message):
    with pytest.raises(ValueError, match=message):
        create_model(section)
