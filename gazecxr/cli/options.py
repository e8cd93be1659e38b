"""The flags every command spells the same way, old spellings kept one release with a warning.

``--checkpoints DIR`` (registry root), ``--checkpoint REF`` (registry entry), ``--config NAME|PATH``,
``--set KEY=VALUE`` and ``--out DIR`` mean the same in every ``gazecxr`` subcommand and its
``python -m`` twin. ``prog_name`` gives a twin's parser the name it was invoked by
(``gazecxr train stage1`` or ``python -m stages.stage1``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

_PROG: ContextVar[str | None] = ContextVar("gazecxr_prog", default=None)


def prog_name(default: str) -> str:
    """The program name for a parser's usage line: the ``gazecxr`` subcommand that is running, or
    ``default`` (the ``python -m`` spelling) when called directly."""
    return _PROG.get() or default


def set_prog_name(name: str | None) -> None:
    """Set by the ``gazecxr`` dispatcher before it calls a subcommand's ``main``."""
    _PROG.set(name)


class _DeprecatedAlias(argparse.Action):
    """Stores like the option it stands for, after a deprecation message on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accept ``old`` as a hidden spelling of ``new`` (same ``dest``), warning when it is used.

    ``kwargs`` are the value options of ``new`` (``type``, ``metavar``, ``choices``); the alias has
    no default of its own, so ``new``'s default stands when neither is given.
    """
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kwargs)


def add_checkpoints_argument(parser: argparse.ArgumentParser, default: str | None = "checkpoints",
                             old: Sequence[str] = (), help: str | None = None) -> None:
    """``--checkpoints DIR``: the checkpoint registry root (``args.checkpoints``)."""
    text = help or ("checkpoint registry root" + (" (default: %(default)s)" if default else
                                                  " (default: the config's registry.root)"))
    parser.add_argument("--checkpoints", default=default, metavar="DIR", help=text)
    for spelling in old:
        add_deprecated_alias(parser, spelling, "--checkpoints", "checkpoints", metavar="DIR")


def add_checkpoint_argument(parser: argparse.ArgumentParser, default: str | None, help: str,
                            old: Sequence[str] = ()) -> None:
    """``--checkpoint REF``: a registry entry (id, id prefix, latest, best or tag) (``args.checkpoint``)."""
    parser.add_argument("--checkpoint", default=default, metavar="REF", help=help)
    for spelling in old:
        add_deprecated_alias(parser, spelling, "--checkpoint", "checkpoint", metavar="REF")


def add_out_argument(parser: argparse.ArgumentParser, help: str, default: Any = None, required: bool = False,
                     old: Sequence[str] = (), type: Any = None, metavar: str = "DIR") -> None:
    """``--out DIR``: where the command writes (``args.out``)."""
    extra = {"type": type} if type is not None else {}
    parser.add_argument("--out", default=default, required=required, metavar=metavar, help=help, **extra)
    for spelling in old:
        add_deprecated_alias(parser, spelling, "--out", "out", metavar=metavar, **extra)


def checkpoints_override(checkpoints: str | None) -> list[str]:
    """The ``--set`` override that points a config's ``registry.root`` at ``--checkpoints DIR`` (none if unset)."""
    return [] if checkpoints is None else [f"registry.root={checkpoints}"]
