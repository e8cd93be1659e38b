"""The shortcut marker: a drain-like tube drawn across one lung field, whose position can agree with the class.

Marker states: `NO_MARKER` (0), `LEFT_LUNG` (1: tube in the image-left lung, the patient's right) and
`RIGHT_LUNG` (2: tube in the image-right lung). State ``k`` is the one that agrees with class ``k``
(Normal 0, CHF 1, pneumonia 2). With ``shortcut_strength`` p (`gazecxr.data.synthetic.knobs`) a film's
state is its class with probability p and otherwise drawn uniformly from the three states independently of
the class, so P(state = class) = p + (1 − p)/3; ``shortcut_shifted`` draws every state independently of
the class (the shifted test set). The draws are made in the same order for every p and ``shifted``, so
datasets with one seed differ only in the films whose state the setting changes.

The tube runs from the lower lateral part of the lung up and medially towards the apex (a quadratic
Bézier curve in the phantom's anatomical units, randomly jittered), `MARKER_WIDTH` wide, and adds
`MARKER_AMPLITUDE` to the film's intensity. It is drawn after the film is finished and does not change
anything else on it; the simulated readers never see it (gaze depends on the anatomy only).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from gazecxr.data.synthetic.knobs import Knobs
from gazecxr.data.synthetic.phantom import Phantom

NO_MARKER, LEFT_LUNG, RIGHT_LUNG = 0, 1, 2
"""Marker states; state ``k`` agrees with class ``k``."""

MARKER_STATES = 3

MARKER_WIDTH = 0.05
"""Tube width in anatomical units (the rib cage is about 2 wide: a ~1 cm drain on a ~30 cm chest)."""

MARKER_AMPLITUDE = 0.3
"""Intensity the tube adds to the film (display units, the film spans [0, 1])."""

_MIN_HALF_WIDTH = 0.75
"""Smallest half width in pixels, so the tube stays visible on small films."""


def add_shortcut(phantom: Phantom, knobs: Knobs, rng: np.random.Generator) -> int:
    """Draw the marker ``knobs`` ask for into ``phantom.image`` with ``rng`` (the film's own shortcut stream)
    and return its state; `NO_MARKER`, drawing and drawing nothing, without a ``shortcut_strength``."""
    if knobs.shortcut_strength is None:
        return NO_MARKER
    state = marker_state(rng, phantom.label, knobs.shortcut_strength, knobs.shortcut_shifted)
    draw_marker(phantom, state, rng)
    return state


def marker_state(rng: np.random.Generator, label: int, strength: float, shifted: bool = False) -> int:
    """The marker state of a film of class ``label``: the class with probability ``strength`` (never when
    ``shifted``), else uniform over the states independently of the class."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"shortcut strength must be in [0, 1], got {strength!r}")
    agrees = rng.random() < strength
    independent = int(rng.integers(MARKER_STATES))
    return label if agrees and not shifted else independent


def draw_marker(phantom: Phantom, state: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the tube of ``state`` into ``phantom.image`` (in place) and return its boolean (H, W) mask
    (empty for `NO_MARKER`)."""
    if state not in (NO_MARKER, LEFT_LUNG, RIGHT_LUNG):
        raise ValueError(f"marker state must be 0, 1 or 2, got {state!r}")
    if state == NO_MARKER:
        return np.zeros(phantom.shape, bool)
    cx, cy, a, b = phantom.anatomy.lungs[state - 1]
    lateral = -1.0 if state == LEFT_LUNG else 1.0
    jitter = rng.uniform(-1.0, 1.0, 4)
    start = (cx + lateral * 0.72 * a, cy + (0.40 + 0.08 * jitter[0]) * b)
    bend = (cx + lateral * (0.52 + 0.06 * jitter[1]) * a, cy - 0.45 * b)
    end = (cx + lateral * (0.05 + 0.08 * jitter[2]) * a, cy - (0.58 + 0.06 * jitter[3]) * b)
    col, row = _bezier_pixels(phantom, start, bend, end)
    half_width = max(_MIN_HALF_WIDTH, 0.5 * MARKER_WIDTH * phantom.pose.sx)
    distance, (r0, c0) = _distance_to_path(phantom.shape, col, row, math.ceil(half_width) + 2)
    profile = np.clip(half_width + 0.5 - distance, 0.0, 1.0).astype(np.float32)
    h, w = profile.shape
    phantom.image[r0:r0 + h, c0:c0 + w] += np.float32(MARKER_AMPLITUDE) * profile
    np.clip(phantom.image, 0.0, 1.0, out=phantom.image)
    mask = np.zeros(phantom.shape, bool)
    mask[r0:r0 + h, c0:c0 + w] = profile >= 0.5
    return mask


def _bezier_pixels(phantom: Phantom, *points: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (column, row) samples of the quadratic Bézier curve through ``points`` (anatomical), at most
    half a pixel apart."""
    (x0, y0), (x1, y1), (x2, y2) = points
    chord = sum(math.hypot(*np.subtract(phantom.pose.to_pixel(*p), phantom.pose.to_pixel(*q)))
                for p, q in zip(points, points[1:]))
    t = np.linspace(0.0, 1.0, max(8, math.ceil(2 * chord) + 1))
    x = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * x1 + t ** 2 * x2
    y = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * y1 + t ** 2 * y2
    return phantom.pose.to_pixel(x, y)


def _distance_to_path(shape: tuple[int, int], col: np.ndarray, row: np.ndarray,
                      margin: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Distance (pixels) of every pixel of the path's bounding box (grown by ``margin``, clipped to the
    film) to the nearest path sample, and the box's top-left (row, column)."""
    height, width = shape
    r0, c0 = max(0, int(row.min()) - margin), max(0, int(col.min()) - margin)
    r1, c1 = min(height, int(math.ceil(row.max())) + margin + 1), min(width, int(math.ceil(col.max())) + margin + 1)
    path = np.ones((r1 - r0, c1 - c0), bool)
    rows, cols = np.rint(row).astype(int) - r0, np.rint(col).astype(int) - c0
    inside = (rows >= 0) & (rows < path.shape[0]) & (cols >= 0) & (cols < path.shape[1])
    path[rows[inside], cols[inside]] = False
    return ndimage.distance_transform_edt(path), (r0, c0)
