"""Weights files without pickle: safetensors files of flat or nested state dicts, and the pretrained
folder (``config.json`` + ``model.safetensors`` + ``README.md``, the Hugging Face convention) that
`GazeCXRModel.from_pretrained` reads.

A nested state (the registry's ``{"encoder": state_dict, ...}``) is stored as one tensor per leaf,
named by its path joined with ``/`` (``encoder/features.conv0.weight``), and its structure (key
order, and any non-tensor values such as ints or strings) as JSON in the file's metadata under
`STRUCTURE_KEY`, so that it reads back exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from gazecxr.config.errors import InputError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PRETRAINED_FORMAT = "gazecxr-pretrained"
PRETRAINED_FORMAT_VERSION = 1
STRUCTURE_KEY = "gazecxr.structure"
"""Metadata key of a nested state's JSON structure."""
_TENSOR_REF = "$tensor"


class WeightsFileError(InputError):
    """A weights file or pretrained folder that cannot be read: missing, not safetensors, malformed."""


def _own_cpu(tensor: Tensor) -> Tensor:
    """A contiguous CPU copy with its own storage (safetensors refuses views and shared storage)."""
    return tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)


def save_tensors(tensors: Mapping[str, Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name → tensor) to the safetensors file ``path`` (not atomic: write into a
    temporary directory and rename it, as the registry and the pretrained export do)."""
    bad = [name for name, value in tensors.items() if not isinstance(value, Tensor)]
    if bad:
        raise TypeError(f"only tensors can be written to {path}; not tensors: {bad[:5]}")
    save_file({name: _own_cpu(value) for name, value in tensors.items()}, os.fspath(path),
              metadata={"format": "pt", **(metadata or {})})


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) of a safetensors file; WeightsFileError names the file when it
    is missing or not a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: weights file not found")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise WeightsFileError(f"{path}: not a readable safetensors file ({err})") from None
    return tensors, metadata


def _encode(value: Any, parts: list[str], tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        name = "/".join(parts)
        if name in tensors:
            raise ValueError(f"two state entries are both stored as {name!r}; a key contains '/'")
        tensors[name] = value
        return {_TENSOR_REF: name}
    if isinstance(value, Mapping):
        if _TENSOR_REF in value:
            raise ValueError(f"state key {_TENSOR_REF!r} at {'/'.join(parts) or '<root>'} is reserved")
        not_strings = [key for key in value if not isinstance(key, str)]
        if not_strings:
            raise TypeError(f"state keys at {'/'.join(parts) or '<root>'} must be strings, got {not_strings[:3]}")
        return {key: _encode(sub, [*parts, key], tensors) for key, sub in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(sub, [*parts, str(i)], tensors) for i, sub in enumerate(value)]
    if isinstance(value, (int, float, bool, str, type(None))):
        return value
    raise TypeError(f"state value at {'/'.join(parts)} has type {type(value).__name__}; only tensors, "
                    "numbers, strings and containers of them can be stored")


def _decode(node: Any, tensors: Mapping[str, Tensor], path: Path) -> Any:
    if isinstance(node, dict):
        if set(node) == {_TENSOR_REF}:
            if node[_TENSOR_REF] not in tensors:
                raise WeightsFileError(f"{path}: tensor {node[_TENSOR_REF]!r} named in its structure is missing")
            return tensors[node[_TENSOR_REF]]
        return {key: _decode(sub, tensors, path) for key, sub in node.items()}
    if isinstance(node, list):
        return [_decode(sub, tensors, path) for sub in node]
    return node


def save_nested(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a nested state (a dict of state dicts, possibly holding numbers or strings) to ``path``."""
    tensors: dict[str, Tensor] = {}
    structure = _encode(state, [], tensors)
    save_tensors(tensors, path, {STRUCTURE_KEY: json.dumps(structure)})


def load_nested(path: str | os.PathLike) -> dict[str, Any]:
    """The nested state written by `save_nested` (tensors on the CPU)."""
    tensors, metadata = load_tensors(path)
    if STRUCTURE_KEY not in metadata:
        raise WeightsFileError(f"{path}: safetensors file without the {STRUCTURE_KEY!r} metadata of a nested state")
    try:
        structure = json.loads(metadata[STRUCTURE_KEY])
    except json.JSONDecodeError as err:
        raise WeightsFileError(f"{path}: malformed {STRUCTURE_KEY!r} metadata ({err})") from None
    return _decode(structure, tensors, Path(path))


def is_pretrained_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding `CONFIG_FILE` and `WEIGHTS_FILE`."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_pretrained_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a pretrained folder, checked for the keys a loader needs; WeightsFileError
    names the folder and what is wrong."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise WeightsFileError(f"{directory}: no {CONFIG_FILE}; not a pretrained folder "
                               "(write one with gazecxr export --format pretrained)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != PRETRAINED_FORMAT:
        raise WeightsFileError(f"{path}: 'format' is not {PRETRAINED_FORMAT!r}; not a gazecxr pretrained folder")
    version = config.get("format_version")
    if not isinstance(version, int) or version > PRETRAINED_FORMAT_VERSION:
        raise WeightsFileError(f"{path}: format_version {version!r}; this gazecxr reads up to "
                               f"{PRETRAINED_FORMAT_VERSION} (upgrade gazecxr)")
    architecture = config.get("architecture")
    missing = [key for key in ("encoder", "unet", "classifier")
               if not isinstance(architecture, dict) or not isinstance(architecture.get(key), dict)]
    missing += [key for key in ("task", "input_size", "checkpoint") if key not in config]
    if missing:
        raise WeightsFileError(f"{path}: lacks {', '.join(missing)}")
    size = config["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise WeightsFileError(f"{path}: input_size must be [height, width], got {size!r}")
    return config
