"""CXR-P (Saab et al.'s gaze on SIIM-ACR films) on its synthetic raw layout: both id spellings and the
JSON copy, heatmaps against an independent computation, labels, masks, split lists, films without
gaze, no identifiers stored, and a pickle that would run code refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from scipy.ndimage import gaussian_filter, zoom

from data_prep import cxr_p as cxr_p_cli
from gazecxr.config.errors import InputError
from gazecxr.data.convert import report_path
from gazecxr.data.regions import rle_decode
from gazecxr.data.sources.cxr_p_format import read_gaze, read_split_list, sop_of
from gazecxr.data.sources.siim import read_rle_table
from gazecxr.data.synthetic.cxr_p_writer import generate_cxr_p
from gazecxr.data.synthetic.writer import FAKE_PHI_MARKER
from gazecxr.evaluation.gaze_vs_mask import film_scores, gaze_vs_mask

SIZE, CANVAS, SIGMA = 128, 64, 6.0


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict:
    """14 synthetic 128-px films in the CXR-P layout (2 without gaze, one listed film without a DICOM)."""
    return generate_cxr_p(tmp_path_factory.mktemp("cxrp") / "raw", n=14, seed=3, size=SIZE, progress=False)


def _convert(raw: dict, out: Path, gaze: str = "gaze_pickle", lists: bool = True, *extra: str) -> int:
    args = ["--siim-dir", raw["paths"]["siim"], "--gaze", raw["paths"][gaze], "--out", str(out),
            "--height", str(CANVAS), "--width", str(CANVAS), "--sigma", str(SIGMA), "--quiet", *extra]
    if lists:
        args += ["--split-file", raw["paths"]["train_list"], raw["paths"]["test_list"]]
    return cxr_p_cli.main(args)


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cxrp_h5") / "cxr_p.h5"
    assert _convert(raw, out) == 0
    return out


def test_both_id_spellings_are_in_the_pickle_and_resolve_to_the_sop(raw):
    with open(raw["paths"]["gaze_pickle"], "rb") as handle:
        ids = list(pickle.load(handle))            # our own synthetic file: safe to load plainly here
    assert any(i.endswith(".dcm") and i.count("/") == 2 for i in ids) and any("/" not in i for i in ids)
    assert sop_of("1.2.3/1.2.4/1.2.5.dcm") == sop_of("1.2.5") == "1.2.5"
    assert set(read_gaze(raw["paths"]["gaze_pickle"])) == {sop_of(i) for i in ids}


def test_every_film_with_gaze_is_flagged_and_the_others_are_zero(raw, converted):
    report = json.loads(report_path(converted).read_text())
    with h5py.File(converted) as f:
        ids = f["dicom_id"].asstr()[:]
        has_gaze, maps = f["has_gaze"][:], f["heatmap"][:]
    without = set(raw["without_gaze"])
    assert without and without <= set(ids)
    assert {i for i, g in zip(ids, has_gaze) if not g} == without
    np.testing.assert_allclose(maps[has_gaze].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert not maps[~has_gaze].any()
    assert report["summary"]["without_gaze"] == len(without)
    assert {r["dicom_id"] for r in report["converted"] if not r["has_gaze"]} == without


def test_off_film_points_are_dropped_and_counted(raw, converted):
    report = json.loads(report_path(converted).read_text())
    off = [r["gaze_points_off_film"] for r in report["converted"]]
    assert sum(o > 0 for o in off) == raw["n_off_film_films"] > 0
    with h5py.File(converted) as f:
        fix = f["fixations"][:]
    assert (fix[:, :2] >= 0).all() and (fix[:, :2] < CANVAS).all()


def _independent_heatmap(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Dwell t/60 at each point's full-resolution pixel, scipy Gaussian blur, resized to the canvas."""
    keep = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    full = np.zeros((SIZE, SIZE))
    rows = np.minimum((y[keep] * SIZE).astype(int), SIZE - 1)
    cols = np.minimum((x[keep] * SIZE).astype(int), SIZE - 1)
    np.add.at(full, (rows, cols), t[keep] / 60)
    return zoom(gaussian_filter(full, SIGMA), CANVAS / SIZE, order=1)


def test_heatmaps_agree_with_an_independent_computation(raw, converted):
    rows = {sop_of(r["image_id"]): r for r in json.loads(Path(raw["paths"]["gaze_json"]).read_text())}
    with h5py.File(converted) as f:
        ids, has_gaze, maps = f["dicom_id"].asstr()[:], f["has_gaze"][:], f["heatmap"][:]
    checked = 0
    for sop, ok, heat in zip(ids, has_gaze, maps):
        if not ok:
            continue
        r = rows[sop]
        ref = _independent_heatmap(*(np.asarray(r[k], float) for k in ("gaze_x", "gaze_y", "time")))
        assert np.corrcoef(ref.ravel(), heat.ravel())[0, 1] >= 0.98, sop
        checked += 1
    assert checked >= 10


def test_json_copy_converts_to_the_same_file(raw, converted, tmp_path):
    out = tmp_path / "json.h5"
    assert _convert(raw, out, "gaze_json") == 0
    with h5py.File(converted) as a, h5py.File(out) as b:
        for name in ("dicom_id", "has_gaze", "split", "findings"):
            assert (a[name][:] == b[name][:]).all(), name
        np.testing.assert_allclose(a["heatmap"][:], b["heatmap"][:], atol=1e-7)
        np.testing.assert_allclose(a["fixations"][:], b["fixations"][:], atol=1e-5)


def test_labels_and_masks_are_the_mask_table_s(raw, converted):
    table = read_rle_table(Path(raw["paths"]["siim"]) / "train-rle.csv")
    with h5py.File(converted) as f:
        ids, findings = f["dicom_id"].asstr()[:], f["findings"][:, 0]
        rles, sizes = f["region_mask_rle"].asstr()[:], f["orig_size"][:]
        assert list(f["findings"].attrs["label_names"]) == ["Pneumothorax"]
    assert findings.sum() > 0
    for sop, label, rle, (h, w) in zip(ids, findings, rles, sizes):
        assert label == float(bool(table[sop]))
        expected = np.zeros((h, w), bool)
        for run in table[sop]:
            expected |= rle_decode(run, h, w)
        assert (rle_decode(rle, h, w) == expected).all() if rle != "-1" and rle else not expected.any()


def test_splits_are_the_lists_and_val_is_carved_from_train_by_patient(raw, converted):
    train = read_split_list(raw["paths"]["train_list"])
    test = read_split_list(raw["paths"]["test_list"])
    report = json.loads(report_path(converted).read_text())
    with h5py.File(converted) as f:
        ids, split, patients = f["dicom_id"].asstr()[:], f["split"].asstr()[:], f["patient_id"].asstr()[:]
    assert {i for i, s in zip(ids, split) if s == "test"} == set(test)
    assert {i for i, s in zip(ids, split) if s in ("train", "val")} == set(train) - {raw["missing_dicom"]}
    assert "val" in split
    assert not {p for p, s in zip(patients, split) if s == "val"} & {p for p, s in zip(patients, split) if s == "train"}
    assert any(s["dicom_id"] == raw["missing_dicom"] and s["reason"].startswith("image missing")
               for s in report["skipped"])
    flipped = [n for n in report["notes"] if n["dicom_id"] == raw["label_disagreement"]]
    assert len(flipped) == 1 and "mask table" in flipped[0]["note"]


def test_no_dicom_header_field_but_the_patient_id_is_stored(raw, converted):
    data = converted.read_bytes()
    films = sorted((Path(raw["paths"]["siim"]) / "dicom-images-train").rglob("*.dcm"))
    ds = pydicom.dcmread(films[0], stop_before_pixels=True)
    assert FAKE_PHI_MARKER.encode() not in data
    for value in (str(ds.PatientName), str(ds.InstitutionName), str(ds.PatientBirthDate)):
        assert value.encode() not in data, value
    with h5py.File(converted) as f:
        assert ds.PatientID in set(f["patient_id"].asstr()[:])


class _RunsCode:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_a_pickle_holding_code_is_refused(raw, tmp_path, capsys):
    target = tmp_path / "ran"
    evil = tmp_path / "cxr_gaze_data.pkl"
    evil.write_bytes(pickle.dumps({"1.2.3": [(0.5, 0.5, 3)], "x": _RunsCode(target)}))
    with pytest.raises(InputError, match=str(evil)):
        read_gaze(evil)
    assert cxr_p_cli.main(["--siim-dir", raw["paths"]["siim"], "--gaze", str(evil), "--out",
                           str(tmp_path / "o.h5"), "--quiet"]) == 2
    assert "refused to unpickle" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "o.h5").exists()


def test_a_split_list_row_of_another_shape_names_the_file_and_line(tmp_path):
    bad = tmp_path / "train_list.csv"
    bad.write_text("/x/1_2_3_0.jpg,0\n/x/not_a_film.png,1\n")
    with pytest.raises(InputError, match=rf"{bad}:2"):
        read_split_list(bad)


def test_film_scores_by_hand():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    region = np.ones((4, 4), bool)
    heat = mask.astype(float) * 3 + 1
    fixations = np.array([[0.5, 0.5, 3.0], [3.2, 3.9, 1.0]])           # 3 s inside, 1 s outside
    scores = film_scores(heat, fixations, mask, region)
    assert scores == pytest.approx({"dwell_share": 0.75, "mask_area": 0.25, "cc": 1.0, "auc": 1.0})
    assert np.isnan(film_scores(heat, fixations, np.zeros((4, 4), bool), region)["auc"])


def test_gaze_dwells_on_the_planted_pneumothorax(converted):
    # the synthetic readers put about half of their points inside the mask of a positive film
    result = gaze_vs_mask(converted, bootstrap=50)
    summary = result["summary"]
    assert result["films"] >= 3
    assert 0.35 < summary["dwell_share"]["value"] < 0.75
    assert summary["dwell_share_minus_area"]["ci"][0] > 0.2
    assert summary["auc"]["value"] > 0.8
