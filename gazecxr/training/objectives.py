"""The four training tasks: contrastive pretraining, classification, saliency, fusion."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gazecxr import CLASS_NAMES
from gazecxr.losses import MetricLoss, SaliencyKLLoss
from gazecxr.metrics import (
    classification_metrics,
    correlation_coefficient,
    histogram_similarity,
    kl_divergence,
)
from gazecxr.metrics.multilabel import multilabel_metrics
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.tasks import ExclusiveClasses, TaskSpec
from gazecxr.training.engine import Batch, Outputs, Task


def classification_summary(labels: Tensor, logits: Tensor, task: TaskSpec | None = None) -> dict[str, float]:
    """Validation loss (``val_loss``), AUCs and calibration error of the diagnosis logits.

    The default 3-class task adds accuracy and per-class AUCs; a multi-label task reports
    ``multilabel_metrics``: macro/micro AUROC over findings as ``val_auc_macro``/``val_auc_micro``
    (so early stopping and tuning monitor the same name), ``val_ap_macro``, mean per-finding ECE
    and per-finding AUROC.
    """
    if task is not None and task.multilabel:
        z = logits.float().cpu()
        y = labels.float().cpu()
        m = multilabel_metrics(y.numpy(), task.probabilities(z).numpy().astype(np.float64), task.names)
        out = {"val_loss": float(task.loss(z, y)), "val_auc_macro": m["auroc_macro"],
               "val_auc_micro": m["auroc_micro"], "val_ap_macro": m["ap_macro"],
               "val_ece": m["ece_mean"]}
        out.update({f"val_auc_{name}": e["auroc"] for name, e in m["per_finding"].items()})
        return out
    y = labels.cpu()
    z = logits.float().cpu()
    probs = torch.softmax(z, dim=1).numpy().astype(np.float64)
    m = classification_metrics(y.numpy(), probs, CLASS_NAMES)
    out = {"val_loss": float(F.cross_entropy(z, y)), "val_auc_macro": m["auc_macro"],
           "val_auc_micro": m["auc_micro"], "val_accuracy": m["accuracy"], "val_ece": m["ece"]}
    out.update({f"val_auc_{name}": v for name, v in m["auc_per_class"].items()})
    return out


def saliency_scores(logits: Tensor, heatmaps: Tensor, has_gaze: Tensor | None = None) -> Outputs:
    """Per-image KL, CC and HS (float64, on the CPU) of the saliency maps of ``logits`` (N, 1, H, W)
    against ground-truth ``heatmaps`` (N, 1, H, W); NaN for the images whose ``has_gaze`` is false."""
    pred = saliency_from_logits(logits.float())[:, 0].cpu().numpy()
    gt = heatmaps[:, 0].float().cpu().numpy()
    gaze = np.ones(len(gt), bool) if has_gaze is None else has_gaze.cpu().numpy().astype(bool)
    out = {}
    for name, fn in (("kl", kl_divergence), ("cc", correlation_coefficient), ("hs", histogram_similarity)):
        values = np.full(len(gt), np.nan)
        if gaze.any():
            values[gaze] = np.asarray(fn(pred[gaze], gt[gaze]), dtype=np.float64)
        out[name] = torch.from_numpy(values)
    return out


def saliency_summary(outputs: Outputs) -> dict[str, float]:
    """``val_kl``, ``val_cc``, ``val_hs``: the means of `saliency_scores`' per-image values over the
    images with gaze (NaN when none has)."""
    return {f"val_{name}": float(np.nanmean(outputs[name].numpy())) if torch.isfinite(outputs[name]).any()
            else float("nan") for name in ("kl", "cc", "hs")}


class ContrastiveTask(Task):
    """Stage 1, phase 1: metric learning of the DenseNet embedding on the task's labels (class
    labels, or multi-hot findings with the task's multi-label loss)."""

    unused_parameters = True  # the classifier head is not part of the embedding

    def __init__(self, encoder: nn.Module, metric_loss: MetricLoss):
        self.trainable, self.metric_loss = encoder, metric_loss

    def loss(self, batch: Batch) -> Tensor:
        return self.metric_loss(self.trainable.embed(batch["image"]).float(), batch["label"])

    def outputs(self, batch: Batch) -> Outputs:
        return {"embedding": self.trainable.embed(batch["image"]).float(), "label": batch["label"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return {"val_loss": float(self.metric_loss(outputs["embedding"], outputs["label"]))}


class ClassifierTask(Task):
    """Stage 1, phase 2: fine-tuning of the DenseNet classifier with the task's loss
    (cross-entropy for the 3 classes, BCE for findings)."""

    def __init__(self, encoder: nn.Module, task: TaskSpec | None = None):
        self.trainable, self.task = encoder, task or ExclusiveClasses()

    def loss(self, batch: Batch) -> Tensor:
        return self.task.loss(self.trainable(batch["image"]).float(), batch["label"])

    def outputs(self, batch: Batch) -> Outputs:
        return {"logits": self.trainable(batch["image"]).float(), "label": batch["label"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return classification_summary(outputs["label"], outputs["logits"], self.task)


class FrozenEncoderMixin:
    """Runs frozen modules without autograd, checks they never change, and names the features
    they feed the trainable part so that those can be cached (``frozen_features``)."""

    frozen: list[nn.Module]

    def freeze_snapshot(self) -> list[dict[str, Tensor]]:
        """Copies of the frozen modules' state, to compare after training."""
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.frozen]

    def assert_unchanged(self, snapshot: list[dict[str, Tensor]]) -> None:
        """Raise if any frozen weight or buffer differs bit-wise from ``snapshot``."""
        for module, before in zip(self.frozen, snapshot):
            for key, value in module.state_dict().items():
                if not torch.equal(value.cpu(), before[key].cpu()):
                    raise RuntimeError(f"frozen weights changed during training: {type(module).__name__}.{key}")

    def train(self) -> None:
        self.trainable.train()
        for module in self.frozen:
            module.eval()

    def frozen_features(self, image: Tensor) -> dict[str, Tensor]:
        """What the frozen modules give the trainable part for ``image``, per sample; a batch
        carrying these keys (from the feature cache) skips the frozen modules."""
        raise NotImplementedError


class SaliencyTask(FrozenEncoderMixin, Task):
    """Stage 2: the saliency UNet against gaze heatmaps (KL loss), DenseNet frozen (or absent).

    Batches may carry the DenseNet feature as ``dense`` (feature cache); otherwise it is
    computed without autograd and without the DenseNet's unused classifier head.
    """

    uses_class_labels = False
    """Trained on every record with a heatmap, whether or not it has a class label."""

    def __init__(self, unet: nn.Module, encoder: nn.Module | None = None):
        self.trainable, self.encoder = unet, encoder
        self.frozen = [encoder] if encoder is not None else []
        self.kl = SaliencyKLLoss()

    def frozen_features(self, image: Tensor) -> dict[str, Tensor]:
        if self.encoder is None:
            raise ValueError("this saliency model has no frozen encoder, so no features to cache")
        with torch.no_grad():
            return {"dense": self.encoder.features_only(image)}

    def logits(self, image: Tensor, dense: Tensor | None = None) -> dict[str, Tensor]:
        """UNet outputs, fed the frozen DenseNet feature (given, or computed) when there is an encoder."""
        if self.encoder is not None and dense is None:
            dense = self.frozen_features(image)["dense"]
        return self.trainable(image, aux=dense if self.encoder is not None else None)

    def loss(self, batch: Batch) -> Tensor:
        """Batch-mean KL over the records with gaze (zero, still on the graph, for a batch without any)."""
        logits = self.logits(batch["image"], batch.get("dense"))["logits"].float()
        return self.kl(logits, batch["heatmap"], batch.get("has_gaze"))

    def outputs(self, batch: Batch) -> Outputs:
        return saliency_scores(self.logits(batch["image"], batch.get("dense"))["logits"], batch["heatmap"],
                               batch.get("has_gaze"))

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return saliency_summary(outputs)


class FusionTask(FrozenEncoderMixin, Task):
    """Stage 3: the fusion classifier on frozen DenseNet and frozen UNet decoder features.

    Batches may carry the cached features ``dense`` and ``decoder``, already pooled to what the
    classifier head pools them to (``frozen_features``); the classifier then gives the same
    logits as on the full feature maps.
    """

    def __init__(self, classifier: nn.Module, encoder: nn.Module, unet: nn.Module, task: TaskSpec | None = None):
        self.trainable, self.encoder, self.unet = classifier, encoder, unet
        self.frozen = [encoder, unet]
        self.task = task or ExclusiveClasses()

    def features(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen DenseNet tap feature and UNet last decoder feature (full maps)."""
        with torch.no_grad():
            dense = self.encoder.features_only(image)
            decoder = self.unet(image, aux=dense if self.unet.aux_channels else None)["decoder"]
        return dense, decoder

    def frozen_features(self, image: Tensor) -> dict[str, Tensor]:
        """Both features average-pooled as the classifier's first step pools them: to 1×1 for the
        linear head, to the DenseNet map's size for the conv head."""
        dense, decoder = self.features(image)
        size = (1, 1) if self.trainable.head == "linear" else tuple(dense.shape[-2:])
        return {"dense": F.adaptive_avg_pool2d(dense, size), "decoder": F.adaptive_avg_pool2d(decoder, size)}

    def class_logits(self, batch: Batch) -> Tensor:
        """Classifier logits from the batch's cached features, or from its images."""
        if "dense" in batch:
            return self.trainable(batch["dense"], batch["decoder"])
        return self.trainable(*self.features(batch["image"]))

    def loss(self, batch: Batch) -> Tensor:
        return self.task.loss(self.class_logits(batch).float(), batch["label"])

    def outputs(self, batch: Batch) -> Outputs:
        return {"logits": self.class_logits(batch).float(), "label": batch["label"]}

    def metrics(self, outputs: Outputs) -> dict[str, float]:
        return classification_summary(outputs["label"], outputs["logits"], self.task)
