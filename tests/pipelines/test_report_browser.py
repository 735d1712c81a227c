"""The report as a person sees it: headless Chromium opens report.html from the demo.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright``
Python package (its bundled browsers are not used, so no ``playwright install``). The
test is skipped, with the reason, when either is missing. The screenshot is saved to
``tests/artifacts/report.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_report import build_demo_report

CHROMIUM = os.environ.get("PERSONAS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    report = build_demo_report()["html"]
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def route(r):
            requests.append(r.request.url)
            if r.request.url.startswith(("data:", "file:")):
                r.continue_()
            else:
                r.abort()

        context.route("**/*", route)
        tab = context.new_page()
        tab.goto(report.as_uri(), wait_until="load")
        yield tab, requests
        browser.close()


def test_every_card_renders(page):
    tab, _ = page
    personas = build_demo_report()["personas"]
    cards = tab.locator("section.card")
    assert cards.count() == len(personas)
    for i in range(cards.count()):
        card = cards.nth(i)
        assert card.is_visible()
        box = card.bounding_box()
        assert box["width"] > 600 and box["height"] > 150
        assert card.locator("h3").inner_text().strip()


def test_every_figure_renders(page):
    tab, _ = page
    images = tab.locator("img")
    assert images.count() == 7  # six figures and the candidates of "How many personas"
    sizes = tab.evaluate(
        "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert all(done and w > 0 and h > 0 for done, w, h in sizes), sizes


def test_nothing_leaves_the_page(page):
    _, requests = page
    assert requests, "the route handler saw no request at all"
    assert all(url.startswith(("data:", "file:")) for url in requests), requests


def test_screenshot_is_saved(page):
    tab, _ = page
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "report.png"
    tab.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 50_000
