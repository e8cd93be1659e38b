"""Planted, visible lesions for the public-dataset layouts: each drawn into a phantom film and returned
with its ground-truth region (boolean mask and the box around it, original pixels).

Kinds: ``blob`` (a bright round opacity: nodule, mass, consolidation …; size by ``radius``),
``effusion`` (bright basal band of one lung with a meniscus), ``pneumothorax`` (a dark, featureless
lateral-apical crescent of one lung: air without lung markings), ``cardiomegaly`` (the heart of a
CHF phantom, drawn by the phantom itself; the region is its mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gazecxr.data.synthetic.phantom import Phantom

KINDS = ("blob", "effusion", "pneumothorax", "cardiomegaly")


@dataclass(frozen=True)
class Lesion:
    """A planted lesion: its kind, region mask (H, W) bool and box [xmin, ymin, xmax, ymax] in pixel edges
    (the mask's columns xmin..xmax-1 and rows ymin..ymax-1)."""

    kind: str
    mask: np.ndarray

    @property
    def box(self) -> np.ndarray:
        return mask_box(self.mask)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """[xmin, ymin, xmax, ymax] (pixel edges, float64) of a non-empty mask."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)


def _lung(phantom: Phantom, rng: np.random.Generator) -> np.ndarray:
    side = ("right_lung", "left_lung")[int(rng.integers(2))]
    return phantom.masks[side]


def plant(phantom: Phantom, kind: str, rng: np.random.Generator, radius: float = 0.08,
          strength: float = 0.35) -> Lesion:
    """Draw a lesion of ``kind`` into ``phantom.image`` (in place) and return it; ``radius`` (blob) is a
    fraction of the film height, ``strength`` the intensity change."""
    image, (h, w) = phantom.image, phantom.shape
    if kind == "cardiomegaly":
        return Lesion(kind, phantom.masks["heart"].copy())
    lung = _lung(phantom, rng)
    rows, cols = np.nonzero(lung)
    if kind == "blob":
        depth = ndimage.distance_transform_edt(lung)
        r = max(2.0, radius * h)
        inner = np.flatnonzero(depth[rows, cols] >= min(r, depth.max()) * 0.8)
        k = inner[int(rng.integers(len(inner)))]
        cy, cx = rows[k], cols[k]
        yy, xx = np.ogrid[:h, :w]
        dist = np.hypot(yy - cy, xx - cx) / r
        mask = dist <= 1.0
        image += strength * np.clip(1.25 - dist, 0.0, 1.0).astype(np.float32) ** 0.7
    elif kind == "effusion":
        top, bottom = rows.min(), rows.max()
        level = bottom - rng.uniform(0.22, 0.32) * (bottom - top)
        centre = cols.mean()
        yy, xx = np.ogrid[:h, :w]
        meniscus = level - 0.15 * (bottom - top) * np.abs(xx - centre) / max(1.0, np.ptp(cols))
        mask = lung & (yy >= meniscus)
        image[mask] += strength
    elif kind == "pneumothorax":
        depth = ndimage.distance_transform_edt(lung)
        centre = cols.mean()
        lateral = (np.arange(w) - centre) * (1 if centre > w / 2 else -1) > 0
        top, bottom = rows.min(), rows.max()
        upper = np.arange(h) < top + 0.8 * (bottom - top)
        rim = rng.uniform(0.08, 0.12) * h
        mask = lung & (depth < rim) & lateral[None, :] & upper[:, None]
        level = np.float32(np.percentile(image[lung], 10))
        image[mask] = level - strength * 0.5
    else:
        raise ValueError(f"lesion kind must be one of {KINDS}, got {kind!r}")
    np.clip(image, 0.0, 1.0, out=image)
    return Lesion(kind, mask)
