"""Letterbox geometry: fit an image inside the model's H×W canvas and map outputs back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Letterbox:
    """How one original image sits in the model canvas: resized by ``scale``, padded by ``pad``.

    ``orig_size`` is the original (height, width); ``canvas`` the model (height, width);
    ``pad`` the (top, left) offset of the resized image inside the canvas.
    """

    orig_size: tuple[int, int]
    canvas: tuple[int, int]
    scale: float
    pad: tuple[int, int]

    @classmethod
    def fit(cls, orig_size: tuple[int, int], canvas: tuple[int, int]) -> "Letterbox":
        """Largest aspect-preserving fit of ``orig_size`` inside ``canvas``, centred."""
        h, w = (int(v) for v in orig_size)
        ch, cw = (int(v) for v in canvas)
        if min(h, w, ch, cw) <= 0:
            raise ValueError(f"sizes must be positive, got image {orig_size} and canvas {canvas}")
        scale = min(ch / h, cw / w)
        nh, nw = cls._resized(h, w, scale, ch, cw)
        return cls((h, w), (ch, cw), scale, ((ch - nh) // 2, (cw - nw) // 2))

    @staticmethod
    def _resized(h: int, w: int, scale: float, ch: int, cw: int) -> tuple[int, int]:
        return min(ch, max(1, round(h * scale))), min(cw, max(1, round(w * scale)))

    @property
    def resized(self) -> tuple[int, int]:
        """(height, width) of the image region inside the canvas."""
        return self._resized(*self.orig_size, self.scale, *self.canvas)

    @property
    def region(self) -> tuple[slice, slice]:
        """Row and column slices of the image region inside the canvas."""
        (top, left), (nh, nw) = self.pad, self.resized
        return slice(top, top + nh), slice(left, left + nw)

    def to_canvas_coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original pixel centres (column ``x``, row ``y``) → continuous canvas coordinates."""
        (nh, nw), (h, w) = self.resized, self.orig_size
        sx, sy = nw / w, nh / h
        u = (np.asarray(x, np.float64) + 0.5) * sx - 0.5 + self.pad[1]
        v = (np.asarray(y, np.float64) + 0.5) * sy - 0.5 + self.pad[0]
        return u, v

    def image_to_canvas(self, image: np.ndarray) -> np.ndarray:
        """Resize (antialiased) an original-size 2-D image and pad it into the canvas."""
        image = np.asarray(image, np.float32)
        if image.shape != self.orig_size:
            raise ValueError(f"image shape {image.shape} does not match letterbox {self.orig_size}")
        out = np.zeros(self.canvas, np.float32)
        out[self.region] = resize(image, self.resized)
        return out

    def mask_to_canvas(self, mask: np.ndarray) -> np.ndarray:
        """Resize a boolean original-size mask into the canvas (nearest neighbour)."""
        mask = np.asarray(mask, bool)
        if mask.shape != self.orig_size:
            raise ValueError(f"mask shape {mask.shape} does not match letterbox {self.orig_size}")
        out = np.zeros(self.canvas, bool)
        nh, nw = self.resized
        pil = Image.fromarray(mask.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)
        out[self.region] = np.asarray(pil) > 127
        return out

    def to_original(self, canvas_map: np.ndarray, distribution: bool = True) -> np.ndarray:
        """Map a canvas-space (H, W) map back to the original image's (h, w) geometry.

        With ``distribution=True`` the result is non-negative and sums to 1 (a saliency
        map); otherwise values are interpolated as they are (e.g. a Grad-CAM in [0, 1]).
        """
        canvas_map = np.asarray(canvas_map, np.float32)
        if canvas_map.shape != self.canvas:
            raise ValueError(f"map shape {canvas_map.shape} does not match canvas {self.canvas}")
        out = resize(canvas_map[self.region], self.orig_size)
        if distribution:
            out = np.clip(out, 0.0, None)
            total = float(out.sum(dtype=np.float64))
            out = out / total if total > 0 else np.full_like(out, 1.0 / out.size)
        return out.astype(np.float32)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, antialiased resize of a float 2-D array to (height, width)."""
    h, w = size
    if image.shape == (h, w):
        return np.asarray(image, np.float32).copy()
    pil = Image.fromarray(np.ascontiguousarray(image, np.float32))
    return np.asarray(pil.resize((w, h), Image.BILINEAR), np.float32)
