"""gazecxr: gaze-guided chest X-ray interpretation (saliency prediction + diagnosis)."""

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, ...] = ("Normal", "CHF", "pneumonia")
"""Fixed label order: index 0 = Normal, 1 = CHF, 2 = pneumonia."""
