"""Safetensors weights files (gazecxr.models.weights): nested states read back exactly, no pickle."""

from __future__ import annotations

import pytest
import torch

from gazecxr.models.weights import WeightsFileError, load_nested, load_tensors, save_nested, save_tensors


def test_nested_state_reads_back_exactly(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "encoder": {"w": base, "w_t": base.t(), "row": base[1], "n": torch.tensor(7), "mask": torch.tensor([True, False])},
        "loss": {"log_sigma": torch.tensor([0.5], dtype=torch.float64), "steps": 3, "name": "kl", "nothing": None},
        "empty": {},
        "lists": {"shape": [2, [3, 4]]},
    }
    path = tmp_path / "state.safetensors"
    save_nested(state, path)
    loaded = load_nested(path)
    assert list(loaded) == list(state) and loaded["empty"] == {} and loaded["lists"] == {"shape": [2, [3, 4]]}
    assert loaded["loss"]["steps"] == 3 and loaded["loss"]["name"] == "kl" and loaded["loss"]["nothing"] is None
    for part in ("encoder", "loss"):
        for key, value in state[part].items():
            if isinstance(value, torch.Tensor):
                assert loaded[part][key].dtype == value.dtype and torch.equal(loaded[part][key], value), key
    # views of one storage (transpose, row) are written as tensors of their own
    assert loaded["encoder"]["w_t"].is_contiguous() and loaded["encoder"]["w_t"].data_ptr() != loaded["encoder"]["w"].data_ptr()


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(WeightsFileError, match="weights file not found"):
        load_tensors(tmp_path / "missing.safetensors")
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    with pytest.raises(WeightsFileError, match=f"{pickled}: not a readable safetensors file"):
        load_tensors(pickled)
    flat = tmp_path / "flat.safetensors"
    save_tensors({"w": torch.zeros(2)}, flat)
    with pytest.raises(WeightsFileError, match="without the 'gazecxr.structure' metadata"):
        load_nested(flat)
    with pytest.raises(TypeError, match="has type object"):
        save_nested({"encoder": {"x": object()}}, tmp_path / "bad.safetensors")
