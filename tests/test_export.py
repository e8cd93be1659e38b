"""gazecxr.inference.export and the ONNX Runtime backend: parity with PyTorch, metadata, atomic writes, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from bench.common import save_untrained_lineage
from gazecxr import CLASS_NAMES
from gazecxr.config import load_config
from gazecxr.inference.export import Verification, export_onnx, main as export_main
from gazecxr.inference.onnx_backend import pearson_rows
from gazecxr.predict import load_predictor, main as predict_main
from dicom_util import write_dicom
from tests_paths import ROOT


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> tuple[Path, str, str]:
    """Randomly initialised tiny-config stages 1-3: (registry root, stage-3 id, its sha256)."""
    root = tmp_path_factory.mktemp("export") / "checkpoints"
    config = load_config(ROOT / "configs" / "test.yaml", [f"registry.root={root}"])
    entry = save_untrained_lineage(config, stages=3, size=[64, 48])[-1]
    return root, entry.id, entry.sha256


@pytest.fixture(scope="module")
def exported(registry, tmp_path_factory):
    root, entry_id, _ = registry
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(root, entry_id, out), out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list:
    """A MONOCHROME1 DICOM, a 16-bit PNG, a JPEG and two arrays, of different aspect ratios."""
    out = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:120, 0:90]
    phantom = 2000 + 1500 * np.exp(-((yy - 50) ** 2 + (xx - 40) ** 2) / 600) + rng.normal(0, 50, yy.shape)
    write_dicom(out / "mono1.dcm", (4095 - phantom).clip(0, 4095), photometric="MONOCHROME1")
    Image.fromarray((phantom.T * 10).astype(np.uint16)).save(out / "wide.png")
    Image.fromarray((rng.random((70, 50)) * 255).astype(np.uint8)).save(out / "small.jpg")
    return [out / "mono1.dcm", out / "wide.png", out / "small.jpg", rng.random((300, 200)).astype(np.float32),
            rng.integers(0, 4096, (180, 260))]


def test_export_verifies_and_records_metadata(registry, exported):
    _, entry_id, sha256 = registry
    result, path = exported
    check = result.verification
    assert check.passed and check.samples == 3
    assert check.probabilities_max_abs_diff < 1e-5 and check.saliency_min_pearson > 0.99999
    assert result.checkpoint == entry_id and result.input_size == (64, 48) and result.bytes == path.stat().st_size
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # one file, no temporaries
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gazecxr.checkpoint"] == entry_id and meta["gazecxr.checkpoint_sha256"] == sha256
    assert json.loads(meta["gazecxr.input_size"]) == [64, 48]
    assert json.loads(meta["gazecxr.classes"]) == list(CLASS_NAMES)
    assert "letterbox" in meta["gazecxr.preprocessing"] and len(json.loads(meta["gazecxr.lineage"])) == 3
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [1, 64, 48] and isinstance(dims[0], str)  # dynamic batch


def test_failed_verification_keeps_the_previous_file(registry, tmp_path, monkeypatch):
    root, entry_id, _ = registry
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")

    def failing_verify(graph, session, canvases):
        return Verification(len(canvases), 0.5, 0.1, 0.2)

    monkeypatch.setattr("gazecxr.inference.export.verify", failing_verify)
    with pytest.raises(RuntimeError, match="does not match PyTorch"):
        export_onnx(root, entry_id, out)
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_onnxruntime_predictor_equals_pytorch_predictor(registry, exported, inputs):
    root, entry_id, _ = registry
    torch_predictor = load_predictor(root, entry_id, device="cpu")
    ort_predictor = load_predictor(exported[1], entry_id[:12], backend="onnxruntime")
    assert ort_predictor.checkpoint == entry_id and ort_predictor.input_size == (64, 48)
    assert ort_predictor.classes == CLASS_NAMES and "onnxruntime" not in repr(torch_predictor)
    expected = torch_predictor.predict(inputs, batch_size=2)
    got = ort_predictor.predict(inputs, batch_size=3)
    assert len(got) == len(inputs)
    for a, b in zip(expected, got):
        assert a.source == b.source and a.label == b.label and b.gradcam is None
        assert b.saliency.shape == a.saliency.shape and b.saliency.dtype == np.float32
        np.testing.assert_allclose(b.saliency, a.saliency, rtol=1e-4, atol=1e-9)
        assert pearson_rows(a.saliency[None], b.saliency[None])[0] > 0.99999
        for name in CLASS_NAMES:
            assert abs(a.probabilities[name] - b.probabilities[name]) < 1e-5
    single = ort_predictor.predict(inputs[0])
    np.testing.assert_allclose(single.saliency, got[0].saliency, rtol=1e-4, atol=1e-9)


def test_onnxruntime_predictor_errors(registry, exported, inputs, tmp_path, monkeypatch):
    _, entry_id, _ = registry
    predictor = load_predictor(exported[1], backend="onnxruntime")
    with pytest.raises(ValueError, match="Grad-CAM needs the PyTorch backend"):
        predictor.predict(inputs[3], gradcam=True)
    with pytest.raises(ValueError, match="not 'stage3-nope'"):
        load_predictor(exported[1], "stage3-nope", backend="onnxruntime")
    with pytest.raises(FileNotFoundError, match="gazecxr.inference.export"):
        load_predictor(tmp_path / "missing.onnx", backend="onnxruntime")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        load_predictor(junk, backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        load_predictor(exported[1], backend="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"\[onnx\] extra"):
        load_predictor(exported[1], backend="onnxruntime")


def test_export_and_predict_command_lines(registry, exported, inputs, tmp_path, capsys):
    root, entry_id, _ = registry
    out = tmp_path / "cli.onnx"
    assert export_main(["--checkpoint", entry_id, "--checkpoints", str(root), "--format", "onnx", "--out", str(out),
                        "--exporter", "torchscript"]) == 0
    summary = json.loads(capsys.readouterr().out)["export"]
    assert summary["checkpoint"] == entry_id and summary["verification"]["passed"] and out.is_file()
    assert export_main(["--checkpoint", "nope", "--checkpoints", str(root), "--out", str(tmp_path / "x.onnx")]) == 2
    predictions = tmp_path / "predictions"
    code = predict_main([str(inputs[0]), "--out", str(predictions), "--backend", "onnxruntime", "--model", str(out)])
    assert code == 0 and sorted(p.name for p in predictions.iterdir()) == ["mono1.json", "mono1.png"]
    record = json.loads((predictions / "mono1.json").read_text())
    reference = load_predictor(root, entry_id, device="cpu").predict(inputs[0])
    assert record["checkpoint"] == entry_id and record["label"] == reference.label
    capsys.readouterr()
    with pytest.raises(SystemExit):
        predict_main([str(inputs[0]), "--out", str(predictions), "--backend", "onnxruntime", "--model", str(out),
                      "--gradcam"])
    assert "--gradcam needs --backend pytorch" in capsys.readouterr().err


def test_int8_quantisation_is_measured_and_kept_only_when_close(registry, exported, tiny_h5, inputs, capsys):
    root, entry_id, _ = registry
    _, path = exported
    code = export_main(["--checkpoint", entry_id, "--checkpoints", str(root),
                        "--out", str(path.parent / "q.onnx"), "--quantize", "int8", "--calibration", str(tiny_h5),
                        "--calibration-images", "4"])
    int8 = json.loads(capsys.readouterr().out)["int8"]
    assert int8["calibration_images"] == 4 and int8["held_out_images"] == 4
    close = int8["saliency_min_pearson"] >= 0.99 and int8["probabilities_max_abs_diff"] <= 0.02
    assert int8["kept"] == close and code == (0 if close else 1)
    assert Path(int8["path"]).is_file() == close and Path(int8["path"]).name == "q.int8.onnx"
    if close:
        quantized = load_predictor(int8["path"], backend="onnxruntime")
        reference = load_predictor(path, backend="onnxruntime")
        a, b = quantized.predict(inputs[3]), reference.predict(inputs[3])
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in CLASS_NAMES) < 0.05
        assert pearson_rows(a.saliency[None], b.saliency[None])[0] > 0.98
