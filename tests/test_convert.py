import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gazecxr import CLASS_NAMES
from gazecxr.data.convert import ConvertOptions, report_path
from gazecxr.data.sources.egd_cxr import convert_egd_cxr
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import gaze_heatmap
from gazecxr.data.images import read_radiograph
from gazecxr.data.synthetic.writer import FAKE_BIRTH_DATE, FAKE_PHI_MARKER
from tests_paths import ROOT

SIGMA = 75.5 * 256 / 3000
OPTIONS = ConvertOptions(height=64, width=64, sigma=SIGMA, test_size=12)


@pytest.fixture
def raw(synthetic_raw, tmp_path):
    """A private copy of the synthetic raw data that a test may damage."""
    return shutil.copytree(synthetic_raw, tmp_path / "raw")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "data_prep.egd_cxr", *map(str, args), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT)


def test_output_follows_the_hdf5_contract(tiny_h5, synthetic_raw):
    sheet = pd.read_csv(synthetic_raw / "EGD" / "master_sheet.csv", dtype=str)
    with h5py.File(tiny_h5) as f:
        n = len(f["label"])
        assert n == len(sheet)
        assert f["image"].shape == f["heatmap"].shape == (n, 64, 64)
        assert f["image"].dtype == np.float32 and f["heatmap"].dtype == np.float32
        img, heat = f["image"][:], f["heatmap"][:]
        assert img.min() >= 0 and img.max() <= 1
        np.testing.assert_allclose(heat.sum(axis=(1, 2)), 1, atol=1e-5)
        assert heat.min() >= 0
        assert list(f["label"].attrs["class_names"]) == list(CLASS_NAMES)
        assert set(f["split"].asstr()[:]) == {"train", "val", "test"}
        assert f["orig_size"].shape == (n, 2) and f["pad"].shape == (n, 2) and f["scale"].shape == (n,)
        assert f["lung_mask"].dtype == bool and f["heart_mask"].shape == (n, 64, 64)
        assert f.attrs["sigma"] == pytest.approx(SIGMA) and f.attrs["gaze_source"] == "raw"
        split = dict(zip(f["dicom_id"].asstr()[:], f["split"].asstr()[:]))
        labels = dict(zip(f["dicom_id"].asstr()[:], f["label"][:]))
    for patient, rows in sheet.groupby("patient_id"):
        assert len({split[d] for d in rows["dicom_id"]}) == 1, patient
    for row in sheet.itertuples():
        assert labels[row.dicom_id] == [row.Normal, row.CHF, row.pneumonia].index("1")


def test_heatmap_is_built_from_on_image_samples_only(tiny_h5, synthetic_raw):
    gaze = pd.read_csv(synthetic_raw / "EGD" / "eye_gaze.csv")
    sheet = pd.read_csv(synthetic_raw / "EGD" / "master_sheet.csv", dtype=str)
    with h5py.File(tiny_h5) as f:
        row = 3
        dicom_id = f["dicom_id"].asstr()[row]
        stored, orig = f["heatmap"][row], tuple(f["orig_size"][row])
        image = f["image"][row]
    path = sheet.loc[sheet.dicom_id == dicom_id, "path"].item()
    pixels = read_radiograph(synthetic_raw / "MIMIC" / path)
    assert pixels.shape == orig
    pts = gaze[gaze.DICOM_ID == dicom_id]
    x, y = pts.X_ORIGINAL.to_numpy(), pts.Y_ORIGINAL.to_numpy()
    off = (x < 0) | (y < 0) | (x >= orig[1]) | (y >= orig[0])
    lb = Letterbox.fit(orig, (64, 64))
    np.testing.assert_allclose(stored, gaze_heatmap(x[~off], y[~off], lb, SIGMA), atol=1e-7)
    np.testing.assert_allclose(image, lb.image_to_canvas(pixels), atol=1e-6)
    assert off.any() or (gaze.X_ORIGINAL < 0).any()


def test_report_lists_every_record(tiny_h5):
    report = json.loads(report_path(tiny_h5).read_text())
    assert report["summary"]["converted"] == len(report["converted"]) == 60
    assert report["skipped"] == []
    first = report["converted"][0]
    assert {"dicom_id", "patient_id", "class", "split", "gaze_samples", "gaze_samples_off_image"} <= set(first)


def test_bad_records_are_skipped_with_reasons(raw, tmp_path):
    egd, mimic = raw / "EGD", raw / "MIMIC"
    sheet = pd.read_csv(egd / "master_sheet.csv", dtype=str, keep_default_na=False)
    ids = sheet.dicom_id.tolist()
    (mimic / sheet.path[0]).unlink()                               # image missing
    (mimic / sheet.path[1]).write_bytes(b"garbage" * 50)            # unreadable
    dcm = mimic / sheet.path[2]                                     # MIMIC-CXR-JPG fallback
    Image.fromarray((read_radiograph(dcm) * 255).astype(np.uint8)).save(dcm.with_suffix(".jpg"))
    dcm.unlink()
    sheet.loc[3, ["Normal", "CHF", "pneumonia"]] = ["1", "1", "0"]  # two labels
    sheet.to_csv(egd / "master_sheet.csv", index=False)
    gaze = pd.read_csv(egd / "eye_gaze.csv", dtype=str, keep_default_na=False)
    gaze = gaze[gaze.DICOM_ID != ids[4]]                            # no gaze rows
    on5 = gaze.DICOM_ID == ids[5]                                   # every sample off the film
    gaze.loc[on5, "X_ORIGINAL"] = "-40"
    gaze.to_csv(egd / "eye_gaze.csv", index=False)

    out = tmp_path / "out.h5"
    result = _cli("--egd-dir", egd, "--image-dir", mimic, "--out", out, "--height", 64, "--width", 64,
                  "--test-size", 12, "--workers", 2)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path(out).read_text())
    reasons = {s["dicom_id"]: s["reason"] for s in report["skipped"]}
    assert reasons[ids[0]].startswith("image missing")
    assert reasons[ids[1]].startswith("unreadable image")
    assert reasons[ids[3]].startswith("label not exactly one")
    assert reasons[ids[4]].startswith("no gaze samples") and reasons[ids[5]].startswith("no gaze samples")
    assert set(reasons) == {ids[i] for i in (0, 1, 3, 4, 5)}
    assert ids[2] in {r["dicom_id"] for r in report["converted"]}
    assert next(r for r in report["converted"] if r["dicom_id"] == ids[2])["image_file"].endswith(".jpg")
    with h5py.File(out) as f:
        assert len(f["label"]) == 55
    before = out.read_bytes()
    strict = _cli("--egd-dir", egd, "--image-dir", mimic, "--out", out, "--height", 64, "--width", 64, "--strict")
    assert strict.returncode == 1 and "5 record(s) skipped" in strict.stderr
    assert out.read_bytes() == before  # earlier output untouched
    assert not list(tmp_path.glob(".out.h5.tmp*"))


def test_missing_column_names_file_and_column(raw, tmp_path):
    gaze_csv = raw / "EGD" / "eye_gaze.csv"
    gaze = pd.read_csv(gaze_csv, nrows=50).rename(columns={"X_ORIGINAL": "X_ORIG"})
    gaze.to_csv(gaze_csv, index=False)
    result = _cli("--egd-dir", raw / "EGD", "--image-dir", raw / "MIMIC", "--out", tmp_path / "o.h5")
    assert result.returncode == 2
    assert "eye_gaze.csv" in result.stderr and "'X_ORIGINAL'" in result.stderr
    assert not (tmp_path / "o.h5").exists()


def test_no_patient_metadata_in_outputs(tiny_h5):
    blob = tiny_h5.read_bytes() + report_path(tiny_h5).read_bytes()
    assert f"{FAKE_PHI_MARKER}^PHANTOM".encode() not in blob and FAKE_BIRTH_DATE.encode() not in blob


def test_workers_limit_and_fixations(synthetic_raw, tmp_path, tiny_h5):
    egd, mimic = synthetic_raw / "EGD", synthetic_raw / "MIMIC"
    two = convert_egd_cxr(egd, mimic, tmp_path / "w2.h5", ConvertOptions(**{**OPTIONS.__dict__, "workers": 2}), progress=False)
    assert len(two.converted) == 60
    with h5py.File(tiny_h5) as a, h5py.File(tmp_path / "w2.h5") as b:
        for key in ("image", "heatmap", "label", "split"):
            assert np.array_equal(a[key][:], b[key][:]), key
    limited = convert_egd_cxr(egd, mimic, tmp_path / "l.h5", ConvertOptions(**{**OPTIONS.__dict__, "limit": 10,
                                                                       "gaze": "fixations"}), progress=False)
    assert len(limited.converted) == 10
    with h5py.File(tiny_h5) as a, h5py.File(tmp_path / "l.h5") as b:
        assert b.attrs["gaze_source"] == "fixations"
        row = list(a["dicom_id"].asstr()[:]).index(b["dicom_id"].asstr()[0])
        fix, raw_map = b["heatmap"][0], a["heatmap"][row]
        assert not np.allclose(fix, raw_map) and np.corrcoef(fix.ravel(), raw_map.ravel())[0, 1] > 0.5


def test_fixations_follow_the_raw_csv(tiny_h5, synthetic_raw):
    table = pd.read_csv(synthetic_raw / "EGD" / "fixations.csv", dtype={"DICOM_ID": str})
    from gazecxr.data.dataset import GazeCXRDataset
    ds = GazeCXRDataset(tiny_h5, "all")
    assert ds.has_fixations
    with h5py.File(tiny_h5) as f:
        offsets, canvas, original = f["fixation_offsets"][:], f["fixations"][:], f["fixations_original"][:]
        ids = f["dicom_id"].asstr()[:]
        sizes = f["orig_size"][:]
    assert offsets.shape == (len(ids) + 1,) and offsets[0] == 0 and offsets[-1] == len(canvas) == len(original)
    assert canvas.dtype == np.float32 and canvas.shape[1] == 3
    assert not table.DICOM_ID.isin(ids).all()  # calibration screens are in the table, not in the file
    dropped = 0
    for row in (0, 7, 31):
        rows = table[table.DICOM_ID == ids[row]]
        x, y = rows.X_ORIGINAL.to_numpy(), rows.Y_ORIGINAL.to_numpy()
        h, w = sizes[row]
        on = (x >= 0) & (y >= 0) & (x < w) & (y < h)
        dropped += int((~on).sum())
        np.testing.assert_array_equal(original[offsets[row]:offsets[row + 1]], np.stack([x[on], y[on]], 1))
        lb = Letterbox.fit((h, w), (64, 64))
        u, v = lb.to_canvas_coords(x[on], y[on])
        np.testing.assert_allclose(ds.fixations(row), np.stack([u, v, rows.FPOGD.to_numpy()[on]], 1), atol=1e-4)
        assert ((ds.fixations(row)[:, :2] >= -0.5) & (ds.fixations(row)[:, :2] < 63.5)).all()
    assert dropped > 0  # rows 0 and 31 have fixations off the film


def test_files_without_fixations_still_read(tiny_h5, tmp_path):
    old = tmp_path / "old.h5"
    shutil.copy(tiny_h5, old)
    with h5py.File(old, "a") as f:
        for name in ("fixation_offsets", "fixations", "fixations_original"):
            del f[name]
    from gazecxr.data.dataset import GazeCXRDataset
    ds = GazeCXRDataset(old, "train")
    assert not ds.has_fixations and ds.fixations(int(ds.indices[0])).shape == (0, 3)
    assert ds[0]["heatmap"].shape == (1, 64, 64)
