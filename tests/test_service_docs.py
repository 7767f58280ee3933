"""``/docs`` and ``/redoc`` render offline in a real browser: every asset comes from the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxperf.service.app import ServiceSettings

from .conftest import ARGS, CHROMIUM, fake_engines, serve_app

playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


def _render(page_url: str, ready: str) -> tuple[list[str], list[str], str]:
    """Open ``page_url`` in Chromium; what was fetched, the page errors and the rendered HTML."""
    requests: list[str] = []
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        # what was fetched (a request the page's Content-Security-Policy blocks never is)
        page.on("requestfinished", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_url)
        page.wait_for_selector(ready, timeout=30_000)  # the operations were rendered
        text = page.content()
        browser.close()
    return requests, errors, text


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_api_docs_render_from_local_assets(tmp_path: Path, path: str, ready: str) -> None:
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):
        requests, errors, text = _render(f"{url}{path}", ready)
        assert "/v1/audio/transcriptions" in text and not errors
        outside = [r for r in requests if not r.startswith(url) and not r.startswith(("data:", "blob:"))]
        assert outside == [] and any("/docs-assets/" in r for r in requests)  # nothing from a CDN
