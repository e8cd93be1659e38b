"""Inter-reader (leave-one-reader-out) scoring on hand-made maps."""

import numpy as np
import pytest

from gazecxr.evaluation.consistency import leave_one_out, score_against_readers
from gazecxr.metrics import correlation_coefficient, kl_divergence


def _blob(cy, cx, shape=(16, 16), s=2.0):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    m = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * s * s)) + 1e-6
    return m / m.sum()


def test_leave_one_out_is_the_mean_of_the_others():
    maps = np.stack([_blob(4, 4), _blob(4, 5), _blob(12, 12)])
    loo = leave_one_out(maps * np.array([1.0, 3.0, 0.5])[:, None, None])  # unnormalised input
    np.testing.assert_allclose(loo[0], (maps[1] + maps[2]) / 2, atol=1e-12)
    np.testing.assert_allclose(loo[2], (maps[0] + maps[1]) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 readers"):
        leave_one_out(maps[:1])


def test_inter_reader_scores_agreeing_readers_higher():
    agree = np.stack([_blob(4, 4), _blob(4, 5), _blob(5, 4)])
    disagree = np.stack([_blob(4, 4), _blob(12, 12), _blob(2, 13)])
    fix = [np.array([[4.0, 4.0, 0.3]]), np.array([[5.0, 4.0, 0.2]]), np.array([[4.0, 5.0, 0.2]])]
    good = score_against_readers(leave_one_out(agree), agree, fix, None)
    bad = score_against_readers(leave_one_out(disagree), disagree, fix, None)
    assert set(good) >= {"kl", "cc", "hs", "nss"} and good["cc"].shape == (3,)
    assert (good["cc"] > bad["cc"]).all() and (good["kl"] < bad["kl"]).all()
    np.testing.assert_allclose(good["cc"][1], correlation_coefficient((agree[0] + agree[2]) / 2, agree[1]))
    np.testing.assert_allclose(bad["kl"][0], kl_divergence((disagree[1] + disagree[2]) / 2, disagree[0]))
    model = score_against_readers(_blob(4, 4), agree, fix, None)  # one map scored against every reader
    np.testing.assert_allclose(model["cc"], [correlation_coefficient(_blob(4, 4), m) for m in agree])


def test_source_comparison_summary_is_per_source_pooled_and_paired():
    from gazecxr.evaluation.source_comparison import summarise

    sources = np.array(["EGD-CXR"] * 4 + ["REFLACX"] * 3)
    a = {m: np.arange(7.0) for m in ("kl", "cc", "hs", "nss")}
    b = {m: np.arange(7.0) + np.array([1, 1, 1, 1, 2, 2, 2.5]) for m in ("kl", "cc", "hs", "nss")}
    out = summarise({"egd_only": a, "egd+reflacx": b}, sources)
    assert set(out["by_source"]) == {"pooled", "EGD-CXR", "REFLACX"}
    cell = out["by_source"]["REFLACX"]["egd_only"]["kl"]
    assert {k: cell[k] for k in ("mean", "std", "n")} == {"mean": 5.0, "std": pytest.approx(np.std([4, 5, 6])), "n": 3}
    assert cell["ci"][0] >= 4 and cell["ci"][1] <= 6 and "patient bootstrap" in cell["ci_method"]
    test = next(t for t in out["tests"] if t["source"] == "EGD-CXR" and t["metric"] == "cc")
    assert test["mean_diff"] == 1.0 and test["p"] == 0.0 and test["method"] == "egd+reflacx"
    assert test["wilcoxon_p"] == pytest.approx(0.125) and test["p_holm"] == 0.0  # exact: 2 · (½)⁴
    pooled = next(t for t in out["tests"] if t["source"] == "pooled" and t["metric"] == "cc")
    assert pooled["wilcoxon_p_holm"] == pytest.approx(min(1.0, 3 * min(t["wilcoxon_p"] for t in out["tests"]
                                                                        if t["metric"] == "cc")))


def test_report_rows_per_source_and_inter_reader_note():
    from gazecxr.evaluation.consistency import INTER_READER, inter_reader_note
    from gazecxr.evaluation.report import saliency_by_source

    scores = {"full": {"kl": np.array([1.0, 2.0, 4.0]), "cc": np.array([0.1, 0.2, 0.6])}}
    out = saliency_by_source(scores, ["EGD-CXR", "REFLACX", "REFLACX"])
    assert out["EGD-CXR"]["full"]["kl"]["mean"] == 1.0 and out["REFLACX"]["full"]["cc"]["mean"] == pytest.approx(0.4)
    summary = {"images": 2, "pairs": 7, "scores": {INTER_READER: {"kl": {"mean": 0.5, "std": 0.1}},
                                                   "full": {"kl": {"mean": 0.9, "std": 0.2}}},
               "tests": [{"method": "full", "metric": "kl", "p": 0.012}]}
    note = inter_reader_note(summary)
    assert "7 readings of 2 test images" in note and "inter-reader KL 0.500 ± 0.100" in note
    assert "full vs single readers KL 0.900 ± 0.200 (paired t-test p: KL 0.012)" in note


def test_report_table_puts_the_inter_reader_row_beside_the_methods():
    from gazecxr.evaluation.consistency import NO_MULTI_READER
    from gazecxr.evaluation.tables import inter_reader_table

    summary = {"images": 2, "pairs": 7,
               "scores": {"inter_reader": {"kl": {"mean": 0.5, "std": 0.1}, "cc": {"mean": 0.8, "std": 0.05}},
                          "full": {"kl": {"mean": 0.9, "std": 0.2}, "cc": {"mean": 0.4, "std": 0.1}}},
               "intervals": {"inter_reader": {"kl": {"value": 0.5, "ci": [0.45, 0.56], "method": "m"}}},
               "tests": [{"method": "full", "metric": "kl", "p": 0.012, "p_holm": 0.024},
                         {"method": "full", "metric": "cc", "p": 2e-4, "p_holm": 4e-4}]}
    lines = inter_reader_table(summary).splitlines()
    assert lines[0] == "| Against single readers | KL ↓ | CC ↑ |"
    assert lines[2] == "| inter_reader | 0.500 ± 0.100 [0.450, 0.560] | 0.800 ± 0.050 |"
    assert lines[3] == "| full | 0.900 ± 0.200 (p 0.012, Holm 0.024) | 0.400 ± 0.100 (p <0.001, Holm <0.001) |"
    assert inter_reader_table({"images": 0, "pairs": 0, "note": NO_MULTI_READER}) == NO_MULTI_READER
