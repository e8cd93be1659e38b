"""MkDocs hook: adds the generated reference pages (CLI and configuration) to the site at build time.

``reference/cli.md`` comes from the argparse parsers of :data:`gazecxr.cli.main.COMMANDS`
(:mod:`cli_reference`), ``reference/config.md`` from the pydantic schema (:mod:`config_reference`).
Nothing is written into ``docs/``: the pages exist only in the build, so they cannot go stale.
The checkout being documented comes first on ``sys.path``, so its code (and its ``stages/``,
``data_prep/`` and ``bench/`` command lines) is what the references describe.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cli_reference  # noqa: E402  (beside this file: MkDocs puts the hook's folder on sys.path)
import config_reference  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402

GENERATED = {"reference/cli.md": cli_reference.render, "reference/config.md": config_reference.render}
"""Page path (relative to docs/) → function returning its Markdown."""


def on_files(files: Files, config) -> Files:
    """Add every generated page; a hand-written file of the same name would be a mistake, so it fails."""
    for src_uri, render in GENERATED.items():
        if files.get_file_from_path(src_uri) is not None:
            raise FileExistsError(f"docs/{src_uri} is generated at build time; remove the hand-written file")
        files.append(File.generated(config, src_uri, content=render()))
    return files
