"""The configuration reference page, generated from the pydantic schema in ``gazecxr/config/schema.py``.

Every key reachable from :data:`gazecxr.config.schema.SECTIONS` is listed by its dotted name with its
type, default, bounds and description (the field's description or attribute docstring). Sections
chosen by their ``name`` (the model slots, ``task``) list their keys per choice and link to one table
per model and task (from ``MODEL_SECTIONS`` / ``TASK_SECTIONS``); ``train`` override sections list
their dotted keys and link to ``train``. A section, model or task added to the schema appears here
without an edit.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gazecxr.config import schema
from gazecxr.config.schema import MODEL_SECTIONS, SECTIONS, TASK_SECTIONS, RunConfig, Section, TrainOverrides

CHOICES: dict[str, dict[str, type[Section]]] = {"model": MODEL_SECTIONS, "task": TASK_SECTIONS}
"""Sections chosen by ``name``: kind (heading and anchor prefix) → name → section class."""


def _sections_in(annotation: Any) -> list[type[BaseModel]]:
    """The Section classes an annotation stands for (several for a section chosen by name)."""
    if isinstance(annotation, type):
        return [annotation] if issubclass(annotation, BaseModel) else []
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += _sections_in(arg)
    return list(dict.fromkeys(found))


def _kind(cls: type[BaseModel]) -> tuple[str, str] | None:
    """(kind, name) of a section chosen by name, else None."""
    for kind, registry in CHOICES.items():
        for name, member in registry.items():
            if member is cls:
                return kind, name
    return None


def anchor(kind: str, name: str) -> str:
    """The heading id of a model's or task's table (``model-densenet``)."""
    return f"{kind}-{name}".replace("_", "-")


def _number(value: Any) -> str:
    return json.dumps(value)


def _bounds(metadata: list[Any]) -> list[str]:
    """Readable constraints: ``≥ 1``, ``< 1``, ``4 items``, ``multiple of 32``, a validator's docstring."""
    out: list[str] = []
    lengths: dict[str, int] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out += _bounds(item.metadata)
        elif isinstance(item, annotated_types.Ge):
            out.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"≤ {_number(item.le)}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.MultipleOf):
            out.append(f"multiple of {_number(item.multiple_of)}")
        elif isinstance(item, annotated_types.MinLen):
            lengths["min"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            lengths["max"] = item.max_length
        elif getattr(getattr(item, "func", None), "__doc__", None):
            out.append(_markdown(item.func.__doc__.strip()))
    if lengths.get("min") is not None and lengths.get("min") == lengths.get("max"):
        out.append(f"exactly {lengths['min']} items")
    else:
        if "min" in lengths:
            out.append(f"at least {lengths['min']} item{'s' if lengths['min'] != 1 else ''}")
        if "max" in lengths:
            out.append(f"at most {lengths['max']} items")
    return out


def type_text(annotation: Any) -> str:
    """A field's type in words: ``int (≥ 1)``, ``list of float``, ``one of `a`, `b```, ``str or null``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        base, bounds = type_text(args[0]), _bounds(list(args[1:]))
        return f"{base} ({', '.join(bounds)})" if bounds else base
    if annotation is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return text + " or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}" if args else "mapping"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _value(value: Any) -> str:
    """A default as YAML would write it, in a code span."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    return "`" + json.dumps(value).replace("|", "\\|") + "`" if not isinstance(value, str) else f"`{value}`"


def default_text(info: FieldInfo) -> str:
    """The field's default (``required`` when it has none)."""
    if info.default_factory is not None:
        return _value(info.default_factory())
    if info.default is PydanticUndefined:
        return "required"
    if isinstance(info.default, BaseModel) and not _kind(type(info.default)):
        return "(section)"
    return _value(info.default)


def _markdown(text: str) -> str:
    """Text for a table cell: ``|`` escaped, ``<`` and ``>`` as entities outside code spans."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;").replace(">", "&gt;") for i, part in enumerate(parts))


def _doc(obj: Any) -> str:
    """First paragraph of a docstring or description, on one line, for a table cell."""
    text = (obj or "").strip().split("\n\n")[0]
    return _markdown(" ".join(text.split()))


def _annotation(info: FieldInfo) -> Any:
    """The field's type with its constraints (pydantic moves a top-level ``Annotated`` into metadata)."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def dotted_keys(cls: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every dotted key below ``prefix`` in section ``cls`` (nested sections and name choices included)."""
    for key, info in cls.model_fields.items():
        path = f"{prefix}.{key}"
        yield path
        for member in _sections_in(info.annotation):
            yield from dotted_keys(member, path)


class _Table:
    """The rows of one top-level section and the notes under it (choice slots, train overrides)."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.notes: list[str] = []

    def row(self, key: str, type_: str, default: str, description: str) -> None:
        self.rows.append(f"| `{key}` | {type_} | {default} | {description} |")

    def field(self, path: str, info: FieldInfo, owner: type[BaseModel]) -> None:
        members = _sections_in(info.annotation)
        description = _doc(info.description)
        if owner is TrainOverrides:
            key = path.rsplit(".", 1)[-1]
            self.row(path, type_text(_annotation(info)), f"inherits [`train.{key}`](#train)", description)
            return
        if not members:
            self.row(path, type_text(_annotation(info)), default_text(info), description)
            return
        optional = " or null" if type(None) in get_args(info.annotation) else ""
        if len(members) == 1 and _kind(members[0]) is None:
            section = members[0]
            self.row(path, "section" + optional, default_text(info), description or _doc(section.__doc__))
            if section is TrainOverrides:
                keys = ", ".join(f"`{k}`" for k in dotted_keys(section, path))
                self.notes.append(f"`{path}` overrides [`train`](#train) for this phase (an absent key inherits "
                                  f"the top-level value): {keys}.")
            else:
                for key, child in section.model_fields.items():
                    self.field(f"{path}.{key}", child, section)
            return
        kinds = {_kind(m) for m in members}
        kind = next(iter(kinds))[0] if None not in kinds and len({k for k, _ in kinds}) == 1 else "section"
        links = ", ".join(f"[`{name}`](#{anchor(k, name)})" for k, name in (_kind(m) for m in members) if k)
        self.row(path, f"{kind} section{optional}, chosen by `{path}.name`", default_text(info),
                 description or f"one of {links}")
        self.row(f"{path}.name", "one of " + ", ".join(f"`{name}`" for _, name in map(_kind, members)),
                 "required" if kind == "model" else f"`{schema.DEFAULT_TASK}`" if kind == "task" else "",
                 f"the {kind}; the other keys are that {kind}'s")
        by_choice = []
        for member in members:
            k, name = _kind(member)
            keys = ", ".join(f"`{path}.{key}`" for key in member.model_fields if key != "name")
            by_choice.append(f"    - [`{name}`](#{anchor(k, name)}): {keys or 'no other keys'}")
        self.notes.append(f"`{path}` keys, by {kind}:\n\n" + "\n".join(by_choice))

    def lines(self) -> Iterator[str]:
        yield "| key | type | default | description |"
        yield "|---|---|---|---|"
        yield from self.rows
        yield ""
        for note in self.notes:
            yield f"- {note}"
        if self.notes:
            yield ""


def _choice_tables() -> Iterator[str]:
    for kind, registry in CHOICES.items():
        yield f"## {kind.capitalize()} sections {{#{kind}-sections}}"
        yield ""
        yield (f"The keys of each {kind} a `name` can choose (`gazecxr/config/schema.py`: "
               f"`{kind.upper()}_SECTIONS`), relative to the slot that names it.")
        yield ""
        for name, cls in registry.items():
            yield f"### `{name}` {{#{anchor(kind, name)}}}"
            yield ""
            yield _doc(cls.__doc__)
            yield ""
            table = _Table()
            for key, info in cls.model_fields.items():
                if key == "name" and not info.description:
                    table.row(key, type_text(_annotation(info)), default_text(info), f"selects this {kind}")
                else:
                    table.field(key, info, cls)
            yield from table.lines()


def render() -> str:
    """The whole configuration reference page (Markdown)."""
    lines = ["# Configuration reference", "",
             "Every key of a run configuration, by its dotted name, generated from the typed schema "
             "(`gazecxr/config/schema.py`) when the site is built. Set a key in a YAML file (`--config PATH`, "
             "`inherit: paper` to start from a preset) or on the command line with `--set KEY=VALUE` (the value "
             "is parsed as YAML); `gazecxr config show NAME [--set …]` prints the resolved config. Every config "
             "is validated before anything runs: an unknown key is an error naming the closest valid key, a "
             "wrong type or an out-of-range value names the key, the value and what is expected. Types are "
             "strict: `16.5` is not an int, `\"yes\"` is not a bool.", ""]
    for section, (annotation, default) in SECTIONS.items():
        info = RunConfig.model_fields[section]
        lines += [f"## `{section}` {{#{section}}}", ""]
        members = _sections_in(annotation)
        table = _Table()
        if len(members) == 1 and _kind(members[0]) is None:
            optional = type(None) in get_args(info.annotation)
            lines += [_doc(members[0].__doc__) + (" Optional: absent (null) unless a preset or file sets it."
                                                  if optional else ""), ""]
            for key, child in members[0].model_fields.items():
                table.field(f"{section}.{key}", child, members[0])
        else:
            table.field(section, info, RunConfig)
        lines += list(table.lines())
    lines += list(_choice_tables())
    return "\n".join(lines) + "\n"
