"""Seed 000's multi-task DenseNet + Faster R-CNN: it trains through the engine; its mAP is torchmetrics'."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from gazecxr.metrics.detection import detection_map
from gazecxr.models import create_model
from gazecxr.tasks import create_task
from gazecxr.training.detection import MAX_BOXES, MultiTaskDetectionTask
from gazecxr.training.engine import Trainer, TrainSettings

SIZE = 64
TINY = {"name": "multitask_frcnn", "num_findings": 1, "num_box_classes": 1, "arch": "custom", "growth_rate": 8,
        "block_config": [1, 1, 1, 1], "num_init_features": 16, "hidden": 16, "box_hidden": 32,
        "anchor_sizes": [8, 16, 32]}


def test_map_on_a_hand_made_prediction_set_equals_the_known_value() -> None:
    truth = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 1])},
             {"boxes": torch.tensor([[5.0, 5, 15, 15]]), "labels": torch.tensor([2])}]
    # class 1: ranked FP (0.9), TP (0.8), TP (0.7): precision envelope 2/3 at every recall -> AP 2/3
    # class 2: one exact TP -> AP 1; mean 5/6
    predictions = [{"boxes": torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]]),
                    "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 1])},
                   {"boxes": torch.tensor([[5.0, 5, 15, 15]]), "scores": torch.tensor([0.6]), "labels": torch.tensor([2])}]
    result = detection_map(predictions, truth, ["Mass", "Nodule"])
    assert result["per_class"]["Mass"] == pytest.approx(2 / 3, abs=1e-6)
    assert result["per_class"]["Nodule"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(5 / 6, abs=1e-6)


class _Squares(Dataset):
    """Images with a bright square (the finding, boxed) in half of them."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            image = 0.1 * torch.rand(1, SIZE, SIZE, generator=g)
            boxes, labels = torch.zeros(MAX_BOXES, 4), torch.zeros(MAX_BOXES, dtype=torch.long)
            present = i % 2 == 0
            if present:
                x, y = (int(v) for v in torch.randint(4, SIZE - 28, (2,), generator=g))
                image[0, y:y + 20, x:x + 20] += 0.8
                boxes[0], labels[0] = torch.tensor([x, y, x + 20, y + 20], dtype=torch.float32), 1
            self.items.append({"image": image, "label": torch.tensor([float(present)]), "boxes": boxes,
                               "box_labels": labels, "n_boxes": int(present)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_multitask_model_trains_through_the_engine_and_reports_map(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model(TINY)
    task = MultiTaskDetectionTask(model, create_task({"name": "siim_pneumothorax"}), ["Pneumothorax"])
    train = DataLoader(_Squares(16, 0), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(_Squares(8, 1), batch_size=8)
    batch = next(iter(train))

    def composite_loss() -> float:  # same RPN/RoI sampling and dropout draws each time
        model.train()
        torch.manual_seed(123)
        with torch.no_grad():
            return float(task.loss(batch))

    before = composite_loss()
    settings = TrainSettings(batch_size=8, lr=1e-3, max_epochs=3, patience=None, device="cpu", amp="none")
    result = Trainer(task, settings, tmp_path / "run", "val_loss", "min", progress=False).fit(train, val)
    assert result.epochs_run == 3 and "val_map" in result.best_metrics and "val_auc_macro" in result.best_metrics
    assert 0 <= result.best_metrics["val_map"] <= 1
    model.load_state_dict(result.best_state)
    assert composite_loss() < before  # the composite loss went down
    model.eval()
    with torch.no_grad():
        out = model(batch["image"])
    assert out["class_logits"].shape == (8, 1) and len(out["detections"]) == 8
