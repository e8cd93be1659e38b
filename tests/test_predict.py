"""gazecxr.predict: original-geometry outputs, batching, one DenseNet pass, bad inputs, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gazecxr import CLASS_NAMES
from gazecxr.data.geometry import Letterbox
from gazecxr.data.images import scale_to_unit
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.predict import Prediction, load_predictor, main
from gazecxr.training.registry import Registry
from gazecxr.training.checkpoint_io import load_full_model
from dicom_util import write_dicom


@pytest.fixture(scope="module")
def trained(tiny_model) -> tuple[Path, str]:
    """The session's three stages trained once on the tiny config: (registry root, stage-3 entry id)."""
    return Path(tiny_model["config"]["registry"]["root"]), tiny_model["stage3"]


@pytest.fixture(scope="module")
def predictor(trained):
    root, entry_id = trained
    return load_predictor(root, run=entry_id, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path | np.ndarray]:
    """Radiographs of several aspect ratios: DICOMs (MONOCHROME2/1), a 16-bit PNG, a JPEG, arrays."""
    out = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:90]
    phantom = (2000 + 1500 * np.exp(-((yy - 60) ** 2 + (xx - 45) ** 2) / 800) + rng.normal(0, 50, yy.shape))
    write_dicom(out / "mono2.dcm", phantom.clip(0, 4095))
    write_dicom(out / "mono1.dcm", (4095 - phantom).clip(0, 4095), photometric="MONOCHROME1", slope=1.0, intercept=0.0)
    Image.fromarray((phantom.T * 10).astype(np.uint16)).save(out / "wide.png")
    Image.fromarray((rng.random((70, 50)) * 255).astype(np.uint8)).save(out / "small.jpg")
    return {
        "mono2": out / "mono2.dcm", "mono1": out / "mono1.dcm", "png": out / "wide.png", "jpg": out / "small.jpg",
        "tall": rng.random((300, 200)).astype(np.float32), "wide": rng.integers(0, 4096, (180, 260)),
    }


def _shape(item: Path | np.ndarray) -> tuple[int, int]:
    if isinstance(item, np.ndarray):
        return item.shape
    return {".dcm": (120, 90), ".png": (90, 120), ".jpg": (70, 50)}[item.suffix]


def _check(prediction: Prediction, shape: tuple[int, int], gradcam: bool) -> None:
    assert prediction.saliency.shape == shape and prediction.saliency.dtype == np.float32
    assert prediction.saliency.min() >= 0 and abs(float(prediction.saliency.sum(dtype=np.float64)) - 1) < 1e-4
    assert list(prediction.probabilities) == list(CLASS_NAMES)
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)
    if gradcam:
        assert prediction.gradcam.shape == shape and prediction.gradcam.dtype == np.float32
        assert prediction.gradcam.min() >= 0 and prediction.gradcam.max() <= 1
    else:
        assert prediction.gradcam is None


def test_predictor_attributes(predictor, trained):
    assert predictor.checkpoint == trained[1]
    assert predictor.input_size == (64, 64) and predictor.classes == CLASS_NAMES
    assert trained[1] in repr(predictor) and "cpu" in repr(predictor)
    assert not predictor.model.training and not any(p.requires_grad for p in predictor.model.parameters())


def test_outputs_in_original_geometry_single_and_batched(predictor, images):
    inputs = list(images.values())
    batched = predictor.predict(inputs, gradcam=True, batch_size=3)
    assert isinstance(batched, list) and len(batched) == len(inputs)
    for i, (item, prediction) in enumerate(zip(inputs, batched)):
        _check(prediction, _shape(item), gradcam=True)
        assert prediction.source == (str(item) if isinstance(item, Path) else f"array[{i}]")
        single = predictor.predict(str(item) if isinstance(item, Path) else item, gradcam=True)
        assert isinstance(single, Prediction)
        np.testing.assert_allclose(single.saliency, prediction.saliency, rtol=0, atol=1e-5)
        np.testing.assert_allclose(single.gradcam, prediction.gradcam, rtol=0, atol=1e-5)
        for name in CLASS_NAMES:
            assert abs(single.probabilities[name] - prediction.probabilities[name]) <= 1e-5
    _check(predictor.predict(images["tall"]), (300, 200), gradcam=False)


def test_saliency_matches_an_independent_computation(predictor, trained, images):
    model, _ = load_full_model(Registry(trained[0]), trained[1])
    array = images["wide"]
    pixels = scale_to_unit(array)
    letterbox = Letterbox.fit(pixels.shape, (64, 64))
    with torch.no_grad():
        out = model(torch.from_numpy(letterbox.image_to_canvas(pixels))[None, None])
    expected = letterbox.to_original(saliency_from_logits(out["saliency_logits"])[0, 0].numpy())
    probabilities = torch.softmax(out["class_logits"], 1)[0].numpy()
    prediction = predictor.predict(array)
    np.testing.assert_allclose(prediction.saliency, expected, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose([prediction.probabilities[c] for c in CLASS_NAMES], probabilities, atol=1e-6)


def test_monochrome1_dicom_is_inverted_like_monochrome2(predictor, images):
    mono2, mono1 = predictor.predict([images["mono2"], images["mono1"]])
    np.testing.assert_allclose(mono1.saliency, mono2.saliency, rtol=1e-3, atol=1e-8)


def test_one_densenet_pass_per_image(predictor, images, monkeypatch):
    encoder = predictor.model.encoder
    seen: list[int] = []
    original = encoder.forward_features

    def counting(x):
        seen.append(x.shape[0])
        return original(x)

    monkeypatch.setattr(encoder, "forward_features", counting)
    inputs = list(images.values())
    predictor.predict(inputs, gradcam=True, batch_size=4)
    assert seen == [4, 2]
    seen.clear()
    predictor.predict(images["tall"], gradcam=True)
    assert seen == [1]


@pytest.mark.parametrize("case", ["text_png", "empty_dcm", "bad_dcm", "missing", "txt", "3d", "nan", "empty_array",
                                  "object", "int"])
def test_bad_input_raises_value_error_naming_it(predictor, images, tmp_path, case):
    good = images["tall"]
    files = {"text_png": ("scan.png", b"not an image"), "empty_dcm": ("empty.dcm", b""),
             "bad_dcm": ("scan.dcm", b"\0" * 200 + b"garbage"), "txt": ("notes.txt", b"hello")}
    if case in files:
        name, data = files[case]
        bad = tmp_path / name
        bad.write_bytes(data)
        needle = str(bad)
    elif case == "missing":
        bad, needle = tmp_path / "missing.dcm", str(tmp_path / "missing.dcm")
    else:
        bad = {"3d": np.zeros((4, 5, 3)), "nan": np.full((5, 5), np.nan), "empty_array": np.zeros((0, 5)),
               "object": np.array([["a", "b"]], dtype=object), "int": 42}[case]
        needle = "input[1]" if case == "int" else "array[1]"
    with pytest.raises(ValueError, match=re.escape(needle)):
        predictor.predict([good, bad])
    with pytest.raises(ValueError):
        predictor.predict(bad)


def test_cli_writes_png_and_json_skips_bad_images_and_copies_no_phi(trained, images, tmp_path, capsys):
    root, entry_id = trained
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM? no")
    out = tmp_path / "out"
    code = main([str(images["mono1"]), str(bad), str(images["png"]), "--out", str(out), "--checkpoints", str(root),
                 "--run", entry_id, "--gradcam", "--device", "cpu", "--batch-size", "2"])
    result = capsys.readouterr()
    assert code == 1, result.err
    assert "broken.dcm" in result.err
    assert len(result.out.strip().splitlines()) == 2
    assert sorted(p.name for p in out.iterdir()) == ["mono1.json", "mono1.png", "wide.json", "wide.png"]
    record = json.loads((out / "mono1.json").read_text())
    assert record["checkpoint"] == entry_id and record["source"] == str(images["mono1"])
    assert record["original_size"] == [120, 90] and record["label"] in CLASS_NAMES
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-5
    for path in out.iterdir():
        content = path.read_bytes()
        assert b"FAKE" not in content and b"PHI-12345" not in content
    with Image.open(out / "wide.png") as png:
        assert png.format == "PNG" and png.size[0] > png.size[1]


def test_cli_help_and_setup_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--gradcam" in text and "saliency" in text and "exit code is 1" in text
    assert main(["x.png", "--out", str(tmp_path / "o"), "--checkpoints", str(tmp_path / "none")]) == 2
    assert "no entries" in capsys.readouterr().err
