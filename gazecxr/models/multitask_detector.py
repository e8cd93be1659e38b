"""Seed 000's multi-task model: one DenseNet backbone, a multi-label head and a Faster R-CNN detector.

``MultiTaskDetector`` (registry name ``multitask_frcnn``): the DenseNet feature map (``densenet121`` by
default, or a small ``custom`` one for tests) feeds (a) the classification head of the seed —
global average pooling → Linear(C, 512) → ReLU → Dropout(0.3) → Linear(512, findings) — and (b) a
torchvision Faster R-CNN: its region proposal network and RoI heads with ``MultiScaleRoIAlign``, run on
the same feature map in the same forward pass. ``forward(images, targets)`` gives the class logits and,
with targets (training), the detector's four losses; without targets, its detections per image.
Images are (N, 1, H, W) grey, repeated to 3 channels for the DenseNet; they are not resized (the
detector sees the input canvas), so predicted boxes are in input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from .densenet import DenseNetEncoder
from .factory import register_model

DETECTION_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
"""The Faster R-CNN losses (RPN objectness and box regression, RoI classification and box regression)."""


@register_model("multitask_frcnn")
class MultiTaskDetector(nn.Module):
    """DenseNet backbone + multi-label head + Faster R-CNN head (see the module docstring).

    ``num_findings``: logits of the classification head; ``num_box_classes``: detected finding classes
    (labels 1 … num_box_classes; 0 is background). ``arch`` and the ``custom`` keywords are
    `DenseNetEncoder`'s; ``anchor_sizes`` are the RPN's anchor sides in input pixels (one feature level).
    """

    def __init__(self, num_findings: int = 14, num_box_classes: int = 8, arch: str = "densenet121",
                 pretrained: str = "none", growth_rate: int | None = None,
                 block_config: Sequence[int] | None = None, num_init_features: int | None = None,
                 hidden: int = 512, dropout: float = 0.3, anchor_sizes: Sequence[int] = (32, 64, 128, 256),
                 box_hidden: int = 1024, detections_per_image: int = 20, box_score_thresh: float = 0.05) -> None:
        super().__init__()
        self.backbone = DenseNetEncoder(arch=arch, pretrained=pretrained, num_classes=num_findings,
                                        growth_rate=growth_rate, block_config=block_config,
                                        num_init_features=num_init_features)
        channels = self.backbone.embedding_dim
        self.head = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_findings))
        anchors = AnchorGenerator(sizes=(tuple(int(s) for s in anchor_sizes),), aspect_ratios=((0.5, 1.0, 2.0),))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]), fg_iou_thresh=0.7,
            bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n={"training": 2000, "testing": 1000}, post_nms_top_n={"training": 2000, "testing": 1000},
            nms_thresh=0.7)
        pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
        self.roi_heads = RoIHeads(
            pool, TwoMLPHead(channels * 7 * 7, box_hidden), FastRCNNPredictor(box_hidden, num_box_classes + 1),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=512, positive_fraction=0.25,
            bbox_reg_weights=None, score_thresh=box_score_thresh, nms_thresh=0.5,
            detections_per_img=detections_per_image)

    def classify(self, images: Tensor) -> Tensor:
        """The classification head's logits alone (the detector is not run)."""
        return self.head(F.adaptive_avg_pool2d(self.features(images), 1).flatten(1))

    def as_classifier(self) -> ClassificationView:
        """This model seen as a plain classifier (``forward`` = `classify`), e.g. for CAM libraries."""
        return ClassificationView(self)

    def features(self, images: Tensor) -> Tensor:
        """The DenseNet's final feature map (after its last norm and ReLU), shared by both heads."""
        x = self.backbone._to_rgb(images)
        return F.relu(self.backbone.net.features(x))

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict:
        """``class_logits`` (N, num_findings) and, in training mode, the detection ``losses`` against
        ``targets`` (one {boxes (K, 4) xmin, ymin, xmax, ymax; labels (K,) in 1 … num_box_classes} per image,
        K may be 0); in eval mode the ``detections`` (per image {boxes, labels, scores})."""
        feats = self.features(images)
        logits = self.head(F.adaptive_avg_pool2d(feats, 1).flatten(1))
        sizes = [tuple(images.shape[-2:])] * len(images)
        image_list = ImageList(images, sizes)
        proposals, rpn_losses = self.rpn(image_list, {"0": feats}, targets)
        detections, roi_losses = self.roi_heads({"0": feats}, proposals, sizes, targets)
        if self.training:
            return {"class_logits": logits, "losses": {**rpn_losses, **roi_losses}}
        return {"class_logits": logits, "detections": detections}


class ClassificationView(nn.Module):
    """A `MultiTaskDetector` whose ``forward`` gives the classification logits only (shares its weights)."""

    def __init__(self, detector: MultiTaskDetector):
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> Tensor:
        """Class logits (N, num_findings)."""
        return self.detector.classify(images)
