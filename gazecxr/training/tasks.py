"""The four training tasks: contrastive pretraining, classification, saliency, fusion."""

from __future__ import annotations

from collections.abc import Iterable

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
from gazecxr.models.resse_unet import saliency_from_logits
from gazecxr.training.engine import Batch, Task


def _classification_summary(labels: list[Tensor], logits: list[Tensor]) -> dict[str, float]:
    y = torch.cat(labels).cpu()
    z = torch.cat(logits).float().cpu()
    probs = torch.softmax(z, dim=1).numpy().astype(np.float64)
    m = classification_metrics(y.numpy(), probs, CLASS_NAMES)
    out = {"val_loss": float(F.cross_entropy(z, y)), "val_auc_macro": m["auc_macro"],
           "val_auc_micro": m["auc_micro"], "val_accuracy": m["accuracy"], "val_ece": m["ece"]}
    out.update({f"val_auc_{name}": v for name, v in m["auc_per_class"].items()})
    return out


class ContrastiveTask(Task):
    """Stage 1, phase 1: metric learning of the DenseNet embedding on class labels."""

    def __init__(self, encoder: nn.Module, metric_loss: MetricLoss):
        self.trainable, self.metric_loss = encoder, metric_loss

    def loss(self, batch: Batch) -> Tensor:
        return self.metric_loss(self.trainable.embed(batch["image"]).float(), batch["label"])

    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        emb, labels = [], []
        for batch in batches:
            emb.append(self.trainable.embed(batch["image"]).float())
            labels.append(batch["label"])
        return {"val_loss": float(self.metric_loss(torch.cat(emb), torch.cat(labels)))}


class ClassifierTask(Task):
    """Stage 1, phase 2: cross-entropy fine-tuning of the DenseNet classifier."""

    def __init__(self, encoder: nn.Module):
        self.trainable = encoder

    def loss(self, batch: Batch) -> Tensor:
        return F.cross_entropy(self.trainable(batch["image"]).float(), batch["label"])

    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        labels, logits = [], []
        for batch in batches:
            logits.append(self.trainable(batch["image"]))
            labels.append(batch["label"])
        return _classification_summary(labels, logits)


class FrozenEncoderMixin:
    """Runs a frozen encoder without autograd and checks it is never changed."""

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


class SaliencyTask(FrozenEncoderMixin, Task):
    """Stage 2: the saliency UNet against gaze heatmaps (KL loss), DenseNet frozen (or absent)."""

    def __init__(self, unet: nn.Module, encoder: nn.Module | None = None):
        self.trainable, self.encoder = unet, encoder
        self.frozen = [encoder] if encoder is not None else []
        self.kl = SaliencyKLLoss()

    def logits(self, image: Tensor) -> dict[str, Tensor]:
        """UNet outputs, fed the frozen DenseNet feature when there is an encoder."""
        aux = None
        if self.encoder is not None:
            with torch.no_grad():
                aux = self.encoder.forward_features(image)["tap"]
        return self.trainable(image, aux=aux)

    def loss(self, batch: Batch) -> Tensor:
        return self.kl(self.logits(batch["image"])["logits"].float(), batch["heatmap"])

    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        kl, cc, hs = [], [], []
        for batch in batches:
            pred = saliency_from_logits(self.logits(batch["image"])["logits"].float())[:, 0].cpu().numpy()
            gt = batch["heatmap"][:, 0].float().cpu().numpy()
            kl.append(kl_divergence(pred, gt))
            cc.append(correlation_coefficient(pred, gt))
            hs.append(histogram_similarity(pred, gt))
        return {"val_kl": float(np.concatenate(kl).mean()), "val_cc": float(np.concatenate(cc).mean()),
                "val_hs": float(np.concatenate(hs).mean())}


class FusionTask(FrozenEncoderMixin, Task):
    """Stage 3: the fusion classifier on frozen DenseNet and frozen UNet decoder features."""

    def __init__(self, classifier: nn.Module, encoder: nn.Module, unet: nn.Module):
        self.trainable, self.encoder, self.unet = classifier, encoder, unet
        self.frozen = [encoder, unet]

    def features(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen DenseNet tap feature and UNet last decoder feature."""
        with torch.no_grad():
            dense = self.encoder.forward_features(image)["tap"]
            decoder = self.unet(image, aux=dense if self.unet.aux_channels else None)["decoder"]
        return dense, decoder

    def loss(self, batch: Batch) -> Tensor:
        return F.cross_entropy(self.trainable(*self.features(batch["image"])).float(), batch["label"])

    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        labels, logits = [], []
        for batch in batches:
            logits.append(self.trainable(*self.features(batch["image"])))
            labels.append(batch["label"])
        return _classification_summary(labels, logits)
