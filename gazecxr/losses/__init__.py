"""Training losses as composable parts: saliency KL, CAM-to-gaze alignment, metric learning (stage 1), the multi-label
Jaccard SupCon, and MT-UNet's uncertainty-weighted joint loss."""

from gazecxr.losses.attention import cam_alignment_loss, pool_distribution
from gazecxr.losses.metric_learning import (
    TRIPLET_MINERS,
    MetricLoss,
    make_metric_loss,
    supcon_loss,
    triplet_loss,
)
from gazecxr.losses.multilabel import JaccardSupConLoss, jaccard_similarity
from gazecxr.losses.multitask import SIGMA_MODES, UncertaintyWeightedLoss
from gazecxr.losses.saliency import SaliencyKLLoss

__all__ = [
    "JaccardSupConLoss",
    "MetricLoss",
    "SIGMA_MODES",
    "SaliencyKLLoss",
    "TRIPLET_MINERS",
    "UncertaintyWeightedLoss",
    "cam_alignment_loss",
    "jaccard_similarity",
    "make_metric_loss",
    "pool_distribution",
    "supcon_loss",
    "triplet_loss",
]
