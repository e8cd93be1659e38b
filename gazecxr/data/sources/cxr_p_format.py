"""The raw CXR-P layout (Saab et al., MICCAI 2021): the gaze pickle, its JSON column copy and the
EG-ViT / GD-ViG split lists, read without running any code from the files.

``cxr_gaze_data.pkl`` is a dict image id → list of ``(x, y, t)``: x, y in [0, 1] of the displayed
film ((0, 0) top left), t the number of consecutive 60 Hz samples merged into the point (≈ t / 60 s
of dwell). The JSON copy is a list of ``{"image_id", "gaze_x", "gaze_y", "time"}`` (one row per
film, columns as lists). Ids are ``<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` or the bare
SOPInstanceUID; both are keyed here by the SOPInstanceUID. ``train_list.csv`` / ``test_list.csv``
have no header, rows ``<path>/{idx}_{t1}_{t2}_{label}.jpg,{label}``.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gazecxr.config.errors import InputError, InputNotFoundError

__all__ = ["GAZE_PICKLE", "GAZE_JSON", "TRAIN_LIST", "TEST_LIST", "SAMPLE_RATE_HZ", "SOP_PREFIX", "FilmGaze",
           "PlainDataUnpickler", "load_plain_pickle", "read_gaze", "sop_of", "read_split_list"]

GAZE_PICKLE = "cxr_gaze_data.pkl"
GAZE_JSON = "cxr_gaze_data.json"
TRAIN_LIST = "train_list.csv"
TEST_LIST = "test_list.csv"
SAMPLE_RATE_HZ = 60.0
"""The Tobii Pro Nano's rate: ``t / 60`` is a point's dwell in seconds."""
SOP_PREFIX = "1.2.276.0.7230010.3.1.4.8323329"
"""The SIIM-ACR SOPInstanceUID prefix the split lists' file names leave out."""

_LIST_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_([01])\.jpg$")


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles only plain data: dict, list, tuple, str, int, float, bool and None need no class
    lookup; every global (a class, a function such as ``os.system``) is refused."""

    def __init__(self, file: io.BufferedIOBase, name: str):
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        raise InputError(f"{self.name}: refused to unpickle {module}.{name}: the gaze pickle may hold only "
                         f"dict, list, tuple, str, int, float and bool")


def load_plain_pickle(path: Path) -> Any:
    """The object in the pickle ``path``, read with :class:`PlainDataUnpickler`. Raises InputError naming
    the file for a pickle holding anything but plain data or a corrupt one."""
    with open(path, "rb") as handle:
        try:
            return PlainDataUnpickler(handle, str(path)).load()
        except InputError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, MemoryError) as err:
            raise InputError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from err


def sop_of(image_id: str) -> str:
    """The SOPInstanceUID of a CXR-P image id (``<Study>/<Series>/<SOP>.dcm`` or the bare SOP)."""
    name = image_id.strip().replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.lower().endswith(".dcm") else name


@dataclass(frozen=True)
class FilmGaze:
    """One film's gaze on the film: x, y in [0, 1] and dwell in seconds (t / 60), and how many samples of
    the file lay off the film (dropped)."""

    x: np.ndarray
    y: np.ndarray
    seconds: np.ndarray
    n_off_film: int

    def __len__(self) -> int:
        return len(self.x)


def _film(path: Path, image_id: str, xs: Any, ys: Any, ts: Any) -> FilmGaze:
    try:
        x, y, t = (np.asarray(v, np.float64).reshape(-1) for v in (xs, ys, ts))
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: gaze of {image_id!r} is not numeric ({err})") from err
    if not len(x) == len(y) == len(t):
        raise InputError(f"{path}: gaze of {image_id!r} has {len(x)} x, {len(y)} y and {len(t)} t values")
    if not np.isfinite(t).all() or (t < 0).any():
        raise InputError(f"{path}: gaze of {image_id!r} has a negative or non-finite sample count t")
    keep = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    return FilmGaze(x[keep], y[keep], t[keep] / SAMPLE_RATE_HZ, int((~keep).sum()))


def _rows_of_pickle(path: Path, data: Any) -> list[tuple[str, Any, Any, Any]]:
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict image id → list of (x, y, t), got {type(data).__name__}")
    rows = []
    for image_id, points in data.items():
        if not isinstance(image_id, str) or not isinstance(points, (list, tuple)):
            raise InputError(f"{path}: entry {image_id!r} is not an image id with a list of (x, y, t)")
        if any(not isinstance(p, (list, tuple)) or len(p) != 3 for p in points):
            raise InputError(f"{path}: gaze of {image_id!r} holds a point that is not an (x, y, t) triple")
        columns = list(zip(*points)) if points else [(), (), ()]
        rows.append((image_id, *columns))
    return rows


def _rows_of_json(path: Path, data: Any) -> list[tuple[str, Any, Any, Any]]:
    keys = ("image_id", "gaze_x", "gaze_y", "time")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of {{{', '.join(keys)}}} rows, got {type(data).__name__}")
    rows = []
    for k, row in enumerate(data):
        if not isinstance(row, dict) or any(key not in row for key in keys):
            raise InputError(f"{path}: row {k} lacks one of the keys {', '.join(keys)}")
        if not isinstance(row["image_id"], str):
            raise InputError(f"{path}: row {k}: image_id is not a string")
        rows.append(tuple(row[key] for key in keys))
    return rows


def read_gaze(path: str | Path) -> dict[str, FilmGaze]:
    """SOPInstanceUID → gaze of the pickle (``.pkl``) or its JSON column copy (``.json``) at ``path``.
    Raises InputNotFoundError for a missing file and InputError (naming the file and image) for a
    refused pickle, a malformed row or an image listed twice."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: gaze file not found")
    if path.suffix.lower() == ".json":
        try:
            rows = _rows_of_json(path, json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: not valid JSON ({err})") from err
    else:
        rows = _rows_of_pickle(path, load_plain_pickle(path))
    films: dict[str, FilmGaze] = {}
    for image_id, xs, ys, ts in rows:
        sop = sop_of(image_id)
        if sop in films:
            raise InputError(f"{path}: image {sop} listed twice")
        films[sop] = _film(path, image_id, xs, ys, ts)
    return films


def read_split_list(path: str | Path) -> dict[str, int]:
    """SOPInstanceUID → label of an EG-ViT / GD-ViG split list (no header; rows
    ``<path>/{idx}_{t1}_{t2}_{label}.jpg,{label}``). Raises InputError naming the file and row."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: split list not found")
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            if not fields or not "".join(fields).strip():
                continue
            name = fields[0].strip().replace("\\", "/").rsplit("/", 1)[-1]
            match = _LIST_NAME.match(name)
            if len(fields) != 2 or match is None or fields[1].strip() not in ("0", "1"):
                raise InputError(f"{path}:{line}: expected '<path>/{{idx}}_{{t1}}_{{t2}}_{{label}}.jpg,{{label}}', "
                                 f"got {','.join(fields)!r}")
            idx, t1, t2, label = match.groups()
            if label != fields[1].strip():
                raise InputError(f"{path}:{line}: the file name's label {label} differs from the column's "
                                 f"{fields[1].strip()}")
            sop = f"{SOP_PREFIX}.{idx}.{t1}.{t2}"
            if sop in out:
                raise InputError(f"{path}:{line}: image {sop} listed twice")
            out[sop] = int(label)
    return out
