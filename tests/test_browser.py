"""The studio in a real browser: Debian's Chromium, driven by Playwright (as a driver only).

Types a prompt, clicks Generate, waits for a playable <video>, cancels a job,
opens the library, selects and deletes an entry. Screenshots are saved under
artifacts/browser/ for a person to look at. The browser gets no network: it
may only talk to the app on 127.0.0.1, and the test fails if the page asks
for anything else (web fonts, CDNs, analytics).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from app_server import AppServer
from test_app import tiny_model_dir  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000  # a generation on a busy 2-core machine

# `python3 dev.py test` installs both; in CI a missing one is an error, elsewhere a skip that says why.
if os.environ.get("CI"):
    from playwright import sync_api as playwright_api

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: dev.py's set-up installs Debian's chromium"
else:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev.py does it)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (dev.py does it)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("browser-app")
    app = AppServer(tiny_model_dir, workdir / "library", workdir).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def page(server):
    """A fresh Chromium profile; every request that leaves 127.0.0.1 is recorded."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="sora-chromium-")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.outside_requests = []
            page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                    else page.outside_requests.append(r.url))
            page.goto(server.url)
            page.wait_for_selector("#prompt textarea")
            yield page
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_playable(page, selector: str) -> None:
    """Until the <video> inside `selector` has decoded enough to show a frame (readyState >= 2)."""
    page.wait_for_function("sel => { const v = document.querySelector(sel + ' video');"
                           " return v && v.src && v.readyState >= 2; }", arg=selector)


def library_count(server) -> int:
    from sora_hf.library import Library

    return len(Library(server.library))


def test_generate_shows_a_playable_video(page, server):
    shot(page, "0_start")
    page.fill("#prompt textarea", "a red ball bouncing on sand")
    page.click("#generate")
    page.wait_for_selector("#result-video-0 .progress-text, #result-video-0 .meta-text", state="attached")
    shot(page, "1_started")
    wait_for_playable(page, "#result-video-0")
    page.wait_for_selector("#status:has-text('Seed used')")
    size = page.evaluate("() => { const v = document.querySelector('#result-video-0 video');"
                         " return [v.videoWidth, v.videoHeight]; }")
    assert size == [448, 256], "the browser plays the nearest-neighbour upscaled copy (64x112 x4)"
    shot(page, "2_result")
    assert library_count(server) == 1
    assert page.outside_requests == []


def test_cancel_stops_and_saves_nothing(page, server):
    before = library_count(server)
    page.fill("#prompt textarea", "a long clip that is cancelled")
    page.get_by_label("~8 s").check()
    page.get_by_label("High (128 px)").check()
    page.click("#generate")
    progress = page.locator("#result-video-0 [role=progressbar]")  # driven by the pipeline's per-step callback
    page.wait_for_function("() => { const p = document.querySelector('#result-video-0 [role=progressbar]');"
                           " return p && /Denoising: [1-9]\\d* \\/ 20 steps/.test(p.getAttribute('aria-valuetext')); }")
    assert 0 < float(progress.get_attribute("aria-valuenow")) < 100
    shot(page, "3_progress")
    page.click("#cancel")
    page.wait_for_selector("#status:has-text('Cancelling')")
    shot(page, "4_cancelled")
    page.get_by_label("~2 s").check()
    page.get_by_label("Standard (64 px)").check()
    page.fill("#prompt textarea", "a blue square sliding left")
    page.click("#generate")  # the model is free again: this one finishes, the cancelled one left no entry
    page.wait_for_selector("#status:has-text('Seed used')")  # replaces 'Cancelling' once the new job is done
    from sora_hf.library import Library

    prompts = [e.prompt for e in Library(server.library).list()]
    assert "a long clip that is cancelled" not in prompts and len(prompts) == before + 1


def test_library_select_and_delete(page, server):
    page.get_by_role("tab", name="Library").click()
    thumbs = page.locator("#library-gallery img")
    thumbs.first.wait_for()
    assert thumbs.count() == library_count(server) == 2
    shot(page, "5_library")
    thumbs.first.click()
    wait_for_playable(page, "#entry-video")
    page.wait_for_selector("#entry-details:has-text('a blue square sliding left')")  # newest first
    shot(page, "6_selected")
    page.click("#delete")
    page.wait_for_selector("#library-count:has-text('1 entry')")
    assert library_count(server) == 1
    shot(page, "7_deleted")
    assert page.outside_requests == []
