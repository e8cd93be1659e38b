"""Training seed 000's multi-task model through the engine: BCE on the findings + Faster R-CNN losses.

Batches carry each image's ground-truth boxes padded to ``MAX_BOXES``: ``boxes`` (N, MAX_BOXES, 4)
xmin, ymin, xmax, ymax in input pixels, ``box_labels`` (N, MAX_BOXES) in 1 … C and ``n_boxes`` (N,);
``BoxedImages`` builds them from a converted file's boxes (``GazeCXRDataset.regions``). Validation
reports the task's AUROCs and ``val_map``, the detection mAP at IoU 0.5 (`gazecxr.metrics.detection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from gazecxr.metrics.detection import detection_map
from gazecxr.tasks import TaskSpec
from gazecxr.training.engine import Batch, Outputs, Task
from gazecxr.training.objectives import classification_summary

__all__ = ["MAX_BOXES", "MAX_DETECTIONS", "BoxedImages", "MultiTaskDetectionTask", "unpad_targets"]

MAX_BOXES = 8
"""Ground-truth boxes kept per image (NIH ChestX-ray14 has at most a few per image)."""

MAX_DETECTIONS = 20
"""Detections per image kept in the validation outputs."""


def unpad_targets(boxes: Tensor, labels: Tensor, counts: Tensor) -> list[dict[str, Tensor]]:
    """Per-image detection targets {boxes (K, 4), labels (K,)} from padded batch tensors."""
    return [{"boxes": boxes[i, : int(counts[i])].float(), "labels": labels[i, : int(counts[i])].long()}
            for i in range(len(counts))]


class BoxedImages(Dataset):
    """Records ``rows`` of a converted file with boxes (NIH, VinDr): ``image`` (1, H, W), ``label`` (the task's
    target), ``boxes`` / ``box_labels`` / ``n_boxes`` padded (labels: 1 + the box's index in ``box_findings``),
    ``index``. Boxes of findings outside ``box_findings`` are dropped."""

    def __init__(self, base: Any, rows: Sequence[int], box_findings: Sequence[str]):
        self.base, self.rows, self.box_findings = base, np.asarray(rows, np.int64), list(box_findings)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = self.base[int(self.rows[position])]
        regions = self.base.regions(int(item["index"]))
        boxes = torch.zeros(MAX_BOXES, 4)
        labels = torch.zeros(MAX_BOXES, dtype=torch.long)
        kept = [(b, self.box_findings.index(regions.label_names[f]) + 1) for b, f in zip(regions.boxes, regions.finding)
                if f >= 0 and regions.label_names[f] in self.box_findings][:MAX_BOXES]
        for k, (box, label) in enumerate(kept):
            boxes[k], labels[k] = torch.as_tensor(box, dtype=torch.float32), label
        return {"image": item["image"], "label": item["label"], "boxes": boxes, "box_labels": labels,
                "n_boxes": len(kept), "index": int(item["index"])}


class MultiTaskDetectionTask(Task):
    """Seed 000's composite loss L = BCE(findings) + λ · (RPN + RoI losses), λ = ``detection_weight`` (1)."""

    def __init__(self, model: nn.Module, task: TaskSpec, box_findings: Sequence[str], detection_weight: float = 1.0):
        self.trainable, self.task, self.box_findings = model, task, list(box_findings)
        self.detection_weight = float(detection_weight)

    def _targets(self, batch: Batch) -> list[dict[str, Tensor]]:
        return unpad_targets(batch["boxes"], batch["box_labels"], batch["n_boxes"])

    def loss(self, batch: Batch) -> Tensor:
        out = self.trainable(batch["image"], self._targets(batch))
        detection = sum(out["losses"].values())
        return self.task.loss(out["class_logits"].float(), batch["label"]) + self.detection_weight * detection

    def outputs(self, batch: Batch) -> Outputs:
        out = self.trainable(batch["image"])
        n = len(batch["image"])
        detections = torch.zeros(n, MAX_DETECTIONS, 6)
        detections[..., 4] = -1  # padding: score -1
        for i, d in enumerate(out["detections"]):
            k = min(len(d["boxes"]), MAX_DETECTIONS)
            detections[i, :k, :4] = d["boxes"][:k].float().cpu()
            detections[i, :k, 4] = d["scores"][:k].float().cpu()
            detections[i, :k, 5] = d["labels"][:k].float().cpu()
        return {"logits": out["class_logits"].float(), "label": batch["label"], "detections": detections,
                "boxes": batch["boxes"].float(), "box_labels": batch["box_labels"], "n_boxes": batch["n_boxes"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        out = classification_summary(outputs["label"], outputs["logits"], self.task)
        predictions = [{"boxes": d[d[:, 4] >= 0, :4], "scores": d[d[:, 4] >= 0, 4], "labels": d[d[:, 4] >= 0, 5].long()}
                       for d in outputs["detections"]]
        targets = unpad_targets(outputs["boxes"], outputs["box_labels"], outputs["n_boxes"])
        if any(len(t["boxes"]) for t in targets):
            result = detection_map(predictions, targets, self.box_findings)
            out["val_map"] = float("nan") if result["map"] is None else result["map"]
            out.update({f"val_ap_{name}": float("nan") if v is None else v for name, v in result["per_class"].items()})
        return out
