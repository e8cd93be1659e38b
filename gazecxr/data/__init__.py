"""Data layer: raw EGD-CXR reading, heatmaps, geometry, HDF5 conversion and the Dataset."""

from gazecxr import CLASS_NAMES
from gazecxr.data.convert import ConversionReport, ConvertOptions, convert
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import gaze_heatmap, reference_heatmap
from gazecxr.data.images import ImageReadError, read_radiograph
from gazecxr.data.transforms import PairedAugment

__all__ = [
    "CLASS_NAMES", "ConversionReport", "ConvertOptions", "GazeCXRDataset", "ImageReadError",
    "Letterbox", "PairedAugment", "convert", "gaze_heatmap", "read_radiograph", "reference_heatmap",
]
