"""The CLI reference page, generated from the argparse parser of every ``gazecxr`` subcommand.

The commands come from :data:`gazecxr.cli.main.COMMANDS` (the table ``gazecxr --help`` prints), so
a command added there appears here without an edit. Each command's parser is the one its ``main``
builds: ``main([])`` runs with ``ArgumentParser.parse_known_args`` replaced by a function that
raises :class:`_Parsed` carrying the parser, so the command stops before it parses or does anything,
whether its module exposes a ``build_parser`` or builds the parser inside ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from unittest import mock

from gazecxr.cli.main import COMMANDS, load_command, overview
from gazecxr.cli.options import set_prog_name


class _Parsed(BaseException):
    """Raised instead of parsing; a BaseException so that a main's ``except Exception`` lets it through."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _stop(parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
    raise _Parsed(parser)


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser ``gazecxr COMMAND`` parses its arguments with (its ``prog`` is ``gazecxr COMMAND``)."""
    main = load_command(command)
    set_prog_name(f"gazecxr {command}")
    try:
        with mock.patch.object(argparse.ArgumentParser, "parse_known_args", _stop), \
                mock.patch.object(argparse.ArgumentParser, "parse_known_intermixed_args", _stop, create=True):
            main([])
    except _Parsed as parsed:
        return parsed.parser
    finally:
        set_prog_name(None)
    raise RuntimeError(f"gazecxr {command}: its main ({COMMANDS[command][0]}) returned without parsing arguments")


def anchor(command: str) -> str:
    """The heading id of a command's section (``train stage1`` → ``gazecxr-train-stage1``)."""
    return "gazecxr-" + command.replace(" ", "-")


def _escape(text: str) -> str:
    """Plain text (argparse help) safe inside a Markdown table cell."""
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return " ".join(text.replace("<", "&lt;").replace(">", "&gt;").split())


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help with ``%(default)s`` and friends expanded (the plain formatter: a parser's
    ``ArgumentDefaultsHelpFormatter`` suffix would repeat the default column)."""
    if not action.help:
        return ""
    return _escape(argparse.HelpFormatter(parser.prog)._expand_help(action))


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(f"`{choice}`" for choice in action.choices)
    metavar = action.metavar if action.metavar is not None else (action.dest.upper() if action.option_strings
                                                                 else action.dest)
    text = " ".join(metavar) if isinstance(metavar, tuple) else str(metavar)
    suffix = {"?": " (optional)", "*": " …", "+": " …"}.get(str(action.nargs), "")
    return f"`{text}`{suffix}"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    default = action.default
    if default is None or default is False or default is argparse.SUPPRESS or default == [] or action.nargs == 0:
        return ""
    return f"`{action.default}`"


def _usage(parser: argparse.ArgumentParser, width: int = 100) -> str:
    """The usage line(s) wrapped at ``width`` columns whatever the terminal."""
    formatter = parser.formatter_class(prog=parser.prog, width=width)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _arguments(parser: argparse.ArgumentParser) -> Iterator[str]:
    """The parser's arguments as table rows; hidden deprecated spellings as a note after it."""
    rows, deprecated = [], []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            new = getattr(action, "new", None)
            deprecated += [f"`{spelling}` (use `{new}`)" if new else f"`{spelling}`"
                           for spelling in action.option_strings]
            continue
        name = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{_value(action).strip('`')}` (positional)"
        rows.append(f"| {name} | {_value(action) if action.option_strings else ''} | {_default(action)} "
                    f"| {_help(parser, action)} |")
    if rows:
        yield "| argument | value | default | meaning |"
        yield "|---|---|---|---|"
        yield from rows
        yield ""
    if deprecated:
        yield f"Deprecated spellings, still accepted with a warning: {', '.join(deprecated)}."
        yield ""


def _section(parser: argparse.ArgumentParser, title: str, level: int, ident: str) -> Iterator[str]:
    yield f"{'#' * level} `{title}` {{#{ident}}}"
    yield ""
    yield "```text"
    yield _usage(parser)
    yield "```"
    yield ""
    if parser.description:
        yield _escape(parser.description)
        yield ""
    yield from _arguments(parser)
    if parser.epilog:
        yield _escape(parser.epilog)
        yield ""
    sub = _subparsers(parser)
    if sub is not None:
        helps = {choice.dest: choice.help for choice in sub._choices_actions}
        for name, child in sub.choices.items():
            if helps.get(name):
                child.description = child.description or helps[name]
            yield from _section(child, f"{title} {name}", level + 1, f"{ident}-{name}")


def render() -> str:
    """The whole CLI reference page (Markdown)."""
    lines = ["# Command-line reference", "",
             "Generated from the argparse parser of every subcommand in `gazecxr/cli/main.py` when the site is "
             "built, so it lists exactly what `gazecxr COMMAND --help` prints. Each command runs the same code as "
             "its `python -m` twin (named under its heading).", "",
             "```text", overview(), "```", "",
             "| command | what it does | `python -m` twin |", "|---|---|---|"]
    for command, (target, help_text) in COMMANDS.items():
        lines.append(f"| [`gazecxr {command}`](#{anchor(command)}) | {_escape(help_text)} "
                     f"| `python -m {target.partition(':')[0].removesuffix('.__main__')}` |")
    lines.append("")
    for command, (target, help_text) in COMMANDS.items():
        with contextlib.redirect_stdout(None):
            parser = command_parser(command)
        lines += list(_section(parser, f"gazecxr {command}", 2, anchor(command)))
    return "\n".join(lines) + "\n"
