"""The HTML report in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxperf.report.compare import compare_results
from voxperf.report.html import render_html
from voxperf.report.render import trend_points

from .conftest import ARGS, CHROMIUM, synthetic

playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


def _with_summaries(result):
    """Synthetic results carry no summaries; give them aggregate p95s for the timeline."""
    from voxperf.bench.runner import summarize_records

    weights = {f.name: f.durationS for f in result.fixtures}
    lane = result.lanes["codepath"]
    lane = lane.model_copy(update={"summaries": summarize_records(lane.runs, weights)})
    return result.model_copy(update={"lanes": {"codepath": lane}})


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = synthetic({"f1": [100.0, 101, 99, 100, 100.5], "f2": [50.0, 51, 49, 50, 50.5]})
    head = synthetic({"f1": [150.0, 151, 149, 150, 150.5], "f2": [50.0, 51, 49, 50, 50.5]})
    trend = trend_points(
        [("main", _with_summaries(synthetic({"f1": [100.0 + i] * 5}, commit=f"{i:040x}"))) for i in range(5)]
    )
    comparison = compare_results(base, head, resamples=200)
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(comparison, base, head, trend), encoding="utf-8")
    return path, comparison.to_dict()


def test_report_renders_in_chromium(report: tuple[Path, dict]) -> None:
    path, data = report
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        # charts render: distributions with one dot per raw sample, and a timeline with lines
        dists = page.locator("svg.dist")
        assert dists.count() >= 3
        box = dists.first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 40
        assert dists.first.locator("circle").count() == 20  # 10 base + 10 head samples of f1+f2
        timeline = page.locator("svg.timeline")
        assert timeline.count() >= 1 and timeline.first.locator("polyline").count() >= 1
        # numbers in the page equal the JSON
        embedded = json.loads(page.locator("#voxperf-data").inner_text())
        assert embedded == data
        # the decision leads: its headline first, one row per gated metric, the full table collapsed
        decision = data["decision"]
        assert page.locator("#verdict").inner_text().startswith(decision["status"].upper())
        assert page.locator("#gate tr").count() == len(decision["rows"]) + 1
        assert not page.locator("#summary").is_visible()
        page.locator("details summary").first.click()
        assert page.locator("#summary").is_visible()
        rows = page.locator("tr[data-row]")
        assert rows.count() == len(data["rows"])
        for i in range(rows.count()):
            row = rows.nth(i)
            j = int(row.get_attribute("data-row") or -1)
            assert float(row.get_attribute("data-base") or "nan") == data["rows"][j]["base"]
            assert float(row.get_attribute("data-head") or "nan") == data["rows"][j]["head"]
            assert data["rows"][j]["verdict"] in row.inner_text()
        page.screenshot(path=str(path.with_suffix(".png")), full_page=True)
        browser.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests  # opens offline


def test_large_trend_window_is_small_and_fast(tmp_path: Path) -> None:
    import time

    base = synthetic({"f1": [100.0] * 10, "f2": [50.0] * 10})
    point = trend_points([("main", _with_summaries(base))])[0]
    trend = [
        point.__class__("main", f"{i:040x}", point.created_at, {k: v + i % 7 for k, v in point.p50.items()})
        for i in range(1000)
    ]
    t0 = time.perf_counter()
    comparison = compare_results(base, base, resamples=200)
    text = render_html(comparison, base, base, trend)
    elapsed = time.perf_counter() - t0
    assert len(text.encode()) <= 5 * 1024 * 1024
    print(f"1000-run trend: HTML {len(text) / 1024:.0f} KiB in {elapsed:.2f} s")
