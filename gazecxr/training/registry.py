"""The shared checkpoint registry: every saved model, its config, lineage, metrics and tags.

Each entry is a directory ``<root>/<id>/`` holding ``model.safetensors`` (a dict of state dicts,
e.g. ``{"encoder": ..., "unet": ...}``, as safetensors: no pickle; see `gazecxr.models.weights`) and
``entry.json`` (the metadata of :class:`Entry`). Entries written before safetensors hold
``model.pt`` instead, read with ``torch.load(weights_only=True)``.
Entries are written into a hidden temporary directory inside the root and renamed into
place, so any number of processes can save at once without a shared index file.

Command line: ``python -m gazecxr.training.registry [--root DIR] {list,show,verify} ...``.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gazecxr import __version__
from gazecxr.cli.options import add_checkpoints_argument, prog_name, run_main
from gazecxr.config.errors import InputError, UnknownReferenceError, UserError
from gazecxr.models.weights import load_nested, save_nested

ENTRY_FILE = "entry.json"
MODEL_FILE = "model.safetensors"
LEGACY_MODEL_FILE = "model.pt"
"""The weights file of entries written before safetensors (a ``torch.save`` pickle)."""
TMP_PREFIX = ".tmp-"
"""Directories and files whose names start with this are writes in progress, never entries."""

DEFAULT_METRICS: dict[str, tuple[str, str]] = {
    "stage1": ("val_auc_macro", "max"),
    "stage2": ("val_kl", "min"),
    "stage3": ("val_auc_macro", "max"),
    "mtunet": ("val_total_loss", "min"),
    "gazegnn": ("val_auc_macro", "max"),
    "irnetv2": ("val_auc_macro", "max"),
}
"""Per-stage (metric, mode) that ``best`` uses when no metric is given."""

LOWER_IS_BETTER_SUFFIXES: tuple[str, ...] = ("loss", "kl", "ece", "error")
"""A metric whose last ``_``-separated word is one of these is minimised when no mode is given."""

RESERVED_REFS: tuple[str, ...] = ("latest", "best")

_STAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
_TAG_RE = re.compile(r"^[^\s,]+$")
_ID_RETRIES = 20


class CorruptCheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing or its content does not match the recorded sha256."""


class ArchitectureMismatchError(InputError):
    """A checkpoint was made for a different model architecture than the one requested."""


@dataclass(frozen=True)
class Entry:
    """One saved model: its metadata (as in ``entry.json``) and ``path``, its directory."""

    id: str
    stage: str
    created: str
    config: dict[str, Any]
    parents: list[str]
    metrics: dict[str, float]
    sha256: str
    package_version: str
    tags: list[str]
    architecture: dict[str, Any]
    path: Path
    weights_file: str = LEGACY_MODEL_FILE
    config_schema: int | None = None
    """The config-schema version ``config`` was validated against when saved (None: not validated,
    e.g. entries written before the schema existed; they load all the same)."""

    @property
    def model_path(self) -> Path:
        """The checkpoint file: ``<path>/model.safetensors`` (``model.pt`` for older entries)."""
        return self.path / self.weights_file

    @property
    def created_at(self) -> datetime:
        """``created`` as a timezone-aware datetime."""
        return datetime.fromisoformat(self.created)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record stored in ``entry.json`` (everything but ``path``)."""
        return {
            "id": self.id,
            "stage": self.stage,
            "created": self.created,
            "parents": list(self.parents),
            "metrics": dict(self.metrics),
            "tags": list(self.tags),
            "sha256": self.sha256,
            "package_version": self.package_version,
            "architecture": self.architecture,
            "config": self.config,
            "weights_file": self.weights_file,
            "config_schema": self.config_schema,
        }


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _random_suffix() -> str:
    return secrets.token_hex(3)


def _id_prefix(stage: str) -> str:
    match = re.fullmatch(r"stage(\d+)", stage)
    return f"s{match.group(1)}" if match else stage


def _new_id(stage: str, now: datetime) -> str:
    return f"{_id_prefix(stage)}-{now.strftime('%Y%m%dT%H%M%S')}-{_random_suffix()}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def _to_json(obj: Any, what: str) -> Any:
    """``obj`` as plain JSON types (tuples become lists, paths strings, numpy/torch scalars numbers)."""
    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON-serialisable: {err}") from None


def _check_state(state: Any) -> None:
    if not isinstance(state, Mapping) or not state:
        raise TypeError("state must be a non-empty dict of state dicts, e.g. {'encoder': model.state_dict()}")
    for name, sub in state.items():
        if not isinstance(name, str) or not isinstance(sub, Mapping):
            raise TypeError(f"state[{name!r}] must be a state dict keyed by a string, got {type(sub).__name__}")
        _check_weights_only_value(sub, name)


def _check_weights_only_value(value: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, (torch.Tensor, int, float, bool, str, type(None))):
        return
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _check_weights_only_value(sub, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            _check_weights_only_value(sub, f"{where}[{i}]")
        return
    raise TypeError(f"state value at {where} has type {type(value).__name__}; only tensors, "
                    "numbers, strings and containers of them can be stored")


def _check_tags(tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str):
        raise TypeError(f"tags must be a sequence of strings, got the string {tags!r}")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            raise InputError(f"invalid tag {tag!r}: tags are non-empty strings without spaces or commas")
        if tag in RESERVED_REFS or tag.startswith("tag:"):
            raise InputError(f"invalid tag {tag!r}: 'latest', 'best' and a 'tag:' prefix are reserved")
        if tag not in out:
            out.append(tag)
    return out


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomic(path: Path, record: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_entry(directory: Path) -> Entry:
    """Parse ``<directory>/entry.json``; raises ValueError/OSError when missing or malformed."""
    with open(directory / ENTRY_FILE, encoding="utf-8") as fh:
        record = json.load(fh)
    if not isinstance(record, dict):
        raise InputError("entry.json does not hold a JSON object")
    required = ("id", "stage", "created", "config", "parents", "metrics", "sha256",
                "package_version", "tags", "architecture")
    missing = [key for key in required if key not in record]
    if missing:
        raise InputError(f"entry.json lacks {', '.join(missing)}")
    if record["id"] != directory.name:
        raise InputError(f"entry.json id {record['id']!r} differs from its directory name")
    datetime.fromisoformat(record["created"])
    weights_file = record.get("weights_file", LEGACY_MODEL_FILE)
    if weights_file not in (MODEL_FILE, LEGACY_MODEL_FILE):
        raise InputError(f"entry.json weights_file {weights_file!r} is neither {MODEL_FILE} nor {LEGACY_MODEL_FILE}")
    return Entry(
        id=record["id"], stage=record["stage"], created=record["created"],
        config=record["config"], parents=list(record["parents"]),
        metrics={k: float(v) for k, v in record["metrics"].items()},
        sha256=record["sha256"], package_version=record["package_version"],
        tags=list(record["tags"]), architecture=record["architecture"], path=directory,
        weights_file=weights_file, config_schema=record.get("config_schema"),
    )


def _schema_version(config: Mapping[str, Any]) -> int | None:
    """SCHEMA_VERSION when ``config`` is a run config that fits :mod:`gazecxr.config.schema`, else None
    (imported here: building the schema is not needed to read entries)."""
    from gazecxr.config.errors import ConfigError
    from gazecxr.config.schema import SCHEMA_VERSION, validate_config

    try:
        validate_config(config)
    except ConfigError:
        return None
    return SCHEMA_VERSION


def _to_device(state: Any, map_location: Any) -> Any:
    """``state`` with every tensor moved to ``map_location`` (a device or its name; None or "cpu": as read)."""
    if map_location is None or str(map_location) == "cpu":
        return state
    if isinstance(state, torch.Tensor):
        return state.to(map_location)
    if isinstance(state, Mapping):
        return {key: _to_device(value, map_location) for key, value in state.items()}
    if isinstance(state, list):
        return [_to_device(value, map_location) for value in state]
    return state


def infer_mode(metric: str) -> str:
    """``"min"`` for metrics whose name ends in loss/kl/ece/error, else ``"max"``."""
    return "min" if metric.rsplit("_", 1)[-1].lower() in LOWER_IS_BETTER_SUFFIXES else "max"


def _dict_diff(stored: Any, requested: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(requested, dict):
        diffs: list[str] = []
        for key in sorted(set(stored) | set(requested), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in requested:
                diffs.append(f"{name}: only in checkpoint ({stored[key]!r})")
            elif key not in stored:
                diffs.append(f"{name}: only requested ({requested[key]!r})")
            else:
                diffs.extend(_dict_diff(stored[key], requested[key], name))
        return diffs
    if stored != requested:
        return [f"{prefix or '<root>'}: checkpoint {stored!r} != requested {requested!r}"]
    return []


def _clip(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def check_state_compatible(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ArchitectureMismatchError naming missing/unexpected keys and shape mismatches
    between ``state_dict`` and ``module``; return None when ``load_state_dict`` would fit."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} (checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and isinstance(state_dict[k], torch.Tensor)
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_clip(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_clip(shapes)}")
    if problems:
        raise ArchitectureMismatchError(
            f"state dict does not fit {type(module).__name__}: " + "; ".join(problems))


class Registry:
    """The checkpoint registry rooted at ``root`` (created on first save)."""

    def __init__(self, root: str | Path = "checkpoints") -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # -- writing -------------------------------------------------------------------------

    def save(
        self,
        state: dict[str, dict[str, torch.Tensor]],
        *,
        stage: str,
        config: dict,
        architecture: dict,
        parents: Sequence[str] = (),
        metrics: Mapping[str, float] | None = None,
        tags: Sequence[str] = (),
    ) -> Entry:
        """Store ``state`` (a dict of state dicts) as a new entry and return it.

        ``parents`` are ids of existing entries this model was built from (stage3 → stage2
        → stage1); ``architecture`` is what a later ``load(architecture=...)`` must match.
        ``config`` is stored as given, with ``config_schema`` = the schema version when it is a
        validated run config (what every stage saves; see :mod:`gazecxr.config.schema`).
        """
        if not isinstance(stage, str) or not _STAGE_RE.match(stage):
            raise ValueError(f"invalid stage {stage!r}: use letters, digits and '_' (e.g. 'stage2')")
        _check_state(state)
        if isinstance(parents, str):
            raise TypeError("parents must be a sequence of entry ids, not a string")
        parent_ids = [str(p) for p in parents]
        known = {e.id for e in self.entries()}
        unknown = [p for p in parent_ids if p not in known]
        if unknown:
            raise UnknownReferenceError(f"parent entries not found in {self.root}: {', '.join(unknown)}")
        metric_values = {str(k): float(v) for k, v in (metrics or {}).items()}
        record = {
            "stage": stage,
            "parents": list(dict.fromkeys(parent_ids)),
            "metrics": metric_values,
            "tags": _check_tags(tags),
            "package_version": __version__,
            "architecture": _to_json(architecture, "architecture"),
            "config": _to_json(config, "config"),
            "config_schema": _schema_version(config),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        now = _utcnow()
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        tmp.mkdir()
        try:
            save_nested(dict(state), tmp / MODEL_FILE)
            record["sha256"] = _file_sha256(tmp / MODEL_FILE)
            record["weights_file"] = MODEL_FILE
            for _ in range(_ID_RETRIES):
                entry_id = _new_id(stage, now)
                full = {"id": entry_id, "created": now.isoformat(timespec="microseconds"), **record}
                _write_json_atomic(tmp / ENTRY_FILE, full)
                try:
                    os.rename(tmp, self.root / entry_id)
                except OSError as err:
                    if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        continue
                    raise
                return _read_entry(self.root / entry_id)
            raise RuntimeError(f"could not find a free entry id in {self.root} after {_ID_RETRIES} tries")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def set_tags(self, ref: str, tags: Sequence[str]) -> Entry:
        """Replace the tags of the entry ``ref`` refers to; returns the updated entry."""
        entry = self.resolve(ref)
        record = entry.to_dict()
        record["tags"] = _check_tags(tags)
        _write_json_atomic(entry.path / ENTRY_FILE, record)
        return _read_entry(entry.path)

    def add_tags(self, ref: str, tags: Sequence[str]) -> Entry:
        """Add ``tags`` to the entry ``ref`` refers to (existing tags are kept)."""
        entry = self.resolve(ref)
        return self.set_tags(entry.id, [*entry.tags, *_check_tags(tags)])

    # -- reading -------------------------------------------------------------------------

    def _entry_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]

    def _scan(self) -> tuple[list[Entry], dict[str, str]]:
        """Readable entries, and ``{directory name: reason}`` for unreadable ones."""
        good: list[Entry] = []
        bad: dict[str, str] = {}
        for directory in self._entry_dirs():
            try:
                good.append(_read_entry(directory))
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
                bad[directory.name] = f"{type(err).__name__}: {err}"
        good.sort(key=lambda e: (e.created_at, e.id))
        return good, bad

    def unreadable(self) -> dict[str, str]:
        """Entry directories whose ``entry.json`` is missing or malformed, with the reason."""
        return self._scan()[1]

    def entries(self, stage: str | None = None, tag: str | None = None) -> list[Entry]:
        """Readable entries, oldest first, optionally only of ``stage`` and/or carrying ``tag``."""
        return [
            e for e in self._scan()[0]
            if (stage is None or e.stage == stage) and (tag is None or tag in e.tags)
        ]

    def _describe(self, stage: str | None) -> str:
        pool = self.entries(stage)
        where = f"{self.root}" + (f" (stage={stage!r})" if stage else "")
        if not pool:
            everything = self.entries()
            stages = sorted({e.stage for e in everything})
            return f"no entries in {where}" + (f"; stages present: {', '.join(stages)}" if stages else "")
        recent = [f"{e.id} [{e.stage}{'; ' + ','.join(e.tags) if e.tags else ''}]" for e in pool[-10:]]
        more = f" (newest 10 of {len(pool)})" if len(pool) > 10 else ""
        tags = sorted({t for e in pool for t in e.tags})
        return (f"entries in {where}{more}: {', '.join(recent)}"
                + (f"; tags: {', '.join(tags)}" if tags else ""))

    def _best(self, pool: list[Entry], stage: str | None, metric: str | None,
              mode: str | None, what: str) -> Entry:
        if metric is None:
            stages = {e.stage for e in pool}
            key_stage = stage or (stages.pop() if len(stages) == 1 else None)
            if key_stage not in DEFAULT_METRICS:
                raise UnknownReferenceError(
                    f"{what}: pass metric=... (no default metric for "
                    + (f"stage {key_stage!r}" if key_stage else f"mixed stages {sorted(stages)}")
                    + f"; defaults exist for {', '.join(DEFAULT_METRICS)})")
            metric, default_mode = DEFAULT_METRICS[key_stage]
            mode = mode or default_mode
        mode = mode or infer_mode(metric)
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        scored = [e for e in pool if metric in e.metrics and not math.isnan(e.metrics[metric])]
        if not scored:
            undefined = [e.id for e in pool if metric in e.metrics]
            if undefined:
                raise UnknownReferenceError(
                    f"{what}: {metric!r} is undefined (NaN) for every entry ({', '.join(undefined[-5:])}), e.g. an "
                    "AUC on a validation split holding one class; name the entry by id or 'latest', or pick by "
                    "another metric")
            available = sorted({m for e in pool for m in e.metrics})
            raise UnknownReferenceError(f"{what}: no entry has metric {metric!r}; metrics present: "
                              f"{', '.join(available) or 'none'}")
        pick = max if mode == "max" else min
        return pick(scored, key=lambda e: e.metrics[metric])

    def resolve(self, ref: str, stage: str | None = None, metric: str | None = None,
                mode: str | None = None) -> Entry:
        """The entry ``ref`` refers to, among entries of ``stage`` when given.

        ``ref`` is an exact id, ``"latest"``, ``"best"`` (highest/lowest ``metric``; without
        a metric the stage default: val_auc_macro max for stage1/stage3, val_kl min for
        stage2), ``"tag:<tag>"`` or a bare tag (the latest entry with that tag, or the best
        by ``metric`` when one is given), or a unique id prefix. ``mode`` ("max"/"min")
        defaults to "min" for loss/kl/ece/error metrics and "max" otherwise.
        Raises LookupError describing the available entries when nothing (or more than one
        entry, for a prefix) matches.
        """
        if not isinstance(ref, str) or not ref:
            raise UnknownReferenceError(f"empty checkpoint reference; {self._describe(stage)}")
        everything = self.entries()
        pool = [e for e in everything if stage is None or e.stage == stage]
        what = f"checkpoint {ref!r}" + (f" (stage={stage!r})" if stage else "")
        if ref == "latest":
            if not pool:
                raise UnknownReferenceError(f"{what}: {self._describe(stage)}")
            return pool[-1]
        if ref == "best":
            if not pool:
                raise UnknownReferenceError(f"{what}: {self._describe(stage)}")
            return self._best(pool, stage, metric, mode, what)
        for entry in everything:
            if entry.id == ref:
                if stage is not None and entry.stage != stage:
                    raise UnknownReferenceError(f"checkpoint {ref} is stage {entry.stage!r}, not {stage!r}")
                return entry
        tag = ref[len("tag:"):] if ref.startswith("tag:") else ref
        tagged = [e for e in pool if tag in e.tags]
        if tagged:
            return tagged[-1] if metric is None else self._best(tagged, stage, metric, mode, what)
        if ref.startswith("tag:"):
            raise UnknownReferenceError(f"{what}: no entry has tag {tag!r}; {self._describe(stage)}")
        matches = [e for e in pool if e.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UnknownReferenceError(f"{what} is an ambiguous id prefix matching {len(matches)} entries: "
                              f"{_clip([e.id for e in matches])}")
        raise UnknownReferenceError(f"{what} matches no id, id prefix or tag; {self._describe(stage)}")

    def load(self, ref: str, stage: str | None = None, architecture: dict | None = None,
             map_location: Any = "cpu") -> tuple[dict, Entry]:
        """Load the checkpoint ``ref`` refers to: returns (dict of state dicts, entry).

        Verifies the file's sha256 (CorruptCheckpointError) and, when ``architecture`` is
        given, that it equals the stored one (ArchitectureMismatchError naming the keys).
        """
        entry = self.resolve(ref, stage=stage)
        if architecture is not None:
            diffs = _dict_diff(entry.architecture, _to_json(architecture, "architecture"))
            if diffs:
                raise ArchitectureMismatchError(
                    f"checkpoint {entry.id} has a different architecture: " + "; ".join(diffs))
        if not entry.model_path.is_file():
            raise CorruptCheckpointError(f"checkpoint {entry.id} is corrupted: {entry.model_path} is missing")
        actual = _file_sha256(entry.model_path)
        if actual != entry.sha256:
            raise CorruptCheckpointError(
                f"checkpoint {entry.id} is corrupted: sha256 mismatch for {entry.model_path} "
                f"(recorded {entry.sha256}, file has {actual})")
        if entry.weights_file == LEGACY_MODEL_FILE:
            state = torch.load(entry.model_path, map_location=map_location, weights_only=True)
        else:
            state = _to_device(load_nested(entry.model_path), map_location)
        return state, entry

    def _walk(self, entry: Entry, by_id: Mapping[str, Entry], strict: bool) -> list[Entry | str]:
        out: list[Entry | str] = []
        seen: set[str] = set()

        def visit(node: Entry) -> None:
            seen.add(node.id)
            out.append(node)
            for parent in node.parents:
                if parent in seen:
                    continue
                if parent not in by_id:
                    if strict:
                        raise UnknownReferenceError(f"parent {parent} of {node.id} is missing from {self.root}")
                    seen.add(parent)
                    out.append(parent)
                    continue
                visit(by_id[parent])

        visit(entry)
        return out

    def lineage(self, ref: str) -> list[Entry]:
        """The entry ``ref`` refers to, then its parents recursively (depth-first, each once).

        Raises LookupError when a parent is missing.
        """
        entry = self.resolve(ref)
        by_id = {e.id: e for e in self.entries()}
        return [e for e in self._walk(entry, by_id, strict=True) if isinstance(e, Entry)]

    def verify(self, ref: str | None = None) -> list[str]:
        """Problems found in all entries (or the one ``ref`` refers to); empty when all good.

        Reports unreadable entry.json, a missing weights file, sha256 mismatch and missing parents.
        """
        good, bad = self._scan()
        if ref is not None:
            if ref in bad:
                return [f"{ref}: unreadable entry.json ({bad[ref]})"]
            targets: list[Entry] = [self.resolve(ref)]
            bad = {}
        else:
            targets = good
        known = {e.id for e in good}
        problems = [f"{name}: unreadable entry.json ({reason})" for name, reason in sorted(bad.items())]
        for entry in targets:
            if not entry.model_path.is_file():
                problems.append(f"{entry.id}: missing {entry.weights_file}")
            else:
                actual = _file_sha256(entry.model_path)
                if actual != entry.sha256:
                    problems.append(f"{entry.id}: sha256 mismatch (recorded {entry.sha256}, file has {actual})")
            problems.extend(f"{entry.id}: missing parent {p}" for p in entry.parents if p not in known)
        return problems


# -- command line ---------------------------------------------------------------------------


def _format_metrics(entry: Entry) -> str:
    default = DEFAULT_METRICS.get(entry.stage, ("", ""))[0]
    names = sorted(entry.metrics, key=lambda m: (m != default, m))
    return " ".join(f"{m}={entry.metrics[m]:.4g}" for m in names) or "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _cmd_list(registry: Registry, args: argparse.Namespace) -> int:
    entries = registry.entries(stage=args.stage, tag=args.tag)
    bad = registry.unreadable()
    if bad:
        print(f"warning: {len(bad)} unreadable entr{'y' if len(bad) == 1 else 'ies'} skipped "
              f"({', '.join(sorted(bad))}); run 'verify' for details", file=sys.stderr)
    if not entries:
        print(f"no entries in {registry.root}"
              + "".join(f" with {k}={v!r}" for k, v in (("stage", args.stage), ("tag", args.tag)) if v))
        return 0
    rows = [["ID", "STAGE", "CREATED (UTC)", "METRICS", "TAGS", "PARENTS"]]
    for e in entries:
        created = e.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([e.id, e.stage, created, _format_metrics(e),
                     ",".join(e.tags) or "-", ",".join(e.parents) or "-"])
    print(_table(rows))
    return 0


def _cmd_show(registry: Registry, args: argparse.Namespace) -> int:
    entry = registry.resolve(args.ref, stage=args.stage, metric=args.metric)
    by_id = {e.id: e for e in registry.entries()}
    lineage = [
        {"id": node.id, "stage": node.stage, "created": node.created, "metrics": node.metrics}
        if isinstance(node, Entry) else {"id": node, "missing": True}
        for node in registry._walk(entry, by_id, strict=False)
    ]
    print(json.dumps({**entry.to_dict(), "path": str(entry.path), "lineage": lineage}, indent=2))
    return 0


def _cmd_verify(registry: Registry, args: argparse.Namespace) -> int:
    problems = registry.verify(args.ref)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found in {registry.root}", file=sys.stderr)
        return 1
    count = 1 if args.ref else len(registry.entries())
    print(f"OK: {count} entr{'y' if count == 1 else 'ies'} verified in {registry.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m gazecxr.training.registry`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog_name("python -m gazecxr.training.registry"),
        description="Inspect the gazecxr checkpoint registry (one directory per saved model).",
        epilog="References (ID arguments): an exact id, a unique id prefix, 'latest', 'best' "
               "(stage default metric: val_auc_macro for stage1/stage3, val_kl for stage2), "
               "'tag:<tag>' or a bare tag (the latest entry carrying it).",
    )
    add_checkpoints_argument(parser, old=("--root",))
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,show,verify}")
    p_list = sub.add_parser("list", help="table of entries: id, stage, created, metrics, tags, parents")
    p_list.add_argument("--stage", help="only this stage (stage1, stage2, stage3, baseline_...)")
    p_list.add_argument("--tag", help="only entries carrying this tag")
    p_list.set_defaults(func=_cmd_list)
    p_show = sub.add_parser("show", help="an entry's full record and its lineage, as JSON")
    p_show.add_argument("ref", metavar="ID", help="entry reference (id, prefix, latest, best, tag)")
    p_show.add_argument("--stage", help="resolve the reference among this stage only")
    p_show.add_argument("--metric", help="metric for 'best' or a tag reference (default: the stage's)")
    p_show.set_defaults(func=_cmd_show)
    p_verify = sub.add_parser("verify", help="check checksums, files, entry.json and parents; exit 1 on any problem")
    p_verify.add_argument("ref", metavar="ID", nargs="?", help="only this entry (default: all)")
    p_verify.set_defaults(func=_cmd_verify)
    for command in (p_list, p_show, p_verify):  # also accepted after the command: registry list --checkpoints DIR
        command.add_argument("--checkpoints", default=argparse.SUPPRESS, metavar="DIR",
                             help="checkpoint registry root (default: checkpoints)")
    return parser


@run_main
def main(argv: Sequence[str] | None = None) -> int:
    """Run the registry command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(Registry(args.checkpoints), args)


if __name__ == "__main__":
    sys.exit(main())
