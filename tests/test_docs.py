"""The documentation site: it builds strictly, its generated references cover the code, it needs no network,
it works in a real browser, and the README's commands still parse.

One strict build (``mkdocs build --strict``, as ``make docs`` runs it) into a temporary folder serves every
test. The references are checked against the code's own outputs, not against the generator: every
subcommand ``gazecxr --help`` lists and every flag each command's ``--help`` prints must be on the CLI page,
every dotted key ``gazecxr config show`` prints for each preset on the configuration page.
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from bench.report_page import CHROMEDRIVER, CHROMIUM, chromium
from gazecxr.cli.main import COMMANDS
from gazecxr.cli.main import main as gazecxr_main
from gazecxr.config import load_config
from gazecxr.config.__main__ import run_presets
from tests_paths import ROOT

sys.path.insert(0, str(ROOT / "docs" / "hooks"))
from cli_reference import command_parser  # noqa: E402

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built strictly from this checkout, as ``make docs`` builds it (in this process: the
    command modules the CLI reference imports are then imported once for every test here)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config as load_mkdocs_config
    from mkdocs.exceptions import Abort

    out = tmp_path_factory.mktemp("site")
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        with contextlib.chdir(ROOT):
            build(load_mkdocs_config(str(ROOT / "mkdocs.yml"), site_dir=str(out), strict=True))
    except Abort as err:
        pytest.fail(f"mkdocs build --strict failed: {err}\n" + "\n".join(warnings))
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    assert not warnings, warnings
    return out


def _text(page: Path) -> str:
    """A page's visible text (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


def _section(page: Path, ident: str) -> str:
    """The HTML of the section under heading ``ident`` up to the next heading of its level or above."""
    text = page.read_text(encoding="utf-8")
    start = re.search(rf'<h([1-6]) id="{re.escape(ident)}"', text)
    assert start, f"{page.name} has no heading {ident!r}"
    end = re.search(rf"<h[1-{start.group(1)}][ >]", text[start.end():])
    return text[start.start(): start.end() + end.start() if end else len(text)]


def _help(args: list[str]) -> str:
    """What ``gazecxr ARGS --help`` prints, unwrapped (a wide terminal, so no flag is split by wrapping)."""
    out = io.StringIO()
    os.environ["COLUMNS"] = "10000"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            gazecxr_main([*args, "--help"])
    finally:
        del os.environ["COLUMNS"]
    return out.getvalue()


def test_every_subcommand_and_flag_is_in_the_cli_reference(site):
    overview = subprocess.run([sys.executable, "-m", "gazecxr", "--help"], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    listed = re.findall(r"^  (\S+(?: [a-z0-9][\w-]*)?)  +\S", overview.split("Commands, in the order of the flow:")[1]
                        .split("\n\n")[1], re.M)
    assert listed == list(COMMANDS)  # what --help lists is the table the reference is generated from
    page = site / "reference" / "cli.html"
    for command in listed:
        section = _section(page, "gazecxr-" + command.replace(" ", "-"))
        assert f"<code>gazecxr {command}</code>" in section
        helps = [(command, _help(command.split()))]
        nested = re.search(r"^positional arguments:\n\s+\{([^}]+)\}", helps[0][1], re.M)
        helps += [(f"{command} {name}", _help([*command.split(), name])) for name in
                  (nested.group(1).split(",") if nested else [])]
        for name, text in helps:
            invocations = [line.strip().split("  ")[0] for line in text.splitlines() if line.startswith("  -")]
            flags = {f for inv in invocations for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", inv)} - {"--help"}
            assert flags or nested, f"gazecxr {name} --help lists no options"
            missing = sorted(f for f in flags if f"<code>{f}</code>" not in section)  # a row of its table
            assert not missing, f"gazecxr {name}: flags of --help missing from the CLI reference: {missing}"
            if name != command:
                assert f"<code>gazecxr {name}</code>" in section


FREE_FORM = ("overrides",)
"""Keys whose value is a free-form mapping of a library's own arguments (timm.create_model): documented as a
whole, not key by key."""


def _dotted(config: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(prefix + key)
        if isinstance(value, dict) and key not in FREE_FORM:
            keys += _dotted(value, prefix + key + ".")
    return keys


def test_every_key_config_show_prints_is_in_the_configuration_reference(site):
    page = (site / "reference" / "config.html").read_text(encoding="utf-8")
    shown = subprocess.run([sys.executable, "-m", "gazecxr", "config", "show", "paper", "--json"],
                           capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    paper = _dotted(json.loads(shown))
    assert {"train.lr", "data.augment.rotation", "model.encoder.arch", "peers.mtunet.train.plateau.factor"} <= set(paper)
    for name in run_presets():
        missing = [k for k in _dotted(load_config(name)) if f"<code>{k}</code>" not in page]
        assert not missing, f"preset {name}: keys missing from the configuration reference: {missing}"
    rows = re.search(r'<h2 id="train">.*?</table>', page, re.S).group(0)
    assert re.search(r"<code>train.lr</code></td>\s*<td>float \(&gt; 0\)</td>\s*<td><code>0.0001</code></td>\s*"
                     r"<td>Learning rate.</td>", rows)  # type, bound, default and description of one key


def test_the_api_page_documents_load_predictor_and_the_public_classes(site):
    text = (site / "reference" / "api" / "predict.html").read_text(encoding="utf-8")
    assert 'id="gazecxr.predict.load_predictor"' in text
    assert "A predictor on" in _section(site / "reference" / "api" / "predict.html", "gazecxr.predict.load_predictor")
    assert 'id="gazecxr.inference.predictor.Prediction"' in text
    models = (site / "reference" / "api" / "models.html").read_text(encoding="utf-8")
    assert 'id="gazecxr.models.GazeCXRModel.from_pretrained"' in models


def test_the_site_loads_nothing_from_the_network(site):
    pages = [p for p in site.rglob("*") if p.suffix in (".html", ".css", ".js")]
    assert len(pages) > 20
    external = re.compile(r"""(?:<(?:script|img|iframe|source)\b[^>]*\bsrc|<link\b[^>]*\bhref)=["']?(?:https?:)?//"""
                          r"""|@import\s+url\(["']?(?:https?:)?//|fonts\.(?:googleapis|gstatic)\.com""", re.I)
    loading = [str(p.relative_to(site)) for p in pages if external.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert not loading, f"pages that load external resources: {loading}"


def _shell_commands(markdown: str) -> list[str]:
    """The ``gazecxr …`` lines of the bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("gazecxr "):
                lines.append(line)
    return lines


def test_readme_commands_still_parse():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme
    commands = _shell_commands(readme)
    assert len(commands) >= 10
    for line in commands:
        words = shlex.split(line)[1:]
        command = next(c for c in (" ".join(words[:2]), words[0]) if c in COMMANDS)
        parser = command_parser(command)
        try:
            parser.parse_args(words[len(command.split()):])
        except SystemExit as err:
            pytest.fail(f"README command no longer parses (exit {err.code}): {line}")
    for code in re.findall(r"```python\n(.*?)```", readme, re.S):
        compile(code, "README.md", "exec")


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on a free local port (search runs in a web worker, which file:// forbids)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_navigation_and_search_work_in_a_browser(served, tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"the docs browser test needs Debian's chromium and chromium-driver (make test installs them); "
                    f"missing: {', '.join(missing)}")
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(served + "/index.html")
        nav = driver.find_element(By.CSS_SELECTOR, "nav.md-nav--primary")
        titles = [a.get_attribute("textContent").strip() for a in nav.find_elements(By.CSS_SELECTOR, "a.md-nav__link")]
        for title in ("Getting started", "EGD-CXR", "Command line", "Configuration", "Prediction"):
            assert title in titles, titles
        assert nav.is_displayed()
        box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
        WebDriverWait(driver, 30).until(lambda d: box.is_enabled() and box.is_displayed())
        box.click()
        box.send_keys("load_predictor")
        results = WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a"))
        links = [r.get_attribute("href") for r in results]
        assert any("reference/api/predict.html" in link for link in links), links
        box.send_keys(Keys.ENTER)
        WebDriverWait(driver, 30).until(lambda d: "reference/api/predict.html" in d.current_url)
        driver.save_screenshot(str(tmp_path / "docs.png"))
    finally:
        driver.quit()
