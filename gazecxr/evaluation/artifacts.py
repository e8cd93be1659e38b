"""Writing report files: JSON-safe values, and text and figures written atomically (temp + rename)."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _temporary(path: Path) -> Path:
    return path.with_name(f".tmp-{path.name}.{os.getpid()}.{secrets.token_hex(4)}")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temporary path)`` and rename it into place."""
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_figure_atomic(fig: Figure, path: Path) -> None:
    """Save ``fig`` as a PNG at ``path`` through a temporary file renamed into place."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
