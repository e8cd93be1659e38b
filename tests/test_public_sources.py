"""The public-dataset sources (NIH ChestX-ray14, SIIM-ACR, CheXpert, VinDr-CXR) on their synthetic raw
layouts: table quirks, labels, regions in canvas coordinates, skips, no identifiers stored."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest

from data_prep import chexpert as chexpert_cli
from data_prep import nih14 as nih14_cli
from data_prep import siim as siim_cli
from data_prep import vindr as vindr_cli
from data_prep import synthetic as synthetic_cli
from gazecxr.data.convert import report_path
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.geometry import Letterbox
from gazecxr.data.images import read_dicom
from gazecxr.data.regions import rasterise_boxes, rle_decode, rle_encode
from gazecxr.data.sources.chexpert import FINDINGS as CHEXPERT, apply_uncertainty
from gazecxr.data.sources.nih14 import FINDINGS as NIH, read_bbox_list, read_data_entry
from gazecxr.data.sources.siim import read_rle_table
from gazecxr.data.synthetic.writer import FAKE_PHI_MARKER
from gazecxr.data.tables import TableFormatError
from gazecxr.tasks import create_task


def _convert(cli, args: list[str]) -> int:
    return cli.main([*args, "--quiet"])


def _strings(path: Path) -> list[str]:
    """Every string value and attribute of an HDF5 file."""
    out: list[str] = []
    with h5py.File(path, "r") as f:
        out += [str(v) for v in f.attrs.values()]

        def visit(name, obj):
            out.extend(str(v) for v in obj.attrs.values())
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "O":
                out.extend(obj.asstr()[...].ravel().tolist())
        f.visititems(visit)
    return out


# --- SIIM-ACR run-length code ------------------------------------------------------------------------

def _organisers_rle2mask(rle: str, width: int, height: int) -> np.ndarray:
    """The released ``mask_functions.rle2mask`` (flat array filled run by run, reshaped (width, height))."""
    mask = np.zeros(width * height)
    array = np.asarray([int(x) for x in rle.split()])
    position = 0
    for start, length in zip(array[0::2], array[1::2]):
        position += start
        mask[position:position + length] = 255
        position += length
    return mask.reshape(width, height)


def test_rle_hand_worked_example():
    # 2 rows × 3 columns, column-major pixels 0..5: "1 2 1 1" -> pixels 1, 2 (offset 1 from 0) and 4 (offset 1 from 3)
    expected = np.array([[0, 1, 1],
                         [1, 0, 0]], bool)
    assert np.array_equal(rle_decode("1 2 1 1", 2, 3), expected)
    assert rle_encode(expected) == "1 2 1 1"
    assert rle_encode(np.zeros((4, 4), bool)) == "-1" and not rle_decode(" -1", 4, 4).any()
    assert rle_encode(np.ones((2, 2), bool)) == "0 4"   # a run reaching the last pixel is kept


def test_rle_round_trip_and_organisers_decoder():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        rle = rle_encode(mask)
        assert np.array_equal(rle_decode(rle, h, w), mask)
        if mask.any():
            assert np.array_equal(_organisers_rle2mask(rle, w, h).T > 0, mask)


@pytest.mark.parametrize("rle", ["1 2 3", "0 5 2 1", "-1 2", "3 0"])
def test_rle_rejects_malformed(rle):
    with pytest.raises(ValueError):
        rle_decode(rle, 2, 2)


def test_rle_table_header_space_and_multi_rows(tmp_path):
    table = tmp_path / "train-rle.csv"
    table.write_text("ImageId, EncodedPixels\na, -1\nb, 1 2\nb, 4 1\n")
    assert read_rle_table(table) == {"a": [], "b": ["1 2", "4 1"]}
    table.write_text("ImageId,EncodedPixels\na,-1\n")
    with pytest.raises(TableFormatError, match="header"):
        read_rle_table(table)


# --- synthetic layouts, converted once per module ------------------------------------------------------

@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("public")
    sizes = {"nih14": 128, "siim": 128, "chexpert": 96, "vindr": 128}
    for name, n in (("nih14", 24), ("siim", 10), ("chexpert", 12), ("vindr", 10)):
        assert synthetic_cli.main(["--format", name, "--out", str(root / name), "--n", str(n),
                                   "--size", str(sizes[name]), "--quiet"]) == 0
    return {"nih14": root / "nih14" / "NIH", "siim": root / "siim" / "SIIM",
            "chexpert": root / "chexpert" / "CheXpert-v1.0-small", "vindr": root / "vindr" / "VinDr",
            "out": root}


@pytest.fixture(scope="module")
def nih_h5(raw) -> Path:
    out = raw["out"] / "nih.h5"
    assert _convert(nih14_cli, ["--nih-dir", str(raw["nih14"]), "--out", str(out), "--height", "64",
                                "--width", "32", "--split", "official", "--box-masks"]) == 0
    return out


def test_nih_header_quirks(raw, tmp_path):
    path = raw["nih14"] / "Data_Entry_2017.csv"
    header = path.read_text().splitlines()[0]
    assert header.endswith("OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
    assert "Unnamed: 11" in pd.read_csv(path, nrows=1).columns      # the empty column a naive reader sees
    rows = read_data_entry(path)
    v2020 = tmp_path / "Data_Entry_2017_v2020.csv"                  # the v2020 copy: no trailing column
    v2020.write_text("".join(line.rstrip(",") + "\n" for line in path.read_text().splitlines()))
    assert read_data_entry(v2020) == rows
    assert rows[0]["OriginalImage[Width"].isdigit() and rows[0]["Height]"].isdigit()
    bad = tmp_path / "bad.csv"
    bad.write_text("Image Index,Finding Labels,Patient ID\nx.png,No Finding,1\n")
    with pytest.raises(TableFormatError, match="not an NIH"):
        read_data_entry(bad)


def test_nih_bbox_list_spelling_and_columns(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                    "00013118_008.png,Infiltrate,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,\n"
                    "00014716_007.png,Atelectasis,686.101694915254,131.543090019671,185.491525423729,313.491525423729,,,\n")
    boxes = read_bbox_list(path)
    finding, box = boxes["00013118_008.png"][0]
    assert finding == "Infiltration"
    np.testing.assert_allclose(box, [225.084745762712, 547.019216763771, 225.084745762712 + 86.7796610169491,
                                     547.019216763771 + 79.1864406779661])


def test_nih_converter_boxes_labels_split(raw, nih_h5):
    entry = {r["Image Index"]: r for r in read_data_entry(raw["nih14"] / "Data_Entry_2017.csv")}
    listed = {l.split(",")[0] for l in (raw["nih14"] / "BBox_List_2017.csv").read_text().splitlines()[1:]}
    test_list = set((raw["nih14"] / "test_list.txt").read_text().split())
    ds = GazeCXRDataset(nih_h5, "all", task=create_task({"name": "nih14_findings"}))
    assert not ds.has_heatmap and "heatmap" not in ds[0]
    with h5py.File(nih_h5) as f:
        assert "heatmap" not in f and f.attrs["dataset"] == "NIH-CXR14" and not f.attrs["has_gaze"]
        names, split = f["dicom_id"].asstr()[:], f["split"].asstr()[:]
        assert list(f["findings"].attrs["label_names"]) == list(NIH)
        assert NIH[0] == "Atelectasis" and NIH[-1] == "Pneumothorax" and len(NIH) == 14
    for i, name in enumerate(names):
        labels = entry[name]["Finding Labels"]
        expected = set() if labels == "No Finding" else set(labels.split("|"))
        assert {n for n, v in zip(NIH, ds.targets[i]) if v} == expected
        assert (split[i] == "test") == (name in test_list)
        regions = ds.regions(i)
        assert (ds.region_mask(i) is not None) == (name in listed)
        # canvas 64×32 from a 128×128 PNG: scale 0.25, resized 32×32, padded 16 rows on top
        np.testing.assert_allclose(regions.boxes, regions.boxes_original * 0.25 + [0, 16, 0, 16], atol=1e-4)
    # one hand-worked box: the first box-list row, read back from the file
    first = (raw["nih14"] / "BBox_List_2017.csv").read_text().splitlines()[1].split(",")
    i = list(names).index(first[0])
    x, y, w, h = (float(v) for v in first[2:6])
    k = NIH.index("Infiltration" if first[1] == "Infiltrate" else first[1])
    r = ds.regions(i)
    row = np.flatnonzero(r.finding == k)[0]
    np.testing.assert_allclose(r.boxes[row], [x / 4, y / 4 + 16, (x + w) / 4, (y + h) / 4 + 16], atol=1e-4)
    assert np.array_equal(ds.region_mask(i), rasterise_boxes(r.boxes, (64, 32)))
    val = split == "val"
    assert val.any() and not set(names[val]) & test_list
    patients = {entry[n]["Patient ID"]: s for n, s in zip(names, split)}
    assert all(patients[entry[n]["Patient ID"]] == s for n, s in zip(names, split))   # grouped by patient
    with h5py.File(nih_h5) as f:                                       # age, sex and view are not stored
        assert set(f) == {"image", "label", "dicom_id", "patient_id", "split", "orig_size", "scale", "pad",
                          "findings", "box_offsets", "boxes", "boxes_original", "box_finding", "box_reader",
                          "regions_known", "region_mask", "region_mask_rle"}


def test_nih_missing_image_reported(raw, tmp_path):
    broken = tmp_path / "NIH"
    broken.mkdir()
    for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv"):
        (broken / name).write_bytes((raw["nih14"] / name).read_bytes())
    images = sorted((raw["nih14"] / "images_001" / "images").glob("*.png"))
    (broken / "images").mkdir()
    for png in images[1:]:
        (broken / "images" / png.name).write_bytes(png.read_bytes())
    out = tmp_path / "nih.h5"
    assert _convert(nih14_cli, ["--nih-dir", str(broken), "--out", str(out), "--height", "64", "--width", "64"]) == 0
    report = json.loads(report_path(out).read_text())
    reasons = {s["dicom_id"]: s["reason"] for s in report["skipped"]}
    assert reasons[images[0].name].startswith("image missing")
    assert report["summary"]["converted"] == len(images) - 1          # images_002/ files are not below --image-dir


def test_siim_converter_masks(raw, tmp_path):
    out = tmp_path / "siim.h5"
    assert _convert(siim_cli, ["--siim-dir", str(raw["siim"]), "--out", str(out), "--height", "64",
                               "--width", "64"]) == 0
    table = read_rle_table(raw["siim"] / "train-rle.csv")
    assert any(len(v) > 1 for v in table.values())                     # a multi-row (union) image is tested
    ds = GazeCXRDataset(out, "all", task=create_task({"name": "siim_pneumothorax"}))
    with h5py.File(out) as f:
        ids, patients = f["dicom_id"].asstr()[:], f["patient_id"].asstr()[:]
        rles, masks = f["region_mask_rle"].asstr()[:], f["region_mask"][:]
        assert f["region_mask"].attrs["finding"] == "Pneumothorax"
    for i, image_id in enumerate(ids):
        union = np.zeros((128, 128), bool)
        for rle in table[image_id]:
            union |= rle_decode(rle, 128, 128)
        assert ds.targets[i, 0] == float(union.any())
        assert np.array_equal(rle_decode(rles[i], 128, 128), union)
        canvas = Letterbox.fit((128, 128), (64, 64)).mask_to_canvas(union)
        assert np.array_equal(masks[i], canvas) and np.array_equal(ds.region_mask(i), canvas)
        film = next((raw["siim"] / "dicom-images-train").rglob(f"{image_id}.dcm"))
        dicom = pydicom.dcmread(film)
        assert dicom.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
        assert patients[i] == dicom.PatientID
    assert not any(FAKE_PHI_MARKER in s for s in _strings(out))        # no PatientName / institution stored


def test_chexpert_uncertainty_policies_hand_computed():
    codes = np.zeros((2, 14), np.float32)
    codes[0, CHEXPERT.index("Atelectasis")] = -1
    codes[0, CHEXPERT.index("Cardiomegaly")] = -1
    codes[1, CHEXPERT.index("Edema")] = -1
    codes[1, CHEXPERT.index("Pneumonia")] = 1
    at, ca, ed = (CHEXPERT.index(n) for n in ("Atelectasis", "Cardiomegaly", "Edema"))
    expected = {"zeros": {(0, at): 0, (0, ca): 0, (1, ed): 0}, "ones": {(0, at): 1, (0, ca): 1, (1, ed): 1},
                "mixed": {(0, at): 1, (0, ca): 0, (1, ed): 1}}
    for policy, cells in expected.items():
        mapped = apply_uncertainty(codes, policy)
        for cell, value in cells.items():
            assert mapped[cell] == value, (policy, cell)
        assert mapped[1, CHEXPERT.index("Pneumonia")] == 1 and np.array_equal(apply_uncertainty(mapped, policy), mapped)
    ignored = apply_uncertainty(codes, "ignore")
    assert np.isnan(ignored[0, at]) and np.isnan(ignored[0, ca]) and np.isnan(ignored[1, ed])
    assert np.isnan(ignored).sum() == 3
    task = create_task({"name": "chexpert14", "uncertainty": "ignore"})
    import torch
    targets = torch.from_numpy(task.targets_from_certainties(codes, CHEXPERT))
    logits = torch.zeros(2, 14)
    assert float(task.loss(logits, targets)) == pytest.approx(np.log(2))     # NaN entries masked, not NaN


def test_chexpert_converter(raw, tmp_path):
    out = tmp_path / "chexpert.h5"
    assert _convert(chexpert_cli, ["--chexpert-dir", str(raw["chexpert"]), "--out", str(out), "--height", "64",
                                   "--width", "64", "--frontal-only", "--split", "official"]) == 0
    train = pd.read_csv(raw["chexpert"] / "train.csv", dtype=str, keep_default_na=False)
    valid = pd.read_csv(raw["chexpert"] / "valid.csv", dtype=str, keep_default_na=False)
    rows = pd.concat([train, valid]).set_index("Path")
    assert (train[list(CHEXPERT)] == "-1.0").to_numpy().any()
    with h5py.File(out) as f:
        paths, findings = f["dicom_id"].asstr()[:], f["findings"][:]
        patients, split = f["patient_id"].asstr()[:], f["split"].asstr()[:]
    assert len(paths) == int((rows["Frontal/Lateral"] == "Frontal").sum())
    for path, codes, patient, s in zip(paths, findings, patients, split):
        cells = rows.loc[path, list(CHEXPERT)]
        assert np.array_equal(codes, [float(c) if c else 0.0 for c in cells])   # blank -> 0, -1 kept
        assert patient == path.split("/")[2] and (s == "test") == (path in set(valid["Path"]))
    assert not any(v in " ".join(_strings(out)) for v in ("Female", "Male"))


def test_chexpert_views_are_stored_and_filter_the_dataset(raw, tmp_path):
    out = tmp_path / "chexpert_all.h5"
    assert _convert(chexpert_cli, ["--chexpert-dir", str(raw["chexpert"]), "--out", str(out), "--height", "64",
                                   "--width", "64", "--split", "official"]) == 0
    train = pd.read_csv(raw["chexpert"] / "train.csv", dtype=str, keep_default_na=False)
    valid = pd.read_csv(raw["chexpert"] / "valid.csv", dtype=str, keep_default_na=False)
    rows = pd.concat([train, valid]).set_index("Path")
    with h5py.File(out) as f:
        paths, views, projections = f["dicom_id"].asstr()[:], f["view"].asstr()[:], f["projection"].asstr()[:]
    assert set(views) == {"Frontal", "Lateral"}
    for path, view, projection in zip(paths, views, projections):
        assert view == rows.loc[path, "Frontal/Lateral"] and projection == rows.loc[path, "AP/PA"]
    frontal = GazeCXRDataset(out, "all", views=("Frontal",))
    assert list(frontal.dicom_ids) == [p for p, v in zip(paths, views) if v == "Frontal"]
    assert set(GazeCXRDataset(out, "all", views=("Lateral",)).dicom_ids) == set(paths[views == "Lateral"])
    nih = tmp_path / "nih.h5"
    assert _convert(nih14_cli, ["--nih-dir", str(raw["nih14"]), "--out", str(nih), "--height", "64",
                                "--width", "64"]) == 0
    with pytest.raises(ValueError, match="no stored view"):
        GazeCXRDataset(nih, "all", views=("Frontal",))


def test_vindr_readers_and_no_finding(raw, tmp_path):
    out = tmp_path / "vindr.h5"
    assert _convert(vindr_cli, ["--vindr-dir", str(raw["vindr"]), "--out", str(out), "--height", "64",
                                "--width", "64", "--split", "official", "--voi-lut"]) == 0
    annotations = pd.read_csv(raw["vindr"] / "annotations" / "annotations_train.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(raw["vindr"] / "annotations" / "image_labels_train.csv")
    ds = GazeCXRDataset(out, "all")
    with h5py.File(out) as f:
        ids, split = f["dicom_id"].asstr()[:], f["split"].asstr()[:]
        names = [str(n) for n in f["findings"].attrs["label_names"]]
        findings, voi = f["findings"][:], f.attrs["voi_lut"]
    assert voi and names[0] == "Aortic enlargement"
    no_finding = annotations[annotations["class_name"] == "No finding"]
    assert len(no_finding) and (no_finding[["x_min", "y_min", "x_max", "y_max"]] == "").all().all()
    for i, image_id in enumerate(ids):
        regions = ds.regions(i)
        if split[i] == "test":
            assert set(regions.reader) <= {""}
            continue
        rows = annotations[(annotations["image_id"] == image_id) & (annotations["class_name"] != "No finding")]
        assert len(regions) == len(rows) and sorted(regions.reader) == sorted(rows["rad_id"])
        assert sorted(names[k] for k in regions.finding) == sorted(rows["class_name"])
        np.testing.assert_allclose(np.sort(regions.boxes_original, axis=0),
                                   np.sort(rows[["x_min", "y_min", "x_max", "y_max"]].to_numpy(float), axis=0),
                                   atol=1e-3)
        readers = labels[labels["image_id"] == image_id]
        np.testing.assert_allclose(findings[i], readers[names].to_numpy(float).mean(axis=0), atol=1e-6)
        assert ds.region_mask(i) is not None                                # annotated, maybe empty
    vindr = create_task({"name": "vindr_findings"})
    assert ds.regions(0).label_names == names and len(vindr.names) == 14


def test_vindr_release_headers_convert_with_one_stored_name(raw, tmp_path):
    from gazecxr.data.sources.vindr import RELEASE_LABELS

    train = pd.read_csv(raw["vindr"] / "annotations" / "image_labels_train.csv", nrows=0).columns.tolist()
    test = pd.read_csv(raw["vindr"] / "annotations" / "image_labels_test.csv", nrows=0).columns.tolist()
    assert train == ["image_id", "rad_id", *RELEASE_LABELS] and len(RELEASE_LABELS) == 28
    assert "Other diseases" in train and "Other disease" in test and "Other diseases" not in test
    out = tmp_path / "vindr.h5"
    assert _convert(vindr_cli, ["--vindr-dir", str(raw["vindr"]), "--out", str(out), "--height", "64",
                                "--width", "64", "--split", "official"]) == 0
    with h5py.File(out) as f:
        names = [str(n) for n in f["findings"].attrs["label_names"]]
        split, findings = f["split"].asstr()[:], f["findings"][:]
    assert names == list(RELEASE_LABELS)
    labels = pd.read_csv(raw["vindr"] / "annotations" / "image_labels_test.csv")
    column = names.index("Other diseases")
    with h5py.File(out) as f:
        ids = f["dicom_id"].asstr()[:]
    by_id = dict(zip(labels["image_id"], labels["Other disease"]))
    assert all(findings[i, column] == by_id[ids[i]] for i in np.flatnonzero(split == "test"))


def test_voi_lut_windows_the_film(raw):
    film = next(p for p in sorted((raw["vindr"] / "train").glob("*.dicom")) if "WindowCenter" in pydicom.dcmread(p))
    ds = pydicom.dcmread(film)
    plain, windowed = read_dicom(film), read_dicom(film, voi_lut=True)
    stored = ds.pixel_array.astype(np.float64)
    low, high = ds.WindowCenter - ds.WindowWidth / 2, ds.WindowCenter + ds.WindowWidth / 2
    clipped = (stored <= low) | (stored >= high)
    assert clipped.any() and not np.allclose(plain, windowed)
    for side in (stored <= low, stored >= high):                             # each clipped side is one value
        assert side.any() and np.ptp(windowed[side]) == pytest.approx(0.0, abs=1e-6)


def test_multilabel_metrics_leave_unknown_labels_out():
    from gazecxr.metrics.multilabel import choose_thresholds, multilabel_metrics

    rng = np.random.default_rng(0)
    y = (rng.random((30, 3)) < 0.4).astype(float)
    p = np.clip(0.4 * y + 0.6 * rng.random((30, 3)), 0, 1)
    with_unknown = y.copy()
    with_unknown[:5, 1] = np.nan                                         # five unknown entries of finding 1
    full = multilabel_metrics(with_unknown, p, ["a", "b", "c"], [0.5] * 3)
    assert full["per_finding"]["b"]["unknown"] == 5
    assert full["per_finding"]["b"]["auroc"] == pytest.approx(
        multilabel_metrics(y[5:, 1:2], p[5:, 1:2], ["b"])["per_finding"]["b"]["auroc"])
    assert full["per_finding"]["a"]["auroc"] == pytest.approx(
        multilabel_metrics(y, p, ["a", "b", "c"])["per_finding"]["a"]["auroc"])
    assert choose_thresholds(with_unknown, p)[1] == choose_thresholds(y[5:], p[5:])[1]


def test_reflacx_ellipses_read_as_regions(tmp_path):
    """One representation: a REFLACX file's ellipses come out of ``regions`` like boxes, with the reading
    as reader and original-pixel coordinates as in the reading's CSV."""
    from gazecxr.data.convert import ConvertOptions, convert_source
    from gazecxr.data.sources.reflacx import ReflacxSource
    from gazecxr.data.synthetic.reflacx_writer import generate_reflacx

    generate_reflacx(tmp_path / "raw", n=4, seed=0, size=96, progress=False)
    out = tmp_path / "reflacx.h5"
    convert_source(ReflacxSource(tmp_path / "raw" / "REFLACX", tmp_path / "raw" / "MIMIC"), out,
                   ConvertOptions(height=64, width=64, gaze="reflacx", test_size=1), progress=False)
    ds = GazeCXRDataset(out, "all")
    main = tmp_path / "raw" / "REFLACX" / "main_data"
    seen = 0
    for i in range(len(ds)):
        regions = ds.regions(i)
        assert regions.kind == "ellipse"
        for reader in set(regions.reader):
            table = pd.read_csv(main / reader / "anomaly_location_ellipses.csv")
            mine = regions.boxes_original[regions.reader == reader]
            expected = table[["xmin", "ymin", "xmax", "ymax"]].to_numpy(float)
            assert all(np.abs(expected - row).max(axis=1).min() < 1e-3 for row in mine)
            seen += len(mine)
        if len(regions):
            mask = ds.region_mask(i)
            assert mask is not None and mask.any()
    assert seen > 0


def test_chexpert_renamed_folder(raw, tmp_path):
    """Paths start with the release's folder name; a renamed copy of the folder still finds its films."""
    import shutil

    renamed = tmp_path / "chexpert_small_copy"
    shutil.copytree(raw["chexpert"], renamed)
    out = tmp_path / "renamed.h5"
    assert _convert(chexpert_cli, ["--chexpert-dir", str(renamed), "--out", str(out), "--height", "64",
                                   "--width", "64", "--limit", "4", "--strict"]) == 0
    assert json.loads(report_path(out).read_text())["summary"]["converted"] == 4


def test_siim_ratio_split_is_stratified_by_pneumothorax_and_grouped_by_patient(tmp_path):
    from gazecxr.data.synthetic.siim_writer import generate_siim

    generate_siim(tmp_path / "raw", n=60, seed=3, size=64, progress=False)
    out = tmp_path / "siim.h5"
    assert _convert(siim_cli, ["--siim-dir", str(tmp_path / "raw" / "SIIM"), "--out", str(out), "--height", "64",
                               "--width", "64", "--split", "ratio"]) == 0
    with h5py.File(out) as f:
        split, patients = f["split"].asstr()[:], f["patient_id"].asstr()[:]
        positive = f["findings"][:, 0] > 0.5
    assert 0 < positive.sum() < len(positive)
    for name in ("train", "test"):
        share = positive[split == name].mean()
        assert abs(share - positive.mean()) <= 0.12, (name, share, positive.mean())
    for patient in set(patients):
        assert len(set(split[patients == patient])) == 1


def test_split_strata_use_the_finding_only_where_there_is_no_class():
    from gazecxr.data.convert import ReadingSpec, SourceRecord, split_strata

    def record(label: int, finding: float) -> SourceRecord:
        spec = ReadingSpec(findings=np.array([finding], np.float32))
        return SourceRecord("r", "p", label, ".", "x.dcm", (32, 32), (spec,))

    unlabelled = [record(-1, 1.0), record(-1, 0.0), record(-1, 1.0)]
    assert split_strata(unlabelled, ("Pneumothorax",), "Pneumothorax").tolist() == [1, 0, 1]
    assert split_strata(unlabelled, ("Pneumothorax",), None).tolist() == [0, 0, 0]
    assert split_strata([record(2, 1.0), record(0, 0.0)], ("Pneumothorax",), "Pneumothorax").tolist() == [2, 0]
