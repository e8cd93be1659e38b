"""REFLACX: synthetic layout, converter (readings, discarded readings, off-image fixations), heatmap recipe."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from gazecxr.data.convert import ConvertOptions, convert_source, report_path
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import fixation_gaussian_heatmap
from gazecxr.data.provenance import is_synthetic_h5, is_synthetic_source
from gazecxr.data.sources.reflacx import ReflacxSource, map_labels
from gazecxr.data.sources.reflacx_format import LABELS, LABELS_PHASE_1, METADATA_COLUMNS
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx

OPTIONS = ConvertOptions(height=64, width=64, gaze="reflacx", test_size=4)


@pytest.fixture(scope="session")
def reflacx_raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("reflacx") / "synthetic"
    generate_reflacx(out, n=20, seed=0, size=256, progress=False)
    return out


@pytest.fixture(scope="session")
def reflacx_h5(reflacx_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("reflacx_h5") / "reflacx.h5"
    convert_source(ReflacxSource(reflacx_raw / "REFLACX", reflacx_raw / "MIMIC"), out, OPTIONS, progress=False)
    return out


def _metadata(root):
    return pd.concat([pd.read_csv(root / "REFLACX" / "main_data" / f"metadata_phase_{p}.csv", dtype=str,
                                  keep_default_na=False).assign(phase=p) for p in (1, 2, 3)], ignore_index=True)


def test_synthetic_layout_is_the_real_one(reflacx_raw):
    main = reflacx_raw / "REFLACX" / "main_data"
    for phase, labels in ((1, LABELS_PHASE_1), (2, LABELS), (3, LABELS)):
        raw = (main / f"metadata_phase_{phase}.csv").read_bytes()
        assert raw.count(b"\r\n") == raw.count(b"\n") > 1
        assert raw.split(b"\r\n")[0].decode() == ",".join([*METADATA_COLUMNS, *labels])
        assert list(labels) == sorted(labels)
    meta = _metadata(reflacx_raw)
    assert meta.id.str.len().eq(11).all() and meta.id.str.match(r"^P(1\d\d|2\d\d|300)R\d{6}$").all()
    discarded = meta[meta.eye_tracking_data_discarded == "True"]
    assert len(discarded) == 2
    for reading in discarded.id:
        assert {p.name for p in (main / reading).iterdir()} == {"anomaly_location_ellipses.csv", "chest_bounding_box.csv"}
        assert not (reflacx_raw / "REFLACX" / "gaze_data" / reading).exists()
    kept = meta[meta.eye_tracking_data_discarded == "False"].id.iloc[0]
    gaze = pd.read_csv(reflacx_raw / "REFLACX" / "gaze_data" / kept / "gaze.csv")
    assert gaze.x_position.isna().any() and np.allclose(np.diff(gaze.timestamp_sample), 0.001, atol=1e-6)
    assert meta.groupby("dicom_id").id.count().max() == 5


def test_converter_keeps_readings_discarded_ones_and_on_image_fixations(reflacx_raw, reflacx_h5):
    meta = _metadata(reflacx_raw)
    with h5py.File(reflacx_h5) as f:
        ids = f["dicom_id"].asstr()[:]
        assert sorted(ids) == sorted(meta.dicom_id.unique()) and (f["label"][:] == -1).all()
        assert dict(zip(ids, f["patient_id"].asstr()[:])) == dict(zip(meta.dicom_id, meta.subject_id))
        reading_ids = list(f["reading_id"].asstr()[:])
        assert sorted(reading_ids) == sorted(meta.id)
        record, has_map, maps = f["reading_record"][:], f["reading_has_heatmap"][:], f["reading_heatmap"][:]
        discarded = set(meta.id[meta.eye_tracking_data_discarded == "True"])
        assert {r for r, m in zip(reading_ids, has_map) if not m} == discarded
        for row in range(len(ids)):
            mine = (record == row) & has_map
            np.testing.assert_allclose(f["heatmap"][row], maps[mine].mean(axis=0), atol=1e-6)
        offsets, fix, which = f["fixation_offsets"][:], f["fixations_original"][:], f["fixation_reading"][:]
        sizes = f["orig_size"][:]
        dropped = 0
        for k, reading in enumerate(reading_ids):
            rows = np.flatnonzero(which == k)
            if reading in discarded:
                assert rows.size == 0 and f["reading_findings"][k].max() >= 0
                continue
            table = pd.read_csv(reflacx_raw / "REFLACX" / "main_data" / reading / "fixations.csv")
            h, w = sizes[record[k]]
            on = table.x_position.between(0, w - 1) & table.y_position.between(0, h - 1)
            dropped += int((~on).sum())
            np.testing.assert_array_equal(fix[rows], table.loc[on, ["x_position", "y_position"]].to_numpy())
            assert offsets[record[k]] <= rows.min() and rows.max() < offsets[record[k] + 1]
        assert dropped > 0
        ell_reading, ell_labels = f["ellipse_reading"][:], f["ellipse_labels"][:]
        for k in (reading_ids.index(r) for r in discarded):
            table = pd.read_csv(reflacx_raw / "REFLACX" / "main_data" / reading_ids[k] / "anomaly_location_ellipses.csv")
            assert (ell_reading == k).sum() == len(table)
        assert list(f["findings"].attrs["label_names"]) == list(LABELS) and ell_labels.any(axis=1).all()
        ellipses = f["ellipses"][:]
        assert (ellipses[:, 2] >= ellipses[:, 0]).all() and (ellipses[:, 3] >= ellipses[:, 1]).all()
    report = json.loads(report_path(reflacx_h5).read_text())
    assert report["summary"]["converted"] == len(ids) and report["skipped"] == []


def test_phase_1_labels_are_mapped_onto_the_phase_2_3_set(reflacx_raw, reflacx_h5):
    meta = _metadata(reflacx_raw)
    row = meta[meta.phase == 1].iloc[0]
    expected = np.zeros(len(LABELS))
    for name in LABELS_PHASE_1:
        value = {"True": 5, "False": 0, "": 0}.get(row[name], row[name]) if name != "Other" else 5 * bool(row[name])
        target = {"Emphysema": "High lung volume / emphysema", "Mass": "Lung nodule or mass",
                  "Nodule": "Lung nodule or mass", "Pleural effusion": "Pleural abnormality",
                  "Pleural thickening": "Pleural abnormality", "Fibrosis": "Interstitial lung disease",
                  "Fracture": "Acute fracture", "Wide mediastinum": "Abnormal mediastinal contour"}.get(name, name)
        if target in LABELS:
            expected[LABELS.index(target)] = max(expected[LABELS.index(target)], float(value))
    with h5py.File(reflacx_h5) as f:
        k = list(f["reading_id"].asstr()[:]).index(row.id)
        np.testing.assert_array_equal(f["reading_findings"][k], expected)
    assert map_labels({"Nodule": 2.0, "Mass": 4.0, "Quality issue": 5.0}, 1)[LABELS.index("Lung nodule or mass")] == 4


def test_one_degree_recipe_equals_the_authors_direct_computation():
    rng = np.random.default_rng(1)
    h, w, k = 150, 120, 7
    x, y = rng.integers(-10, 130, k), rng.integers(0, 150, k)
    duration, sx = rng.uniform(0.1, 0.5, k), rng.integers(8, 20, k).astype(float)
    sy = sx + rng.integers(0, 3, k)
    shown = np.tile([0, 0, w, h], (k, 1))
    shown[2] = [10, 20, 90, 100]
    full = np.zeros((h, w))
    for i in range(k):
        cols, rows = np.meshgrid(np.arange(shown[i, 0], shown[i, 2]), np.arange(shown[i, 1], shown[i, 3]))
        pdf = multivariate_normal([y[i], x[i]], [sy[i] ** 2, sx[i] ** 2]).pdf(np.stack([rows, cols], -1))
        full[shown[i, 1]:shown[i, 3], shown[i, 0]:shown[i, 2]] += pdf * duration[i]
    lb = Letterbox.fit((h, w), (64, 64))
    expected = lb.image_to_canvas(full / full.sum())
    got = fixation_gaussian_heatmap(x, y, duration, sx, sy, shown, lb)
    np.testing.assert_allclose(got, expected / expected.sum(), atol=1e-8)
    assert got[lb.region].sum() == pytest.approx(1, abs=1e-6)


def test_egd_recipe_option_reads_raw_gaze_without_blinks(reflacx_raw, tmp_path):
    options = ConvertOptions(height=64, width=64, gaze="raw", sigma=6.0, test_size=4, limit=3)
    out = tmp_path / "raw.h5"
    report = convert_source(ReflacxSource(reflacx_raw / "REFLACX", reflacx_raw / "MIMIC"), out, options,
                            progress=False)
    assert len(report.converted) == 3
    with h5py.File(out) as f:
        assert f.attrs["gaze_source"] == "raw"
        np.testing.assert_allclose(f["heatmap"][:].sum(axis=(1, 2)), 1, atol=1e-5)
        assert report.converted[0]["gaze_samples"] > 1000


def test_dataset_reader_maps_and_inter_reader_summary(reflacx_h5):
    from gazecxr.data.dataset import GazeCXRDataset
    from gazecxr.evaluation.consistency import INTER_READER, NO_MULTI_READER, ReaderConsistency

    ds = GazeCXRDataset(reflacx_h5, "all")
    with h5py.File(reflacx_h5) as f:
        record, has_map, which = f["reading_record"][:], f["reading_has_heatmap"][:], f["fixation_reading"][:]
    multi = [i for i in ds.indices if ds.reader_count(int(i)) >= 2]
    assert len(multi) == 4
    consistency = ReaderConsistency(ds)
    for position, index in enumerate(ds.indices):
        maps, fixations = ds.reader_maps(int(index))
        assert len(maps) == ((record == index) & has_map).sum() == len(fixations)
        assert sum(len(f) for f in fixations) == len(ds.fixations(int(index))) == (np.isin(which, np.flatnonzero(record == index))).sum()
        consistency.add({"position": position, "heatmap": ds[position]["heatmap"][0].numpy(),
                         "uniform": np.full(ds.canvas, 1.0 / (64 * 64))})
    summary = consistency.summary()
    assert summary["images"] == 4 and summary["pairs"] == 18  # 2 phase-2 images lose their discarded reading
    inter, uniform = summary["scores"][INTER_READER], summary["scores"]["uniform"]
    assert inter["cc"]["mean"] > 0.3 and inter["kl"]["mean"] < uniform["kl"]["mean"]
    assert {t["metric"] for t in summary["tests"] if t["method"] == "uniform"} >= {"kl", "cc"}
    empty = ReaderConsistency(GazeCXRDataset(reflacx_h5, "all"))
    assert empty.summary() == {"images": 0, "pairs": 0, "note": NO_MULTI_READER}


def test_cli_converts_and_names_a_bad_folder(reflacx_raw, tmp_path):
    import subprocess
    import sys

    from tests_paths import ROOT

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "data_prep.reflacx", *map(str, args), "--quiet"],
                              capture_output=True, text=True, cwd=ROOT)

    out = tmp_path / "r.h5"
    ok = cli("--reflacx-dir", reflacx_raw / "REFLACX", "--image-dir", reflacx_raw / "MIMIC", "--out", out,
             "--height", 64, "--width", 64, "--limit", 2, "--test-size", 1)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(report_path(out).read_text())["summary"]["converted"] == 2
    assert is_synthetic_source(reflacx_raw / "REFLACX") and is_synthetic_h5(out)
    bad = cli("--reflacx-dir", tmp_path, "--image-dir", reflacx_raw / "MIMIC", "--out", tmp_path / "x.h5")
    assert bad.returncode == 2 and "metadata_phase_1/2/3.csv" in bad.stderr and not (tmp_path / "x.h5").exists()


def test_a_film_of_another_size_than_the_tables_is_skipped(reflacx_raw, tmp_path):
    import shutil

    root = shutil.copytree(reflacx_raw / "REFLACX", tmp_path / "REFLACX")
    path = root / "main_data" / "metadata_phase_3.csv"
    meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    meta.loc[meta.dicom_id == meta.dicom_id.iloc[0], "image_size_x"] = "999"
    meta.to_csv(path, index=False, lineterminator="\r\n")
    options = ConvertOptions(height=64, width=64, test_size=2)
    report = convert_source(ReflacxSource(root, reflacx_raw / "MIMIC"), tmp_path / "o.h5", options, progress=False)
    reasons = {s["dicom_id"]: s["reason"] for s in report.skipped}
    assert list(reasons) == [meta.dicom_id.iloc[0]] and reasons[meta.dicom_id.iloc[0]].startswith("image size differs")
    assert len(report.converted) == meta.dicom_id.nunique() + len(_metadata(reflacx_raw).query("phase != 3").dicom_id.unique()) - 1


def test_record_baselines_on_reflacx_readings(reflacx_h5):
    """chest_box_prior reads each record's readers' chest boxes; lung_prior is left out (no masks), said so;
    the rows then reach the inter-reader summary with intervals and Holm-adjusted tests."""
    import torch

    from gazecxr.data.dataset import GazeCXRDataset
    from gazecxr.evaluation.baselines import baseline_predictors, chest_box_prior_map, chest_boxes
    from gazecxr.evaluation.consistency import ReaderConsistency
    from gazecxr.evaluation.method_outputs import predict_batch

    ds = GazeCXRDataset(reflacx_h5, "all")
    predictors, notes = baseline_predictors(ds, seed=0)
    assert len(predictors) == 2 and any("lung_prior left out" in n for n in notes)
    boxes = chest_boxes(ds)
    with h5py.File(reflacx_h5) as f:
        first = int(ds.indices[0])
        rows = np.flatnonzero(f["reading_record"][:] == first)
        np.testing.assert_allclose(boxes[first], f["reading_chest_box"][rows].mean(axis=0), rtol=1e-6)
    indices = [int(i) for i in ds.indices[:3]]
    regions = torch.zeros(3, *ds.canvas, dtype=torch.bool)
    for mask, index in zip(regions, indices):
        mask[ds.letterbox(index).region] = True
    maps = {}
    for predictor in predictors:
        maps.update(predict_batch(predictor, torch.zeros(3, 1, *ds.canvas), regions, list, indices).saliency)
    chest = maps["chest_box_prior"].numpy()
    np.testing.assert_allclose(chest[0], chest_box_prior_map(boxes[first], ds.canvas, regions[0].numpy()))
    np.testing.assert_allclose(chest.sum(axis=(1, 2)), 1.0)
    other = maps["other_image_gaze"].numpy()
    assert np.allclose(other.sum(axis=(1, 2)), 1.0) and not np.allclose(other[0], ds[0]["heatmap"][0].numpy())
    consistency = ReaderConsistency(ds)
    for position, index in enumerate(ds.indices):
        if ds.reader_count(int(index)) >= 2:
            regions = torch.zeros(1, *ds.canvas, dtype=torch.bool)
            regions[0][ds.letterbox(int(index)).region] = True
            box = predict_batch(predictors[1], torch.zeros(1, 1, *ds.canvas), regions, list, [int(index)])
            consistency.add({"position": position, "chest_box_prior": box.saliency["chest_box_prior"][0].numpy()})
    summary = consistency.summary(bootstrap=200)
    cell = summary["intervals"]["chest_box_prior"]["cc"]
    assert cell["ci"][0] <= cell["value"] <= cell["ci"][1] and "200 resamples" in cell["method"]
    assert all(t["p"] <= t["p_holm"] and "wilcoxon_p_holm" in t for t in summary["tests"])
