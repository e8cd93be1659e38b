import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gazecxr.data import CLASS_NAMES, GazeCXRDataset, PairedAugment


def test_items_have_the_documented_shapes_and_types(tiny_h5):
    ds = GazeCXRDataset(tiny_h5, "train")
    item = ds[0]
    assert item["image"].shape == item["heatmap"].shape == (1, 64, 64)
    assert item["image"].dtype == item["heatmap"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert float(item["heatmap"].sum()) == pytest.approx(1, abs=1e-5)
    assert item["label"] in (0, 1, 2) and isinstance(item["dicom_id"], str) and item["index"] == ds.indices[0]
    assert ds.class_names == CLASS_NAMES == ("Normal", "CHF", "pneumonia")
    sizes = {s: len(GazeCXRDataset(tiny_h5, s)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == len(GazeCXRDataset(tiny_h5, "all")) == 60 and sizes["test"] == 12


def test_dataloader_workers_open_the_file_lazily(tiny_h5):
    ds = GazeCXRDataset(tiny_h5, "train", transform=PairedAugment())
    assert ds._file is None
    batches = list(DataLoader(ds, batch_size=8, num_workers=2))
    assert sum(len(b["label"]) for b in batches) == len(ds)
    sums = torch.cat([b["heatmap"].sum(dim=(1, 2, 3)) for b in batches])
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-4, rtol=0)


def test_masks_are_optional_items(tiny_h5):
    item = GazeCXRDataset(tiny_h5, "val", masks=True)[0]
    assert item["lung_mask"].dtype == torch.bool and item["lung_mask"].any()
    assert not (item["lung_mask"] & item["heart_mask"]).all()


def test_maps_go_back_to_the_original_geometry(tiny_h5):
    ds = GazeCXRDataset(tiny_h5, "test")
    item = ds[0]
    lb = ds.letterbox(item["index"])
    back = ds.to_original(item["heatmap"], item["index"])
    assert back.shape == lb.orig_size and back.dtype == np.float32
    assert back.sum() == pytest.approx(1, abs=1e-4)
    peak_canvas = np.unravel_index(int(item["heatmap"].argmax()), (64, 64))
    peak_orig = np.unravel_index(int(back.argmax()), back.shape)
    u, v = lb.to_canvas_coords(np.array([peak_orig[1]]), np.array([peak_orig[0]]))
    assert abs(v[0] - peak_canvas[0]) <= 1.5 and abs(u[0] - peak_canvas[1]) <= 1.5


def test_bad_files_and_splits_are_clear_errors(tmp_path, tiny_h5):
    with pytest.raises(ValueError, match="split must be one of"):
        GazeCXRDataset(tiny_h5, "training")
    with pytest.raises(FileNotFoundError, match="data_prep.egd_cxr"):
        GazeCXRDataset(tmp_path / "none.h5", "train")


def test_two_files_split_by_patient_across_files(tiny_h5, tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    import shutil
    shutil.copy(tiny_h5, other)
    with h5py.File(other, "a") as f:
        patients = f["patient_id"].asstr()[:]
        f["label"][:] = -1
        f.attrs["dataset"] = "REFLACX"
        renamed = f["patient_id"].asstr()[:]
        renamed[:5] = [f"other-{p}" for p in renamed[:5]]  # the same images under other patient ids
        del f["patient_id"]
        f.create_dataset("patient_id", data=renamed.astype(object), dtype=h5py.string_dtype())
        del f["split"]
        f.create_dataset("split", data=np.array(["test"] * len(patients), dtype=object), dtype=h5py.string_dtype())
    both = {s: GazeCXRDataset([tiny_h5, other], s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in both.values()) == 120
    for name, ds in both.items():
        for other_name, other_ds in both.items():
            if name != other_name:
                assert not set(ds.patient_ids) & set(other_ds.patient_ids)
    split_of = {}
    for name, ds in both.items():
        for dicom_id in ds.dicom_ids:
            split_of.setdefault(dicom_id, set()).add(name)
    assert all(len(names) == 1 for names in split_of.values())  # an image in both files: one split
    test = both["test"]
    assert set(test.sources) == {"EGD-CXR", "REFLACX"}
    item = test[int(np.flatnonzero(test.sources == "REFLACX")[0])]
    assert item["label"] == -1 and item["index"] >= 60
    ds_one = GazeCXRDataset(tiny_h5, "all")
    np.testing.assert_array_equal(test.fixations(item["index"]), ds_one.fixations(item["index"] - 60))
    assert test.letterbox(item["index"]) == ds_one.letterbox(item["index"] - 60)
    labelled = GazeCXRDataset([tiny_h5, other], "train", labelled_only=True)
    assert len(labelled) and (labelled.labels >= 0).all() and set(labelled.sources) == {"EGD-CXR"}
    assert test.summary()["unlabelled"] == int((test.labels < 0).sum()) > 0
    from gazecxr.evaluation.saliency_methods import center_bias_map
    train = both["train"]
    expected = np.mean([train[i]["heatmap"][0].double().numpy() for i in range(len(train))], axis=0)
    np.testing.assert_allclose(center_bias_map([tiny_h5, other], "train"), expected / expected.sum(), atol=1e-12)
