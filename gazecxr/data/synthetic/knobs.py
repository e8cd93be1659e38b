"""The knobs of the synthetic world: how visible the class evidence is, what the gaze says about it, and a
shortcut that can stand in for the class.

Definitions (all in the phantom's normalised anatomical units; the rib cage spans about [-1, 1]):

- ``evidence_contrast`` c ≥ 0 (default 1): how strongly a diseased film differs from a normal one.
  The density amplitude of the pneumonia consolidation and of the CHF perihilar haze is multiplied
  by c, and so is the CHF heart's cardiothoracic-ratio excess over the normal mean 0.43
  (ratio = 0.43 + c·(r − 0.43), r drawn from [0.60, 0.70] as by default). c = 0 leaves no
  class signal in the image; c = 1 is the default phantom.
- ``evidence_size`` s > 0 (default 1): the spatial extent of the local evidence. The consolidation
  radius (drawn from [0.11, 0.16]) and the widths of the CHF perihilar haze (Gaussian σ 0.24 across,
  0.30 down around each hilum) are multiplied by s.
- ``distractors`` k ≥ 0 (default 0): every film, of any class, carries exactly k evidence-like
  blobs inside its lungs, shaped like the consolidation (same radius distribution, times s) at
  `DISTRACTOR_AMPLITUDE` times its density (times c), never overlapping the consolidation. So
  a model cannot tell pneumonia by finding *a* blob; it has to find the brighter one.
- ``gaze_informativeness`` g ∈ [0, 1] or None (default None: the default reading). The
  *evidence region* E of a film is the part of its lung fields that holds the class evidence:
  the consolidation disc (radius r) for pneumonia, the perihilar haze within one σ of either
  hilum for CHF, nothing for a normal film. A reading with knob g plans `INFORMED_FIXATIONS`
  on-film fixations; a fraction g of their total dwell time is directed at E (fixation points
  uniform over E), the rest is a sweep of the lung fields (points uniform over both lungs,
  independent of where E is; distractors are looked at in proportion to their area). So the
  expected share of on-film dwell time inside E is g + (1 − g)·a, where a is E's share of the lung
  area: g = 1 fixates the evidence only, g = 0 is a gaze that carries no information about where
  the evidence is (it still differs from the default reading, which dwells on the evidence).
  Normal films have no E: their reading is the lung sweep at every g. Off-film glances are kept
  as in the default reading and are not part of the dwell time.
- ``shortcut_strength`` p ∈ [0, 1] or None (default None: no marker on any film). With p every film
  gets a marker state (`gazecxr.data.synthetic.shortcut`): 0 no marker, 1 a drain-like tube across
  the image-left lung, 2 across the image-right lung. State k agrees with class k (Normal 0, CHF 1,
  pneumonia 2); a film's state is its class with probability p, otherwise uniform over the three
  states independently of the class (so P(state = class) = p + (1 − p)/3; p = 0 is a marker that
  carries no class information). The simulated readers never look at the marker: the gaze is the
  same with or without it.
- ``shortcut_shifted`` (default False; needs ``shortcut_strength``): every film's state is drawn
  independently of the class whatever p is, for the shifted test set. The marker states of
  datasets with one seed are drawn with the same random numbers at every p and shift.

With every knob at its default the generator's output is byte-identical to the generator without
knobs. Non-default knobs are recorded as `KNOBS_FILE` in the raw dataset folder and carried by the
converter into the HDF5 root attribute ``synthetic_knobs`` (JSON).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gazecxr.data.provenance import SYNTHETIC_MARKER

KNOBS_FILE = "synthetic_knobs.json"
"""File in a raw synthetic dataset folder (beside ``SYNTHETIC.txt``) holding non-default knob values."""

DISTRACTOR_AMPLITUDE = 0.5
"""Density of a distractor blob relative to the consolidation's."""

INFORMED_FIXATIONS = (18, 26)
"""Range [low, high) of the number of on-film fixations planned by a reading with a ``gaze_informativeness``."""

NORMAL_CTR = 0.43
"""Mean cardiothoracic ratio of a normal phantom; ``evidence_contrast`` scales the CHF excess over it."""


@dataclass(frozen=True)
class Knobs:
    """Knob values of one synthetic dataset (see the module docstring for their exact meaning)."""

    evidence_contrast: float = 1.0
    evidence_size: float = 1.0
    distractors: int = 0
    gaze_informativeness: float | None = None
    shortcut_strength: float | None = None
    shortcut_shifted: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.evidence_contrast) and self.evidence_contrast >= 0):
            raise ValueError(f"evidence_contrast must be a finite number >= 0, got {self.evidence_contrast!r}")
        if not (math.isfinite(self.evidence_size) and 0 < self.evidence_size <= 3):
            raise ValueError(f"evidence_size must be in (0, 3], got {self.evidence_size!r}")
        if isinstance(self.distractors, bool) or int(self.distractors) != self.distractors or self.distractors < 0:
            raise ValueError(f"distractors must be an integer >= 0, got {self.distractors!r}")
        g = self.gaze_informativeness
        if g is not None and not (0.0 <= g <= 1.0):
            raise ValueError(f"gaze_informativeness must be in [0, 1] (or None for the default reading), got {g!r}")
        p = self.shortcut_strength
        if p is not None and (isinstance(p, bool) or not 0.0 <= p <= 1.0):
            raise ValueError(f"shortcut_strength must be in [0, 1] (or None for no marker), got {p!r}")
        if not isinstance(self.shortcut_shifted, bool):
            raise ValueError(f"shortcut_shifted must be true or false, got {self.shortcut_shifted!r}")
        if self.shortcut_shifted and p is None:
            raise ValueError("shortcut_shifted needs a shortcut_strength (the marker it shifts)")

    @property
    def is_default(self) -> bool:
        """Whether every knob has its default value (the generator's output is then the knob-free one)."""
        return self == Knobs()

    def as_dict(self) -> dict[str, Any]:
        """The knob values by name (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Knobs:
        """Knobs from a mapping of some or all knob names; unknown names are an error."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown synthetic knob(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**values)


DEFAULT_KNOBS = Knobs()


def write_knobs(folder: str | Path, knobs: Knobs) -> None:
    """Record non-default ``knobs`` as `KNOBS_FILE` in ``folder`` (nothing for the defaults)."""
    if not knobs.is_default:
        (Path(folder) / KNOBS_FILE).write_text(json.dumps(knobs.as_dict(), indent=2) + "\n", encoding="utf-8")


def read_knobs(folder: str | Path) -> Knobs:
    """The knobs a raw synthetic dataset folder was written with (`KNOBS_FILE`; defaults when absent)."""
    path = Path(folder) / KNOBS_FILE
    if not path.is_file():
        return DEFAULT_KNOBS
    try:
        return Knobs.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid synthetic knobs file: {err}") from err


def knobs_attrs(folder: str | Path) -> dict[str, str]:
    """HDF5 root attributes for a converted raw folder: ``synthetic_knobs``, the JSON of the knobs it was
    written with, when it is a synthetic folder (`SYNTHETIC_MARKER`) or holds a `KNOBS_FILE`; else none."""
    folder = Path(folder)
    if not ((folder / SYNTHETIC_MARKER).is_file() or (folder / KNOBS_FILE).is_file()):
        return {}
    return {"synthetic_knobs": json.dumps(read_knobs(folder).as_dict(), sort_keys=True)}
