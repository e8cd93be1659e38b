"""Chest-film phantoms: a randomly posed PA radiograph with anatomical masks and local class evidence.

Anatomy lives in normalised anatomical coordinates: ``x`` runs to the image right (the
patient's left, as on a PA film), ``y`` runs down, and the rib cage spans about [-1, 1] in
both. A random :class:`Pose` maps them to image pixels (column, row), so every structure
position kept in :class:`Anatomy` can be located on the film. The class evidence's
visibility, distractor blobs and the gaze's informativeness are set by :class:`.knobs.Knobs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image
from scipy import ndimage

from gazecxr.data.synthetic.knobs import DEFAULT_KNOBS, DISTRACTOR_AMPLITUDE, NORMAL_CTR, Knobs

NORMAL, CHF, PNEUMONIA = 0, 1, 2

_WORK_HEIGHT = 320
"""Structures are drawn at most at this height, then resized to the film size."""

Lung = tuple[float, float, float, float]
"""(centre x, centre y, half-width, half-height) in anatomical units."""


@dataclass(frozen=True)
class Pose:
    """Maps anatomical coordinates to pixel (column, row): scale, rotation, shift."""

    cx: float
    cy: float
    sx: float
    sy: float
    angle: float

    def to_pixel(self, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Anatomical (x, y) -> pixel (column, row); works on scalars and arrays."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = np.multiply(x, self.sx), np.multiply(y, self.sy)
        return self.cx + c * u - s * v, self.cy + s * u + c * v

    def to_anatomical(self, col: ArrayLike, row: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (column, row) -> anatomical (x, y); works on scalars and arrays."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = np.subtract(col, self.cx), np.subtract(row, self.cy)
        return (c * dx + s * dy) / self.sx, (-s * dx + c * dy) / self.sy


@dataclass(frozen=True)
class Anatomy:
    """Structure positions and sizes of one phantom, in anatomical coordinates.

    Index 0 of the per-side tuples is the patient's right (image left), index 1 the
    patient's left (image right).
    """

    lungs: tuple[Lung, Lung]
    domes: tuple[float, float]
    heart: tuple[float, float, float, float]
    hila: tuple[tuple[float, float], tuple[float, float]]
    aortic_knob: tuple[float, float, float]
    body_half_width: float
    opacity: tuple[float, float, float] | None
    """(centre x, centre y, radius) of the pneumonia consolidation, else None."""
    haze_widths: tuple[float, float] = (0.24, 0.30)
    """(σ across, σ down) of the CHF perihilar haze around each hilum."""
    distractors: tuple[tuple[float, float, float], ...] = ()
    """(centre x, centre y, radius) of each distractor blob."""

    @property
    def cardiothoracic_ratio(self) -> float:
        """Heart width over rib-cage width (the rib cage is 2 units wide)."""
        return self.heart[2]


@dataclass(frozen=True)
class Phantom:
    """One synthetic PA chest film.

    ``image`` holds display intensities in [0, 1] (bright = dense, as a MONOCHROME2 film
    displays); ``masks`` holds boolean (H, W) masks named ``right_lung``, ``left_lung``,
    ``mediastinum``, ``aortic_knob`` and ``heart``.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    label: int
    pose: Pose
    anatomy: Anatomy
    knobs: Knobs = DEFAULT_KNOBS

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.image.shape


def sample_film_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """A random film (height, width): height about size·[0.85, 1.15], aspect w/h in [0.8, 1.25]."""
    height = int(round(size * rng.uniform(0.85, 1.15)))
    width = int(round(height * math.exp(rng.uniform(math.log(0.8), math.log(1.25)))))
    return height, width


def draw_phantom(rng: np.random.Generator, label: int, height: int, width: int, knobs: Knobs = DEFAULT_KNOBS,
                 distractor_rng: np.random.Generator | None = None) -> Phantom:
    """Draw a posed chest film of the given class (NORMAL, CHF or PNEUMONIA) and size.

    ``knobs`` sets the evidence's contrast and size and the number of distractor blobs, which are
    placed and drawn with ``distractor_rng`` (required when ``knobs.distractors`` > 0), so the rest
    of the film is the same with or without them.
    """
    if label not in (NORMAL, CHF, PNEUMONIA):
        raise ValueError(f"label must be 0, 1 or 2, got {label!r}")
    if knobs.distractors and distractor_rng is None:
        raise ValueError("knobs.distractors > 0 needs a distractor_rng")
    anatomy = _sample_anatomy(rng, label, knobs)
    pose = _sample_pose(rng, height, width)
    f = min(1.0, _WORK_HEIGHT / height)
    work_shape = (max(8, round(height * f)), max(8, round(width * f)))
    rows = ((np.arange(work_shape[0]) + 0.5) * height / work_shape[0] - 0.5).astype(np.float32)
    cols = ((np.arange(work_shape[1]) + 0.5) * width / work_shape[1] - 0.5).astype(np.float32)
    x, y = pose.to_anatomical(cols[None, :], rows[:, None])
    px_per_unit = pose.sx * work_shape[1] / width
    fields = _fields(x, y, anatomy, edge=1.2 / px_per_unit)
    if anatomy.opacity is not None:
        anatomy = _place_opacity(rng, anatomy, x, y, fields)
    if knobs.distractors:
        anatomy = _place_distractors(distractor_rng, anatomy, knobs, x, y, fields)
    extra = None
    if anatomy.distractors:
        extra = DISTRACTOR_AMPLITUDE * knobs.evidence_contrast * fields["lungs"] * sum(
            _consolidation(distractor_rng, x, y, blob, px_per_unit) for blob in anatomy.distractors)
    density = _density(rng, x, y, label, anatomy, fields, px_per_unit, knobs.evidence_contrast, extra)
    work_image = _expose(rng, density)
    _burn_marker(rng, work_image)
    image = _resize(work_image, height, width)
    noise = rng.random((height, width), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(rng.uniform(0.03, 0.07))
    image += noise
    np.clip(image, 0.0, 1.0, out=image)
    names = ("right_lung", "left_lung", "mediastinum", "aortic_knob", "heart")
    masks = {name: _upsample_mask(fields[name], height, width) for name in names}
    return Phantom(image=image, masks=masks, label=label, pose=pose, anatomy=anatomy, knobs=knobs)


def evidence_mask(phantom: Phantom) -> np.ndarray:
    """Boolean (H, W) mask of the film's evidence region (see `gazecxr.data.synthetic.knobs`): the part of
    the lung fields inside the consolidation disc (pneumonia) or within one haze σ of either hilum
    (CHF); empty for a normal film."""
    lungs = phantom.masks["right_lung"] | phantom.masks["left_lung"]
    height, width = phantom.shape
    x, y = phantom.pose.to_anatomical(np.arange(width)[None, :], np.arange(height)[:, None])
    if phantom.label == PNEUMONIA:
        ox, oy, r = phantom.anatomy.opacity
        return lungs & (np.hypot(x - ox, y - oy) <= r)
    if phantom.label == CHF:
        sx, sy = phantom.anatomy.haze_widths
        near = np.zeros(phantom.shape, bool)
        for hx, hy in phantom.anatomy.hila:
            near |= ((x - hx) / sx) ** 2 + ((y - hy) / sy) ** 2 <= 1.0
        return lungs & near
    return np.zeros(phantom.shape, bool)


def _sample_anatomy(rng: np.random.Generator, label: int, knobs: Knobs = DEFAULT_KNOBS) -> Anatomy:
    lung_a = rng.uniform(0.40, 0.45)
    lung_b = rng.uniform(0.92, 1.0)
    lungs = ((-(0.95 - lung_a), 0.0, lung_a, lung_b), (0.95 - lung_a, 0.0, lung_a, lung_b))
    right_dome = rng.uniform(0.68, 0.80)
    domes = (right_dome, right_dome + rng.uniform(0.03, 0.10))
    ctr = rng.uniform(0.60, 0.70) if label == CHF else rng.uniform(0.38, 0.48)
    if label == CHF:
        ctr += (knobs.evidence_contrast - 1.0) * (ctr - NORMAL_CTR)
    heart = (0.06 + 0.5 * (ctr - 0.45), 0.58 + 0.1 * (ctr - 0.45), ctr, 0.29 * math.sqrt(ctr / 0.45))
    hila = ((-rng.uniform(0.24, 0.30), rng.uniform(-0.05, 0.05)),
            (rng.uniform(0.26, 0.33), rng.uniform(-0.12, -0.02)))
    knob = (rng.uniform(0.13, 0.19), rng.uniform(-0.46, -0.36), rng.uniform(0.07, 0.09))
    opacity = (0.0, 0.0, rng.uniform(0.11, 0.16) * knobs.evidence_size) if label == PNEUMONIA else None
    return Anatomy(lungs=lungs, domes=domes, heart=heart, hila=hila, aortic_knob=knob,
                   body_half_width=rng.uniform(1.12, 1.55), opacity=opacity,
                   haze_widths=(0.24 * knobs.evidence_size, 0.30 * knobs.evidence_size))


def _sample_pose(rng: np.random.Generator, height: int, width: int) -> Pose:
    tall = rng.uniform(0.95, 1.2)
    sx = rng.uniform(0.78, 1.05) * min(0.40 * width, 0.35 * height / tall)
    return Pose(cx=width * (0.5 + rng.uniform(-0.07, 0.07)),
                cy=height * rng.uniform(0.46, 0.60),
                sx=sx, sy=sx * tall, angle=math.radians(rng.uniform(-6.0, 6.0)))


def _soft(signed: np.ndarray, edge: float) -> np.ndarray:
    """Antialiased indicator of ``signed > 0`` with a ramp ``edge`` wide."""
    return np.clip(0.5 + signed / edge, 0.0, 1.0)


def _superellipse(x, y, cx, cy, a, b, p) -> np.ndarray:
    """Approximate signed distance (positive inside) to a superellipse."""
    r = (np.abs(x - cx) / a) ** p + (np.abs(y - cy) / b) ** p
    return (1.0 - r ** (1.0 / p)) * min(a, b)


def _fields(x: np.ndarray, y: np.ndarray, anatomy: Anatomy, edge: float) -> dict[str, np.ndarray]:
    """Soft [0, 1] occupancy of every structure on the drawing grid."""
    hx, hy, ha, hb = anatomy.heart
    heart = _soft(_superellipse(x, y, hx, hy, ha, hb, 2.0), edge)
    med_half = 0.11 + 0.04 * np.clip(y + 1.0, 0.0, 1.5)
    med_band = _soft(np.minimum(med_half - np.abs(x - 0.02), hy - y), edge)
    mediastinum = np.maximum(med_band * _soft(y + 1.0, edge), heart)
    kx, ky, kr = anatomy.aortic_knob
    knob = _soft(kr - np.hypot(x - kx, y - ky), edge)
    fields = {"heart": heart, "mediastinum": mediastinum, "aortic_knob": knob}
    for name, (cx, cy, a, b), dome in zip(("right_lung", "left_lung"), anatomy.lungs, anatomy.domes):
        taper = a * (0.6 + 0.4 * np.sqrt(np.clip((y - cy + b) / (2 * b), 0.0, 1.0)))
        radius = (np.abs(x - cx) / taper) ** 2.6 + (np.abs(y - cy) / b) ** 2.6
        shape = (1.0 - radius ** (1.0 / 2.6)) * a
        diaphragm = dome + 0.28 * ((x - cx) / a) ** 2 - y
        lung = _soft(np.minimum(shape, diaphragm), edge)
        fields[name] = lung * (1.0 - np.maximum(heart, med_band))
    fields["lungs"] = fields["right_lung"] + fields["left_lung"]
    body = _superellipse(x, y, 0.0, 0.45, anatomy.body_half_width, 1.75, 2.4)
    neck = np.minimum(0.34 - np.abs(x), -0.8 - y)
    fields["body"] = _soft(np.maximum(body, neck), edge)
    fields["ribcage"] = _soft(_superellipse(x, y, 0.0, 0.02, 1.0, 1.1, 2.2), 4 * edge)
    return fields


def _place_opacity(rng: np.random.Generator, anatomy: Anatomy, x, y, fields) -> Anatomy:
    """Put the consolidation in a random lung zone (side, upper/mid/lower) well inside the lung."""
    radius = anatomy.opacity[2]
    for _ in range(50):
        side = int(rng.integers(2))
        cx, cy, a, b = anatomy.lungs[side]
        zone = int(rng.integers(3))
        oy = cy + b * (-0.55, -0.05, 0.45)[zone] + rng.uniform(-0.12, 0.12) * b
        ox = cx + (2 * side - 1) * rng.uniform(-0.15, 0.35) * a
        near = np.hypot(x - ox, y - oy) < 0.6 * radius
        lung = fields[("right_lung", "left_lung")[side]]
        if near.any() and lung[near].min() > 0.5:
            break
    return replace(anatomy, opacity=(ox, oy, radius))


def _place_distractors(rng: np.random.Generator, anatomy: Anatomy, knobs: Knobs, x, y, fields) -> Anatomy:
    """``knobs.distractors`` blobs with the consolidation's radius distribution, well inside a random lung
    and clear of the consolidation (the last try is kept when none of 50 fits)."""
    blobs: list[tuple[float, float, float]] = []
    for _ in range(knobs.distractors):
        radius = rng.uniform(0.11, 0.16) * knobs.evidence_size
        for _ in range(50):
            side = int(rng.integers(2))
            cx, cy, a, b = anatomy.lungs[side]
            bx, by = cx + rng.uniform(-0.6, 0.6) * a, cy + rng.uniform(-0.7, 0.6) * b
            near = np.hypot(x - bx, y - by) < 0.6 * radius
            lung = fields[("right_lung", "left_lung")[side]]
            clear = anatomy.opacity is None or math.hypot(bx - anatomy.opacity[0], by - anatomy.opacity[1]) > (
                1.3 * (radius + anatomy.opacity[2]))
            if near.any() and lung[near].min() > 0.5 and clear:
                break
        blobs.append((bx, by, radius))
    return replace(anatomy, distractors=tuple(blobs))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``sigma`` px."""
    k = max(1, int(sigma / 2))
    small = (shape[0] // k + 2, shape[1] // k + 2)
    field = rng.standard_normal(small, dtype=np.float32)
    field = ndimage.gaussian_filter(field, sigma / k, mode="wrap", truncate=3.0)
    field = _resize(field, small[0] * k, small[1] * k)[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-8)


def _density(rng: np.random.Generator, x, y, label: int, anatomy: Anatomy, fields, px: float,
             contrast: float = 1.0, extra: np.ndarray | None = None) -> np.ndarray:
    """X-ray attenuation of the phantom (arbitrary units, bright = dense); ``px`` = pixels per unit,
    ``contrast`` scales the consolidation's and the haze's amplitude, ``extra`` (the distractors) is
    added before the exposure gradient."""
    shape = x.shape
    lungs, body = fields["lungs"], fields["body"]
    thickness = np.sqrt(np.clip(1.0 - (x / (anatomy.body_half_width + 0.1)) ** 2, 0.05, 1.0))
    tissue = rng.uniform(0.40, 0.55) * thickness * (1.0 + 0.08 * _smooth_noise(rng, shape, 0.8 * px))
    d = tissue * body
    d -= rng.uniform(0.20, 0.32) * lungs * (1.0 - 0.15 * np.clip(y, 0.0, 1.0))
    d += rng.uniform(0.06, 0.11) * fields["mediastinum"] + 0.05 * fields["aortic_knob"]
    spine = _soft(0.075 - np.abs(x - 0.01), 0.02) * body
    d += rng.uniform(0.08, 0.13) * spine * (0.8 + 0.2 * np.cos(2 * np.pi * y / 0.17))
    d -= 0.07 * _soft(0.035 - np.abs(x - 0.01), 0.01) * _soft(-0.35 - y, 0.05) * body
    d += _ribs(rng, x, y) * fields["ribcage"] * _soft(y + 1.15, 0.05)
    for side in (-1, 1):
        t = side * x - 0.09
        clavicle = _soft(0.035 - np.abs(y - (-0.98 - 0.16 * t)), 0.02) * _soft(np.minimum(t, 0.8 - t), 0.05)
        d += 0.11 * clavicle * body
    hilar = sum(np.exp(-((x - hx) ** 2 + (y - hy) ** 2) / (2 * 0.08 ** 2)) for hx, hy in anatomy.hila)
    reach = sum(np.exp(-((x - hx) ** 2 + (y - hy) ** 2) / (2 * 0.45 ** 2)) for hx, hy in anatomy.hila)
    vessels = np.exp(-(_smooth_noise(rng, shape, 0.05 * px) / 0.25) ** 2)
    d += lungs * (0.06 * hilar + 0.05 * vessels * np.clip(reach, 0.0, 1.0))
    if anatomy.opacity is not None:
        d += _consolidation(rng, x, y, anatomy.opacity, px, contrast) * lungs
    if label == CHF:
        sx, sy = anatomy.haze_widths
        haze = sum(np.exp(-0.5 * (((x - hx) / sx) ** 2 + ((y - hy) / sy) ** 2)) for hx, hy in anatomy.hila)
        texture = 1.0 + 0.25 * _smooth_noise(rng, shape, 0.06 * px)
        d += contrast * rng.uniform(0.14, 0.20) * np.clip(haze, 0.0, 1.2) * texture * lungs
    if extra is not None:
        d += extra
    gradient = rng.uniform(-0.08, 0.08) * x + rng.uniform(-0.08, 0.08) * y
    return d * (1.0 + gradient)


def _ribs(rng: np.random.Generator, x, y) -> np.ndarray:
    """Posterior and anterior rib shadows as curved periodic bands."""
    ax = np.abs(x)
    spacing = rng.uniform(0.19, 0.23)
    posterior = y + 0.25 * ax - 0.45 * ax ** 2
    anterior = y - 0.35 * ax ** 2 + 0.1
    post = (0.5 + 0.5 * np.cos(2 * np.pi * posterior / spacing + rng.uniform(0, 2 * np.pi))) ** 6
    ant = (0.5 + 0.5 * np.cos(2 * np.pi * anterior / (1.4 * spacing) + rng.uniform(0, 2 * np.pi))) ** 8
    return rng.uniform(0.06, 0.10) * post + 0.04 * ant * _soft(ax - 0.25, 0.1)


def _consolidation(rng: np.random.Generator, x, y, opacity, px: float, contrast: float = 1.0) -> np.ndarray:
    """Irregular, soft-edged bright blob (airspace consolidation), its amplitude times ``contrast``."""
    ox, oy, r = opacity
    dist = np.hypot(x - ox, y - oy) / r
    outline = _smooth_noise(rng, x.shape, 0.4 * r * px)
    blob = np.clip((1.15 - dist + 0.2 * outline) / 0.5, 0.0, 1.0) ** 1.5
    mottle = 0.85 + 0.15 * _smooth_noise(rng, x.shape, 0.15 * r * px)
    return contrast * rng.uniform(0.28, 0.36) * blob * mottle


def _expose(rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """Random exposure: gain (with some saturation), gamma, brightness and contrast."""
    gain = rng.uniform(1.2, 1.8)
    image = np.clip(density * gain, 0.0, 1.0) ** math.exp(rng.uniform(math.log(0.55), math.log(1.8)))
    low, high = rng.uniform(0.0, 0.12), rng.uniform(0.8, 1.0)
    return (low + (high - low) * image).astype(np.float32)


def _burn_marker(rng: np.random.Generator, image: np.ndarray) -> None:
    """Burn a saturated side marker (an 'L'-shaped glyph) near a top corner, most of the time."""
    if rng.random() < 0.2:
        return
    h, w = image.shape
    size = max(3, int(0.05 * h))
    top = int(rng.uniform(0.03, 0.12) * h)
    left = int(rng.uniform(0.03, 0.10) * w) if rng.random() < 0.5 else int(w * rng.uniform(0.85, 0.92))
    stroke = max(1, size // 4)
    image[top:top + size, left:left + stroke] = 1.0
    image[top + size - stroke:top + size, left:left + (2 * size) // 3] = 1.0


def _upsample_mask(field: np.ndarray, height: int, width: int) -> np.ndarray:
    """Full-resolution ``field > 0.5`` from a soft work-resolution field (resizes only its extent)."""
    mask = np.zeros((height, width), dtype=bool)
    rows, cols = np.flatnonzero(field.any(axis=1)), np.flatnonzero(field.any(axis=0))
    if rows.size == 0:
        return mask
    fy, fx = height / field.shape[0], width / field.shape[1]
    r0, r1 = int(max(0, (rows[0] - 1) * fy)), int(min(height, np.ceil((rows[-1] + 2) * fy)))
    c0, c1 = int(max(0, (cols[0] - 1) * fx)), int(min(width, np.ceil((cols[-1] + 2) * fx)))
    box = (c0 / fx, r0 / fy, c1 / fx, r1 / fy)
    crop = Image.fromarray(field.astype(np.float32)).resize((c1 - c0, r1 - r0), Image.Resampling.BILINEAR, box=box)
    mask[r0:r1, c0:c1] = np.asarray(crop) > 0.5
    return mask


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float field to (height, width), pixel centres aligned."""
    if array.shape == (height, width):
        return array.astype(np.float32)
    resized = Image.fromarray(array.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32).copy()
