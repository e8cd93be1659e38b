"""Task specifications (EGD 3-class, REFLACX findings) and the multi-label contrastive loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import SupConLoss

from gazecxr import CLASS_NAMES
from gazecxr.losses import MetricLoss
from gazecxr.losses.multilabel import JaccardSupConLoss, jaccard_similarity
from gazecxr.tasks import ExclusiveClasses, Findings, available_tasks, create_task

# The phase-2/3 label set as issue 10 lists it (REFLACX 1.0.0 metadata_phase_2/3.csv columns).
PHASE_2_3 = ("Abnormal mediastinal contour,Acute fracture,Atelectasis,Consolidation,Enlarged cardiac silhouette,"
             "Enlarged hilum,Groundglass opacity,Hiatal hernia,High lung volume / emphysema,Interstitial lung disease,"
             "Lung nodule or mass,Other,Pleural abnormality,Pneumothorax,Pulmonary edema,Support devices").split(",")


def test_registry_default_and_errors():
    assert available_tasks() == ["chexpert14", "egd_3class", "nih14_findings", "reflacx_findings", "siim_pneumothorax",
                                 "vindr_findings"]
    assert isinstance(create_task(None), ExclusiveClasses) and isinstance(create_task({}), ExclusiveClasses)
    assert create_task({"name": "reflacx_findings", "threshold": 4}).threshold == 4
    with pytest.raises(ValueError, match="unknown task 'chexpert'.*egd_3class"):
        create_task({"name": "chexpert"})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['certainty'\].*threshold"):
        create_task({"name": "reflacx_findings", "certainty": 3})
    with pytest.raises(ValueError, match="threshold"):
        create_task({"name": "reflacx_findings", "threshold": 0})


def test_egd_task_is_the_softmax_cross_entropy_of_today():
    task = create_task()
    assert task.name == "egd_3class" and not task.multilabel
    assert task.names == CLASS_NAMES and task.num_outputs == 3
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.equal(task.loss(logits, labels), F.cross_entropy(logits, labels))
    probs = task.probabilities(logits)
    assert torch.allclose(probs.sum(1), torch.ones(6)) and torch.equal(probs.argmax(1), logits.argmax(1))
    assert isinstance(task.metric_loss({"name": "triplet", "margin": 0.2, "miner": "all"}), MetricLoss)


def test_findings_names_follow_the_phase_2_3_label_set():
    task = create_task({"name": "reflacx_findings"})
    assert task.name == "reflacx_findings" and task.multilabel
    assert list(task.names) == [n for n in PHASE_2_3 if n not in ("Other", "Support devices")]
    assert task.num_outputs == 14
    with_devices = create_task({"name": "reflacx_findings", "support_devices": True})
    assert list(with_devices.names) == [n for n in PHASE_2_3 if n != "Other"]


def test_targets_from_certainties_in_any_column_order():
    task = Findings()
    columns = list(reversed(PHASE_2_3))
    cert = np.zeros((3, len(columns)))
    cert[0, columns.index("Atelectasis")] = 3  # present at the default threshold
    cert[1, columns.index("Atelectasis")] = 2.9  # e.g. the mean of two readers: absent
    cert[1, columns.index("Pneumothorax")] = 5
    cert[2, columns.index("Support devices")] = 5  # excluded output
    cert[2, columns.index("Other")] = 5
    t = task.targets_from_certainties(cert, columns)
    assert t.dtype == np.float32 and t.shape == (3, 14)
    names = list(task.names)
    assert t[0].nonzero()[0].tolist() == [names.index("Atelectasis")]
    assert t[1].nonzero()[0].tolist() == [names.index("Pneumothorax")]
    assert not t[2].any()
    assert not Findings(threshold=4).targets_from_certainties(cert, columns)[0].any()
    devices = Findings(support_devices=True)
    assert devices.targets_from_certainties(cert, columns)[2, list(devices.names).index("Support devices")] == 1
    with pytest.raises(ValueError, match="Pneumothorax"):
        task.targets_from_certainties(cert[:, 1:], [c for c in columns if c != "Pneumothorax"])
    with pytest.raises(ValueError, match="shape"):
        task.targets_from_certainties(cert, columns[:-1])


def test_bce_loss_positive_weights_and_findings():
    task = Findings()
    logits = torch.randn(8, 14)
    targets = (torch.rand(8, 14) < 0.3).float()
    assert torch.allclose(task.loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    train = np.zeros((10, 14))
    train[:2, 0] = 1  # 2 positives, 8 negatives
    train[:, 1] = 1  # no negatives
    weighted = task.fit_positive_weights(train)
    assert weighted.pos_weight[0] == 4.0 and weighted.pos_weight[1] == 1.0 and weighted.pos_weight[2] == 1.0
    assert task.pos_weight is None  # the original spec is unchanged
    p = torch.sigmoid(logits)
    manual = -(torch.tensor(weighted.pos_weight) * targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean()
    assert torch.allclose(weighted.loss(logits, targets), manual, atol=1e-6)
    with pytest.raises(ValueError, match="pos_weight"):
        Findings(pos_weight=(1.0, 2.0))
    probs = task.probabilities(torch.tensor([[3.0] + [-3.0] * 13, [0.0] * 14]))
    assert torch.allclose(probs[1], torch.full((14,), 0.5))
    thresholds = np.full(14, 0.6)
    assert task.findings(probs.numpy(), thresholds) == [["Abnormal mediastinal contour"], []]
    assert task.findings(probs.numpy(), np.full(14, 0.5))[1] == list(task.names)


def test_jaccard_similarity_by_hand():
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
    s = jaccard_similarity(y)
    assert torch.allclose(s[0], torch.tensor([1, 0.5, 0, 0, 0], dtype=s.dtype))
    assert s[3, 4] == 1 and s[2, 3] == 0 and torch.equal(s, s.T)
    assert torch.equal(jaccard_similarity(torch.tensor([2, 0, 2])),
                       torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float64))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_jaccard_supcon_equals_pml_supcon_for_single_labels(temperature):
    torch.manual_seed(0)
    emb = torch.randn(12, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 3, 2, 1])  # class 3 has no positive
    ours = JaccardSupConLoss(temperature)
    reference = SupConLoss(temperature=temperature)(emb, labels)
    assert ours(emb, labels).item() == pytest.approx(reference.item(), rel=1e-5)
    one_hot = F.one_hot(labels).float()
    assert ours(emb, one_hot).item() == pytest.approx(reference.item(), rel=1e-5)
    assert ours(emb, torch.arange(12)).item() == 0  # no positives at all


def test_task_contrastive_loss_pulls_images_with_shared_findings_together():
    torch.manual_seed(0)
    # 12 images: {A} ×3, {A,B} ×3, {C} ×3, {} ×3; findings A, B, C
    y = torch.tensor([[1, 0, 0]] * 3 + [[1, 1, 0]] * 3 + [[0, 0, 1]] * 3 + [[0, 0, 0]] * 3)
    table = torch.nn.Embedding(12, 8)
    loss_fn = Findings().metric_loss({"name": "supcon", "temperature": 0.2})
    assert isinstance(loss_fn, JaccardSupConLoss)
    shared = jaccard_similarity(y) > 0
    off = ~torch.eye(12, dtype=torch.bool)

    def similarities() -> tuple[float, float, float]:
        e = F.normalize(table.weight.detach(), dim=1)
        s = e @ e.T
        return float(s[shared & off].mean()), float(s[~shared].mean()), float(s[0, 3:6].mean() - s[0, 6:9].mean())

    before = similarities()
    optimiser = torch.optim.Adam(table.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = loss_fn(table.weight, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    after = similarities()
    assert losses[-1] < 0.8 * losses[0]
    assert after[0] > before[0] + 0.3 and after[0] > 0.5  # images sharing a finding moved together
    assert after[1] < before[1] and after[0] - after[1] > 0.7  # images sharing none moved apart
    assert after[2] > before[2] + 0.3  # {A} moved closer to {A,B} than to {C}
    with pytest.raises(ValueError, match="not defined for multi-label"):
        Findings().metric_loss({"name": "triplet"})
