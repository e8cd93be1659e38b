import json

import numpy as np
import torch

from bench.__main__ import main as bench_main
from bench.__main__ import summary_table
from bench.common import report, save_untrained_lineage
from bench.heatmap import realistic_gaze
from gazecxr.training.registry import Registry
from gazecxr.training.checkpoint_io import load_full_model


def test_report_prints_a_final_json_line(capsys):
    record = report("x", 12.3456, 10.0, extra=1)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == record == {"bench": "x", "ratio": 12.346, "target": 10.0, "meets_target": True,
                                          "extra": 1}
    assert report("y", 0.5, 10.0)["meets_target"] is False and report("z", 2.0, None)["meets_target"] is None


def test_summary_table_lists_results_and_failures():
    table = summary_table([("heatmap", {"ratio": 99.9, "target": 20.0, "meets_target": True}, 12.0),
                           ("feature_cache", None, 3.0)])
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["bench", "ratio", "target", "met", "seconds"]
    assert lines[1].split()[:5] == ["heatmap", "99.90", "20.00", "yes", "12"]
    assert lines[2].split()[:2] == ["feature_cache", "FAILED"]


def test_runner_lists_and_rejects_unknown_names(capsys):
    assert bench_main(["--list"]) == 0
    assert "predict_latency" in capsys.readouterr().out
    try:
        bench_main(["nonsense"])
    except SystemExit as err:
        assert err.code == 2
    else:
        raise AssertionError("an unknown benchmark was accepted")


def test_realistic_gaze_has_the_requested_integer_samples():
    x, y = realistic_gaze(1500)
    assert len(x) == len(y) == 1500 and x.dtype == np.int64
    on_film = (x >= 0) & (x < 2500) & (y >= 0) & (y < 3000)
    assert 0.8 < on_film.mean() < 1.0  # mostly on the film, some samples stray off it


def test_untrained_lineage_loads_as_a_full_model(tiny_config):
    e1, e2, e3 = save_untrained_lineage(tiny_config, stages=3)
    assert e2.parents == [e1.id] and e3.parents == [e2.id]
    model, lineage = load_full_model(Registry(tiny_config["registry"]["root"]), e3.id)
    assert [e.id for e in lineage] == [e3.id, e2.id, e1.id]
    assert model(torch.rand(1, 1, 64, 64))["class_logits"].shape == (1, 3)
