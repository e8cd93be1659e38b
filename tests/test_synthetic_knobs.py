"""The synthetic generator's knobs: defaults leave the output unchanged (checked portably against
`synthetic_reference`), the gaze knob means what it says, the knobs are recorded in the raw files and the
HDF5 attributes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest

from data_prep import synthetic as cli
from gazecxr.data.convert import ConvertOptions
from gazecxr.data.sources.egd_cxr import convert_egd_cxr
from gazecxr.data.sources.egd_format import FIXATIONS, MASTER_SHEET
from gazecxr.data.synthetic.gaze import simulate_reading
from gazecxr.data.synthetic.knobs import KNOBS_FILE, NORMAL_CTR, Knobs, read_knobs
from gazecxr.data.synthetic.phantom import (CHF, NORMAL, PNEUMONIA, _sample_anatomy, draw_phantom, evidence_mask,
                                            sample_film_size)
from gazecxr.data.synthetic.reflacx_writer import generate_reflacx
from synthetic_reference import differences, fingerprint, load_reference, write_cases

def test_default_knobs_leave_the_output_as_it_was_before_the_knobs(tmp_path):
    """Both layouts written with ``Knobs()`` hold what the stored reference (written without a knobs argument
    before the knobs existed) holds, within what floating-point code may change between machines."""
    problems = differences(load_reference(), fingerprint(write_cases(tmp_path, knobs=Knobs())))
    assert not problems, "\n".join(problems[:20])
    assert not list(tmp_path.rglob(KNOBS_FILE))


def test_the_reference_check_tolerates_rounding_but_not_a_change():
    reference = load_reference()
    film = next(key for key in reference if key.endswith(":pixels"))
    table = next(key for key in reference if key.endswith("fixations.csv:numbers"))
    rng = np.random.default_rng(0)

    def changed(key, delta):
        return differences(reference, {**reference, key: reference[key] + delta})

    flips = (rng.random(reference[film].shape) < 0.01).astype(reference[film].dtype)
    assert changed(film, flips) == [] and changed(table, 0.9 * reference[table.replace("numbers", "units")]) == []
    assert changed(film, 2 * flips) and changed(film, np.ones_like(flips))
    assert changed(table, 2 * reference[table.replace("numbers", "units")])
    assert differences(reference, {k: v for k, v in reference.items() if k != film}) == [f"{film}: missing"]


def _dwell_on_evidence(label: int, g: float, k: int) -> tuple[float, float]:
    """(share of a reading's on-film fixation time inside the evidence region, the region's share of the
    lung area) for the k-th phantom of ``label`` with distractors."""
    rng = np.random.default_rng([21, label, k])
    phantom = draw_phantom(rng, label, *sample_film_size(rng, 128), Knobs(0.6, 1.0, 2), np.random.default_rng([3, k]))
    reading = simulate_reading(phantom, np.random.default_rng([4, label, k]), g)
    evidence = evidence_mask(phantom)
    lungs = phantom.masks["right_lung"] | phantom.masks["left_lung"]
    h, w = phantom.shape
    cols, rows = np.rint(reading.fix_x).astype(int), np.rint(reading.fix_y).astype(int)
    on = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    inside = np.zeros(cols.size, bool)
    inside[on] = evidence[rows[on], cols[on]]
    return reading.fix_dur[inside].sum() / reading.fix_dur[on].sum(), evidence.sum() / lungs.sum()


@pytest.mark.parametrize("label", [CHF, PNEUMONIA])
def test_gaze_informativeness_sets_the_dwell_share_on_the_evidence(label):
    full = [_dwell_on_evidence(label, 1.0, k) for k in range(10)]
    assert min(share for share, _ in full) >= 0.9
    blind = np.array([_dwell_on_evidence(label, 0.0, k) for k in range(30)])
    assert 0.02 < blind[:, 1].mean() < 0.5
    assert abs(blind[:, 0].mean() - blind[:, 1].mean()) < 0.04
    half = np.array([_dwell_on_evidence(label, 0.5, k) for k in range(10)])
    assert np.all(half[:, 0] >= 0.5 - 1e-9)
    assert abs(half[:, 0].mean() - (0.5 + 0.5 * half[:, 1].mean())) < 0.06


def test_normal_films_have_no_evidence_and_the_same_sweep_at_every_g():
    rng = np.random.default_rng(5)
    phantom = draw_phantom(rng, NORMAL, *sample_film_size(rng, 96))
    assert not evidence_mask(phantom).any()
    a, b = (simulate_reading(phantom, np.random.default_rng(6), g) for g in (0.0, 1.0))
    np.testing.assert_array_equal(a.fix_x, b.fix_x)


def test_contrast_size_and_distractors_do_what_they_say():
    def anatomy(label, knobs):
        return _sample_anatomy(np.random.default_rng(8), label, knobs)

    assert anatomy(CHF, Knobs(evidence_contrast=0.0)).cardiothoracic_ratio == pytest.approx(NORMAL_CTR)
    assert anatomy(CHF, Knobs()).cardiothoracic_ratio > 0.58
    r1, r2 = (anatomy(PNEUMONIA, Knobs(evidence_size=s)).opacity[2] for s in (1.0, 2.0))
    assert r2 == pytest.approx(2 * r1)
    rng = np.random.default_rng(9)
    phantom = draw_phantom(rng, PNEUMONIA, 128, 120, Knobs(distractors=3), np.random.default_rng(10))
    assert len(phantom.anatomy.distractors) == 3
    ox, oy, r = phantom.anatomy.opacity
    lungs = phantom.masks["right_lung"] | phantom.masks["left_lung"]
    for bx, by, br in phantom.anatomy.distractors:
        assert np.hypot(bx - ox, by - oy) > r + br
        col, row = (int(round(float(v))) for v in phantom.pose.to_pixel(bx, by))
        assert lungs[row, col]
    with pytest.raises(ValueError, match="distractor_rng"):
        draw_phantom(np.random.default_rng(1), NORMAL, 96, 96, Knobs(distractors=1))


@pytest.mark.parametrize("bad", [dict(evidence_contrast=-1), dict(evidence_size=0), dict(distractors=1.5),
                                 dict(gaze_informativeness=1.2), dict(shortcut_strength=1.5),
                                 dict(shortcut_strength=float("nan")), dict(shortcut_shifted=True),
                                 dict(shortcut_shifted="yes", shortcut_strength=0.5)])
def test_knob_values_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Knobs(**bad)


def test_knobs_are_recorded_and_only_the_gaze_changes_with_g(tmp_path):
    sets = {}
    for g in (0.0, 1.0):
        out = tmp_path / f"g{g}"
        assert cli.main(["--out", str(out), "--n", "3", "--size", "64", "--seed", "2", "--quiet",
                         "--evidence-contrast", "0.5", "--distractors", "1", "--gaze-informativeness", str(g)]) == 0
        sets[g] = out
        assert read_knobs(out / "EGD") == Knobs(0.5, 1.0, 1, g)
    master = [pd.read_csv(sets[g] / "EGD" / MASTER_SHEET) for g in sets]
    pd.testing.assert_frame_equal(*master)
    for path in master[0]["path"]:
        films = [pydicom.dcmread(sets[g] / "MIMIC" / path).PixelData for g in sets]
        assert films[0] == films[1]
    fixations = [pd.read_csv(sets[g] / "EGD" / FIXATIONS) for g in sets]
    assert not fixations[0][["FPOGX", "FPOGY"]].equals(fixations[1][["FPOGX", "FPOGY"]])
    h5 = tmp_path / "g1.h5"
    convert_egd_cxr(sets[1.0] / "EGD", sets[1.0] / "MIMIC", h5,
                    ConvertOptions(height=64, width=64, sigma=2.0, test_size=1), progress=False)
    with h5py.File(h5, "r") as f:
        assert json.loads(f.attrs["synthetic_knobs"]) == Knobs(0.5, 1.0, 1, 1.0).as_dict()


def test_reflacx_layout_records_the_knobs(tmp_path):
    generate_reflacx(tmp_path / "r", n=2, seed=1, size=64, progress=False, knobs=Knobs(gaze_informativeness=0.5))
    assert read_knobs(tmp_path / "r" / "REFLACX") == Knobs(gaze_informativeness=0.5)
