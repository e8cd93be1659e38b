"""The report page written by stages.evaluate: per-image data from the evaluation, thumbnails, notice."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from gazecxr import CLASS_NAMES
from gazecxr.data.provenance import SYNTHETIC_NOTICE


def page_data(index):
    text = index.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return text, json.loads(found.group(1))


def test_page_holds_every_image_with_the_evaluation_numbers(evaluated_report):
    metrics, run_dir = evaluated_report
    text, data = page_data(run_dir / "index.html")
    records = data["records"]
    assert [r["position"] for r in records] == list(range(metrics["n_test"])) == list(range(12))
    assert data["main"] == "full" and set(data["classification"]) == set(metrics["classification"])
    for method, by_metric in metrics["saliency"].items():
        for metric, summary in by_metric.items():
            values = [r["scores"][method][metric] for r in records]
            if summary["mean"] is not None and None not in values:
                assert np.mean(values) == pytest.approx(summary["mean"], abs=1e-3), (method, metric)
    for method, result in metrics["classification"].items():
        correct = [CLASS_NAMES[int(np.argmax(r["probs"][method]))] == r["label"] for r in records]
        assert np.mean(correct) == pytest.approx(result["accuracy"])
    assert {r["label"] for r in records} <= set(CLASS_NAMES) and len({r["dicom_id"] for r in records}) == 12


def test_thumbnails_are_sprites_of_every_layer_beside_the_page(evaluated_report):
    metrics, run_dir = evaluated_report
    _, data = page_data(run_dir / "index.html")
    for record in data["records"]:
        assert record["layers"][0] == "heatmap" and set(metrics["saliency"]) == set(record["layers"][1:])
        w, h = record["size"]
        assert (w, h) == (64, 64)
        with Image.open(run_dir / record["sprite"]) as sprite:
            assert sprite.size == ((1 + len(record["layers"])) * w, h) and sprite.format == "JPEG"
            pixels = np.asarray(sprite)
        radiograph, heat = pixels[:, :w - 4], pixels[:, w:]
        assert np.ptp(radiograph[..., 0] - radiograph[..., 2].astype(int)) < 30  # grey radiograph
        assert heat.std(axis=-1).mean() > 10  # coloured maps


def test_page_is_self_contained_and_says_the_data_are_synthetic(evaluated_report):
    metrics, run_dir = evaluated_report
    text, _ = page_data(run_dir / "index.html")
    assert metrics["synthetic"] is True
    assert text.index(SYNTHETIC_NOTICE) < text.index("<h1>")
    assert SYNTHETIC_NOTICE in (run_dir / "tables.md").read_text(encoding="utf-8").split("\n## ")[0]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    for name in re.findall(r'<img src="([^"]+)"', text):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".tmp-*"))
