"""The three stages and evaluate on a converted CXR-P file (tiny settings): films without gaze train the
classifier, stage 2's loss and every saliency score skip them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep import cxr_p as cxr_p_cli
from gazecxr.config import load_config
from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.synthetic.cxr_p_writer import generate_cxr_p
from gazecxr.evaluation.report import evaluate
from gazecxr.tasks import task_of
from gazecxr.training.objectives import SaliencyTask, saliency_scores
from gazecxr.training.stages import run_stage1, run_stage2, run_stage3


@pytest.fixture(scope="module")
def cxrp_h5(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxrp_pipeline")
    raw = generate_cxr_p(root / "raw", n=40, seed=1, size=128, progress=False)
    out = root / "cxr_p.h5"
    assert cxr_p_cli.main(["--siim-dir", raw["paths"]["siim"], "--gaze", raw["paths"]["gaze_pickle"],
                           "--split-file", raw["paths"]["train_list"], raw["paths"]["test_list"],
                           "--out", str(out), "--height", "64", "--width", "64", "--sigma", "6", "--val-fraction", "0.3",
                           "--quiet"]) == 0
    return out


class _Constant(torch.nn.Module):
    """A 'UNet' whose logits are a fixed map, so the KL of each record is known."""

    aux_channels = 0

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.map = torch.nn.Parameter(logits.clone())

    def forward(self, image, aux=None):
        return {"logits": self.map.expand(len(image), *self.map.shape[1:])}


def test_saliency_loss_and_scores_skip_films_without_gaze():
    heat = torch.rand(3, 1, 8, 8)
    heat = heat / heat.sum(dim=(2, 3), keepdim=True)
    heat[1] = 0.0
    has_gaze = torch.tensor([True, False, True])
    task = SaliencyTask(_Constant(torch.randn(1, 1, 8, 8)))
    batch = {"image": torch.zeros(3, 1, 8, 8), "heatmap": heat, "has_gaze": has_gaze}
    loss = task.loss(batch)
    kept = task.loss({"image": torch.zeros(2, 1, 8, 8), "heatmap": heat[[0, 2]]})
    assert torch.isfinite(loss) and torch.isclose(loss, kept)
    none = task.loss({**batch, "has_gaze": torch.zeros(3, dtype=torch.bool)})
    assert none.item() == 0.0 and none.requires_grad
    with torch.no_grad():
        scores = saliency_scores(task.logits(batch["image"])["logits"], heat, has_gaze)
    assert np.isnan(scores["kl"][1]) and np.isfinite(scores["kl"][[0, 2]]).all()
    assert np.isfinite(task.metrics(scores)["val_kl"])


def test_stages_and_evaluate_run_on_the_converted_file(cxrp_h5, tmp_path):
    data = GazeCXRDataset(cxrp_h5, "test")
    assert not data.has_gaze.all() or not GazeCXRDataset(cxrp_h5, "train").has_gaze.all()
    assert {int(data[i]["has_gaze"]) for i in range(len(data))} <= {0, 1}
    config = load_config("cxrp_test", [f"data.h5={cxrp_h5}", f"registry.root={tmp_path / 'checkpoints'}",
                                       f"runs.root={tmp_path / 'runs'}", "train.max_epochs=1",
                                       "stage1.contrastive.enabled=false"])
    stage1 = run_stage1(config, progress=False)
    config["stage2"]["encoder"] = stage1.id
    stage2 = run_stage2(config, progress=False)
    config["stage3"]["saliency"] = stage2.id
    entries = [stage1, stage2, run_stage3(config, progress=False)]
    assert np.isfinite(entries[1].metrics["val_kl"])
    metrics = evaluate(config, entries[2].id, tmp_path / "reports", progress=False, bootstrap=20)
    assert metrics["n_test"] == int((data.labels >= -1).sum())
    assert np.isfinite(metrics["saliency"]["full"]["kl"]["mean"])
    findings = GazeCXRDataset(cxrp_h5, "test", task=task_of(config))
    masked = [i for i in range(len(findings)) if findings.targets[i][0] > 0.5
              and (lambda m: m is not None and m.any() and not m.all())(findings.region_mask(int(findings.indices[i])))]
    loc = metrics["localisation"]
    assert masked and loc["n"] == len(masked)
    scores = loc["scores"]
    assert all(v is not None for m in ("full", "gradcam", "uniform") for v in scores[m]["diff"])
    gaze = [bool(findings.has_gaze[i]) for i in masked]
    assert [v is not None for v in scores["gaze"]["diff"]] == gaze
    assert loc["methods"]["gaze"]["diff"]["overall"]["n"] == sum(gaze)
    assert "## Localisation over" in (tmp_path / "reports" / entries[2].id / "tables.md").read_text()


def test_the_three_class_task_on_a_findings_file_names_the_task_that_fits(cxrp_h5, tmp_path):
    config = load_config("test", [f"data.h5={cxrp_h5}", f"registry.root={tmp_path / 'checkpoints'}",
                                  f"runs.root={tmp_path / 'runs'}"])
    with pytest.raises(InputError, match=r"no record of the 'train' split has a label for task 'egd_3class'; "
                                         r"the file holds the findings \['Pneumothorax'\]: set task.name to one of "
                                         r"\['siim_pneumothorax'\]"):
        run_stage1(config, progress=False)
