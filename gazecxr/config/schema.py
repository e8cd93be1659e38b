"""Typed schema of the run configuration: every section of every preset, checked before any work.

``validate_config(config)`` checks a resolved config (file, its ``inherit`` chain and ``--set``
overrides, as :func:`gazecxr.config.load_config` returns it) and raises
:class:`~gazecxr.config.errors.ConfigError` listing every problem at once: an unknown key with the
closest valid key suggested (``difflib``), a wrong type or range with the key, the value and what
is expected. The config itself is returned unchanged (validated, not normalised), so config hashes,
run names, feature-cache keys and registry reuse stay what they were.

Why pydantic v2 rather than dataclasses with hand-written checks: the schema is a tree of nested
sections with optional values, unions (``data.h5`` is a path or a list of paths), sections chosen
by their ``name`` (the model and task sections) and numeric ranges; pydantic's strict mode checks
all of that declaratively (``16.5`` is not an int, ``"yes"`` is not a bool, ``"abc"`` is not a
float), reports every error with its location in one pass, and ``extra="forbid"`` finds unknown
keys. Hand-written checks would repeat the same walk for each section. pydantic v2 is a compiled,
dependency-light package already used by the app's Gradio stack.

Adding a section: write one ``Section`` subclass and register it in ``SECTIONS`` (top-level
section name → class) at the bottom of this module; a new model or task becomes valid in every
model/task slot by adding its class to ``MODEL_SECTIONS`` / ``TASK_SECTIONS``. Field defaults
document the code's defaults; tests check that the model, task, training, augmentation and
explanation-study sections match the constructors and constants they configure.
Registry entries record ``SCHEMA_VERSION`` when their stored config fits (``Entry.config_schema``);
entries written before the schema load as they are.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, create_model,
                      field_validator)

from gazecxr.config.errors import ConfigError

SCHEMA_VERSION = 1
"""Stored in registry entries whose config passed this schema (older entries have none)."""

PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Ref = Union[str, int]
"""A registry reference: id, id prefix, ``latest``, ``best`` or a tag (YAML may read a numeric prefix as int)."""


class Section(BaseModel):
    """A config section: unknown keys are errors, values are not coerced (strict types).

    The docstring under a field is its description (pydantic's ``use_attribute_docstrings``), which the
    documentation's generated configuration reference shows beside the field's type, default and bounds.
    """

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


# --- model sections: one class per registered model name (gazecxr.models.create_model) -------------

class DenseNetModel(Section):
    """``densenet``: the DenseNet encoder/classifier (stage 1)."""

    name: Literal["densenet"]
    arch: Literal["densenet121", "densenet201", "custom"] = "densenet201"
    """Torchvision DenseNet variant; `custom` builds one from `growth_rate`, `block_config`, `num_init_features`."""
    tap: Literal["denseblock4", "transition3"] = "denseblock4"
    """The feature map handed to stages 2 and 3 (and Grad-CAM): the last dense block or the third transition."""
    pretrained: str = Field("none", description="none | imagenet | path to a .pth state dict")
    num_classes: PositiveInt = 3
    """Outputs of the classifier head (a multi-label task sets one per finding)."""
    imagenet_norm: bool | None = None
    """Normalise inputs with ImageNet mean/std inside the model; null: exactly when pretrained weights are loaded."""
    growth_rate: PositiveInt | None = None
    """Channels each dense layer adds (`arch: custom` only; null: torchvision's default)."""
    block_config: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] | None = None
    """Dense layers in each of the four blocks (`arch: custom` only)."""
    num_init_features: PositiveInt | None = None
    """Channels of the stem convolution (`arch: custom` only)."""


class ResSEUNetModel(Section):
    """``resse_unet``: the Res-SE UNet saliency model (stage 2)."""

    name: Literal["resse_unet"]
    in_channels: PositiveInt = 1
    """Input image channels."""
    width: PositiveFloat = 1.0
    """Multiplier of the filter counts [64, 128, 256, 512, 1024] (1 = the paper's network)."""
    aux_channels: NonNegInt = 0
    """Channels of an auxiliary feature map fused at the deepest level (set by stage 2 to the DenseNet tap's channels;
    0 = a plain UNet decoder)."""
    se_reduction: PositiveInt = 16
    """Channel reduction ratio of the squeeze-and-excitation blocks."""


class FusionModel(Section):
    """``fusion``: the multi-scale fusion classifier (stage 3)."""

    name: Literal["fusion"]
    dense_channels: PositiveInt = 1920
    """Channels of the DenseNet feature map (set by stage 3 from the encoder)."""
    decoder_channels: PositiveInt = 64
    """Channels of the UNet's last decoder map (set by stage 3 from the UNet)."""
    num_classes: PositiveInt = 3
    """Class logits (a multi-label task sets one per finding)."""
    head: Literal["linear", "conv"] = "linear"
    """`linear`: pooled features concatenated → MLP (the released code); `conv`: the paper's small CNN on the stacked
    maps."""
    hidden: PositiveInt = 64
    """Width of the head's hidden layer."""
    dropout: Fraction = 0.25
    """Dropout before the last layer."""


class StandardUNetModel(Section):
    """``standard_unet``: the segmentation-models-pytorch UNet baseline."""

    name: Literal["standard_unet"]
    encoder_name: str = "resnet34"
    """Segmentation-models-pytorch encoder."""
    encoder_depth: Annotated[int, Field(ge=3, le=5)] = 5
    """Encoder stages used."""
    decoder_channels: Annotated[list[PositiveInt], Field(min_length=3, max_length=5)] = [256, 128, 64, 32, 16]
    """Channels of each decoder stage (one per encoder stage)."""
    in_channels: PositiveInt = 1
    """Input image channels."""


class MTUNetModel(Section):
    """``mtunet``: MT-UNet (classification + saliency jointly)."""

    name: Literal["mtunet"]
    width: PositiveFloat = 1.0
    """Multiplier of the UNet's filter counts (1 = the released network)."""
    in_channels: PositiveInt = 1
    """Input image channels."""
    num_classes: PositiveInt = 3
    """Class logits."""
    hidden: PositiveInt | None = None
    """Hidden width of the class head (null: the first level's filters)."""
    dropout: Fraction = 0.25
    """Dropout in the class head."""


class IRNetV2Model(Section):
    """``irnetv2``: Inception-ResNet-v2 (timm)."""

    name: Literal["irnetv2"]
    num_classes: PositiveInt = 3
    """Class logits."""
    in_channels: PositiveInt = 1
    """Input image channels."""
    drop_rate: Fraction = 0.0
    """Dropout before timm's classifier."""


Stages4 = Annotated[list[PositiveInt], Field(min_length=4, max_length=4)]


class GazeGNNModel(Section):
    """``gazegnn``: GazeGNN (Pyramid Vision GNN fed the fixations)."""

    name: Literal["gazegnn"]
    image_size: Annotated[int, Field(ge=32)] = 224
    """Side of the square input the canvas and gaze map are resized to."""
    channels: Stages4 = [48, 96, 240, 384]
    """Channels of the four Pyramid ViG stages."""
    blocks: Stages4 = [2, 2, 6, 2]
    """Grapher + FFN blocks per stage."""
    k: PositiveInt = 9
    """Neighbours of each node in the dilated kNN graph."""
    reduce_ratios: Stages4 = [4, 2, 1, 1]
    """Spatial reduction of the neighbour pool per stage."""
    hidden: PositiveInt = 1024
    """Hidden width of the classifier head."""
    dropout: Fraction = 0.0
    """Dropout in the classifier head."""
    num_classes: PositiveInt = 3
    """Class logits."""
    pretrained: str = "none"
    """`none` or a path to a Pyramid ViG or GazeGNN state dict (nothing is downloaded)."""
    imagenet_norm: bool | None = None
    """Normalise with ImageNet statistics; null: exactly when weights are loaded."""


class TimmModel(Section):
    """``timm``: any timm classifier (the explanation study's architectures)."""

    name: Literal["timm"]
    arch: str = "resnet50"
    """Any `timm.create_model` architecture name (`resnet50`, `vit_base_patch16_224`, …)."""
    num_classes: PositiveInt = 2
    """Class logits (one per finding for a multi-label task)."""
    in_channels: PositiveInt = 1
    """Input image channels (timm adapts the first convolution)."""
    pretrained: str = "none"
    """`none` or a path to a local timm state dict (a 1000-class head is dropped)."""
    size: Literal["full", "tiny"] = "full"
    """`tiny` builds the same model class with a few channels (for tests)."""
    img_size: Annotated[int, Field(ge=16)] = 224
    """Input side of architectures with a fixed input size (ViT, Swin)."""
    overrides: dict[str, Any] | None = Field(None, description="extra timm.create_model arguments")
    drop_rate: Fraction = 0.0
    """Dropout before the classifier."""


class MultitaskFRCNNModel(Section):
    """``multitask_frcnn``: DenseNet shared by a multi-label head and a Faster R-CNN box head."""

    name: Literal["multitask_frcnn"]
    num_findings: PositiveInt = 14
    """Logits of the multi-label head."""
    num_box_classes: PositiveInt = 8
    """Finding classes the Faster R-CNN head detects (0 is background)."""
    arch: Literal["densenet121", "densenet201", "custom"] = "densenet121"
    """The shared DenseNet backbone (as `densenet.arch`)."""
    pretrained: str = "none"
    """`none`, `imagenet` or a path to a torchvision DenseNet state dict."""
    growth_rate: PositiveInt | None = None
    """`arch: custom` only, as for `densenet`."""
    block_config: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] | None = None
    """`arch: custom` only, as for `densenet`."""
    num_init_features: PositiveInt | None = None
    """`arch: custom` only, as for `densenet`."""
    hidden: PositiveInt = 512
    """Hidden width of the multi-label head."""
    dropout: Fraction = 0.3
    """Dropout in the multi-label head."""
    anchor_sizes: Annotated[list[PositiveInt], Field(min_length=1)] = [32, 64, 128, 256]
    """The RPN's anchor sides in input pixels."""
    box_hidden: PositiveInt = 1024
    """Width of the box head's two-layer MLP."""
    detections_per_image: PositiveInt = 20
    """Boxes kept per image at inference."""
    box_score_thresh: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Score below which detections are dropped."""


class EGViTModel(Section):
    """``eg_vit``: EG-ViT, a timm ViT with the gaze token mask's masked forward (gaze_token_mask)."""

    name: Literal["eg_vit"]
    img_size: Annotated[int, Field(ge=16)] = 224
    patch_size: PositiveInt = 16
    embed_dim: PositiveInt = 384
    depth: PositiveInt = 12
    num_heads: PositiveInt = 6
    num_classes: PositiveInt = 3
    in_channels: PositiveInt = 1
    masked_blocks: NonNegInt | None = None
    drop_rate: Fraction = 0.0


class GDViGModel(Section):
    """``gdvig``: GD-ViG, a gaze-map generator and a Pyramid ViG whose graph uses its predicted map."""

    name: Literal["gdvig"]
    image_size: Annotated[int, Field(ge=32, multiple_of=32)] = 224
    channels: Stages4 = [80, 160, 400, 640]
    blocks: Stages4 = [2, 2, 6, 2]
    k: PositiveInt = 9
    reduce_ratios: Stages4 = [4, 2, 1, 1]
    hidden: PositiveInt = 1024
    dropout: Fraction = 0.0
    num_classes: PositiveInt = 3
    in_channels: PositiveInt = 1
    gaze_guided: bool = True
    generator_size: Annotated[int, Field(ge=32, multiple_of=32)] | None = None


class GazeMTLModel(Section):
    """``gaze_mtl``: Gaze-MTL, a timm classifier with auxiliary heads on gaze statistics."""

    name: Literal["gaze_mtl"]
    arch: str = "resnet50"
    num_classes: PositiveInt = 3
    in_channels: PositiveInt = 1
    size: Literal["full", "tiny"] = "full"
    aux_tasks: list[Literal["time", "diffusivity"]] = ["time", "diffusivity"]
    drop_rate: Fraction = 0.0
    overrides: dict[str, Any] | None = Field(None, description="extra timm.create_model arguments")


class BenchCNNModel(Section):
    """``bench_cnn``: the gaze-utility benchmark's small CNN backbone (gazecxr.models.bench_cnn)."""

    name: Literal["bench_cnn"]
    in_channels: PositiveInt = 1
    """Input channels (2 for the test-time-gaze control: image and gaze map)."""
    num_classes: PositiveInt = 3
    """Classes of the linear head."""
    widths: Annotated[list[PositiveInt], Field(min_length=1)] = [16, 32, 64]
    """Channels of the conv blocks (each halves the resolution)."""


class BenchSaliencyDecoderModel(Section):
    """``bench_saliency_decoder``: the benchmark's saliency decoder on a frozen backbone."""

    name: Literal["bench_saliency_decoder"]
    in_channels: PositiveInt = 1
    """Input channels of its own image encoder."""
    backbone_channels: PositiveInt = 64
    """Channels of the frozen backbone's feature map."""
    width: PositiveInt = 16
    """Channels of the decoder."""
    depth: PositiveInt = 3
    """Conv blocks of its own encoder (as many as the backbone's, to match the resolution)."""


class BenchFusionHeadModel(Section):
    """``bench_fusion_head``: the benchmark's fusion classifier on backbone and decoder feature maps."""

    name: Literal["bench_fusion_head"]
    backbone_channels: PositiveInt = 64
    """Channels of the backbone's feature map."""
    decoder_channels: PositiveInt = 16
    """Channels of the decoder's feature map."""
    num_classes: PositiveInt = 3
    """Classes."""
    head: Literal["linear", "conv"] = "linear"
    """Pooled and concatenated (`linear`) or a 3×3 conv over both maps first (`conv`)."""


class BenchSaliencyPoolHeadModel(Section):
    """``bench_saliency_pool_head``: the benchmark's classifier on features pooled under the predicted saliency."""

    name: Literal["bench_saliency_pool_head"]
    backbone_channels: PositiveInt = 64
    """Channels of the backbone's feature map."""
    num_classes: PositiveInt = 3
    """Classes."""


MODEL_SECTIONS: dict[str, type[Section]] = {
    "densenet": DenseNetModel, "resse_unet": ResSEUNetModel, "fusion": FusionModel,
    "standard_unet": StandardUNetModel, "mtunet": MTUNetModel, "irnetv2": IRNetV2Model, "gazegnn": GazeGNNModel,
    "timm": TimmModel, "multitask_frcnn": MultitaskFRCNNModel, "eg_vit": EGViTModel,
    "gdvig": GDViGModel, "gaze_mtl": GazeMTLModel, "bench_cnn": BenchCNNModel,
    "bench_saliency_decoder": BenchSaliencyDecoderModel, "bench_fusion_head": BenchFusionHeadModel,
    "bench_saliency_pool_head": BenchSaliencyPoolHeadModel,
}
"""Model name → its section; every ``model``-like slot accepts any of them (chosen by ``name``)."""


# --- task sections (gazecxr.tasks.create_task) ------------------------------------------------------

DEFAULT_TASK = "egd_3class"


class ExclusiveClassesTask(Section):
    """``egd_3class``: Normal / CHF / pneumonia, one class per image."""

    name: Literal["egd_3class"] = "egd_3class"
    """The task."""


class _MultiLabelTask(Section):
    """Options every multi-label task shares: BCE positive weights."""

    positive_weights: bool = False
    """Weight each finding's positive BCE term by negatives/positives of the training split."""
    pos_weight: list[PositiveFloat] | None = None
    """Explicit positive weights, one per finding (instead of `positive_weights`)."""


class FindingsTask(_MultiLabelTask):
    """``reflacx_findings``: multi-label REFLACX findings (certainty >= ``threshold`` = present)."""

    name: Literal["reflacx_findings"]
    threshold: Annotated[float, Field(gt=0, le=5)] = 3.0
    """Certainty (0–5) at or above which a finding counts as present."""
    support_devices: bool = False
    """Also predict `Support devices`."""


class NIH14Task(_MultiLabelTask):
    """``nih14_findings``: the 14 NIH ChestX-ray14 findings."""

    name: Literal["nih14_findings"]


class SIIMTask(_MultiLabelTask):
    """``siim_pneumothorax``: pneumothorax present or not (SIIM-ACR)."""

    name: Literal["siim_pneumothorax"]


class CheXpertTask(_MultiLabelTask):
    """``chexpert14``: the 14 CheXpert observations with an uncertainty policy."""

    name: Literal["chexpert14"]
    uncertainty: Literal["ignore", "zeros", "ones", "mixed"] = "mixed"
    """What an uncertain (-1) label becomes: left out of loss and metrics (`ignore`), 0, 1, or `mixed` (1 for
    Atelectasis and Edema, else 0)."""


class VinDrTask(_MultiLabelTask):
    """``vindr_findings``: VinDr-CXR local findings, present when enough readers marked them."""

    name: Literal["vindr_findings"]
    min_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Fraction of an image's readers that must mark a finding for it to be present."""
    label_set: Annotated[list[str], Field(min_length=1)] | None = None
    """The findings to predict (null: the 14 local findings of the VinBigData release)."""


TASK_SECTIONS: dict[str, type[Section]] = {
    "egd_3class": ExclusiveClassesTask, "reflacx_findings": FindingsTask, "nih14_findings": NIH14Task,
    "siim_pneumothorax": SIIMTask, "chexpert14": CheXpertTask, "vindr_findings": VinDrTask,
}
"""Task name → its section (the ``task`` config section)."""


def _tag(default: str | None) -> Any:
    def discriminate(value: Any) -> str | None:
        if isinstance(value, Mapping):
            name = value.get("name", default)
            return name if isinstance(name, str) else None
        return getattr(value, "name", None)

    return discriminate


def _choice(sections: Mapping[str, type[Section]], default: str | None = None) -> Any:
    members = tuple(Annotated[cls, Tag(name)] for name, cls in sections.items())
    return Annotated[Union[members], Discriminator(_tag(default))]  # type: ignore[valid-type]


ModelSection = _choice(MODEL_SECTIONS)
TaskSection = _choice(TASK_SECTIONS, DEFAULT_TASK)


# --- data, training, stages --------------------------------------------------------------------------

class AugmentSection(Section):
    """``data.augment``: paired image + heatmap augmentation (gazecxr.data.transforms.PairedAugment)."""

    enabled: bool = True
    """Augment the training split (image and heatmap moved together)."""
    rotation: NonNegFloat = 5.0
    """Maximum rotation in degrees."""
    scale: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [0.95, 1.05]
    """Range [low, high] of the random zoom."""
    translate: Fraction = 0.03
    """Maximum shift as a fraction of the canvas side."""
    hflip: bool = False
    """Random horizontal flips."""
    brightness: NonNegFloat = 0.1
    """Maximum relative brightness change."""
    contrast: NonNegFloat = 0.1
    """Maximum relative contrast change."""
    strength: NonNegFloat = 1.0
    """Multiplier of every magnitude above (what the tuning presets search over)."""

    @field_validator("scale")
    @classmethod
    def _ordered_scale(cls, scale: list[float]) -> list[float]:
        if scale[0] > scale[1]:
            raise ValueError("expected [low, high] with low <= high")
        return scale


class DataSection(Section):
    """``data``: the converted HDF5 file(s) and the loader."""

    h5: Union[str, Annotated[list[str], Field(min_length=1)]] = "data/egd_cxr.h5"
    """The converted HDF5 file, or a list of files trained on together (the split is then recomputed over all of them,
    grouped by patient)."""
    sources: Annotated[list[str], Field(min_length=1)] | None = None
    """Keep only records of these datasets (`EGD-CXR`, `REFLACX`, …) on the joint split."""
    num_workers: NonNegInt = 4
    """DataLoader worker processes."""
    augment: AugmentSection = AugmentSection()
    """Training augmentation."""


class ModelsSection(Section):
    """``model``: the three networks of our model (each chosen by its ``name``)."""

    encoder: ModelSection
    """The stage-1 DenseNet."""
    unet: ModelSection
    """The stage-2 saliency UNet."""
    classifier: ModelSection
    """The stage-3 fusion classifier."""


class PlateauSection(Section):
    """``train.plateau``: ReduceLROnPlateau arguments."""

    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """Learning-rate multiplier at each drop."""
    patience: NonNegInt = 10
    """Epochs without improvement before a drop."""
    threshold: NonNegFloat = 1e-4
    """Minimum change that counts as an improvement."""
    cooldown: NonNegInt = 0
    """Epochs to wait after a drop."""
    min_lr: NonNegFloat = 0.0
    """Lower bound of the learning rate."""


def _matching(pattern: str, expected: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}")
        return value

    check.__doc__ = expected  # what the configuration reference shows as the bound

    return AfterValidator(check)


Device = Annotated[str, _matching(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N")]


class TrainSection(Section):
    """``train``: optimisation defaults of every phase (gazecxr.training.engine.TrainSettings)."""

    batch_size: PositiveInt = 16
    """Images per step (per process under torchrun)."""
    lr: PositiveFloat = 1e-4
    """Learning rate."""
    weight_decay: NonNegFloat = 0.0
    """Weight decay (decoupled with `adamw`)."""
    max_epochs: PositiveInt = 50
    """Epochs at most."""
    patience: NonNegInt | None = 10
    """Early stopping: epochs without improvement of the monitored metric (null: never stop early)."""
    plateau: PlateauSection | None = None
    """ReduceLROnPlateau on the monitored metric (null: constant learning rate)."""
    grad_clip: PositiveFloat | None = None
    """Clip the gradient norm at this value (null: no clipping)."""
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"
    """Mixed precision on CUDA: `auto` (bf16 where supported, else fp16), `bf16`, `fp16` or `none`."""
    channels_last: bool = True
    """Channels-last memory layout on CUDA."""
    deterministic: bool = False
    """Deterministic algorithms (slower; same results run to run)."""
    device: Device = "auto"
    """Where to train: `auto` (CUDA when available), `cpu`, `mps`, `cuda` or `cuda:N`."""
    feature_cache: Literal["auto", "memory", "disk", "off"] = "auto"
    """Cache of frozen-encoder features for stages 2 and 3: `auto`, `memory`, `disk` (under `runs.root/cache`) or
    `off`."""
    feature_cache_memory_mb: NonNegFloat = 2048.0
    """Features up to this size stay in memory with `auto`; larger go to disk."""
    sync_batchnorm: bool = False
    """SyncBatchNorm across torchrun processes (CUDA only)."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """`adam`, `adamw` (decoupled weight decay) or `sgd` (plain, no momentum)."""
    reload_best_on_lr_drop: bool = False
    """At every plateau drop, restart from the best epoch's weights and optimiser state (MT-UNet's recipe)."""


TrainOverrides: type[Section] = create_model(  # type: ignore[call-overload]
    "TrainOverrides", __base__=Section, __doc__="A phase's ``train`` section: any ``train`` key, overriding it.",
    **{name: (Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation, None)
       for name, field in TrainSection.model_fields.items()},
)
"""Every key of :class:`TrainSection`, each optional (absent = inherit the top-level value)."""


class ContrastiveSection(Section):
    """``stage1.contrastive``: phase 1, metric learning on the labels."""

    enabled: bool = True
    """Run the contrastive phase before fine-tuning."""
    loss: Literal["triplet", "supcon"] = "triplet"
    """`triplet` (the paper) or `supcon` (supervised contrastive; Jaccard-weighted for multi-label tasks)."""
    margin: PositiveFloat = 0.2
    """Triplet margin."""
    miner: Literal["semihard", "hard", "all"] = "semihard"
    """Which triplets the miner keeps."""
    temperature: PositiveFloat = 0.1
    """Temperature of the `supcon` loss."""
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """This phase's `train` overrides."""


class PhaseSection(Section):
    """A training phase with only its ``train`` overrides."""

    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """This phase's `train` overrides."""


Monitor = Annotated[str, _matching(r"val_\w+", "a validation metric name, val_<metric>")]


class Stage1Section(Section):
    """``stage1``: DenseNet contrastive pretraining, then fine-tuning."""

    contrastive: ContrastiveSection = ContrastiveSection()
    """Phase 1: metric learning on the labels."""
    finetune: PhaseSection = PhaseSection()
    """Phase 2: cross-entropy (or BCE) fine-tuning."""
    monitor: Monitor = "val_auc_macro"
    """Validation metric for early stopping and the best checkpoint."""


class Stage2Section(Section):
    """``stage2``: the saliency UNet on the frozen stage-1 encoder."""

    encoder: Ref = "best"
    """The stage-1 registry entry to freeze as the second encoder (id, id prefix, `latest`, `best` or a tag)."""
    variant: Literal["full", "resse", "unet"] = "full"
    """`full` (dual encoder), `resse` (Res-SE UNet alone) or `unet` (the standard UNet baseline)."""
    baseline_unet: ModelSection = StandardUNetModel(name="standard_unet")
    """The network of `variant: unet`."""
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """Stage 2's `train` overrides."""
    monitor: Monitor = "val_kl"
    """Validation metric for early stopping and the best checkpoint."""


class Stage3Section(Section):
    """``stage3``: the fusion classifier on the frozen encoder and UNet."""

    saliency: Ref = "best"
    """The stage-2 registry entry whose frozen UNet (and DenseNet) the classifier reads."""
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """Stage 3's `train` overrides."""
    monitor: Monitor = "val_auc_macro"
    """Validation metric for early stopping and the best checkpoint."""


class PeerSection(Section):
    """``peers.<method>``: a peer method's network, training overrides and monitored metric."""

    model: ModelSection
    """The peer's network."""
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """The peer's `train` overrides."""
    monitor: Monitor = "val_auc_macro"
    """Validation metric for early stopping and the best checkpoint."""


class MTUNetPeerSection(PeerSection):
    """``peers.mtunet``: MT-UNet with its loss-weighting mode."""

    sigma_mode: Literal["learn_class", "learn_both", "fixed"] = "learn_class"
    """The loss weights: `learn_class` (released), `learn_both` or `fixed` (σ = 1)."""


class GazeTokenMaskPeerSection(PeerSection):
    """``peers.gaze_token_mask``: EG-ViT's training (mask_probability 0: the same ViT without gaze)."""

    mask_probability: Annotated[float, Field(ge=0, le=1)] = 0.5
    keep_tokens: PositiveInt = 64
    label_smoothing: Fraction = 0.1


class GDViGPeerSection(PeerSection):
    """``peers.gdvig``: GD-ViG's training (model.gaze_guided false: the same ViG without gaze)."""

    map_weight: NonNegFloat = 1.0


class GazeMTLPeerSection(PeerSection):
    """``peers.gaze_mtl``: Gaze-MTL's training (aux_weight 0: the same CNN without gaze)."""

    aux_weight: NonNegFloat = 1.0
    grid: Annotated[int, Field(ge=2)] = 10
    window: PositiveInt = 2


class PeersSection(Section):
    """``peers``: the paper's comparison methods and the field's gaze mechanisms (stages.peer --method NAME)."""

    mtunet: MTUNetPeerSection | None = None
    """MT-UNet."""
    irnetv2: PeerSection | None = None
    """Inception-ResNet-v2."""
    gazegnn: PeerSection | None = None
    """GazeGNN (needs gaze at test time)."""
    gaze_token_mask: GazeTokenMaskPeerSection | None = None
    """EG-ViT's gaze token mask (a training-time gaze mechanism)."""
    gdvig: GDViGPeerSection | None = None
    """GD-ViG: gaze-map generator guiding the ViG graph (training-time gaze)."""
    gaze_mtl: GazeMTLPeerSection | None = None
    """Gaze-MTL: auxiliary heads on gaze statistics (training-time gaze)."""


class RegistrySection(Section):
    """``registry``: where models are saved and the tags every entry gets."""

    root: str = "checkpoints"
    """The checkpoint registry folder."""
    tags: list[str] = []
    """Tags every entry of the run gets."""


class RunsSection(Section):
    """``runs``: per-epoch checkpoints, logs and feature caches."""

    root: str = "runs"
    """Run directories (per-epoch state, logs) and the feature cache."""


class GazeUtilityKnobs(Section):
    """``gaze_utility.knobs``: the phantom knobs shared by every data set of the study (the gaze knob is the grid)."""

    evidence_contrast: NonNegFloat = 1.0
    """Scale of the class evidence's density contrast (0: no class signal)."""
    evidence_size: Annotated[float, Field(gt=0, le=3)] = 1.0
    """Scale of the consolidation radius and the perihilar-haze widths."""
    distractors: NonNegInt = 0
    """Evidence-like blobs in the lungs of every film."""


class GazeUtilityTrain(Section):
    """``gaze_utility.train``: how every benchmark method is fit (gazecxr.training.gaze_methods.BenchSettings)."""

    epochs: PositiveInt = 12
    """Epochs of the CNNs and the saliency decoder (the best on validation is kept)."""
    head_epochs: PositiveInt = 20
    """Epochs of the fusion and saliency-pool heads on the frozen features."""
    batch_size: Annotated[int, Field(ge=2)] = 32
    """Mini-batch size."""
    lr: PositiveFloat = 3e-3
    """Adam learning rate (the mechanisms use at most 1e-3)."""
    widths: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1, max_length=5)
    """Channels of the CNN's conv blocks (each halves the resolution)."""
    decoder_width: PositiveInt = 16
    """Channels of the saliency decoder."""
    attention_weight: NonNegFloat = 1.0
    """Weight of the CAM alignment loss (attention_consistency, evidence_oracle)."""


GAZE_UTILITY_METHODS = Literal["evidence_oracle", "attention_consistency", "fusion", "fusion_conv",
                               "saliency_pool", "test_time_gaze", "gaze_token_mask", "gdvig", "gaze_mtl"]
"""Methods of the gaze-utility benchmark (gazecxr.training.gaze_methods.METHODS, the baseline always runs)."""


class GazeUtilitySection(Section):
    """``gaze_utility``: the gaze-utility benchmark (gazecxr.evaluation.studies.gaze_utility)."""

    data_root: str = "demo_out/gaze_utility"
    """Where the study writes its data sets (one folder per hash of the data settings)."""
    images: PositiveInt = 600
    """Phantoms per data set."""
    film_size: Annotated[int, Field(ge=64)] = 128
    """Nominal film height of the phantoms in pixels."""
    generator_seed: NonNegInt = 0
    """Seed of the phantom generator."""
    knobs: GazeUtilityKnobs = GazeUtilityKnobs()
    """Phantom knobs shared by every data set."""
    informativeness: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=lambda: [0.0, 1.0],
                                                                       min_length=1)
    """The gaze-informativeness grid g."""
    shortcuts: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=lambda: [0.0, 0.9],
                                                                 min_length=1)
    """The shortcut-strength grid p: share of training / validation films whose marker agrees with the class."""
    train_sizes: list[Annotated[int, Field(ge=6)]] = Field(default_factory=lambda: [300], min_length=1)
    """Class-balanced training-subset sizes."""
    seeds: PositiveInt = 2
    """Training seeds per cell."""
    methods: list[GAZE_UTILITY_METHODS] = Field(
        default_factory=lambda: ["evidence_oracle", "test_time_gaze", "fusion", "saliency_pool",
                                 "attention_consistency"], min_length=1)
    """Methods compared, each against the same backbone without gaze (the CNN baseline always runs)."""
    shuffled: list[GAZE_UTILITY_METHODS] = Field(default_factory=lambda: ["attention_consistency"])
    """Methods also trained with shuffled gaze (the negative control), at the largest g."""
    height: Annotated[int, Field(ge=32, multiple_of=32)] = 64
    """Canvas height of the converted files."""
    width: Annotated[int, Field(ge=32, multiple_of=32)] = 64
    """Canvas width of the converted files."""
    test_size: PositiveInt = 150
    """Test images."""
    val_fraction: Fraction = 0.15
    """Validation fraction of the non-test images."""
    bootstrap: NonNegInt = 1000
    """Patient-bootstrap resamples of the gain intervals."""
    train: GazeUtilityTrain = GazeUtilityTrain()
    """How every method is fit."""
    threads: PositiveInt = 1
    """Torch CPU threads of the fits (1 is fastest on a shared CPU)."""


class ExplainRecipe(Section):
    """``explain.recipe``: the study's preprocessing and augmentation (explanation_data.Recipe)."""

    image_size: Annotated[int, Field(ge=16)] = 224
    """Side the images are resized to."""
    clahe: bool = True
    """CLAHE contrast equalisation (OpenCV)."""
    clip_limit: PositiveFloat = 2.0
    """CLAHE clip limit."""
    tile_grid: PositiveInt = 8
    """CLAHE tiles per side."""
    rotation: NonNegFloat = 10.0
    """Maximum training rotation in degrees."""
    hflip: bool = True
    """Random horizontal flips in training."""
    brightness: NonNegFloat = 0.1
    """Maximum relative brightness change in training."""
    contrast: NonNegFloat = 0.1
    """Maximum relative contrast change in training."""
    noise_std: NonNegFloat = 0.03
    """Standard deviation of the Gaussian noise added in training."""


class ExplainBalanced(Section):
    """``explain.balanced``: a class-balanced subset (n images; val and test of them)."""

    enabled: bool = False
    """Train and test on a class-balanced subset."""
    n: PositiveInt | None = None
    """Images in the subset."""
    val: PositiveInt | None = None
    """Validation images of them."""
    test: PositiveInt | None = None
    """Test images of them."""


class ExplainTrain(Section):
    """``explain.train``: ``train`` overrides per architecture family."""

    cnn: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """`train` overrides of the convolutional networks."""
    vit: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    """`train` overrides of ViT and Swin."""


class ExplainSection(Section):
    """``explain``: the explanation-reliability study (gazecxr.evaluation.studies.explanation)."""

    name: str = "study"
    """The study's name: its report folder `reports/explain/<name>/`."""
    architectures: Annotated[list[str], Field(min_length=1)] = ["resnet50"]
    """Timm names, `densenet201_stage1` or `densenet121_multitask`."""
    methods: Annotated[list[Literal["eigencam", "gradcam", "gradcam++", "hirescam", "layercam", "scorecam"]],
                       Field(min_length=1)] = ["gradcam"]
    """CAM methods (pytorch-grad-cam)."""
    size: Literal["full", "tiny"] = "full"
    """`tiny` builds every architecture with a few channels (for tests)."""
    pretrained: dict[str, str] = {}
    """Architecture → local weights file."""
    baselines: list[Literal["centre_bias", "gaze_model", "radiologist_gaze", "uniform"]] = [
        "uniform", "centre_bias", "radiologist_gaze"]
    """Architecture-free rows scored like the CAMs."""
    gaze_model: Ref | None = None
    """The stage-2 registry entry of the `gaze_model` row."""
    regions: Literal["annotations", "gaze", "both"] = "annotations"
    """Ground-truth regions: the dataset's `annotations` (masks, boxes, ellipses), the hottest part of the
    radiologist's `gaze`, or `both` side by side (the annotations as the region, every map also scored
    against the film's gaze: CXR-P, where masks and gaze lie on the same films)."""
    gaze_region_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    """With `regions: gaze` or `both`, the hottest percentage of the gaze map that is the gaze region."""
    decision_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Probability at or above which a finding is called present (accuracy, precision, recall)."""
    anchors: Literal["nih14", "siim"] | None = None
    """Print the source study's published numbers on this dataset beside ours."""
    figure_pairs: NonNegInt = 3
    """Test pairs in the CAM figure."""
    gallery_pairs: NonNegInt = 24
    """Test pairs on the HTML page."""
    max_test: PositiveInt | None = None
    """Score at most this many test images (null: all)."""
    seeds: PositiveInt = 1
    """Training seeds per architecture."""
    monitor: Monitor = "val_auc_macro"
    """Validation metric for early stopping and the best checkpoint."""
    recipe: ExplainRecipe = ExplainRecipe()
    """Preprocessing and augmentation."""
    balanced: ExplainBalanced = ExplainBalanced()
    """Class-balanced subset."""
    train: ExplainTrain = ExplainTrain()
    """`train` overrides per architecture family."""


SECTIONS: dict[str, Any] = {
    "seed": (NonNegInt, 0),
    "task": (TaskSection, ExclusiveClassesTask()),
    "data": (DataSection, DataSection()),
    "model": (ModelsSection | None, None),
    "train": (TrainSection, TrainSection()),
    "stage1": (Stage1Section, Stage1Section()),
    "stage2": (Stage2Section, Stage2Section()),
    "stage3": (Stage3Section, Stage3Section()),
    "peers": (PeersSection, PeersSection()),
    "registry": (RegistrySection, RegistrySection()),
    "runs": (RunsSection, RunsSection()),
    "explain": (ExplainSection | None, None),
    "gaze_utility": (GazeUtilitySection, GazeUtilitySection()),
}
"""Top-level section name → (type, default; ``...`` = required). Add a new section here."""

RunConfig: type[Section] = create_model("RunConfig", __base__=Section,  # type: ignore[call-overload]
                                        __doc__="A whole run configuration.", **SECTIONS)


# --- validation and error messages -------------------------------------------------------------------

def _walk(data: Any, loc: Sequence[Any]) -> tuple[list[str], Any]:
    """The config path of a pydantic error location (union/tag labels dropped) and the value there."""
    path: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            path.append(str(part))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(f"[{part}]")
        else:
            continue  # a union member or discriminator tag, not a key of the data
    return path, node


def _dotted(path: Sequence[str]) -> str:
    return ".".join(path).replace(".[", "[")


def _fields_at(model: type[BaseModel], data: Any, path: Sequence[str]) -> list[str]:
    """The valid keys of the section at ``path`` (for a model slot, of the model named there)."""
    section: Any = model
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
        info = section.model_fields.get(key) if isinstance(section, type) and issubclass(section, BaseModel) else None
        if info is None:
            return []
        section = _section_class(info.annotation, node)
    if isinstance(section, type) and issubclass(section, BaseModel):
        return list(section.model_fields)
    return []


def _section_class(annotation: Any, node: Any) -> Any:
    """The Section class a field annotation stands for, given the data ``node`` (model/task choice)."""
    candidates = _classes_in(annotation)
    if len(candidates) == 1:
        return candidates[0]
    name = node.get("name", DEFAULT_TASK) if isinstance(node, Mapping) else None
    for cls in candidates:
        if cls.model_fields.get("name") is not None and name in getattr(cls.model_fields["name"].annotation,
                                                                         "__args__", ()):
            return cls
    return None


def _classes_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        out += _classes_in(arg)
    origin_meta = getattr(annotation, "__metadata__", None)
    if origin_meta is not None:
        out += _classes_in(getattr(annotation, "__origin__", None))
    return list(dict.fromkeys(out))


def suggest(key: str, valid: Sequence[str], prefix: str = "") -> str:
    """`` (did you mean 'prefix.x'?)`` for the key of ``valid`` closest to ``key`` (difflib), or ''."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if not close:
        return ""
    prefix = prefix.rstrip(".")
    return f" (did you mean {(prefix + '.' if prefix else '') + close[0]!r}?)"


_LENGTH = re.compile(r"(?:List|Tuple) should have at (least|most) (\d+) items? after validation, not (\d+)")


def _expected(msg: str) -> str:
    length = _LENGTH.fullmatch(msg)
    if length:
        return f"expected at {length[1]} {length[2]} items, got {length[3]}"
    for prefix in ("Input should be ", "Value error, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
            return ("expected " + msg) if prefix.startswith("Input") else msg
    return msg


def _messages(err: ValidationError, data: Mapping[str, Any], model: type[BaseModel]) -> list[str]:
    merged: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for item in err.errors(include_url=False):
        path, value = _walk(data, item["loc"])
        dotted = _dotted(path)
        kind = item["type"]
        if kind == "extra_forbidden":
            valid = _fields_at(model, data, path[:-1])
            line = (f"unknown key {dotted!r}{suggest(path[-1], valid, _dotted(path[:-1]))}; valid keys "
                    f"{'in ' + repr(_dotted(path[:-1])) if len(path) > 1 else 'at the top level'}: {', '.join(valid)}")
            merged.setdefault(dotted + "\0extra", []).append(line)
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            tags = [t.strip("' ") for t in str(item.get("ctx", {}).get("expected_tags", "")).split(",")]
            name = value.get("name") if isinstance(value, Mapping) else None
            where = f"{dotted}.name" if dotted else "name"
            if isinstance(value, Mapping):
                line = (f"{where} = {name!r}: unknown name{suggest(str(name), tags)}; "
                        f"expected one of {', '.join(tags)}")
            else:
                line = f"{dotted} = {value!r}: expected a section (mapping) with a 'name', one of {', '.join(tags)}"
            merged.setdefault(dotted + "\0tag", []).append(line)
            continue
        if kind == "missing":
            dotted = _dotted([*path, str(item["loc"][-1])])  # the key that is absent from the data
            merged.setdefault(dotted + "\0missing", []).append(f"missing key {dotted!r}")
            continue
        values[dotted] = value
        merged.setdefault(dotted, []).append(_expected(item["msg"]))
    lines = []
    for key, reasons in merged.items():
        if "\0" in key:
            lines += reasons
        else:
            reasons = list(dict.fromkeys(reasons))
            text = reasons[0] + "".join(" or " + r.removeprefix("expected ") for r in reasons[1:])
            lines.append(f"{key} = {values[key]!r}: {text}")
    return lines


def _line_key(line: str) -> str:
    """The dotted key a message line is about."""
    if line.startswith(("unknown key '", "missing key '")):
        return line.split("'")[1]
    return line.split(" = ", 1)[0].removesuffix(".name")


def validate_config(config: Mapping[str, Any], where: str = "config",
                    overrides: Sequence[str] = ()) -> Mapping[str, Any]:
    """``config`` unchanged if it fits :data:`RunConfig`; otherwise ConfigError naming ``where``
    and, per problem, the dotted key, the value and what is expected (unknown keys with the
    closest valid key); a problem with a key given in ``overrides`` is marked ``(--set)``."""
    try:
        RunConfig.model_validate(dict(config))
    except ValidationError as err:
        keys = {text.split("=", 1)[0].strip() for text in overrides}
        lines = [line + (" (--set)" if _line_key(line) in keys else "") for line in _messages(err, config, RunConfig)]
        raise ConfigError(f"{where}: invalid config ({len(lines)} problem{'s' * (len(lines) > 1)}):\n  "
                          + "\n  ".join(lines)) from None
    return config
