"""Networks of the three-stage model, its baselines, and the model registry."""

from .baselines import StandardUNet
from .bench_cnn import BenchCNN, FusionHead, SaliencyDecoder, SaliencyPoolHead
from .cooperative import GazeCXRModel, freeze, is_frozen
from .densenet import DenseNetEncoder
from .eg_vit import EGViT
from .gaze_mtl import GazeMTL
from .gdvig import GDViG
from .factory import available_models, create_model, model_keys, register_model
from .fusion import FusionClassifier
from .gazegnn import GazeGNN
from .irnetv2 import InceptionResNetV2
from .mtunet import MTUNet
from .multitask_detector import MultiTaskDetector
from .resse_unet import ResSEUNet, saliency_from_logits
from .timm_classifier import TimmClassifier

__all__ = [
    "BenchCNN",
    "FusionHead",
    "SaliencyDecoder",
    "SaliencyPoolHead",
    "DenseNetEncoder",
    "EGViT",
    "GDViG",
    "GazeMTL",
    "FusionClassifier",
    "GazeCXRModel",
    "GazeGNN",
    "InceptionResNetV2",
    "MTUNet",
    "MultiTaskDetector",
    "ResSEUNet",
    "StandardUNet",
    "TimmClassifier",
    "available_models",
    "create_model",
    "freeze",
    "is_frozen",
    "model_keys",
    "register_model",
    "saliency_from_logits",
]
