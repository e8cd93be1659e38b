"""Detection quality: mean average precision through torchmetrics (COCO's definition, pycocotools backend).

``detection_map(predictions, targets)`` wraps ``torchmetrics.detection.MeanAveragePrecision`` at IoU 0.5
(seed 000 reports "Detection AP (IoU@0.5)" per finding and their mean, 0.213 on real NIH ChestX-ray14):
101-point interpolated precision–recall per class, averaged over the classes that have ground truth.
Needs the ``[explain]`` extra (torchmetrics, pycocotools).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["detection_map"]


def detection_map(predictions: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]],
                  class_names: Sequence[str] | None = None, iou_threshold: float = 0.5) -> dict[str, Any]:
    """mAP at ``iou_threshold`` of per-image ``predictions`` ({boxes (D, 4) xmin, ymin, xmax, ymax, scores
    (D,), labels (D,)}) against ``targets`` ({boxes (K, 4), labels (K,)}); labels 1 … C.

    Returns {"map": mean over classes with ground truth, "per_class": {name or label: AP, −1 → None when
    the class has no ground-truth box}, "iou_threshold", "method"}.
    """
    from torchmetrics.detection import MeanAveragePrecision

    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction sets for {len(targets)} images")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[float(iou_threshold)],
                                  class_metrics=True, backend="pycocotools")
    metric.update([{k: torch.as_tensor(v).detach().cpu() for k, v in p.items()} for p in predictions],
                  [{k: torch.as_tensor(v).detach().cpu() for k, v in t.items()} for t in targets])
    result = metric.compute()
    classes = [int(c) for c in torch.atleast_1d(result["classes"]).tolist()]
    values = [float(v) for v in torch.atleast_1d(result["map_per_class"]).tolist()]
    per_class = {(class_names[c - 1] if class_names and 0 < c <= len(class_names) else str(c)):
                 (None if v < 0 else v) for c, v in zip(classes, values)}
    mean = float(result["map"])
    return {"map": None if mean < 0 else mean, "per_class": per_class, "iou_threshold": float(iou_threshold),
            "method": "torchmetrics MeanAveragePrecision (pycocotools), 101-point interpolation"}
