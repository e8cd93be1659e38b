"""The gaze-utility benchmark's method table: how each way of using gaze is trained on one backbone.

Every method is fit on a training and a validation split only (`TrainingArrays`; the test split is never
passed), chooses its epoch by the validation macro AUC, and returns a `Predictor`. Only the
``test_time_gaze`` control reads a gaze map at prediction time (it leaks the label and is reported apart).

- ``baseline``: `BenchCNN` on the images, no gaze.
- ``evidence_oracle`` (positive control): the same CNN with its class activation map pulled towards the
  true evidence mask (the most any gaze can give).
- ``attention_consistency``: the same CNN with its CAM pulled towards the gaze map (Follow My Eye, GG-CAM).
- ``fusion`` / ``fusion_conv``: the paper's cooperative model in miniature: the baseline CNN frozen (its
  stage 1), a `SaliencyDecoder` trained on the gaze maps with the KL loss (stage 2), a `FusionHead`
  (``linear`` / ``conv``) on both feature maps (stage 3).
- ``saliency_pool``: the frozen baseline's feature map pooled under the decoder's predicted saliency.
  These three are compared with themselves built on a decoder trained on a uniform map (``@nogaze``).
- ``test_time_gaze`` (leaking control): the CNN fed the gaze map as a second channel at training *and* test
  time, as GazeGNN and MT-UNet's gaze-input variants are.
- ``gaze_token_mask``, ``gdvig``, ``gaze_mtl``: the field's mechanisms (`gazecxr.training.gaze_mechanisms`),
  each against itself with its gaze switched off.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gazecxr.losses.attention import cam_alignment_loss, pool_distribution
from gazecxr.losses.saliency import SaliencyKLLoss
from gazecxr.metrics import classification_metrics
from gazecxr.models.bench_cnn import BenchCNN, FusionHead, SaliencyDecoder, SaliencyPoolHead


@dataclass(frozen=True)
class BenchArrays:
    """One split of a benchmark data set: images (N, 1, H, W) in [0, 1], labels (N,), gaze maps (N, H, W) ≥ 0,
    true evidence masks (N, H, W) (0 on normal films), the record ids and (where known) each film's total
    dwell time in seconds (N,)."""

    images: np.ndarray
    labels: np.ndarray
    gaze: np.ndarray
    evidence: np.ndarray
    ids: tuple[str, ...]
    time: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def with_gaze(self, gaze: np.ndarray) -> BenchArrays:
        """The same split with other gaze maps (e.g. shuffled among its films)."""
        return replace(self, gaze=gaze)


@dataclass(frozen=True)
class TrainingArrays:
    """What a method may be fit on: the training and the validation split (never the test split)."""

    train: BenchArrays
    val: BenchArrays


@dataclass(frozen=True)
class BenchSettings:
    """Training settings shared by every method (``gaze_utility.train``)."""

    epochs: int = 12
    head_epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    widths: tuple[int, ...] = (16, 32, 64)
    decoder_width: int = 16
    attention_weight: float = 1.0
    num_classes: int = 3

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], num_classes: int = 3) -> BenchSettings:
        """Settings from a validated ``gaze_utility.train`` section."""
        known = {k: values[k] for k in ("epochs", "head_epochs", "batch_size", "lr", "decoder_width",
                                        "attention_weight") if k in values}
        widths = tuple(int(w) for w in values.get("widths", cls.widths))
        return cls(**known, widths=widths, num_classes=num_classes)


Predictor = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]
"""(images (N, 1, H, W), gaze maps (N, H, W) or None) → class probabilities (N, K)."""


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    value = classification_metrics(labels, probs, [str(k) for k in range(probs.shape[1])])["auc_macro"]
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def _batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: np.ndarray,
             gaze: np.ndarray | None, size: int = 256) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(images), size):
            x = _tensor(images[start:start + size])
            g = _tensor(gaze[start:start + size]) if gaze is not None else torch.zeros(x.shape[0], *x.shape[2:])
            out.append(torch.softmax(fn(x, g), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class _Fit:
    """One optimisation of a classifier: the modules trained, a loss on a batch, logits for prediction."""

    modules: dict[str, nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _batches(rng: np.random.Generator, n: int, size: int) -> Iterator[torch.Tensor]:
    """One epoch's mini-batches: rows of a fresh permutation of range(n), ``size`` at a time (a last batch
    of one row is dropped: batch norm needs two)."""
    order = rng.permutation(n)
    for start in range(0, n, size):
        rows = torch.from_numpy(order[start:start + size])
        if rows.numel() >= 2:
            yield rows


def fit(job: _Fit, data: TrainingArrays, settings: BenchSettings, seed: int, epochs: int,
        uses_test_gaze: bool = False) -> dict[str, Any]:
    """Train ``job`` on ``data.train`` and keep the epoch with the best validation macro AUC (validation loss
    where the AUC is undefined); returns {"val_auc", "epoch", "history"} and leaves the best weights loaded."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for m in job.modules.values() for p in m.parameters()]
    optimiser = torch.optim.Adam(params, lr=settings.lr)
    train, val = data.train, data.val
    images, labels = _tensor(train.images), torch.from_numpy(train.labels.astype(np.int64))
    gaze, evidence = _tensor(train.gaze), _tensor(train.evidence)
    best: tuple[float, float] | None = None
    best_state: dict[str, dict[str, torch.Tensor]] = {}
    history = []
    for epoch in range(epochs):
        for m in job.modules.values():
            m.train()
        for rows in _batches(rng, len(train), settings.batch_size):
            optimiser.zero_grad()
            loss = job.loss(images[rows], labels[rows], gaze[rows], evidence[rows])
            loss.backward()
            optimiser.step()
        for m in job.modules.values():
            m.eval()
        probs = _batched(job.logits, val.images, val.gaze if uses_test_gaze else None)
        score, record = _validation_score(val.labels, probs, epoch)
        history.append(record)
        if best is None or score > best:
            best = score
            best_state = {k: copy.deepcopy(m.state_dict()) for k, m in job.modules.items()}
            chosen = epoch + 1
    for k, m in job.modules.items():
        m.load_state_dict(best_state[k])
        m.eval()
    return {"val_auc": history[chosen - 1]["val_auc"], "epoch": chosen, "history": history}


def _validation_score(labels: np.ndarray, probs: np.ndarray, epoch: int) -> tuple[tuple[float, float], dict[str, Any]]:
    """(selection score: validation macro AUC, then −NLL where the AUC is undefined; the epoch's record)."""
    auc = _macro_auc(labels, probs)
    nll = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), torch.from_numpy(labels.astype(np.int64))))
    return (auc if np.isfinite(auc) else -np.inf, -nll), {"epoch": epoch + 1, "val_auc": auc, "val_loss": nll}


def _predictor(job: _Fit, uses_test_gaze: bool) -> Predictor:
    def predict(images: np.ndarray, gaze: np.ndarray | None = None) -> np.ndarray:
        return _batched(job.logits, images, gaze if uses_test_gaze else None)
    return predict


# ----------------------------------------------------------------------------- the methods


def _cnn(settings: BenchSettings, in_channels: int = 1) -> BenchCNN:
    return BenchCNN(in_channels=in_channels, num_classes=settings.num_classes, widths=settings.widths)


def classifier_job(settings: BenchSettings, target: str | None = None, weight: float = 0.0) -> _Fit:
    """The CNN trained with cross-entropy, plus ``weight`` × the CAM alignment loss towards ``target``
    (``"gaze"`` or ``"evidence"``) when given."""
    cnn = _cnn(settings)

    def loss(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        feats = cnn.features(x)
        ce = F.cross_entropy(cnn.classifier(feats.mean(dim=(2, 3))), y)
        if target is None or weight == 0:
            return ce
        return ce + weight * cam_alignment_loss(cnn.cam(feats, y), g if target == "gaze" else e)

    return _Fit({"cnn": cnn}, loss, lambda x, g: cnn(x))


def test_time_gaze_job(settings: BenchSettings) -> _Fit:
    """The CNN with the gaze map (scaled to max 1) as a second input channel."""
    cnn = _cnn(settings, in_channels=2)

    def stack(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        peak = g.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        return torch.cat([x, (g / peak).unsqueeze(1)], dim=1)

    return _Fit({"cnn": cnn}, lambda x, y, g, e: F.cross_entropy(cnn(stack(x, g)), y), lambda x, g: cnn(stack(x, g)))


def _frozen_inputs(backbone: BenchCNN, decoder: SaliencyDecoder, head: str, images: np.ndarray
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """What a head reads, computed once: the backbone's feature map and the decoder's saliency logits (``pool``)
    or feature map (``linear`` / ``conv``)."""
    feats, side = [], []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            x = _tensor(images[start:start + 256])
            f = backbone.features(x)
            feats.append(f)
            side.append(decoder(x, f) if head == "pool" else decoder.embed(x, f))
    return torch.cat(feats), torch.cat(side)


def _head(backbone: BenchCNN, settings: BenchSettings, head: str) -> nn.Module:
    if head == "pool":
        return SaliencyPoolHead(backbone.out_channels, settings.num_classes)
    return FusionHead(backbone.out_channels, settings.decoder_width, settings.num_classes, head=head)


def saliency_of(decoder: SaliencyDecoder, backbone: BenchCNN, images: np.ndarray) -> np.ndarray:
    """The decoder's predicted saliency distributions (N, h, w) on ``images``."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            x = _tensor(images[start:start + 256])
            logits = decoder(x, backbone.features(x))
            out.append(torch.softmax(logits.flatten(1), dim=1).view_as(logits).numpy())
    return np.concatenate(out)


def cam_of(cnn: BenchCNN, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The CNN's CAM of the true class as a distribution (N, h, w) (softmax over positions)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            x = _tensor(images[start:start + 256])
            y = torch.from_numpy(labels[start:start + 256].astype(np.int64))
            cam = cnn.cam(cnn.features(x), y)
            out.append(torch.softmax(cam.flatten(1), dim=1).view_as(cam).numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class BenchMethod:
    """One row of the method table: its name, whether it reads gaze (training), whether it reads gaze at test
    time (a leaking control), its control kind and the method it is compared with (the same backbone
    without gaze)."""

    name: str
    uses_gaze: bool
    control: str | None = None
    baseline: str = "baseline"
    test_time_gaze: bool = False
    mechanism: bool = False


METHODS: dict[str, BenchMethod] = {m.name: m for m in (
    BenchMethod("baseline", uses_gaze=False),
    BenchMethod("evidence_oracle", uses_gaze=False, control="positive"),
    BenchMethod("attention_consistency", uses_gaze=True),
    BenchMethod("fusion", uses_gaze=True, baseline="fusion@nogaze"),
    BenchMethod("fusion_conv", uses_gaze=True, baseline="fusion_conv@nogaze"),
    BenchMethod("saliency_pool", uses_gaze=True, baseline="saliency_pool@nogaze"),
    BenchMethod("test_time_gaze", uses_gaze=True, control="test_time_gaze", test_time_gaze=True),
    BenchMethod("gaze_token_mask", uses_gaze=True, baseline="gaze_token_mask@nogaze", mechanism=True),
    BenchMethod("gdvig", uses_gaze=True, baseline="gdvig@nogaze", mechanism=True),
    BenchMethod("gaze_mtl", uses_gaze=True, baseline="gaze_mtl@nogaze", mechanism=True),
)}
"""Every benchmark method by name. ``<method>@nogaze`` rows are the switched-off variants a method is compared
with: a mechanism with its gaze switch off; a cooperative method with its decoder trained on a uniform map
(so `saliency_pool` pools uniformly and the heads are trained as long on the same frozen backbone)."""

COOPERATIVE = ("fusion", "fusion_conv", "saliency_pool")
"""Methods built on the frozen baseline and the saliency decoder of the same (data, seed)."""

HEADS = {"fusion": "linear", "fusion_conv": "conv", "saliency_pool": "pool"}


@dataclass
class Fitted:
    """A trained method: its predictor, what the selection saw and (CNN methods) its modules."""

    predict: Predictor
    info: dict[str, Any]
    modules: dict[str, nn.Module] = field(default_factory=dict)


def train_classifier(name: str, data: TrainingArrays, settings: BenchSettings, seed: int) -> Fitted:
    """Fit ``baseline``, ``evidence_oracle``, ``attention_consistency`` or ``test_time_gaze``."""
    torch.manual_seed(seed)
    if name == "test_time_gaze":
        job = test_time_gaze_job(settings)
    else:
        target = {"evidence_oracle": "evidence", "attention_consistency": "gaze"}.get(name)
        job = classifier_job(settings, target, settings.attention_weight if target else 0.0)
    uses = METHODS[name].test_time_gaze
    info = fit(job, data, settings, seed, settings.epochs, uses_test_gaze=uses)
    return Fitted(_predictor(job, uses), info, job.modules)


def train_decoder(backbone: BenchCNN, data: TrainingArrays, settings: BenchSettings, seed: int
                  ) -> tuple[SaliencyDecoder, dict[str, Any]]:
    """Stage 2 in miniature: a `SaliencyDecoder` on the frozen ``backbone`` (its feature maps computed once),
    KL loss against the gaze map, the epoch chosen by the validation KL."""
    torch.manual_seed(seed)
    decoder = SaliencyDecoder(in_channels=1, backbone_channels=backbone.out_channels, width=settings.decoder_width,
                              depth=len(settings.widths))
    kl = SaliencyKLLoss()
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=settings.lr)
    backbone.eval()

    def arrays(split: BenchArrays) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = _tensor(split.images)
        with torch.no_grad():
            feats = torch.cat([backbone.features(x[k:k + 256]) for k in range(0, len(x), 256)])
        return x, feats, pool_distribution(_tensor(split.gaze), tuple(feats.shape[-2:])) + 1e-12

    x, feats, target = arrays(data.train)
    xv, fv, tv = arrays(data.val)
    best, best_state, chosen = np.inf, copy.deepcopy(decoder.state_dict()), 0
    for epoch in range(settings.epochs):
        decoder.train()
        for rows in _batches(rng, len(x), settings.batch_size):
            optimiser.zero_grad()
            kl(decoder(x[rows], feats[rows]), target[rows]).backward()
            optimiser.step()
        decoder.eval()
        with torch.no_grad():
            val = float(kl(decoder(xv, fv), tv))
        if val < best:
            best, best_state, chosen = val, copy.deepcopy(decoder.state_dict()), epoch + 1
    decoder.load_state_dict(best_state)
    decoder.eval()
    return decoder, {"val_kl": best, "epoch": chosen}


def train_head(name: str, backbone: BenchCNN, decoder: SaliencyDecoder, data: TrainingArrays,
               settings: BenchSettings, seed: int) -> Fitted:
    """Stage 3 in miniature: fit the head of ``fusion``, ``fusion_conv`` or ``saliency_pool`` on the frozen
    backbone and decoder (their outputs computed once), the epoch chosen on validation."""
    head = HEADS[name]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = _head(backbone, settings, head)
    optimiser = torch.optim.Adam(module.parameters(), lr=settings.lr)
    train = _frozen_inputs(backbone, decoder, head, data.train.images)
    val = _frozen_inputs(backbone, decoder, head, data.val.images)
    labels = torch.from_numpy(data.train.labels.astype(np.int64))
    best, best_state, history, chosen = None, None, [], 0
    for epoch in range(settings.head_epochs):
        module.train()
        for rows in _batches(rng, len(labels), settings.batch_size):
            optimiser.zero_grad()
            F.cross_entropy(module(train[0][rows], train[1][rows]), labels[rows]).backward()
            optimiser.step()
        module.eval()
        with torch.no_grad():
            probs = torch.softmax(module(*val), dim=1).numpy()
        score, record = _validation_score(data.val.labels, probs, epoch)
        history.append(record)
        if best is None or score > best:
            best, best_state, chosen = score, copy.deepcopy(module.state_dict()), epoch
    module.load_state_dict(best_state)
    module.eval()

    def predict(images: np.ndarray, gaze: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(module(*_frozen_inputs(backbone, decoder, head, images)), dim=1).numpy()

    return Fitted(predict, {"val_auc": history[chosen]["val_auc"], "epoch": chosen + 1, "history": history},
                  {"head": module, "decoder": decoder, "backbone": backbone})


def train_mechanism(name: str, data: TrainingArrays, settings: BenchSettings, seed: int, use_gaze: bool) -> Fitted:
    """Fit one of the field's mechanisms with its gaze on or off (`gazecxr.training.gaze_mechanisms`)."""
    from gazecxr.training.gaze_mechanisms import MechanismData, fit_mechanism

    def as_data(split: BenchArrays) -> MechanismData:
        return MechanismData(images=split.images, labels=split.labels.astype(np.int64), gaze=split.gaze,
                             time=split.time)

    predict = fit_mechanism(name, as_data(data.train), as_data(data.val), n_classes=settings.num_classes,
                            use_gaze=use_gaze, epochs=settings.epochs, batch_size=settings.batch_size,
                            lr=min(settings.lr, 1e-3), seed=seed)
    return Fitted(lambda images, gaze=None: predict(images), {"use_gaze": use_gaze})
