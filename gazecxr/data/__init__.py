"""Data layer: raw EGD-CXR reading, heatmaps, geometry, HDF5 conversion and the Dataset.

The torch-based parts (`GazeCXRDataset`, `PairedAugment`) are imported on first use, so the
converter and its worker processes run without loading torch.
"""

from importlib import import_module
from typing import Any

from gazecxr import CLASS_NAMES
from gazecxr.data.convert import ConversionReport, ConvertOptions
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import gaze_heatmap, reference_heatmap
from gazecxr.data.images import ImageReadError, read_radiograph
from gazecxr.data.sources.egd_cxr import convert_egd_cxr

_LAZY = {"GazeCXRDataset": "gazecxr.data.dataset", "PairedAugment": "gazecxr.data.transforms"}

__all__ = [
    "CLASS_NAMES", "ConversionReport", "ConvertOptions", "GazeCXRDataset", "ImageReadError",
    "Letterbox", "PairedAugment", "convert_egd_cxr", "gaze_heatmap", "read_radiograph", "reference_heatmap",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gazecxr.data' has no attribute {name!r}")
