"""The flags every command spells the same way, old spellings kept one release with a warning.

``--checkpoints DIR`` (registry root), ``--checkpoint REF`` (registry entry), ``--config NAME|PATH``,
``--set KEY=VALUE`` and ``--out DIR`` mean the same in every ``gazecxr`` subcommand and its
``python -m`` twin. ``prog_name`` gives a twin's parser the name it was invoked by
(``gazecxr train stage1`` or ``python -m stages.stage1``). :func:`run_main` is the one place that
decides how every command's ``main`` reports an error.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

_PROG: ContextVar[str | None] = ContextVar("gazecxr_prog", default=None)
_DEBUG: ContextVar[bool] = ContextVar("gazecxr_debug", default=False)
DEBUG_ENV = "GAZECXR_DEBUG"
"""Environment variable: set to 1 to show the traceback of user errors too (as ``gazecxr --debug``)."""
BUG_REPORT = ("gazecxr: internal error: this is a bug in gazecxr, not a problem with your input; please report it "
              "to the gazecxr developers with the command you ran and the traceback below")
"""The line printed before the traceback of an error that is not a user error."""

Main = TypeVar("Main", bound=Callable[..., int])


def prog_name(default: str) -> str:
    """The program name for a parser's usage line: the ``gazecxr`` subcommand that is running, or
    ``default`` (the ``python -m`` spelling) when called directly."""
    return _PROG.get() or default


def set_prog_name(name: str | None) -> None:
    """Set by the ``gazecxr`` dispatcher before it calls a subcommand's ``main``."""
    _PROG.set(name)


def set_debug(on: bool) -> None:
    """Set by ``gazecxr --debug``: user errors are printed with their traceback too."""
    _DEBUG.set(on)


def debug_enabled() -> bool:
    """Whether ``gazecxr --debug`` was given or ``GAZECXR_DEBUG`` is set to a true value (not '', 0, false, no)."""
    return _DEBUG.get() or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_main(main: Main) -> Main:
    """Decorate a command's ``main``: a :class:`~gazecxr.config.errors.UserError` (bad config, input
    file, name) or an ``argparse.ArgumentError`` prints ``error: …`` on one line and returns the
    error's exit status (2); any other exception is a bug: :data:`BUG_REPORT` is printed and the
    exception raises on with its traceback. Under :func:`debug_enabled` user errors show their
    traceback as well."""
    from gazecxr.config.errors import UserError  # here: `gazecxr --help` loads this module but no config code

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except (UserError, argparse.ArgumentError) as err:
            if debug_enabled():
                traceback.print_exc()
            print(f"error: {err}", file=sys.stderr)
            return getattr(err, "exit_code", 2)
        except Exception:
            print(BUG_REPORT, file=sys.stderr)
            raise

    return wrapper  # type: ignore[return-value]


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
