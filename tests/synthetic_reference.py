"""A portable fingerprint of the synthetic generators' default output, and its stored reference.

`fingerprint` reads a generated dataset back as what it holds, not as bytes: every DICOM's header text
and decoded pixels, every mask PNG's pixels, every CSV's columns (text exactly; numbers with the number
of decimals they were written with) and every other file's text. `differences` compares two
fingerprints within what floating-point code may change from one machine to another: one stored grey
level per pixel (and a mean shift of at most `PIXEL_MEAN_TOLERANCE` levels per film), one unit in the
last written decimal per table value, `MASK_TOLERANCE` of a mask's pixels. Anything the generator's
defaults change exceeds that.

`REFERENCE` holds the fingerprint of `CASES` as written by the generator before it had knobs (with the
seeded DICOM UIDs and REFLACX's ``SYNTHETIC.txt``). Rewrite it only when the default output is meant
to change: ``PYTHONPATH=$PWD python tests/synthetic_reference.py``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from gazecxr.data.synthetic import generate
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx

REFERENCE = Path(__file__).parent / "data" / "synthetic_default_reference.npz"

CASES: dict[str, tuple[Callable[..., dict], dict]] = {
    "egd": (generate, {"n": 3, "seed": 11, "size": 64}),
    "reflacx": (generate_reflacx, {"n": 3, "seed": 11, "size": 64}),
}
"""Dataset name -> (writer, its arguments) of the fingerprinted default output."""

ROW_LIMIT = 600
"""CSV tables with more rows (the raw gaze samples) are compared by column statistics, not row by row."""

PIXEL_MEAN_TOLERANCE = 0.05
"""Largest mean absolute difference of one film's stored values, in grey levels."""

MASK_TOLERANCE = 0.005
"""Largest fraction of a mask's pixels that may differ."""

_SEP = "\x1f"


def write_cases(folder: Path, **knobs) -> dict[str, Path]:
    """Write every case of `CASES` under ``folder`` (``knobs`` passed to each writer); their roots by name."""
    roots = {}
    for name, (writer, arguments) in CASES.items():
        roots[name] = folder / name
        writer(roots[name], progress=False, **arguments, **knobs)
    return roots


def fingerprint(roots: dict[str, Path]) -> dict[str, np.ndarray]:
    """The fingerprint of the datasets at ``roots`` (name -> root), keyed ``name/relative path:part``."""
    entries: dict[str, np.ndarray] = {}
    for name, root in roots.items():
        for path in sorted(root.rglob("*")):
            if path.is_file():
                key = f"{name}/{path.relative_to(root).as_posix()}"
                entries.update({f"{key}:{part}": value for part, value in _file_parts(path).items()})
    return entries


def _file_parts(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        header = [f"{el.tag} {el.keyword}={el.value!r}" for el in [*ds.file_meta, *ds] if el.keyword != "PixelData"]
        return {"header": np.array("\n".join(header)), "pixels": ds.pixel_array}
    if path.suffix == ".png":
        return {"mask": np.asarray(Image.open(path)) > 0}
    if path.suffix == ".csv":
        return _table_parts(pd.read_csv(path, dtype=str, keep_default_na=False))
    return {"text": np.array(path.read_text(encoding="utf-8"))}


def _table_parts(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """``text``: the header and the text columns (their distinct values only when summarised); ``numbers``:
    the numeric columns (rows x columns, NaN for empty fields) or, above `ROW_LIMIT` rows, their statistics
    (fields, written fields, mean, std, min, max); ``units``: one unit in each numeric column's last decimal."""
    summarise = len(table) > ROW_LIMIT
    text, numbers, units = [_SEP.join(table.columns)], [], []
    for column in table.columns:
        values = table[column]
        written = (values != "").to_numpy()
        number = pd.to_numeric(values.where(values != ""), errors="coerce").to_numpy(np.float64)
        if not written.any() or np.isnan(number[written]).any():
            text.append(_SEP.join(sorted(set(values)) if summarise else values))
            continue
        units.append(10.0 ** -max((len(v.split(".")[1]) if "." in v else 0) for v in values[written]))
        kept = number[written]
        numbers.append([written.size, kept.size, kept.mean(), kept.std(), kept.min(), kept.max()] if summarise
                       else number)
    matrix = np.array(numbers, np.float64).T if numbers else np.zeros((len(table), 0))
    return {"text": np.array("\n".join(text)), "numbers": matrix, "units": np.array(units)}


def differences(reference: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> list[str]:
    """What differs between two fingerprints beyond the tolerances (empty when they agree)."""
    problems = [f"{key}: missing" for key in sorted(set(reference) - set(actual))]
    problems += [f"{key}: not in the reference" for key in sorted(set(actual) - set(reference))]
    for key in sorted(set(reference) & set(actual)):
        want, got = reference[key], actual[key]
        problem = _difference(key, want, got, reference.get(key.rsplit(":", 1)[0] + ":units"))
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def _difference(key: str, want: np.ndarray, got: np.ndarray, unit: np.ndarray | None) -> str | None:
    part = key.rsplit(":", 1)[1]
    if part == "units":
        return None
    if want.shape != got.shape:
        return f"shape {got.shape} instead of {want.shape}"
    if part in ("pixels", "mask"):
        delta = np.abs(got.astype(np.float64) - want.astype(np.float64))
        if part == "mask":
            return None if delta.mean() <= MASK_TOLERANCE else f"{delta.mean():.2%} of the pixels differ"
        if delta.max() > 1 or delta.mean() > PIXEL_MEAN_TOLERANCE:
            return f"stored values differ by up to {delta.max():.0f} (mean {delta.mean():.3f}) grey levels"
        return None
    if part == "numbers":
        if not np.array_equal(np.isnan(want), np.isnan(got)):
            return "empty fields differ"
        excess = np.nan_to_num(np.abs(got - want)) / (1.5 * unit)
        if excess.size and excess.max() > 1:
            row, column = np.unravel_index(np.argmax(excess), excess.shape)
            return (f"numbers[{row}, {column}]: {got[row, column]!r} instead of {want[row, column]!r} "
                    f"(written to {unit[column]:g})")
        return None
    if str(want) == str(got):
        return None
    pairs = enumerate(zip_longest(str(want).split("\n"), str(got).split("\n"), fillvalue="<none>"), start=1)
    line, (expected, written) = next((k, pair) for k, pair in pairs if pair[0] != pair[1])
    return f"line {line} is {written[:100]!r} instead of {expected[:100]!r}"


def main() -> int:
    """Write `REFERENCE` from the current generator (deliberately, when its default output is meant to change)."""
    with tempfile.TemporaryDirectory() as folder:
        entries = fingerprint(write_cases(Path(folder)))
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **entries)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes, {len(entries)} entries)")
    return 0


def load_reference() -> dict[str, np.ndarray]:
    """The stored reference fingerprint."""
    with np.load(REFERENCE) as stored:
        return {key: stored[key] for key in stored.files}


if __name__ == "__main__":
    sys.exit(main())
