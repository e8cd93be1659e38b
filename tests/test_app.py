"""The viewer app's callbacks without a browser: HDF5 records with ground truth and metrics, errors, notice."""

from __future__ import annotations

import json
import re

import numpy as np

from gazecxr.inference.app import Viewer, build_parser, overlay
from gazecxr.data.provenance import SYNTHETIC_NOTICE


def test_hdf5_record_metrics_match_the_evaluation_report(tiny_model, tiny_h5, evaluated_report):
    _, run_dir = evaluated_report
    text = (run_dir / "index.html").read_text(encoding="utf-8")
    record = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))["records"][3]
    viewer = Viewer(tiny_model["config"]["registry"]["root"], device="cpu")
    truth, predicted, summary, message = viewer.predict_record(tiny_model["stage3"], str(tiny_h5), "test", 3,
                                                               "saliency", 0.5)
    assert message == "" and truth.shape == predicted.shape == (64, 64, 3) and truth.dtype == np.uint8
    assert not np.array_equal(truth, predicted)
    assert f"**{record['dicom_id']}**" in summary and f"true **{record['label']}**" in summary
    for metric in ("kl", "cc", "hs"):
        shown = float(re.search(rf"{metric.upper()} (-?\d+\.\d+)", summary).group(1))
        assert abs(shown - record["scores"]["full"][metric]) < 1e-3, metric
    probabilities = [float(v) for v in re.findall(r"\| ([01]\.\d{3}) \|", summary)]
    assert sorted(probabilities) == sorted(round(p, 3) for p in record["probs"]["full"])
    _, cam, cam_summary, cam_message = viewer.predict_record(tiny_model["stage3"], str(tiny_h5), "test", 3,
                                                             "Grad-CAM", 0.5)
    assert cam_message == "" and "Grad-CAM against the gaze ground truth" in cam_summary


def test_bad_requests_become_messages(tiny_model, tiny_h5, tmp_path):
    viewer = Viewer(tiny_model["config"]["registry"]["root"], device="cpu")
    *_, message = viewer.predict_record(tiny_model["stage3"], str(tiny_h5), "test", 99, "saliency", 0.5)
    assert message.startswith("⚠") and "out of range" in message and "0…11" in message
    *_, message = viewer.predict_record(tiny_model["stage3"], str(tmp_path / "none.h5"), "test", 0, "saliency", 0.5)
    assert message.startswith("⚠") and "none.h5" in message
    (tmp_path / "scan.dcm").write_bytes(b"\0" * 10)
    gallery, tables, message = viewer.predict_files(tiny_model["stage3"], [str(tmp_path / "scan.dcm")], "saliency", 0.5)
    assert gallery == [] and tables == "" and message.startswith("⚠ scan.dcm: unreadable DICOM")
    *_, message = viewer.predict_files("", [str(tmp_path / "scan.dcm")], "saliency", 0.5)
    assert "no checkpoint chosen" in message


def test_notice_binding_and_overlay():
    assert build_parser().parse_args([]).host == "127.0.0.1"
    image = np.linspace(0, 1, 12).reshape(3, 4)
    heat = np.zeros((3, 4))
    heat[1, 2] = 2.0
    picture = overlay(image, heat, 1.0)
    assert picture.shape == (3, 4, 3) and tuple(picture[1, 2]) == (128, 0, 0)  # jet's top is dark red
    np.testing.assert_array_equal(overlay(image, heat, 0.0)[..., 0], np.rint(image * 255))
    assert overlay(np.zeros((2000, 1000)), None, 0.5).shape == (768, 384, 3)


def test_notice_for_a_model_trained_on_synthetic_data(tiny_model):
    viewer = Viewer(tiny_model["config"]["registry"]["root"], device="cpu")
    assert SYNTHETIC_NOTICE in viewer.notice(tiny_model["stage3"])
