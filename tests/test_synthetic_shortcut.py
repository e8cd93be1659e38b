"""The shortcut knob and the evidence sidecar: the tube marker agrees with the class as asked, lies in a lung,
changes nothing else and is never looked at; the sidecar's masks are where the findings are drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage
from scipy.stats import chi2_contingency

from data_prep import synthetic as cli
from gazecxr.data.synthetic import generate
from gazecxr.data.synthetic.evidence import EVIDENCE_DIR, SHORTCUT_TABLE, read_synthetic_evidence
from gazecxr.data.synthetic.gaze import simulate_reading
from gazecxr.data.synthetic.knobs import KNOBS_FILE, Knobs, read_knobs
from gazecxr.data.synthetic.phantom import CHF, NORMAL, PNEUMONIA, draw_phantom, sample_film_size
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx
from gazecxr.data.synthetic.shortcut import LEFT_LUNG, NO_MARKER, RIGHT_LUNG, draw_marker, marker_state

WRITERS = {"EGD": generate, "REFLACX": generate_reflacx}
SETTINGS = {
    "plain": Knobs(),
    "full": Knobs(shortcut_strength=1.0),
    "none": Knobs(shortcut_strength=0.0),
    "shifted": Knobs(shortcut_strength=0.9, shortcut_shifted=True),
    "flat": Knobs(evidence_contrast=0.0),
}
"""Datasets written per layout (one seed, with the evidence sidecar): their knobs by name."""


@pytest.fixture(scope="module", params=list(WRITERS))
def layout(request, tmp_path_factory) -> tuple[str, dict[str, Path]]:
    """(layout folder name, dataset root per `SETTINGS` name) of 6 tiny films each."""
    base = tmp_path_factory.mktemp(f"shortcut_{request.param}")
    roots = {name: base / name for name in SETTINGS}
    for name, knobs in SETTINGS.items():
        WRITERS[request.param](roots[name], n=6, seed=3, size=64, progress=False, knobs=knobs, evidence=True)
    return request.param, roots


def _table(root: Path, folder: str) -> pd.DataFrame:
    return pd.read_csv(root / folder / SHORTCUT_TABLE, dtype={"dicom_id": str})


def _film(root: Path, dicom_id: str) -> np.ndarray:
    """Displayed intensity (MONOCHROME1 inverted) of a film, in stored grey levels."""
    ds = pydicom.dcmread(next((root / "MIMIC").rglob(f"{dicom_id}.dcm")))
    pixels = ds.pixel_array.astype(np.float64)
    return -pixels if ds.PhotometricInterpretation == "MONOCHROME1" else pixels


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_marker_state_is_the_class_at_full_strength(layout):
    folder, roots = layout
    table = _table(roots["full"], folder)
    assert sorted(table["label"]) == [0, 0, 1, 1, 2, 2]
    assert (table["marker_state"] == table["label"]).all()
    assert (_table(roots["plain"], folder)["marker_state"] == NO_MARKER).all()
    assert read_knobs(roots["full"] / folder) == SETTINGS["full"]


def test_zero_strength_and_shifted_draw_the_same_class_independent_states(layout):
    folder, roots = layout
    zero, shifted = _table(roots["none"], folder), _table(roots["shifted"], folder)
    pd.testing.assert_frame_equal(zero, shifted)
    assert zero["marker_state"].nunique() > 1 and (zero["marker_state"] != zero["label"]).any()


@pytest.mark.parametrize("strength, shifted, agreement", [(0.0, False, 1 / 3), (0.9, True, 1 / 3),
                                                          (1.0, True, 1 / 3), (0.9, False, 0.9 + 0.1 / 3)])
def test_marker_states_agree_with_the_class_as_often_as_asked(strength, shifted, agreement):
    rng = np.random.default_rng(0)
    counts = np.zeros((3, 3), int)
    for label in (NORMAL, CHF, PNEUMONIA):
        for _ in range(2000):
            counts[label, marker_state(rng, label, strength, shifted)] += 1
    assert np.trace(counts) / counts.sum() == pytest.approx(agreement, abs=0.02)
    independent = chi2_contingency(counts).pvalue > 1e-3
    assert independent == (agreement == pytest.approx(1 / 3))


def test_the_marker_is_a_tube_in_its_lung_and_changes_nothing_else(layout):
    folder, roots = layout
    table = _table(roots["full"], folder)
    plain, marked = _files(roots["plain"]), _files(roots["full"])
    differing = {name for name in plain if plain[name] != marked[name]}
    assert differing <= {name for name in plain if name.endswith(".dcm") or name.endswith(SHORTCUT_TABLE)}
    assert set(marked) - set(plain) == {f"{folder}/{KNOBS_FILE}"}
    for dicom_id, state in zip(table["dicom_id"], table["marker_state"]):
        change = _film(roots["full"], dicom_id) - _film(roots["plain"], dicom_id)
        if state == NO_MARKER:
            assert not change.any()
            continue
        tube = change != 0
        assert tube.sum() >= 30 and change.min() >= 0
        length = np.ptp(np.nonzero(tube)[0]) + 1
        assert tube.sum() < 0.25 * length ** 2, "a thin curve, not a blob"
        if folder == "EGD":
            lung = ("right_lung", "left_lung")[state - 1]
            mask = np.asarray(Image.open(roots["full"] / "EGD" / "audio_segmentation_transcripts" / dicom_id /
                                         f"{lung}.png")) > 0
            assert tube[mask].sum() / tube.sum() >= 0.95
        else:
            reading = _reading_of(roots["full"], dicom_id)
            box = pd.read_csv(roots["full"] / "REFLACX" / "main_data" / reading / "chest_bounding_box.csv").iloc[0]
            rows, cols = np.nonzero(tube)
            assert box.xmin <= cols.min() <= cols.max() <= box.xmax and box.ymin <= rows.min() <= rows.max() <= box.ymax
            centre = (box.xmin + box.xmax) / 2
            assert (cols.mean() < centre) == (state == LEFT_LUNG)


def _reading_of(root: Path, dicom_id: str) -> str:
    meta = pd.concat([pd.read_csv(root / "REFLACX" / "main_data" / f"metadata_phase_{p}.csv", dtype=str)
                      for p in (1, 2, 3)])
    return meta.loc[meta.dicom_id == dicom_id, "id"].iloc[0]


@pytest.mark.parametrize("informativeness", [None, 0.0, 1.0])
def test_readers_look_at_the_marker_no_more_than_chance(informativeness):
    dwell, share = [], []
    for k in range(45):
        rng = np.random.default_rng([5, k])
        phantom = draw_phantom(rng, k % 3, *sample_film_size(rng, 128))
        tube = ndimage.binary_dilation(draw_marker(phantom, (LEFT_LUNG, RIGHT_LUNG)[k % 2], np.random.default_rng(k)))
        lungs = phantom.masks["right_lung"] | phantom.masks["left_lung"]
        reading = simulate_reading(phantom, np.random.default_rng([7, k]), informativeness)
        cols, rows = np.rint(reading.fix_x).astype(int), np.rint(reading.fix_y).astype(int)
        on = (cols >= 0) & (cols < phantom.shape[1]) & (rows >= 0) & (rows < phantom.shape[0])
        where = np.zeros((2, cols.size), bool)
        where[:, on] = lungs[rows[on], cols[on]], tube[rows[on], cols[on]]
        dwell.append((reading.fix_dur[where[1]].sum(), reading.fix_dur[where[0]].sum()))
        share.append((tube & lungs).sum() / lungs.sum())
    on_tube, on_lungs = np.sum(dwell, axis=0)
    assert on_tube / on_lungs <= 1.5 * np.mean(share)


def test_evidence_masks_are_where_the_findings_are_drawn(layout):
    folder, roots = layout
    table = _table(roots["plain"], folder)
    evidence = read_synthetic_evidence(roots["plain"], table["dicom_id"])
    assert evidence.keys() == read_synthetic_evidence(roots["full"] / folder, table["dicom_id"]).keys()
    for dicom_id, label in zip(table["dicom_id"], table["label"]):
        mask, state = evidence[dicom_id]
        marked_mask, _ = read_synthetic_evidence(roots["full"], [dicom_id])[dicom_id]
        np.testing.assert_array_equal(mask, marked_mask)
        finding = np.abs(_film(roots["plain"], dicom_id) - _film(roots["flat"], dicom_id))
        assert state == NO_MARKER and mask.shape == finding.shape and mask.dtype == bool
        if label == NORMAL:
            assert not mask.any() and not finding.any()
            continue
        assert finding[mask].mean() > (10 if label == PNEUMONIA else 3) * finding[~mask].mean()
        if label == PNEUMONIA:
            strong = finding > 0.5 * finding.max()
            assert strong[mask].sum() >= 0.8 * strong.sum()


def test_default_output_has_no_sidecar_and_the_sidecar_changes_nothing_else(tmp_path):
    generate(tmp_path / "default", n=3, seed=3, size=64, progress=False)
    generate(tmp_path / "sidecar", n=3, seed=3, size=64, progress=False, evidence=True)
    default, sidecar = _files(tmp_path / "default"), _files(tmp_path / "sidecar")
    assert not any(EVIDENCE_DIR in name or SHORTCUT_TABLE in name or KNOBS_FILE in name for name in default)
    assert {name: data for name, data in sidecar.items() if name in default} == default
    assert {name.split("/")[1] for name in set(sidecar) - set(default)} == {EVIDENCE_DIR, SHORTCUT_TABLE}
    with pytest.raises(FileNotFoundError, match="--evidence"):
        read_synthetic_evidence(tmp_path / "default", ["x"])
    with pytest.raises(LookupError, match="no film 'x'"):
        read_synthetic_evidence(tmp_path / "sidecar" / "EGD", ["x"])


def test_cli_flags_and_checks(tmp_path, capsys):
    out = tmp_path / "r"
    assert cli.main(["--out", str(out), "--format", "reflacx", "--n", "3", "--size", "64", "--quiet",
                     "--shortcut-strength", "0.5", "--shortcut-shifted", "--evidence"]) == 0
    assert read_knobs(out / "REFLACX") == Knobs(shortcut_strength=0.5, shortcut_shifted=True)
    assert len(_table(out, "REFLACX")) == 3 and (out / "REFLACX" / EVIDENCE_DIR).is_dir()
    for bad, message in ((["--shortcut-shifted"], "shortcut_shifted needs"), (["--shortcut-strength", "1.5"],
                                                                             "shortcut_strength must be")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--out", str(tmp_path / "x"), "--n", "2", "--size", "64", "--quiet", *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
