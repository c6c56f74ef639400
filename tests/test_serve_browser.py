"""End to end: the inspection page in headless Chromium against a real server on loopback.

Tiny models are fitted here (PaDiM on images, rolling MAD on a series, kNN on a table),
served by uvicorn (in a thread, on a real socket) with a bearer token, and driven through
the page as a person would: token, model, file or pasted values or CSV, Score. What the
page shows is checked against the same model files scored in-process.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs
it). Outside CI the test skips without it; under CI (`CI` set) a missing browser fails.
Set NORMALCY_PAGE_SCREENSHOT=docs/img/serve-page.png to refresh the docs' screenshot.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "page-test-token"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000


def _require_browser():
    """Skip only off CI; under CI the browser and its driver are part of the job."""
    if os.environ.get("CI"):
        assert CHROMIUM.exists(), f"{CHROMIUM} is missing: .ci/run should have installed Chromium"
        from playwright.sync_api import sync_playwright
    else:
        if not CHROMIUM.exists():
            pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    return sync_playwright


@pytest.fixture(scope="module")
def models(tmp_path_factory, image_data, fitted):
    """Model folders (image, series, table) and the inputs to try on them, under one root."""
    import pandas as pd
    from PIL import Image

    from normalcy.core import FalseAlarmRate
    from normalcy.tabular import KNN
    from normalcy.timeseries import RollingMAD

    root = tmp_path_factory.mktemp("served")
    image_model = copy.copy(fitted("padim")).calibrate(image_data.calib, FalseAlarmRate(0.0))
    image_model.save(root / "parts")
    # Three times the working size, so the overlay (drawn at the posted image's size) is legible.
    defect = np.kron(image_data.defect[0], np.ones((3, 3, 1), dtype=np.uint8))
    Image.fromarray(defect).save(root / "defect.png")
    (root / "not-an-image.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")

    rng = np.random.default_rng(7)
    wave = lambda n, start: np.sin(np.arange(start, start + n) / 6.0) + 0.05 * rng.normal(size=n)  # noqa: E731
    series_model = RollingMAD(history=30, likelihood=False, warmup=10).fit(wave(300, 0))
    # Calibrated on a normal continuation like the one scored (same phase, fresh noise).
    series_model.calibrate(wave(200, 300), FalseAlarmRate(0.0))
    series_model.save(root / "sensor")
    series = wave(120, 300)
    series[[40, 85]] += [4.0, -3.5]

    countries = np.array(["Ireland", "Korea, Republic of", "Chile"])
    orders = lambda n: pd.DataFrame({"amount": rng.gamma(4.0, 10.0, n),  # noqa: E731
                                     "country": countries[rng.integers(0, 3, n)]})
    table_model = KNN().fit(orders(300)).calibrate(orders(100), FalseAlarmRate(0.0))
    table_model.save(root / "orders")
    rows = pd.DataFrame({"amount": [35.5, 4000.0, 41.25], "country": ["Korea, Republic of", "Chile", "Ireland"]})
    return root, series, rows


@pytest.fixture(scope="module")
def server(models):
    """Base URL of the app served by uvicorn on a free loopback port."""
    import uvicorn

    from normalcy.serve.app import create_app

    root = models[0]
    app = create_app([root / "parts", root / "sensor", root / "orders"], token=TOKEN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def sync_playwright():
    return _require_browser()


@pytest.fixture(scope="module")
def page(sync_playwright, server, tmp_path_factory):
    """The page, signed in. Before the token is given the model listing is refused, and the
    page must say so."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        # A persistent context is how Playwright takes a fresh --user-data-dir of ours.
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900})
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            js_errors = []
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
            page.goto(server)
            error = page.locator("#error")
            error.wait_for(state="visible")
            assert "401" in error.inner_text() and "token" in error.inner_text().lower()
            page.fill("#token", TOKEN)
            page.click("#token-form button")
            page.wait_for_function("document.querySelectorAll('#model option:not([disabled])').length === 3")
            assert error.is_hidden()
            assert page.evaluate("sessionStorage.getItem('normalcy.token')") == TOKEN
            yield page
            assert not js_errors, f"JavaScript errors on the page: {js_errors}"
        finally:
            browser.close()


def _shown_score(page) -> float:
    return float(page.locator("#score").inner_text())


def _rounded(score: float) -> float:
    """What the page shows: five significant digits."""
    return float(f"{score:.5g}")


def test_image_score_label_and_overlay(page, models, tmp_path):
    from normalcy.core import load

    root = models[0]
    page.select_option("#model", "parts")
    page.locator("[data-mode=image]").wait_for(state="visible")
    assert "PaDiM" in page.locator("#model-info").inner_text()

    # A broken file: the server's error is shown, not a result.
    page.set_input_files("#image-file", str(root / "not-an-image.png"))
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "HTTP 400" in error.inner_text()
    assert page.locator("#result").is_hidden()

    page.set_input_files("#image-file", str(root / "defect.png"))
    page.click("#submit")
    page.locator("#overlay-figure").wait_for(state="visible")
    page.wait_for_function("(() => { const i = document.getElementById('overlay');"
                           " return i.complete && i.naturalWidth > 0; })()")
    assert error.is_hidden()
    assert page.evaluate("document.getElementById('overlay').naturalWidth") == 192  # the posted image's size
    expected = load(root / "parts").detect([root / "defect.png"])
    assert expected.labels[0] == 1  # the pasted square is well above every calibration score
    assert _shown_score(page) == _rounded(expected.scores[0])
    assert page.locator("#label").inner_text() == "anomalous"
    shot = tmp_path / "serve-page-image.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("NORMALCY_PAGE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["NORMALCY_PAGE_SCREENSHOT"])


def test_series_plot_marks_flagged_points(page, models, tmp_path):
    from normalcy.core import load

    root, series, _ = models
    page.select_option("#model", "sensor")
    page.locator("[data-mode=series]").wait_for(state="visible")
    assert page.locator("#result").is_hidden()
    page.fill("#series-text", "\n".join(repr(float(v)) for v in series))
    page.click("#submit")
    page.locator("#plot svg").wait_for(state="visible")
    expected = load(root / "sensor").detect(series)
    flagged = np.flatnonzero(expected.labels)
    assert 40 in flagged and 85 in flagged
    shown = page.eval_on_selector_all("#plot circle.flag", "dots => dots.map(d => +d.dataset.index)")
    assert shown == flagged.tolist()
    assert page.locator("#plot polyline.series").count() == 1
    assert _shown_score(page) == _rounded(expected.scores.max())
    page.screenshot(path=str(tmp_path / "serve-page-series.png"), full_page=True)


def test_table_rows_from_pasted_csv(page, models):
    from normalcy.core import load

    root, _, rows = models
    page.select_option("#model", "orders")
    page.locator("[data-mode=csv]").wait_for(state="visible")
    page.fill("#csv-text", rows.to_csv(index=False))  # quotes "Korea, Republic of"
    page.click("#submit")
    page.locator("#table-wrap table").wait_for(state="visible")
    expected = load(root / "orders").detect(rows)
    assert expected.labels.tolist() == [0, 1, 0]
    header = page.eval_on_selector_all("#table-wrap thead th", "ths => ths.map(t => t.textContent)")
    score_col, label_col = header.index("score"), header.index("label")
    cells = page.eval_on_selector_all(
        "#table-wrap tbody tr", "trs => trs.map(tr => [...tr.children].map(c => c.textContent))")
    assert [float(r[score_col]) for r in cells] == [_rounded(s) for s in expected.scores]
    assert [r[label_col] for r in cells] == ["normal", "anomalous", "normal"]
    assert cells[0][header.index("row")] == "amount=35.5, country=Korea, Republic of"
    assert page.locator("#table-wrap tbody tr.flagged").count() == 1
