"""Synthetic chest films with simulated radiologist gaze, written in the raw EGD-CXR layout.

``generate(out_dir, n, seed, size)`` writes a dataset that the real-data converter reads
unchanged; :mod:`.phantom` draws the films, :mod:`.gaze` simulates the readings and
:mod:`.writer` lays out the files.
"""

from gazecxr.data.synthetic.writer import (
    FAKE_BIRTH_DATE,
    FAKE_PHI_MARKER,
    generate,
    reference_sigma,
)

__all__ = ["FAKE_BIRTH_DATE", "FAKE_PHI_MARKER", "generate", "reference_sigma"]
