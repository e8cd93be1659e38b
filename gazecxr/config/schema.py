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
    """A config section: unknown keys are errors, values are not coerced (strict types)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- model sections: one class per registered model name (gazecxr.models.create_model) -------------

class DenseNetModel(Section):
    """``densenet``: the DenseNet encoder/classifier (stage 1)."""

    name: Literal["densenet"]
    arch: Literal["densenet121", "densenet201", "custom"] = "densenet201"
    tap: Literal["denseblock4", "transition3"] = "denseblock4"
    pretrained: str = Field("none", description="none | imagenet | path to a .pth state dict")
    num_classes: PositiveInt = 3
    imagenet_norm: bool | None = None
    growth_rate: PositiveInt | None = None
    block_config: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] | None = None
    num_init_features: PositiveInt | None = None


class ResSEUNetModel(Section):
    """``resse_unet``: the Res-SE UNet saliency model (stage 2)."""

    name: Literal["resse_unet"]
    in_channels: PositiveInt = 1
    width: PositiveFloat = 1.0
    aux_channels: NonNegInt = 0
    se_reduction: PositiveInt = 16


class FusionModel(Section):
    """``fusion``: the multi-scale fusion classifier (stage 3)."""

    name: Literal["fusion"]
    dense_channels: PositiveInt = 1920
    decoder_channels: PositiveInt = 64
    num_classes: PositiveInt = 3
    head: Literal["linear", "conv"] = "linear"
    hidden: PositiveInt = 64
    dropout: Fraction = 0.25


class StandardUNetModel(Section):
    """``standard_unet``: the segmentation-models-pytorch UNet baseline."""

    name: Literal["standard_unet"]
    encoder_name: str = "resnet34"
    encoder_depth: Annotated[int, Field(ge=3, le=5)] = 5
    decoder_channels: Annotated[list[PositiveInt], Field(min_length=3, max_length=5)] = [256, 128, 64, 32, 16]
    in_channels: PositiveInt = 1


class MTUNetModel(Section):
    """``mtunet``: MT-UNet (classification + saliency jointly)."""

    name: Literal["mtunet"]
    width: PositiveFloat = 1.0
    in_channels: PositiveInt = 1
    num_classes: PositiveInt = 3
    hidden: PositiveInt | None = None
    dropout: Fraction = 0.25


class IRNetV2Model(Section):
    """``irnetv2``: Inception-ResNet-v2 (timm)."""

    name: Literal["irnetv2"]
    num_classes: PositiveInt = 3
    in_channels: PositiveInt = 1
    drop_rate: Fraction = 0.0


Stages4 = Annotated[list[PositiveInt], Field(min_length=4, max_length=4)]


class GazeGNNModel(Section):
    """``gazegnn``: GazeGNN (Pyramid Vision GNN fed the fixations)."""

    name: Literal["gazegnn"]
    image_size: Annotated[int, Field(ge=32)] = 224
    channels: Stages4 = [48, 96, 240, 384]
    blocks: Stages4 = [2, 2, 6, 2]
    k: PositiveInt = 9
    reduce_ratios: Stages4 = [4, 2, 1, 1]
    hidden: PositiveInt = 1024
    dropout: Fraction = 0.0
    num_classes: PositiveInt = 3
    pretrained: str = "none"
    imagenet_norm: bool | None = None


class TimmModel(Section):
    """``timm``: any timm classifier (the explanation study's architectures)."""

    name: Literal["timm"]
    arch: str = "resnet50"
    num_classes: PositiveInt = 2
    in_channels: PositiveInt = 1
    pretrained: str = "none"
    size: Literal["full", "tiny"] = "full"
    img_size: Annotated[int, Field(ge=16)] = 224
    overrides: dict[str, Any] | None = Field(None, description="extra timm.create_model arguments")
    drop_rate: Fraction = 0.0


class MultitaskFRCNNModel(Section):
    """``multitask_frcnn``: DenseNet shared by a multi-label head and a Faster R-CNN box head."""

    name: Literal["multitask_frcnn"]
    num_findings: PositiveInt = 14
    num_box_classes: PositiveInt = 8
    arch: Literal["densenet121", "densenet201", "custom"] = "densenet121"
    pretrained: str = "none"
    growth_rate: PositiveInt | None = None
    block_config: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] | None = None
    num_init_features: PositiveInt | None = None
    hidden: PositiveInt = 512
    dropout: Fraction = 0.3
    anchor_sizes: Annotated[list[PositiveInt], Field(min_length=1)] = [32, 64, 128, 256]
    box_hidden: PositiveInt = 1024
    detections_per_image: PositiveInt = 20
    box_score_thresh: Annotated[float, Field(ge=0, le=1)] = 0.05


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


MODEL_SECTIONS: dict[str, type[Section]] = {
    "densenet": DenseNetModel, "resse_unet": ResSEUNetModel, "fusion": FusionModel,
    "standard_unet": StandardUNetModel, "mtunet": MTUNetModel, "irnetv2": IRNetV2Model, "gazegnn": GazeGNNModel,
    "timm": TimmModel, "multitask_frcnn": MultitaskFRCNNModel, "eg_vit": EGViTModel,
    "gdvig": GDViGModel, "gaze_mtl": GazeMTLModel,
}
"""Model name → its section; every ``model``-like slot accepts any of them (chosen by ``name``)."""


# --- task sections (gazecxr.tasks.create_task) ------------------------------------------------------

DEFAULT_TASK = "egd_3class"


class ExclusiveClassesTask(Section):
    """``egd_3class``: Normal / CHF / pneumonia, one class per image."""

    name: Literal["egd_3class"] = "egd_3class"


class _MultiLabelTask(Section):
    """Options every multi-label task shares: BCE positive weights."""

    positive_weights: bool = False
    pos_weight: list[PositiveFloat] | None = None


class FindingsTask(_MultiLabelTask):
    """``reflacx_findings``: multi-label REFLACX findings (certainty >= ``threshold`` = present)."""

    name: Literal["reflacx_findings"]
    threshold: Annotated[float, Field(gt=0, le=5)] = 3.0
    support_devices: bool = False


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


class VinDrTask(_MultiLabelTask):
    """``vindr_findings``: VinDr-CXR local findings, present when enough readers marked them."""

    name: Literal["vindr_findings"]
    min_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    label_set: Annotated[list[str], Field(min_length=1)] | None = None


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
    rotation: NonNegFloat = 5.0
    scale: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [0.95, 1.05]
    translate: Fraction = 0.03
    hflip: bool = False
    brightness: NonNegFloat = 0.1
    contrast: NonNegFloat = 0.1
    strength: NonNegFloat = 1.0

    @field_validator("scale")
    @classmethod
    def _ordered_scale(cls, scale: list[float]) -> list[float]:
        if scale[0] > scale[1]:
            raise ValueError("expected [low, high] with low <= high")
        return scale


class DataSection(Section):
    """``data``: the converted HDF5 file(s) and the loader."""

    h5: Union[str, Annotated[list[str], Field(min_length=1)]] = "data/egd_cxr.h5"
    sources: Annotated[list[str], Field(min_length=1)] | None = None
    num_workers: NonNegInt = 4
    augment: AugmentSection = AugmentSection()


class ModelsSection(Section):
    """``model``: the three networks of our model (each chosen by its ``name``)."""

    encoder: ModelSection
    unet: ModelSection
    classifier: ModelSection


class PlateauSection(Section):
    """``train.plateau``: ReduceLROnPlateau arguments."""

    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: NonNegInt = 10
    threshold: NonNegFloat = 1e-4
    cooldown: NonNegInt = 0
    min_lr: NonNegFloat = 0.0


def _matching(pattern: str, expected: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}")
        return value

    return AfterValidator(check)


Device = Annotated[str, _matching(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N")]


class TrainSection(Section):
    """``train``: optimisation defaults of every phase (gazecxr.training.engine.TrainSettings)."""

    batch_size: PositiveInt = 16
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegFloat = 0.0
    max_epochs: PositiveInt = 50
    patience: NonNegInt | None = 10
    plateau: PlateauSection | None = None
    grad_clip: PositiveFloat | None = None
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"
    channels_last: bool = True
    deterministic: bool = False
    device: Device = "auto"
    feature_cache: Literal["auto", "memory", "disk", "off"] = "auto"
    feature_cache_memory_mb: NonNegFloat = 2048.0
    sync_batchnorm: bool = False
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    reload_best_on_lr_drop: bool = False


TrainOverrides: type[Section] = create_model(  # type: ignore[call-overload]
    "TrainOverrides", __base__=Section, __doc__="A phase's ``train`` section: any ``train`` key, overriding it.",
    **{name: (Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation, None)
       for name, field in TrainSection.model_fields.items()},
)
"""Every key of :class:`TrainSection`, each optional (absent = inherit the top-level value)."""


class ContrastiveSection(Section):
    """``stage1.contrastive``: phase 1, metric learning on the labels."""

    enabled: bool = True
    loss: Literal["triplet", "supcon"] = "triplet"
    margin: PositiveFloat = 0.2
    miner: Literal["semihard", "hard", "all"] = "semihard"
    temperature: PositiveFloat = 0.1
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]


class PhaseSection(Section):
    """A training phase with only its ``train`` overrides."""

    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]


Monitor = Annotated[str, _matching(r"val_\w+", "a validation metric name, val_<metric>")]


class Stage1Section(Section):
    """``stage1``: DenseNet contrastive pretraining, then fine-tuning."""

    contrastive: ContrastiveSection = ContrastiveSection()
    finetune: PhaseSection = PhaseSection()
    monitor: Monitor = "val_auc_macro"


class Stage2Section(Section):
    """``stage2``: the saliency UNet on the frozen stage-1 encoder."""

    encoder: Ref = "best"
    variant: Literal["full", "resse", "unet"] = "full"
    baseline_unet: ModelSection = StandardUNetModel(name="standard_unet")
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    monitor: Monitor = "val_kl"


class Stage3Section(Section):
    """``stage3``: the fusion classifier on the frozen encoder and UNet."""

    saliency: Ref = "best"
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    monitor: Monitor = "val_auc_macro"


class PeerSection(Section):
    """``peers.<method>``: a peer method's network, training overrides and monitored metric."""

    model: ModelSection
    train: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    monitor: Monitor = "val_auc_macro"


class MTUNetPeerSection(PeerSection):
    """``peers.mtunet``: MT-UNet with its loss-weighting mode."""

    sigma_mode: Literal["learn_class", "learn_both", "fixed"] = "learn_class"


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
    irnetv2: PeerSection | None = None
    gazegnn: PeerSection | None = None
    gaze_token_mask: GazeTokenMaskPeerSection | None = None
    gdvig: GDViGPeerSection | None = None
    gaze_mtl: GazeMTLPeerSection | None = None


class RegistrySection(Section):
    """``registry``: where models are saved and the tags every entry gets."""

    root: str = "checkpoints"
    tags: list[str] = []


class RunsSection(Section):
    """``runs``: per-epoch checkpoints, logs and feature caches."""

    root: str = "runs"


class GazeUtilityKnobs(Section):
    """``gaze_utility.knobs``: the phantom knobs shared by every data set of the study (the gaze knob is the grid)."""

    evidence_contrast: NonNegFloat = 1.0
    evidence_size: Annotated[float, Field(gt=0, le=3)] = 1.0
    distractors: NonNegInt = 0


class GazeUtilityTrain(Section):
    """``gaze_utility.train``: how every benchmark method is fit (gazecxr.training.gaze_methods.BenchSettings)."""

    epochs: PositiveInt = 12
    head_epochs: PositiveInt = 20
    batch_size: Annotated[int, Field(ge=2)] = 32
    lr: PositiveFloat = 3e-3
    widths: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1, max_length=5)
    decoder_width: PositiveInt = 16
    attention_weight: NonNegFloat = 1.0


GAZE_UTILITY_METHODS = Literal["evidence_oracle", "attention_consistency", "fusion", "fusion_conv",
                               "saliency_pool", "test_time_gaze", "gaze_token_mask", "gdvig", "gaze_mtl"]
"""Methods of the gaze-utility benchmark (gazecxr.training.gaze_methods.METHODS, the baseline always runs)."""


class GazeUtilitySection(Section):
    """``gaze_utility``: the gaze-utility benchmark (gazecxr.evaluation.studies.gaze_utility)."""

    data_root: str = "demo_out/gaze_utility"
    images: PositiveInt = 600
    film_size: Annotated[int, Field(ge=64)] = 128
    generator_seed: NonNegInt = 0
    knobs: GazeUtilityKnobs = GazeUtilityKnobs()
    informativeness: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=lambda: [0.0, 1.0],
                                                                       min_length=1)
    shortcuts: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=lambda: [0.0, 0.9],
                                                                 min_length=1)
    train_sizes: list[Annotated[int, Field(ge=6)]] = Field(default_factory=lambda: [300], min_length=1)
    seeds: PositiveInt = 2
    methods: list[GAZE_UTILITY_METHODS] = Field(
        default_factory=lambda: ["evidence_oracle", "test_time_gaze", "fusion", "saliency_pool",
                                 "attention_consistency"], min_length=1)
    shuffled: list[GAZE_UTILITY_METHODS] = Field(default_factory=lambda: ["attention_consistency"])
    height: Annotated[int, Field(ge=32, multiple_of=32)] = 64
    width: Annotated[int, Field(ge=32, multiple_of=32)] = 64
    test_size: PositiveInt = 150
    val_fraction: Fraction = 0.15
    bootstrap: NonNegInt = 1000
    train: GazeUtilityTrain = GazeUtilityTrain()
    threads: PositiveInt = 1


class ExplainRecipe(Section):
    """``explain.recipe``: the study's preprocessing and augmentation (explanation_data.Recipe)."""

    image_size: Annotated[int, Field(ge=16)] = 224
    clahe: bool = True
    clip_limit: PositiveFloat = 2.0
    tile_grid: PositiveInt = 8
    rotation: NonNegFloat = 10.0
    hflip: bool = True
    brightness: NonNegFloat = 0.1
    contrast: NonNegFloat = 0.1
    noise_std: NonNegFloat = 0.03


class ExplainBalanced(Section):
    """``explain.balanced``: a class-balanced subset (n images; val and test of them)."""

    enabled: bool = False
    n: PositiveInt | None = None
    val: PositiveInt | None = None
    test: PositiveInt | None = None


class ExplainTrain(Section):
    """``explain.train``: ``train`` overrides per architecture family."""

    cnn: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]
    vit: TrainOverrides = TrainOverrides()  # type: ignore[valid-type]


class ExplainSection(Section):
    """``explain``: the explanation-reliability study (gazecxr.evaluation.studies.explanation)."""

    name: str = "study"
    architectures: Annotated[list[str], Field(min_length=1)] = ["resnet50"]
    methods: Annotated[list[Literal["eigencam", "gradcam", "gradcam++", "hirescam", "layercam", "scorecam"]],
                       Field(min_length=1)] = ["gradcam"]
    size: Literal["full", "tiny"] = "full"
    pretrained: dict[str, str] = {}
    baselines: list[Literal["centre_bias", "gaze_model", "radiologist_gaze", "uniform"]] = [
        "uniform", "centre_bias", "radiologist_gaze"]
    gaze_model: Ref | None = None
    regions: Literal["annotations", "gaze"] = "annotations"
    gaze_region_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    decision_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    anchors: Literal["nih14", "siim"] | None = None
    figure_pairs: NonNegInt = 3
    gallery_pairs: NonNegInt = 24
    max_test: PositiveInt | None = None
    seeds: PositiveInt = 1
    monitor: Monitor = "val_auc_macro"
    recipe: ExplainRecipe = ExplainRecipe()
    balanced: ExplainBalanced = ExplainBalanced()
    train: ExplainTrain = ExplainTrain()


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
