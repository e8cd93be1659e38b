"""Simulated radiologist readings and their EGD-CXR gaze rows.

A reading is a sequence of fixations that sweeps both lungs, looks at the heart, dwells on
the class evidence (heart and hila for CHF, the consolidation for pneumonia, scattered
checks for a normal film) and sometimes strays off the film. It is sampled at 60 Hz with
small jitter, and converted to Gazepoint-style rows with the display mapping of the image
onto a 1920×1080 screen. With a ``gaze_informativeness`` knob g the reading is planned
differently: a fraction g of its on-film dwell time on the film's evidence region, the rest a
sweep of the lung fields (exact definition in `gazecxr.data.synthetic.knobs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gazecxr.data.sources.egd_format import GAZE_COLUMNS, SCREEN_SIZE
from gazecxr.data.synthetic.knobs import INFORMED_FIXATIONS
from gazecxr.data.synthetic.phantom import CHF, PNEUMONIA, Anatomy, Phantom, evidence_mask

SAMPLE_RATE = 60.0
"""Gaze samples per second."""

MEAN_FIXATION_S = 0.3
"""Mean fixation duration of an ordinary fixation (gamma distributed)."""

OFF_FILM, SWEEP, EVIDENCE = -1, 0, 1
"""What a planned fixation of an informed reading looks at (`simulate_reading` with ``informativeness``)."""


@dataclass(frozen=True)
class Reading:
    """Fixations and 60 Hz samples of one reading, in original-image pixels (column, row).

    Times are seconds from the start of the reading. During a saccade a sample belongs to
    the fixation it leaves (``valid`` is False there).
    """

    fix_x: np.ndarray
    fix_y: np.ndarray
    fix_start: np.ndarray
    fix_dur: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    fix_index: np.ndarray
    valid: np.ndarray

    @property
    def duration(self) -> float:
        """Seconds from the first fixation start to the last fixation end."""
        return float(self.fix_start[-1] + self.fix_dur[-1])


def display_pads(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding that gives the image the screen's aspect ratio."""
    screen_w, screen_h = SCREEN_SIZE
    if width * screen_h < height * screen_w:
        extra = int(round(height * screen_w / screen_h)) - width
        return 0, 0, extra // 2, extra - extra // 2
    extra = int(round(width * screen_h / screen_w)) - height
    return extra // 2, extra - extra // 2, 0, 0


def simulate_reading(phantom: Phantom, rng: np.random.Generator, informativeness: float | None = None) -> Reading:
    """Simulate one radiologist reading of ``phantom``; positions follow its posed anatomy.

    ``informativeness`` g (None: the default reading) directs a fraction g of the on-film dwell time
    at the phantom's `evidence_mask` and sweeps the lungs uniformly with the rest.
    """
    if informativeness is not None:
        return _informed_reading(phantom, rng, float(informativeness))
    ax, ay, spread, mean_dur = _plan(phantom.anatomy, phantom.label, rng)
    px, py = phantom.pose.to_pixel(ax + spread * rng.standard_normal(ax.size),
                                   ay + spread * rng.standard_normal(ay.size))
    height, width = phantom.shape
    px, py, mean_dur = _add_off_film(rng, np.asarray(px), np.asarray(py), mean_dur, height, width)
    jitter = 0.006 * max(height, width)
    return _sample(rng, px, py, mean_dur, jitter)


def _uniform_points(rng: np.random.Generator, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` (column, row) points uniform over the pixels of ``mask`` (each anywhere inside its pixel)."""
    flat = np.flatnonzero(mask)
    pick = flat[rng.integers(flat.size, size=k)]
    rows, cols = np.divmod(pick, mask.shape[1])
    return cols + rng.uniform(-0.5, 0.5, k), rows + rng.uniform(-0.5, 0.5, k)


def _informed_reading(phantom: Phantom, rng: np.random.Generator, g: float) -> Reading:
    """A reading whose on-film dwell time is exactly a fraction ``g`` on the evidence region (fixation
    points uniform over it) and ``1 - g`` on a top-to-bottom sweep of points uniform over the lungs."""
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"gaze informativeness must be in [0, 1], got {g!r}")
    lungs = phantom.masks["right_lung"] | phantom.masks["left_lung"]
    evidence = evidence_mask(phantom)
    n = int(rng.integers(*INFORMED_FIXATIONS))
    n_evidence = 0 if not evidence.any() or g == 0.0 else n if g == 1.0 else int(np.clip(round(g * n), 1, n - 1))
    sx, sy = _uniform_points(rng, lungs, n - n_evidence)
    order = np.lexsort((sy, sx > phantom.pose.cx))
    ex, ey = _uniform_points(rng, evidence, n_evidence) if n_evidence else (np.zeros(0), np.zeros(0))
    at = int(rng.integers(0, n - n_evidence + 1))
    px = np.concatenate([sx[order][:at], ex, sx[order][at:]])
    py = np.concatenate([sy[order][:at], ey, sy[order][at:]])
    kind = np.concatenate([np.full(at, SWEEP), np.full(n_evidence, EVIDENCE), np.full(n - n_evidence - at, SWEEP)])
    height, width = phantom.shape
    px, py, mean_dur, kind = _add_off_film(rng, px, py, np.full(n, MEAN_FIXATION_S), height, width, kind)
    share = g if n_evidence and n_evidence < n else None
    return _sample(rng, px, py, mean_dur, 0.006 * max(height, width), kind=kind, evidence_share=share)


def calibration_reading(rng: np.random.Generator) -> Reading:
    """A 9-point calibration screen: one long fixation per point, in screen pixels."""
    screen_w, screen_h = SCREEN_SIZE
    grid = np.array([0.1, 0.5, 0.9])
    gx, gy = np.meshgrid(grid * screen_w, grid * screen_h)
    order = rng.permutation(9)
    return _sample(rng, gx.ravel()[order], gy.ravel()[order], np.full(9, 0.9), 4.0)


def gaze_rows(reading: Reading, *, height: int, width: int, pads: tuple[int, int, int, int],
              dicom_id: str, session_id: int, media_id: int, t0: float, cnt0: int, fid0: int,
              rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Raw-sample and per-fixation columns (``GAZE_COLUMNS`` order) of one reading.

    ``t0``, ``cnt0`` and ``fid0`` are the session time, sample counter and fixation id at
    which the reading starts; ``pads`` is the display padding of the image on the screen.
    """
    top, bottom, left, right = pads
    shown_w, shown_h = width + left + right, height + top + bottom
    to_screen = _ScreenMap(shown_w, shown_h, left, top)
    fid = fid0 + reading.fix_index
    start = t0 + reading.fix_start[reading.fix_index]
    t = t0 + reading.t
    sample_dur = np.where(reading.valid, t - start, reading.fix_dur[reading.fix_index])
    raw = _columns(rng, to_screen, reading.x, reading.y, t, np.arange(cnt0, cnt0 + t.size), start,
                   sample_dur, fid, reading.valid, reading.fix_x, reading.fix_y, reading.fix_index)
    last = np.searchsorted(reading.fix_index, np.arange(reading.fix_x.size), side="right") - 1
    fix_start = t0 + reading.fix_start
    fixations = _columns(rng, to_screen, reading.fix_x, reading.fix_y, fix_start + reading.fix_dur,
                         cnt0 + last, fix_start, reading.fix_dur, fid0 + np.arange(reading.fix_x.size),
                         np.ones(reading.fix_x.size, bool), reading.fix_x, reading.fix_y,
                         np.arange(reading.fix_x.size))
    for table in (raw, fixations):
        table["SESSION_ID"] = np.full(table["CNT"].size, session_id)
        table["MEDIA_ID"] = np.full(table["CNT"].size, media_id)
        table["DICOM_ID"] = np.full(table["CNT"].size, dicom_id, dtype=object)
    return ({name: raw[name] for name in GAZE_COLUMNS}, {name: fixations[name] for name in GAZE_COLUMNS})


def _plan(anatomy: Anatomy, label: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Fixation targets in anatomical coordinates: (x, y, spread, mean duration) arrays."""
    targets: list[tuple[float, float, float, float]] = [(0.0, 0.1, 0.25, MEAN_FIXATION_S)]
    for side in rng.permutation(2):
        cx, cy, a, b = anatomy.lungs[side]
        n = int(rng.integers(4, 7))
        zigzag = 0.35 * rng.choice([-1.0, 1.0]) * (-1.0) ** np.arange(n)
        for level, offset in zip(np.linspace(-0.75, 0.8, n), zigzag):
            targets.append((cx + (offset + rng.uniform(-0.1, 0.1)) * a, cy + level * b, 0.05, MEAN_FIXATION_S))
    hx, hy, ha, hb = anatomy.heart
    targets.append((hx, hy, 0.1, MEAN_FIXATION_S))
    dwell: list[tuple[float, float, float, float]] = []
    if label == CHF:
        spots = [anatomy.hila[0], anatomy.hila[1], (hx - 0.9 * ha, hy), (hx + 0.9 * ha, hy + 0.1)]
        for _ in range(int(rng.integers(7, 11))):
            spot_x, spot_y = spots[int(rng.integers(len(spots)))]
            dwell.append((spot_x, spot_y, 0.07, 0.45))
    elif label == PNEUMONIA:
        ox, oy, r = anatomy.opacity
        dwell = [(ox, oy, 0.5 * r, 0.5) for _ in range(int(rng.integers(7, 11)))]
    else:
        landmarks = [anatomy.aortic_knob[:2], *anatomy.hila]
        for (cx, cy, a, b), dome in zip(anatomy.lungs, anatomy.domes):
            lateral = 1.0 if cx > 0 else -1.0
            landmarks += [(cx, cy - 0.8 * b), (cx + 0.75 * lateral * a, dome + 0.12)]
        for _ in range(int(rng.integers(6, 10))):
            lx, ly = landmarks[int(rng.integers(len(landmarks)))]
            dwell.append((lx, ly, 0.05, 0.35))
    split = int(rng.integers(len(targets) // 2, len(targets) + 1))
    targets = targets[:split] + dwell + targets[split:]
    if rng.random() < 0.5:
        cx, cy, a, b = anatomy.lungs[int(rng.integers(2))]
        targets.append((cx, cy + 0.9 * b, 0.05, MEAN_FIXATION_S))
    return tuple(np.array(v, dtype=float) for v in zip(*targets))


def _add_off_film(rng: np.random.Generator, px: np.ndarray, py: np.ndarray, mean_dur: np.ndarray,
                  height: int, width: int, kind: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Insert a few fixations outside the film (on the padding, or past the screen edge); with ``kind``
    (what each fixation looks at) also returns it, the inserted ones `OFF_FILM`."""
    if rng.random() < 0.15:
        return (px, py, mean_dur) if kind is None else (px, py, mean_dur, kind)
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(1, px.size + 1))
        if rng.random() < 0.75:
            side = rng.random() < 0.5
            ox = -rng.uniform(0.03, 0.25) * width if side else width * (1 + rng.uniform(0.03, 0.25))
            oy = height * rng.uniform(0.1, 0.9)
        else:
            ox = width * rng.uniform(0.2, 0.8)
            beyond = rng.uniform(0.01, 0.04) * height
            oy = -beyond if rng.random() < 0.5 else height + beyond
        px, py = np.insert(px, at, ox), np.insert(py, at, oy)
        mean_dur = np.insert(mean_dur, at, 0.2)
        if kind is not None:
            kind = np.insert(kind, at, OFF_FILM)
    return (px, py, mean_dur) if kind is None else (px, py, mean_dur, kind)


def _sample(rng: np.random.Generator, px: np.ndarray, py: np.ndarray, mean_dur: np.ndarray,
            jitter: float, kind: np.ndarray | None = None, evidence_share: float | None = None) -> Reading:
    """Gamma-distributed fixation durations, saccade gaps, and 60 Hz jittered samples. With
    ``evidence_share`` the durations of the `EVIDENCE` and `SWEEP` fixations (``kind``) are rescaled so
    that the evidence ones hold exactly that share of their summed duration."""
    n = px.size
    dur = np.maximum(rng.gamma(3.0, mean_dur / 3.0), 0.08)
    if evidence_share is not None:
        on_evidence, on_sweep = kind == EVIDENCE, kind == SWEEP
        total = dur[on_evidence].sum() + dur[on_sweep].sum()
        dur[on_evidence] *= evidence_share * total / dur[on_evidence].sum()
        dur[on_sweep] *= (1.0 - evidence_share) * total / dur[on_sweep].sum()
    amplitude = np.hypot(np.diff(px), np.diff(py)) / max(np.ptp(px), np.ptp(py), 1.0)
    gap = np.append(0.02 + 0.04 * amplitude + rng.uniform(0.0, 0.01, n - 1), 0.0)
    start = np.concatenate([[0.0], np.cumsum(dur + gap)[:-1]])
    t = np.arange(rng.uniform(0.0, 1.0 / SAMPLE_RATE), start[-1] + dur[-1], 1.0 / SAMPLE_RATE)
    k = np.searchsorted(start, t, side="right") - 1
    valid = t < start[k] + dur[k]
    nxt = np.minimum(k + 1, n - 1)
    frac = np.where(valid, 0.0, (t - start[k] - dur[k]) / np.maximum(gap[k], 1e-9))
    x = px[k] + frac * (px[nxt] - px[k]) + jitter * rng.standard_normal(t.size)
    y = py[k] + frac * (py[nxt] - py[k]) + jitter * rng.standard_normal(t.size)
    return Reading(fix_x=px, fix_y=py, fix_start=start, fix_dur=dur, t=t, x=x, y=y, fix_index=k, valid=valid)


@dataclass(frozen=True)
class _ScreenMap:
    """Image pixels <-> fractions of the screen for an image padded to (shown_w, shown_h)."""

    shown_w: int
    shown_h: int
    left: int
    top: int

    def fractions(self, x, y):
        return (np.asarray(x) + 0.5 + self.left) / self.shown_w, (np.asarray(y) + 0.5 + self.top) / self.shown_h

    def original(self, fx, fy):
        return (np.floor(fx * self.shown_w - self.left).astype(np.int64),
                np.floor(fy * self.shown_h - self.top).astype(np.int64))


def _columns(rng: np.random.Generator, screen: _ScreenMap, x, y, t, cnt, fix_start, fix_dur, fid,
             valid, fix_x, fix_y, fix_index) -> dict[str, np.ndarray]:
    """All Gazepoint columns but the session/media/DICOM identifiers."""
    n = t.size
    fx, fy = (np.round(v, 5) for v in screen.fractions(x, y))
    x_orig, y_orig = screen.original(fx, fy)
    prev = np.maximum(fix_index - 1, 0)
    dx = (fix_x[fix_index] - fix_x[prev]) * SCREEN_SIZE[0] / screen.shown_w
    dy = (fix_y[fix_index] - fix_y[prev]) * SCREEN_SIZE[1] / screen.shown_h
    pupil_l, pupil_r = rng.uniform(18.0, 30.0, 2)
    left_d = np.round(pupil_l + 0.6 * rng.standard_normal(n), 2)
    right_d = np.round(pupil_r + 0.6 * rng.standard_normal(n), 2)
    ones = np.ones(n, dtype=np.int64)
    return {
        "CNT": np.asarray(cnt, dtype=np.int64),
        "Time (in secs)": np.round(t, 5),
        "TIMETICK(f=10000000)": np.round(t * 1e7).astype(np.int64) + 1_234_567_890,
        "FPOGX": fx, "FPOGY": fy,
        "FPOGS": np.round(fix_start, 5), "FPOGD": np.round(fix_dur, 5),
        "FPOGID": np.asarray(fid, dtype=np.int64), "FPOGV": np.asarray(valid, dtype=np.int64),
        "BPOGX": np.round(fx + 0.003 * rng.standard_normal(n), 5),
        "BPOGY": np.round(fy + 0.003 * rng.standard_normal(n), 5), "BPOGV": ones,
        "LPCX": np.round(0.40 + 0.05 * fx + 0.002 * rng.standard_normal(n), 4),
        "LPCY": np.round(0.52 + 0.04 * fy + 0.002 * rng.standard_normal(n), 4),
        "LPD": left_d, "LPS": np.round(1.0 + 0.01 * rng.standard_normal(n), 3), "LPV": ones,
        "RPCX": np.round(0.58 + 0.05 * fx + 0.002 * rng.standard_normal(n), 4),
        "RPCY": np.round(0.51 + 0.04 * fy + 0.002 * rng.standard_normal(n), 4),
        "RPD": right_d, "RPS": np.round(1.0 + 0.01 * rng.standard_normal(n), 3), "RPV": ones,
        "BKID": np.zeros(n, dtype=np.int64), "BKDUR": np.zeros(n),
        "BKPMIN": np.full(n, int(rng.integers(8, 25))),
        "LPMM": np.round(left_d * 0.16, 3), "LPMMV": ones,
        "RPMM": np.round(right_d * 0.16, 3), "RPMMV": ones,
        "SACCADE_MAG": np.round(np.hypot(dx, dy), 3),
        "SACCADE_DIR": np.round(np.degrees(np.arctan2(-dy, dx)) % 360.0, 3),
        "VID_FRAME": np.zeros(n, dtype=np.int64),
        "X_ORIGINAL": x_orig, "Y_ORIGINAL": y_orig,
    }
