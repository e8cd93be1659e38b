"""Tests of the synthetic EGD-CXR generator: raw layout, determinism, learnability, gaze realism."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from data_prep import synthetic as cli
from gazecxr import CLASS_NAMES
from gazecxr.data.sources.egd_format import (BOUNDING_BOX_COLUMNS, BOUNDING_BOXES, EYE_GAZE, FIXATIONS, GAZE_COLUMNS,
                                LABEL_COLUMNS, MASK_FILES, MASTER_SHEET, MASTER_SHEET_COLUMNS, SEGMENTATION_DIR)
from gazecxr.data.synthetic import FAKE_BIRTH_DATE, FAKE_PHI_MARKER, generate
from gazecxr.data.synthetic.gaze import simulate_reading
from gazecxr.data.synthetic.phantom import CHF, PNEUMONIA, draw_phantom, sample_film_size
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx

N_IMAGES, SIZE = 150, 256
DICOM_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "dataset"
    summary = generate(root, n=N_IMAGES, seed=3, size=SIZE, progress=False)
    assert summary["n_images"] == N_IMAGES
    assert summary["paths"]["root"] == str(root.absolute())
    return root


@pytest.fixture(scope="module")
def master(dataset) -> pd.DataFrame:
    return pd.read_csv(dataset / "EGD" / MASTER_SHEET, dtype={"patient_id": str, "study_id": str})


@pytest.fixture(scope="module")
def gaze(dataset) -> pd.DataFrame:
    return pd.read_csv(dataset / "EGD" / EYE_GAZE)


@pytest.fixture(scope="module")
def films(dataset, master) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(dataset / "MIMIC" / path) for path in master["path"]]


def _display(ds: pydicom.Dataset) -> np.ndarray:
    """Film as displayed, scaled per image to [0, 1] (MONOCHROME1 inverted), like the converter."""
    slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    image = ds.pixel_array.astype(np.float64) * slope + intercept
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = -image
    return (image - image.min()) / (image.max() - image.min())


def _letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    scale = min(height / image.shape[0], width / image.shape[1])
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    small = np.asarray(Image.fromarray(image.astype(np.float32)).resize((w, h), Image.Resampling.BOX))
    out = np.zeros((height, width), np.float32)
    top, left = (height - h) // 2, (width - w) // 2
    out[top:top + h, left:left + w] = small
    return out


def _cv_macro_auc(features: np.ndarray, labels: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    proba = cross_val_predict(model, features, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")
    return roc_auc_score(labels, proba, multi_class="ovr", average="macro")


def test_phantom_evidence_is_local_to_its_class():
    for i in range(12):
        label = i % 3
        rng = np.random.default_rng([5, i])
        phantom = draw_phantom(rng, label, *sample_film_size(rng, 128))
        ratio = phantom.anatomy.cardiothoracic_ratio
        assert (ratio > 0.58) if label == CHF else (ratio < 0.5)
        assert (phantom.anatomy.opacity is not None) == (label == PNEUMONIA)
        if label == PNEUMONIA:
            ox, oy, _ = phantom.anatomy.opacity
            col, row = (int(round(float(v))) for v in phantom.pose.to_pixel(ox, oy))
            assert phantom.masks["right_lung"][row, col] or phantom.masks["left_lung"][row, col]
        assert phantom.image.dtype == np.float32 and 0.0 <= phantom.image.min() < phantom.image.max() <= 1.0
        assert all(mask.shape == phantom.shape and mask.any() for mask in phantom.masks.values())


def test_csv_headers_are_exact(dataset):
    egd = dataset / "EGD"
    for name, columns in [(MASTER_SHEET, MASTER_SHEET_COLUMNS), (EYE_GAZE, GAZE_COLUMNS),
                          (FIXATIONS, GAZE_COLUMNS), (BOUNDING_BOXES, BOUNDING_BOX_COLUMNS)]:
        assert list(pd.read_csv(egd / name, nrows=5).columns) == list(columns), name


def test_master_sheet_content(master):
    assert len(master) == N_IMAGES
    labels = master[list(LABEL_COLUMNS)].to_numpy()
    assert set(np.unique(labels)) == {0, 1}
    assert (labels.sum(axis=1) == 1).all()
    assert (labels.sum(axis=0) == N_IMAGES // 3).all()
    assert (master["normal_reports"] == master["Normal"]).all()
    chx = master[[c for c in MASTER_SHEET_COLUMNS if c.endswith("__chx")]].to_numpy().ravel()
    assert set(chx[~np.isnan(chx)]) <= {-1.0, 0.0, 1.0} and np.isnan(chx).any()
    chf = master["CHF"] == 1
    assert (master.loc[chf, "enlarged_cardiac_silhouette"] == 1).all()
    assert master["stay_id"].isna().any() and master["dx9"].isna().all()
    text = master["cxr_exam_indication"].dropna()
    for char in [",", "\n", '"']:
        assert text.str.contains(char, regex=False).any(), repr(char)
    assert set(master["gender"]) == {"F", "M"}


def test_identifiers_and_paths(dataset, master):
    assert master["dicom_id"].str.match(DICOM_ID).all() and master["dicom_id"].is_unique
    assert (master["dicom_id"].str.len() == 44).all()
    expected = ("files/p" + master["patient_id"].str[:2] + "/p" + master["patient_id"] + "/s"
                + master["study_id"] + "/" + master["dicom_id"] + ".dcm")
    assert (master["path"] == expected).all()
    assert all((dataset / "MIMIC" / path).is_file() for path in master["path"])
    assert master["study_id"].is_unique
    per_patient = master.groupby("patient_id").size()
    assert (per_patient == 2).sum() >= 3 and per_patient.max() == 2


def test_dicom_attributes(films):
    photometric = {ds.PhotometricInterpretation for ds in films}
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert any("RescaleSlope" in ds for ds in films) and not all("RescaleSlope" in ds for ds in films)
    sizes = np.array([(ds.Rows, ds.Columns) for ds in films], dtype=float)
    assert 0.84 * SIZE <= sizes[:, 0].min() and sizes[:, 0].max() <= 1.16 * SIZE
    aspect = sizes[:, 1] / sizes[:, 0]
    assert 0.79 <= aspect.min() < 0.9 and 1.15 < aspect.max() <= 1.26
    for ds in films[:30]:
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID in (pydicom.uid.DigitalXRayImageStorageForPresentation,
                                  pydicom.uid.ComputedRadiographyImageStorage)
        layout = (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel)
        assert layout == (16, 12, 11, 0, 1)
        pixels = ds.pixel_array
        assert pixels.shape == (ds.Rows, ds.Columns) and pixels.dtype == np.uint16 and pixels.max() <= 4095
        assert FAKE_PHI_MARKER in str(ds.PatientName) and FAKE_PHI_MARKER in ds.PatientID
        assert ds.PatientBirthDate == FAKE_BIRTH_DATE and ds.StudyDate


def test_masks_and_boxes_match_films(dataset, master, films):
    boxes = pd.read_csv(dataset / "EGD" / BOUNDING_BOXES)
    assert {"right lung", "left lung", "mediastinum", "aortic knob"} <= set(boxes["bbox_name"])
    for dicom_id, ds in list(zip(master["dicom_id"], films))[:20]:
        for name, (filename, *_) in MASK_FILES.items():
            mask = np.asarray(Image.open(dataset / "EGD" / SEGMENTATION_DIR / dicom_id / filename))
            assert mask.shape == (ds.Rows, ds.Columns), name
            assert set(np.unique(mask)) == {0, 255}, name
            box = boxes[(boxes["dicom_id"] == dicom_id) & (boxes["bbox_name"] == name.replace("_", " "))]
            cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
            assert box[["x1", "x2", "y1", "y2"]].values.tolist() == [[cols[0], cols[-1], rows[0], rows[-1]]]


def test_gaze_tables(dataset, master, films, gaze):
    fixations = pd.read_csv(dataset / "EGD" / FIXATIONS)
    known = set(master["dicom_id"])
    for table in (gaze, fixations):
        calibration = set(table["DICOM_ID"]) - known
        assert calibration and all(DICOM_ID.match(d) for d in calibration)
        assert known <= set(table["DICOM_ID"])
        for _, session in table.groupby("SESSION_ID"):
            assert (np.diff(session["Time (in secs)"]) > 0).all() and (np.diff(session["CNT"]) > 0).all()
    assert len(gaze) > 20 * len(fixations) > 20 * N_IMAGES * 20
    assert 0.2 < fixations.loc[fixations["DICOM_ID"].isin(known), "FPOGD"].mean() < 0.6
    intervals = np.diff(gaze.loc[gaze["SESSION_ID"] == 1, "Time (in secs)"])
    assert np.median(intervals) == pytest.approx(1 / 60, abs=1e-4)
    sizes = {d: (ds.Rows, ds.Columns) for d, ds in zip(master["dicom_id"], films)}
    pads = master.set_index("dicom_id")[["image_left_pad", "image_right_pad", "image_top_pad", "image_bottom_pad"]]
    rows = gaze[gaze["DICOM_ID"].isin(known)].join(pads, on="DICOM_ID")
    height = rows["DICOM_ID"].map(lambda d: sizes[d][0])
    width = rows["DICOM_ID"].map(lambda d: sizes[d][1])
    shown_w = width + rows["image_left_pad"] + rows["image_right_pad"]
    shown_h = height + rows["image_top_pad"] + rows["image_bottom_pad"]
    assert np.allclose(shown_w / shown_h, 1920 / 1080, atol=0.01)
    x_from_screen = np.floor(rows["FPOGX"] * shown_w - rows["image_left_pad"])
    assert (np.abs(x_from_screen - rows["X_ORIGINAL"]) <= 1).mean() > 0.99
    off = ((rows["X_ORIGINAL"] < 0) | (rows["X_ORIGINAL"] >= width)
           | (rows["Y_ORIGINAL"] < 0) | (rows["Y_ORIGINAL"] >= height))
    assert 0.005 < off.mean() < 0.15


def test_gaze_lands_on_the_chest(dataset, master, gaze):
    inside = []
    for dicom_id in master["dicom_id"][:20]:
        folder = dataset / "EGD" / SEGMENTATION_DIR / dicom_id
        chest = np.zeros_like(np.asarray(Image.open(folder / "left_lung.png")), dtype=bool)
        for name in ("left_lung", "right_lung", "mediastinum"):
            chest |= np.asarray(Image.open(folder / MASK_FILES[name][0])) > 0
        rows = gaze[gaze["DICOM_ID"] == dicom_id]
        x, y = rows["X_ORIGINAL"].to_numpy(), rows["Y_ORIGINAL"].to_numpy()
        ok = (x >= 0) & (x < chest.shape[1]) & (y >= 0) & (y < chest.shape[0])
        inside.append(chest[y[ok], x[ok]].mean())
    assert np.mean(inside) > 0.7


def test_histogram_baseline_is_weak_but_spatial_baseline_learns(master, films):
    labels = master[list(LABEL_COLUMNS)].to_numpy().argmax(axis=1)
    displayed = [_display(ds) for ds in films]
    histograms = np.array([np.histogram(image, bins=32, range=(0.0, 1.0))[0] / image.size for image in displayed])
    spatial = np.array([_letterbox(image, 16, 12).ravel() for image in displayed])
    histogram_auc = _cv_macro_auc(histograms, labels)
    spatial_auc = _cv_macro_auc(spatial, labels)
    assert histogram_auc < 0.75
    assert spatial_auc > histogram_auc + 0.1


def _heatmap(x: np.ndarray, y: np.ndarray, height: int, width: int) -> np.ndarray:
    col, row = np.floor(x + 0.5), np.floor(y + 0.5)
    ok = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    counts, _, _ = np.histogram2d(row[ok] / height, col[ok] / width, bins=(40, 32), range=((0, 1), (0, 1)))
    blurred = gaussian_filter(counts, 1.5)
    return (blurred / blurred.sum()).ravel()


def test_gaze_follows_each_image_not_the_average():
    first, second = [], []
    for i in range(60):
        rng = np.random.default_rng([11, i])
        height, width = sample_film_size(rng, SIZE)
        phantom = draw_phantom(rng, i % 3, height, width)
        for maps, seed in ((first, 1), (second, 2)):
            reading = simulate_reading(phantom, np.random.default_rng([seed, i]))
            maps.append(_heatmap(reading.x, reading.y, height, width))
    first, second = np.array(first), np.array(second)
    total = first.sum(axis=0)
    same_image = [np.corrcoef(a, b)[0, 1] for a, b in zip(first, second)]
    mean_map = [np.corrcoef(a, (total - a) / (len(first) - 1))[0, 1] for a in first]
    assert np.mean(same_image) > np.mean(mean_map) + 0.1


def test_deterministic_and_prefix_stable(tmp_path):
    def films_and_tables(root):
        egd = root / "EGD"
        tables = {name: (egd / name).read_bytes() for name in (MASTER_SHEET, EYE_GAZE, FIXATIONS, BOUNDING_BOXES)}
        master = pd.read_csv(egd / MASTER_SHEET)
        pixels = [pydicom.dcmread(root / "MIMIC" / p).PixelData for p in master["path"]]
        return tables, pixels

    for name, n, seed in [("a", 6, 1), ("b", 6, 1), ("c", 6, 2), ("d", 4, 1)]:
        generate(tmp_path / name, n=n, seed=seed, size=96, progress=False)
    a, b, c, d = (films_and_tables(tmp_path / name) for name in "abcd")
    assert a == b
    assert all(a[0][name] != c[0][name] for name in a[0])
    assert not set(a[1]) & set(c[1])
    assert d[1] == a[1][:4]
    for name in (MASTER_SHEET, EYE_GAZE, FIXATIONS):
        assert a[0][name].startswith(d[0][name]) and len(a[0][name]) > len(d[0][name])


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("writer", [generate, generate_reflacx])
def test_two_runs_with_one_seed_write_identical_bytes(tmp_path, writer):
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        writer(tmp_path / name, n=6, seed=seed, size=64, progress=False)
    a, b, c = (_tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    films = [pydicom.dcmread(tmp_path / "a" / name) for name in a if name.endswith(".dcm")]
    uids = [(ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID) for ds in films]
    assert len(films) == 6 and len({u for row in uids for u in row}) == 18
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in films)
    assert all(u.is_valid and len(u) <= 64 and u.startswith(pydicom.uid.PYDICOM_ROOT_UID) for row in uids for u in row)
    other = {pydicom.dcmread(tmp_path / "c" / name).SOPInstanceUID for name in c if name.endswith(".dcm")}
    assert not other & {row[0] for row in uids}


def test_refuses_non_empty_directory_and_overwrites_atomically(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate(target, n=2, size=64, progress=False)
    assert (target / "keep.txt").exists()
    summary = generate(target, n=2, size=64, progress=False, overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "EGD" / MASTER_SHEET).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list(summary["class_counts"]) == list(CLASS_NAMES)
    assert sum(summary["class_counts"].values()) == 2 and max(summary["class_counts"].values()) == 1


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "EGD-CXR" in help_text and "75.5" in help_text and "--size" in help_text
    assert cli.main(["--out", str(tmp_path / "ds"), "--n", "3", "--size", "64", "--quiet"]) == 0
    assert '"n_images": 3' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--out", str(tmp_path / "ds"), "--n", "3", "--size", "64", "--quiet"])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
