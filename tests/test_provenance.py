"""Synthetic data are marked from the generator through the converter to the HDF5 file."""

import h5py

from gazecxr.data.provenance import (SYNTHETIC_MARKER, is_synthetic_attrs, is_synthetic_h5,
                                     is_synthetic_source)


def test_generator_marks_its_folder_and_converter_records_it(synthetic_raw, tiny_h5, tmp_path):
    assert (synthetic_raw / "EGD" / SYNTHETIC_MARKER).is_file()
    assert is_synthetic_source(synthetic_raw / "EGD") and not is_synthetic_source(tmp_path)
    assert is_synthetic_h5(tiny_h5)
    plain = tmp_path / "real.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["source"] = "EGD-CXR"
    assert not is_synthetic_h5(plain)
    assert not is_synthetic_attrs({"synthetic": False}) and is_synthetic_attrs({"synthetic": True})
