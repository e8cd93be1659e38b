"""Known quirks of the gaze datasets: truncated EGD-CXR ``DICOM_ID``s in the gaze tables."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from gazecxr.data.convert import ConversionReport, ConvertOptions
from gazecxr.data.sources.egd_cxr import EGDSource
from gazecxr.data.sources.egd_format import EYE_GAZE, FIXATIONS, match_truncated, stream_gaze


def test_match_truncated_unique_ambiguous_unmatched():
    wanted = {"abc-123", "abd-456", "xyz-789"}
    out = match_truncated(["abc-1", "ab", "q", "full-length-id"], wanted)
    assert out == {"abc-1": ("abc-123", "matched"), "ab": (None, "ambiguous"), "q": (None, "unmatched")}


def test_truncated_ids_recovered_and_reported(synthetic_raw, tmp_path):
    egd = tmp_path / "EGD"
    shutil.copytree(synthetic_raw / "EGD", egd)
    gaze = pd.read_csv(egd / EYE_GAZE, dtype=str, keep_default_na=False)
    sheet = pd.read_csv(egd / "master_sheet.csv", dtype=str, keep_default_na=False)
    ids = sheet["dicom_id"].tolist()
    target = ids[0]
    rows = np.flatnonzero(gaze["DICOM_ID"] == target)
    cut = rows[: len(rows) // 3]                                        # a third of its rows lose 5 characters
    gaze.loc[cut, "DICOM_ID"] = target[:-5]
    shared = next(p for p in (i[:1] for i in ids) if sum(j.startswith(p) for j in ids) > 1)
    victim = np.flatnonzero(gaze["DICOM_ID"] == ids[1])[:7]
    gaze.loc[victim, "DICOM_ID"] = shared                               # ambiguous: prefix of several images
    gaze.to_csv(egd / EYE_GAZE, index=False)

    before = stream_gaze(synthetic_raw / "EGD", set(ids))
    seen: dict = {}
    after = stream_gaze(egd, set(ids), truncated=seen)
    assert len(after[target]) == len(before[target])                    # every truncated row recovered
    np.testing.assert_array_equal(np.sort(after[target].x), np.sort(before[target].x))
    assert len(after[ids[1]]) == len(before[ids[1]]) - 7                 # the ambiguous rows are dropped
    assert seen[target[:-5]] == {"dicom_id": target, "status": "matched", "rows": len(cut)}
    assert seen[shared]["status"] == "ambiguous" and seen[shared]["rows"] == 7

    (egd / FIXATIONS).unlink()
    report = ConversionReport("x", {})
    records = EGDSource(egd, synthetic_raw / "MIMIC").records(ConvertOptions(), report)
    info = {r.record_id: r.info for r in records}
    assert info[target] == {"truncated_id_rows": {"raw": len(cut)}} and info[ids[2]] == {}
    dropped = [s for s in report.skipped if s["dicom_id"] == shared]
    assert len(dropped) == 1 and "several images" in dropped[0]["reason"] and "7 raw row(s)" in dropped[0]["reason"]


def test_reflacx_ellipses_clipped_to_the_image(tmp_path):
    from gazecxr.data.convert import ReadingSpec
    from gazecxr.data.sources.reflacx import ReflacxSource, clip_ellipses
    from gazecxr.data.synthetic.reflacx_writer import generate_reflacx

    spec = ReadingSpec("r", ellipses=np.array([[-12.0, 5, 40, 30], [3, 4, 50, 60], [10, -1, 130, 101]]))
    clipped, n = clip_ellipses(spec, (100, 120))
    assert n == 2
    np.testing.assert_array_equal(clipped.ellipses, [[0, 5, 40, 30], [3, 4, 50, 60], [10, 0, 120, 100]])
    assert clip_ellipses(ReadingSpec("r", ellipses=np.array([[1.0, 2, 3, 4]])), (10, 10))[0].ellipses.tolist() \
        == [[1.0, 2, 3, 4]]

    generate_reflacx(tmp_path / "raw", n=3, seed=0, size=96, progress=False)
    main = tmp_path / "raw" / "REFLACX" / "main_data"
    meta = pd.read_csv(main / "metadata_phase_3.csv")
    reading = next(r for r in meta.itertuples() if len(pd.read_csv(main / r.id / "anomaly_location_ellipses.csv")))
    path = main / reading.id / "anomaly_location_ellipses.csv"
    table = pd.read_csv(path)
    table.loc[0, "xmin"], table.loc[0, "ymax"] = -25, reading.image_size_y + 40    # beyond two edges
    table.to_csv(path, index=False, lineterminator="\r\n")
    records = ReflacxSource(tmp_path / "raw" / "REFLACX", tmp_path / "raw" / "MIMIC").records(
        ConvertOptions(gaze="reflacx"), ConversionReport("x", {}))
    record = next(r for r in records if r.record_id == reading.dicom_id)
    assert record.info["clipped_ellipses"] == 1
    box = next(s for s in record.readings if s.reading_id == reading.id).ellipses[0]
    assert box[0] == 0 and box[3] == reading.image_size_y
    assert all("clipped_ellipses" not in r.info for r in records if r.record_id != reading.dicom_id)


def test_egd_voi_lut_option_reaches_every_record(synthetic_raw, tmp_path):
    from data_prep.egd_cxr import build_parser

    assert build_parser().parse_args(["--egd-dir", "E", "--image-dir", "M", "--out", "o.h5", "--voi-lut"]).voi_lut
    records = EGDSource(synthetic_raw / "EGD", synthetic_raw / "MIMIC", voi_lut=True).records(
        ConvertOptions(limit=3), ConversionReport("x", {}))
    assert len(records) == 3 and all(r.voi_lut for r in records)
    assert not any(r.voi_lut for r in EGDSource(synthetic_raw / "EGD", synthetic_raw / "MIMIC").records(
        ConvertOptions(limit=3), ConversionReport("x", {})))


def test_split_file_reproduces_a_published_split(synthetic_raw, tmp_path):
    import h5py

    from data_prep import egd_cxr

    sheet = pd.read_csv(synthetic_raw / "EGD" / "master_sheet.csv", dtype=str, keep_default_na=False)
    listed = sheet["dicom_id"].iloc[:9].tolist()
    splits = ["train", "test", "val"] * 3
    pd.DataFrame({"dicom_id": listed, "split": splits}).to_csv(tmp_path / "split.csv", index=False)
    out = tmp_path / "egd.h5"
    assert egd_cxr.main(["--egd-dir", str(synthetic_raw / "EGD"), "--image-dir", str(synthetic_raw / "MIMIC"),
                         "--out", str(out), "--height", "64", "--width", "64", "--limit", "12",
                         "--split-file", str(tmp_path / "split.csv"), "--quiet"]) == 0
    with h5py.File(out) as f:
        got = dict(zip(f["dicom_id"].asstr()[:], f["split"].asstr()[:]))
        assert f.attrs["split_method"] == "file"
    assert got == dict(zip(listed, splits))                             # exactly, whatever the patients
    pd.DataFrame({"dicom_id": listed[:1], "split": ["validate"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert egd_cxr.main(["--egd-dir", str(synthetic_raw / "EGD"), "--image-dir", str(synthetic_raw / "MIMIC"),
                         "--out", str(out), "--split-file", str(tmp_path / "bad.csv"), "--quiet"]) == 2


def test_gdvig_split_list_read_as_published(synthetic_raw, tmp_path):
    import json

    import h5py
    import pytest

    from data_prep import egd_cxr
    from gazecxr import CLASS_NAMES
    from gazecxr.data.convert import read_split_file, report_path
    from gazecxr.data.sources.egd_format import read_master_sheet
    from gazecxr.data.tables import TableFormatError

    sheet = read_master_sheet(synthetic_raw / "EGD").iloc[:24]
    patients = sheet["patient_id"].unique()
    test_patients = set(patients[::3])                                  # GD-ViG's phases, whole patients
    phase = np.where(sheet["patient_id"].isin(test_patients), "test", "train")
    gdvig_name = {"pneumonia": "Pneumonia"}
    classes = [gdvig_name.get(CLASS_NAMES[k], CLASS_NAMES[k]) for k in sheet["label"]]
    wrong = int(np.flatnonzero(phase == "train")[0])
    classes[wrong] = next(c for c in ("Normal", "CHF") if c.lower() != classes[wrong].lower())
    missing = "00000000-11111111-22222222-33333333-44444444"
    listed = pd.DataFrame({"image_id": [f"{d}.jpg" for d in sheet["dicom_id"]] + [f"{missing}.jpg"],
                           "class_name": classes + ["CHF"], "phase": list(phase) + ["train"]})
    listed.to_csv(tmp_path / "mimic_part.csv", index=False)
    out = tmp_path / "egd.h5"
    assert egd_cxr.main(["--egd-dir", str(synthetic_raw / "EGD"), "--image-dir", str(synthetic_raw / "MIMIC"),
                         "--out", str(out), "--height", "64", "--width", "64", "--limit", "30", "--val-fraction",
                         "0.25", "--split-file", str(tmp_path / "mimic_part.csv"), "--quiet"]) == 0
    with h5py.File(out) as f:
        assert f.attrs["split_method"] == "file:gd-vig"
        ids, split, patient = (f[k].asstr()[:] for k in ("dicom_id", "split", "patient_id"))
        label = dict(zip(ids, f["label"][:]))
    by_split = {s: set(ids[split == s]) for s in ("train", "val", "test")}
    assert by_split["test"] == set(sheet["dicom_id"][phase == "test"])
    assert by_split["train"] | by_split["val"] == set(sheet["dicom_id"][phase == "train"])
    assert by_split["val"] and by_split["train"]
    owners = [set(patient[split == s]) for s in ("train", "val", "test")]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    report = json.loads(report_path(out).read_text())
    wrong_id = sheet["dicom_id"].iloc[wrong]
    assert [n["dicom_id"] for n in report["notes"]] == [wrong_id]
    assert classes[wrong] in report["notes"][0]["note"] and "kept" in report["notes"][0]["note"]
    assert label[wrong_id] == sheet["label"].iloc[wrong]                 # the master sheet's label wins
    skipped = {s["dicom_id"]: s["reason"] for s in report["skipped"]}
    assert skipped[missing].startswith("listed but not read") and "mimic_part.csv" in skipped[missing]
    assert len(skipped) == 1 + 30 - 24                                   # the missing row, the six unlisted

    listed.loc[1, "class_name"] = "Pneumothorax"
    listed.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(TableFormatError, match=r"bad\.csv: row 3: class_name 'Pneumothorax'"):
        read_split_file(tmp_path / "bad.csv")


def test_a_listed_split_that_parts_a_patient_is_noted(synthetic_raw, tmp_path):
    import json

    from data_prep import egd_cxr
    from gazecxr.data.convert import report_path
    from gazecxr.data.sources.egd_format import read_master_sheet

    sheet = read_master_sheet(synthetic_raw / "EGD").iloc[:24]
    shared = sheet["patient_id"].value_counts().index[0]
    rows = np.flatnonzero(sheet["patient_id"] == shared)
    assert len(rows) >= 2
    split = np.full(len(sheet), "train", dtype=object)
    split[rows[0]] = "test"
    split[[r for r in range(len(sheet)) if r not in rows][:4]] = "val"
    pd.DataFrame({"dicom_id": sheet["dicom_id"], "split": split}).to_csv(tmp_path / "split.csv", index=False)
    out = tmp_path / "egd.h5"
    assert egd_cxr.main(["--egd-dir", str(synthetic_raw / "EGD"), "--image-dir", str(synthetic_raw / "MIMIC"),
                         "--out", str(out), "--height", "64", "--width", "64", "--limit", "24",
                         "--split-file", str(tmp_path / "split.csv"), "--quiet"]) == 0
    notes = json.loads(report_path(out).read_text())["notes"]
    assert [n["dicom_id"] for n in notes] == [sheet["dicom_id"].iloc[rows[0]]]
    assert f"patient {shared} has records in the splits ['test', 'train']" in notes[0]["note"]
