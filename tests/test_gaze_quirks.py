"""Known quirks of the gaze datasets: truncated EGD-CXR ``DICOM_ID``s in the gaze tables."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from gazecxr.data.convert import ConversionReport, ConvertOptions
from gazecxr.data.sources.egd_cxr import EGDSource
from gazecxr.data.sources.egd_format import EYE_GAZE, FIXATIONS, match_truncated, stream_gaze


def test_match_truncated_unique_ambiguous_unmatched():
    wanted = {"abc-123", "abd-456", "xyz-789"}
    out = match_truncated(["abc-1", "ab", "q", "full-length-id"], wanted)
    assert out == {"abc-1": ("abc-123", "matched"), "ab": (None, "ambiguous"), "q": (None, "unmatched")}


def test_truncated_ids_recovered_and_reported(synthetic_raw, tmp_path):
    egd = tmp_path / "EGD"
    shutil.copytree(synthetic_raw / "EGD", egd)
    gaze = pd.read_csv(egd / EYE_GAZE, dtype=str, keep_default_na=False)
    sheet = pd.read_csv(egd / "master_sheet.csv", dtype=str, keep_default_na=False)
    ids = sheet["dicom_id"].tolist()
    target = ids[0]
    rows = np.flatnonzero(gaze["DICOM_ID"] == target)
    cut = rows[: len(rows) // 3]                                        # a third of its rows lose 5 characters
    gaze.loc[cut, "DICOM_ID"] = target[:-5]
    shared = next(p for p in (i[:1] for i in ids) if sum(j.startswith(p) for j in ids) > 1)
    victim = np.flatnonzero(gaze["DICOM_ID"] == ids[1])[:7]
    gaze.loc[victim, "DICOM_ID"] = shared                               # ambiguous: prefix of several images
    gaze.to_csv(egd / EYE_GAZE, index=False)

    before = stream_gaze(synthetic_raw / "EGD", set(ids))
    seen: dict = {}
    after = stream_gaze(egd, set(ids), truncated=seen)
    assert len(after[target]) == len(before[target])                    # every truncated row recovered
    np.testing.assert_array_equal(np.sort(after[target].x), np.sort(before[target].x))
    assert len(after[ids[1]]) == len(before[ids[1]]) - 7                 # the ambiguous rows are dropped
    assert seen[target[:-5]] == {"dicom_id": target, "status": "matched", "rows": len(cut)}
    assert seen[shared]["status"] == "ambiguous" and seen[shared]["rows"] == 7

    (egd / FIXATIONS).unlink()
    report = ConversionReport("x", {})
    records = EGDSource(egd, synthetic_raw / "MIMIC").records(ConvertOptions(), report)
    info = {r.record_id: r.info for r in records}
    assert info[target] == {"truncated_id_rows": {"raw": len(cut)}} and info[ids[2]] == {}
    dropped = [s for s in report.skipped if s["dicom_id"] == shared]
    assert len(dropped) == 1 and "several images" in dropped[0]["reason"] and "7 raw row(s)" in dropped[0]["reason"]
