"""The report page and the viewer app in a real browser: headless Debian Chromium driven by Selenium.

A missing browser or driver fails these tests (``make test`` installs them); screenshots go to the
pytest temporary folder, never into the repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench.report_page import CHROMEDRIVER, CHROMIUM, chromium, wait_decoded
from dicom_util import write_dicom
from tests_paths import ROOT

APP_START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"browser tests need Debian's chromium and chromium-driver (make test installs them); "
                    f"missing: {', '.join(missing)}")
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def _positions(driver) -> list[int]:
    return [int(p) for p in driver.execute_script(
        "return [...document.querySelectorAll('#rows tr')].map(tr => tr.dataset.position)")]


def test_report_page_decodes_every_image_sorts_filters_and_navigates(browser, evaluated_report, tmp_path):
    metrics, run_dir = evaluated_report
    text = (run_dir / "index.html").read_text(encoding="utf-8")
    records = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))["records"]
    browser.get((run_dir / "index.html").as_uri())
    Select(browser.find_element(By.ID, "page-size")).select_by_value("0")
    per_row = 1 + 2 * len(records[0]["layers"])  # the radiograph, then each map over its own radiograph
    total, decoded = wait_decoded(browser)
    assert total == decoded == 12 * per_row + len(list(run_dir.glob("*.png")))
    assert "synthetic phantoms" in browser.find_element(By.ID, "synthetic-notice").text
    assert _positions(browser) == list(range(12))

    Select(browser.find_element(By.ID, "sort")).select_by_value("score:full:kl")
    Select(browser.find_element(By.ID, "order")).select_by_value("desc")
    by_kl = _positions(browser)
    kl = {r["position"]: r["scores"]["full"]["kl"] for r in records}
    assert by_kl == sorted(range(12), key=lambda p: (-kl[p], p)) and by_kl != list(range(12))

    Select(browser.find_element(By.ID, "f-class")).select_by_value("CHF")
    chf = {r["position"] for r in records if r["label"] == "CHF"}
    assert set(_positions(browser)) == chf and 0 < len(chf) < 12
    Select(browser.find_element(By.ID, "f-class")).select_by_value("")
    Select(browser.find_element(By.ID, "f-correct")).select_by_value("incorrect")
    wrong = {r["position"] for r in records if int(np.argmax(r["probs"]["full"])) != ["Normal", "CHF", "pneumonia"].index(r["label"])}
    assert set(_positions(browser)) == wrong
    Select(browser.find_element(By.ID, "f-correct")).select_by_value("")
    Select(browser.find_element(By.ID, "f-source")).select_by_value(records[0]["source"])
    assert len(_positions(browser)) == 12

    browser.execute_script("document.activeElement.blur()")
    selected = "return document.querySelector('#rows tr.selected').dataset.position"
    assert int(browser.execute_script(selected)) == by_kl[0]
    browser.find_element(By.TAG_NAME, "body").send_keys("jj")
    assert int(browser.execute_script(selected)) == by_kl[2]
    browser.find_element(By.TAG_NAME, "body").send_keys("+")
    assert browser.execute_script("return getComputedStyle(document.querySelector('img.heat')).opacity") == "0.55"
    browser.save_screenshot(str(tmp_path / "report.png"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_model, tiny_h5, tmp_path_factory):
    """``python -m gazecxr.inference.app`` serving the tiny model on a free local port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gazecxr.inference.app", "--checkpoints", tiny_model["config"]["registry"]["root"],
             "--run", tiny_model["stage3"], "--h5", str(tiny_h5), "--port", str(port), "--device", "cpu"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"app did not start in {APP_START_TIMEOUT_S} s:\n{log.read_text()}"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert f"http://127.0.0.1:{port}" in log.read_text()


def test_app_shows_overlays_and_probabilities_for_uploaded_dicom_and_png(browser, app_url, tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:90]
    film = (2000 + 1500 * np.exp(-((yy - 60) ** 2 + (xx - 45) ** 2) / 800) + rng.normal(0, 50, yy.shape)).clip(0, 4095)
    dicom = write_dicom(tmp_path / "1.2.3.4", film)  # no suffix; carries fake patient fields
    Image.fromarray((film.T / 16).astype(np.uint8)).save(tmp_path / "wide.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    browser.get(app_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#files input[type=file]"))
    assert "synthetic phantoms" in browser.find_element(By.ID, "notice").text
    upload = browser.find_element(By.CSS_SELECTOR, "#files input[type=file]")
    upload.send_keys("\n".join(str(p) for p in (dicom, tmp_path / "wide.png", tmp_path / "broken.png")))
    WebDriverWait(browser, 120).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#overlays img")) == 2
        and "wide.png" in d.find_element(By.ID, "probabilities").text)
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('#overlays img')].map(i => [i.naturalWidth, i.naturalHeight])")
    assert sorted(map(tuple, sizes)) == [(90, 120), (120, 90)]
    probabilities = browser.find_element(By.ID, "probabilities").text
    assert "1.2.3.4 (90×120 px)" in probabilities and "wide.png (120×90 px)" in probabilities
    for name in ("Normal", "CHF", "pneumonia"):
        assert probabilities.count(name) >= 2
    values = [float(v) for v in re.findall(r"\b[01]\.\d{3}\b", probabilities)]
    assert len(values) == 6 and abs(sum(values) - 2) < 0.01
    message = browser.find_element(By.ID, "file-messages").text
    assert "broken.png: unreadable image" in message and "Traceback" not in browser.page_source
    assert "/tmp" not in message
    assert "FAKE" not in browser.page_source and "PHI-12345" not in browser.page_source
    browser.save_screenshot(str(tmp_path / "app.png"))
