"""The pages in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium).

* The page at / of a real `gankit serve` subprocess: click a digit, wait for the grid,
  read the canvas back: exactly the pixels `gankit.load().generate()` gives; download the
  PNG the page offers.
* The static folder of `gankit web-export`, served by a plain static file server: onnxruntime-web
  runs the model in the page; for the latent and labels the page used, its pixels are
  Python onnxruntime's within one grey level.

A screenshot of each page is saved under the test's tmp folder. Skipped, saying why, only
where Chromium or its driver is not installed (`apt-get install chromium chromium-driver`)
or, for the static export, where the onnxruntime-web files are not (.ci/run installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gankit
from gankit.images import make_grid, to_uint8
from serve_helpers import REPO, start_server, shipped_models

pytestmark = pytest.mark.slow

MODELS = shipped_models()
CHROMIUM = os.environ.get("GANKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GANKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
ORT_WEB = Path(os.environ.get("GANKIT_ORT_WEB_DIR", REPO / ".cache" / "ort-web" / "node_modules" / "onnxruntime-web"
                              / "dist"))
WAIT_S = 60


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (shutil.which(path) or Path(path).is_file()):
            pytest.skip(f"{path} not found: Chromium is not installed here (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1100,900",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='gankit-chromium-')}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _wait(driver, script: str, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return (document.getElementById('status') || {}).textContent")
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; page status: {status!r}")


def _set(driver, element_id: str, value: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(value)


def _canvas_grey(driver) -> np.ndarray:
    width, height, grey = driver.execute_script(
        "const c = document.getElementById('grid'); return [c.width, c.height, GankitGrid.grey(c)];")
    return np.asarray(grey, dtype=np.uint8).reshape(height, width)


def _click_digit(driver, digit: int) -> None:
    driver.execute_script("document.getElementById('grid').dataset.state = ''")
    driver.find_element("css selector", f'#digits button[data-digit="{digit}"]').click()
    state = _wait(driver, "const s = document.getElementById('grid').dataset.state; "
                          "return s === 'done' || s === 'error' ? s : null", "the grid")
    assert state == "done", driver.find_element("id", "status").text


def test_served_page_draws_what_python_draws(browser, tmp_path):
    server = start_server(MODELS["conditional"], MODELS["per-digit"])
    try:
        browser.get(server.url + "/")
        _wait(browser, "return document.body.dataset.ready", "the model list")
        buttons = [b.text for b in browser.find_elements("css selector", "#digits button")]
        assert buttons == [str(d) for d in range(10)]
        _set(browser, "n", "5")
        _set(browser, "seed", "3")
        _click_digit(browser, 7)
        expected = make_grid(gankit.load(MODELS["conditional"]).generate(7, n=5, seed=3), 5)
        assert np.array_equal(_canvas_grey(browser), expected)
        browser.save_screenshot(str(tmp_path / "served-page.png"))

        # Another model and digit, then the PNG download: the grid enlarged 4 times.
        from selenium.webdriver.support.select import Select

        Select(browser.find_element("id", "model")).select_by_value("per-digit")
        _set(browser, "n", "3")
        _set(browser, "seed", "11")
        _click_digit(browser, 2)
        expected = make_grid(gankit.load(MODELS["per-digit"]).generate(2, n=3, seed=11), 3)
        assert np.array_equal(_canvas_grey(browser), expected)
        browser.find_element("id", "download").click()
        deadline = time.monotonic() + WAIT_S
        while not list(browser.downloads.glob("*.png")):
            assert time.monotonic() < deadline, "no PNG was downloaded"
            time.sleep(0.1)
        (png,) = browser.downloads.glob("*.png")
        time.sleep(0.2)  # Chromium renames the finished download into place
        assert png.name == "gankit-per-digit-digit2-seed11.png"
        picture = np.asarray(Image.open(png).convert("L"))
        assert np.array_equal(picture[::4, ::4], expected) and picture.shape == (4 * expected.shape[0],
                                                                                 4 * expected.shape[1])
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        assert server.stop() == 0


def test_api_docs_page_works_offline(browser):
    server = start_server(MODELS["per-digit"])
    try:
        browser.get(server.url + "/docs")
        _wait(browser, "return document.body.dataset.ready", "the API document")
        headings = [h.text for h in browser.find_elements("css selector", ".op h3")]
        assert "GET/v1/generate" in [h.replace(" ", "").replace("\n", "") for h in headings]
    finally:
        assert server.stop() == 0


def _static_server(folder: Path) -> tuple[subprocess.Popen, str]:
    # A plain static file server; .mjs is named as JavaScript whatever this Python's mime tables say.
    code = ("import functools, http.server, sys\n"
            "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
            "h.func.extensions_map = {**h.func.extensions_map, '.mjs': 'text/javascript',\n"
            "                         '.wasm': 'application/wasm'}\n"
            "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n"
            "print('port', s.server_address[1], flush=True)\n"
            "s.serve_forever()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.match(r"port (\d+)", line)
    assert match, line
    return proc, f"http://127.0.0.1:{match.group(1)}"


def test_static_export_runs_the_model_in_the_browser(browser, tmp_path):
    if not (ORT_WEB / "ort.wasm.min.js").is_file():
        pytest.skip(f"onnxruntime-web is not installed at {ORT_WEB} (npm install onnxruntime-web; see .ci/run)")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "gankit.cli", "web-export", str(MODELS["conditional"]), str(site),
                           "--ort-dir", str(ORT_WEB)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    server, url = _static_server(site)
    try:
        browser.get(url + "/")
        _wait(browser, "return document.body.dataset.ready", "onnxruntime-web and the model")
        _set(browser, "n", "6")
        _set(browser, "seed", "5")
        _click_digit(browser, 3)
        last = browser.execute_script("return window.gankitLast")
        gen = gankit.load(MODELS["conditional"])
        z = np.asarray(last["z"], dtype=np.float32).reshape(6, gen.card.z_dim)
        labels = np.asarray(last["labels"], dtype=np.int64)
        assert labels.tolist() == [3] * 6 and np.all(np.isfinite(z)) and 0.5 < z.std() < 2
        expected = make_grid(to_uint8(gen.generate_float(z, labels), gen.card.value_range), 6)
        page = _canvas_grey(browser)
        assert page.shape == expected.shape
        assert int(np.abs(page.astype(int) - expected.astype(int)).max()) <= 1
        browser.save_screenshot(str(tmp_path / "static-export.png"))
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        server.terminate()
        server.wait(10)
