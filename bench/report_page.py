"""Report page size and opening time in headless Chromium: a synthetic 1,000-image report against a
100-image one (``python -m bench.report_page [--report DIR ...]``).

Pages are made by `gazecxr.evaluation.html_report` from random maps at the demo's 160×128 canvas with
the evaluation's methods; the opening time runs from navigation to every image of the first page
(50 rows) decoded, and ``all_rows_s`` to every image of every row decoded. ratio = opening time of
the 100-image page / of the 1,000-image page (1: opening does not grow with the report).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.common import report

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
METHODS = ("full", "gradcam", "resse_unet", "center_bias", "uniform")
TARGET = 0.5


def chromium(profile: str | Path) -> Any:
    """A Selenium driver of Debian's headless Chromium with a fresh profile folder ``profile``."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))


def wait_decoded(driver: Any) -> tuple[int, int]:
    """(images on the page, images decoded with a non-zero natural width), once every image settled."""
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => i.decode().catch(() => null))).then(() => done());")
    return tuple(driver.execute_script(
        "return [document.images.length, [...document.images].filter(i => i.complete && i.naturalWidth > 0).length]"))


def synthetic_report(out: Path, n: int, canvas: tuple[int, int] = (160, 128), seed: int = 0) -> Path:
    """A report folder of ``n`` images with random blob maps, written as stages.evaluate writes it."""
    from gazecxr.evaluation.html_report import Gallery, write_html_report

    rng = np.random.default_rng(seed)
    h, w = canvas
    yy, xx = np.mgrid[0:h, 0:w]
    gallery = Gallery(out)
    for position in range(n):
        example: dict[str, Any] = {"position": position, "dicom_id": f"{position:08x}-synthetic", "label": 0,
                                   "image": np.clip(rng.normal(0.5, 0.15, canvas), 0, 1)}
        for name in ("heatmap", *METHODS):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(8, 30) ** 2))
            example[name] = blob / blob.sum()
        gallery.add(example)
    probs = rng.dirichlet(np.ones(3), size=(2, n))
    outputs = SimpleNamespace(labels=rng.integers(0, 3, n), probs={"full": probs[0], "stage1": probs[1]},
                              scores={m: {k: rng.random(n) for k in ("kl", "cc", "hs", "nss")} for m in METHODS})
    tables = f"# Synthetic report of {n} images\n\n| metric | value |\n|---|---|\n| n | {n} |\n"
    return write_html_report(out, tables, outputs, gallery, "synthetic", synthetic=True)


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def measure(driver: Any, index: Path) -> dict[str, Any]:
    """Opening time (first page decoded) and all-rows time of the page ``index``."""
    from selenium.webdriver.support.ui import Select

    tic = time.perf_counter()
    driver.get(index.resolve().as_uri())
    total, decoded = wait_decoded(driver)
    opened = time.perf_counter() - tic
    tic = time.perf_counter()
    Select(driver.find_element("id", "page-size")).select_by_value("0")
    all_total, all_decoded = wait_decoded(driver)
    size, files = folder_size(index.parent)
    return {"open_s": round(opened, 3), "first_page_images": total, "first_page_decoded": decoded,
            "all_rows_s": round(time.perf_counter() - tic, 3), "all_images": all_total, "all_decoded": all_decoded,
            "index_html_kb": round(index.stat().st_size / 1024, 1), "folder_mb": round(size / 2 ** 20, 2),
            "files": files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report_page", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="append", default=[], type=Path, metavar="DIR",
                        help="also measure an existing report folder (e.g. the demo's reports/<id>)")
    parser.add_argument("--repeats", type=int, default=3, help="openings per page, median kept (default: 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        tmp = Path(tmp)
        pages = {n: synthetic_report(tmp / f"n{n}", n) for n in (100, 1000)}
        driver = chromium(tmp / "profile")
        try:
            results: dict[str, Any] = {}
            for name, index in [*((f"synthetic_{n}", p) for n, p in pages.items()),
                                *((f"report_{d.name}", d / "index.html") for d in args.report)]:
                runs = [measure(driver, index) for _ in range(args.repeats)]
                best = sorted(runs, key=lambda r: r["open_s"])[len(runs) // 2]
                results[name] = best
                print(name, best, flush=True)
        finally:
            driver.quit()
    ratio = results["synthetic_100"]["open_s"] / results["synthetic_1000"]["open_s"]
    report("report_page", ratio, TARGET, **results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
