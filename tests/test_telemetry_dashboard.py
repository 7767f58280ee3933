"""The telemetry dashboard in a real headless Chromium (Playwright) against the real service on a
real uvicorn server, and the Grafana example dashboard against the service's real ``/metrics``.

Every expected number comes from the API the page reads (fetched here with httpx), formatted the way
the page documents: milliseconds with one decimal, ratios as percentages with one decimal,
throughput per minute with two (JavaScript's ``toFixed``: the exact double, ties away from zero).
"""

from __future__ import annotations

import copy
import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from voxperf.telemetry.histograms import HISTOGRAM_METRICS
from voxperf.telemetry.server import TelemetrySettings, create_telemetry_app
from voxperf.telemetry.store import TelemetryStore

from .conftest import ARGS, CHROMIUM, TELEMETRY_EXAMPLE, serve_app
from .conftest import livekit_export as shared_livekit_export

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # the browser tests skip; the HTTP and Grafana ones still run
    sync_playwright = None

GRAFANA = Path(__file__).resolve().parents[1] / "examples" / "grafana" / "voxperf-telemetry.json"
NOW_MS = 1_771_502_400_000  # 2026-02-19T12:00:00Z: the server's fixed clock
HOUR_MS = 3_600_000
DASH = "\u2014"
# the headline tiles the dashboard must show: (metric, statistic)
TILES = [
    ("ttfa_ms", "p50"),
    ("ttfa_ms", "p95"),
    ("server_ms", "p95"),
    ("streaming_efficiency", "p50"),
    ("cache_hit_rate", "value"),
    ("error_rate", "value"),
    ("throughput", "value"),
    ("stt_ms", "p95"),
    ("encode_ms", "p95"),
    ("rewrite_ms", "p95"),
    ("paste_ms", "p95"),
]
TIMEOUT_MS = 15_000  # Playwright's retrying assertions give up after this
# the voice agent section: LiveKit's turn latencies (OTLP histograms), one p95 tile and line each
TURN_METRICS = [
    "turn_e2e_latency_ms",
    "llm_ttft_ms",
    "tts_ttfb_ms",
    "transcription_delay_ms",
    "end_of_turn_delay_ms",
]
TURN_BOUNDS_S = [0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]
NO_DRILL = "Pick a point on a timing chart."  # the drill-down caption until a point is picked


# ---- events -------------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(ts_ms: int, name: str, version: str, session: str, fields: dict[str, Any]) -> dict[str, Any]:
    line = copy.deepcopy(TELEMETRY_EXAMPLE)
    line["appVersion"] = version
    line["osVersion"] = "macOS 15.3"
    line["event"] = {"timestamp": _iso(ts_ms), "name": name, "sessionID": session, "fields": fields}
    return line


def speech_event(
    rng: np.random.Generator, ts_ms: int, session: str, *, degraded: bool, version: str
) -> dict[str, Any]:
    """One TTS request: cache hits are fast, espeak-ng misses slower than piper ones; a degraded
    period (the last half hour) is ~3x slower, stalls more and fails more; 0.5.0 is 30 % slower."""
    provider = "piper" if rng.random() < 0.6 else "espeak-ng"
    hit = rng.random() < 0.35
    base = 120.0 if hit else (380.0 if provider == "piper" else 650.0)
    ttfa = base * (2.8 if degraded else 1.0) * (1.3 if version == "0.5.0" else 1.0) * rng.lognormal(0, 0.35)
    error = rng.random() < (0.12 if degraded else 0.02)
    efficiency = min(1.0, rng.normal(0.72 if degraded else 0.95, 0.06))
    fields = {
        "provider": provider,
        "cache": "hit" if hit else "miss",
        "outcome": "error" if error else "ok",
        "ttfa_ms": round(float(ttfa), 2),
        "first_byte_ms": round(float(ttfa) * 0.6, 2),
        "first_chunk_ms": round(float(ttfa) * 0.8, 2),
        "server_ms": round(float(ttfa) * 0.75, 2),
        "total_ms": round(float(ttfa) + 2400.0, 1),
        "audio_s": 2.4,
        "streaming_efficiency": round(float(efficiency), 4),
        "rtfx": 6.5,
        "chunks": 12,
    }
    return _line(ts_ms, "speech_timing", version, session, fields)


def pipeline_event(rng: np.random.Generator, ts_ms: int, session: str, *, version: str, level: str) -> dict:
    """One dictation, as the app's pipeline_timing line (raw: no rewrite)."""
    stt = 600.0 * rng.lognormal(0, 0.3)
    encode = 20.0 * rng.lognormal(0, 0.2)
    rewrite = 0.0 if level == "raw" else (250.0 if level == "clean" else 500.0) * rng.lognormal(0, 0.3)
    paste = 45.0 * rng.lognormal(0, 0.2)
    stages = stt + encode + rewrite + paste
    fields = {
        **TELEMETRY_EXAMPLE["event"]["fields"],
        "processing_level": level,
        "encode_ms": round(float(encode), 1),
        "stt_ms": round(float(stt), 1),
        "rewrite_ms": round(float(rewrite), 1),
        "paste_ms": round(float(paste), 1),
        "total_stage_ms": round(float(stages), 1),
        "total_ms": round(float(stages) + 30.0, 1),
    }
    return _line(ts_ms, "pipeline_timing", version, session, fields)


def realistic_events(seed: int = 7) -> list[dict[str, Any]]:
    """Eight hours of speech and dictation events from two app versions (0.5.0 rolled out three
    hours ago), the last half hour degraded and dense enough (30 per 5-minute alert window) for the
    alerts to decide."""
    rng = np.random.default_rng(seed)
    start, degraded_from = NOW_MS - 8 * HOUR_MS, NOW_MS - HOUR_MS // 2
    times = sorted(int(t) for t in rng.uniform(start, degraded_from, 300))
    for k in range(6):
        window = degraded_from + k * 300_000
        times += sorted(int(t) for t in rng.uniform(window, window + 300_000, 30))

    def version(ts: int) -> str:
        return "0.5.0" if ts >= NOW_MS - 3 * HOUR_MS and rng.random() < 0.6 else "0.4.0"

    events = [
        speech_event(rng, ts, f"s-{i:04d}", degraded=ts >= degraded_from, version=version(ts))
        for i, ts in enumerate(times)
    ]
    dictations = sorted(int(t) for t in rng.uniform(start, NOW_MS, 120))
    levels = ("raw", "clean", "polish")
    events += [
        pipeline_event(rng, ts, f"p-{i:04d}", version=version(ts), level=levels[i % 3])
        for i, ts in enumerate(dictations)
    ]
    return events


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(e) for e in events).encode()


def turn_histograms(seed: int = 11) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Cumulative bucket counts of three of LiveKit's turn histograms at two exports of one agent
    process: the later export holds the earlier one's counts plus a slower period's."""
    rng = np.random.default_rng(seed)
    edges = [0.0, *TURN_BOUNDS_S, np.inf]
    medians_s = {
        "lk.agents.turn.e2e_latency": 1.2,
        "lk.agents.turn.llm_ttft": 0.35,
        "lk.agents.turn.tts_ttfb": 0.12,
    }
    first, second = {}, {}
    for name, median in medians_s.items():
        early = np.histogram(median * rng.lognormal(0, 0.35, 80), bins=edges)[0]
        late = np.histogram(1.6 * median * rng.lognormal(0, 0.35, 120), bins=edges)[0]
        first[name] = [int(c) for c in early]
        second[name] = [int(c) for c in early + late]
    return first, second


def livekit_export(cumulative: dict[str, list[int]], *, start_ns: int, t_ms: int) -> dict[str, Any]:
    return shared_livekit_export(cumulative, bounds_s=TURN_BOUNDS_S, start_ns=start_ns, t_ms=t_ms)


# ---- the server ----------------------------------------------------------------------------------


@dataclass
class FixedClock:
    now_ms: int = NOW_MS

    def __call__(self) -> float:
        return self.now_ms / 1000


@dataclass
class Telemetry:
    """The real telemetry app on a real uvicorn server on loopback."""

    url: str
    key: str | None = None
    units: dict[str, str] = field(default_factory=dict)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(self.url + path, params=params, headers=self._headers(), timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, events: list[dict[str, Any]], extra: bytes = b"") -> dict[str, Any]:
        answer = httpx.post(
            self.url + "/v1/telemetry", content=ndjson(events) + extra, headers=self._headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        receipt: dict[str, Any] = answer.json()
        return receipt

    def post_otlp(self, export: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(
            self.url + "/v1/metrics", content=json.dumps(export).encode(), headers=self._headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        receipt: dict[str, Any] = answer.json()
        return receipt

    def fmt(self, metric: str, value: float | None) -> str:
        """A value as the dashboard must show it (JavaScript toFixed of the same double)."""
        if not self.units:
            self.units = {k: v["unit"] for k, v in self.get("/v1/telemetry/options")["metrics"].items()}
        if value is None:
            return DASH
        unit = self.units[metric]
        if unit == "ms":
            return f"{_half_up(value, '0.1')} ms"
        if unit == "1/s":
            return f"{_half_up(value * 60, '0.01')}/min"
        return f"{_half_up(value * 100, '0.1')}%"


def _half_up(value: float, places: str) -> str:
    return str(Decimal(value).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@contextmanager
def telemetry_server(api_keys: list[str] | None = None) -> Iterator[Telemetry]:
    clock = FixedClock()
    store = TelemetryStore(":memory:", clock=clock)
    app = create_telemetry_app(
        TelemetrySettings(api_keys=api_keys or []), store=store, clock=clock, background=False
    )
    try:
        for url in serve_app(None, None, app):  # type: ignore[arg-type]
            yield Telemetry(url)
    finally:
        store.close()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with telemetry_server() as server:
        receipt = server.post(realistic_events())
        assert receipt["accepted"] > 0 and receipt["rejected"] == 0
        yield server


# ---- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    navigations: int = 0

    def refreshed(self, at_least: int = 1) -> None:
        """Wait until the dashboard has rendered ``at_least`` complete refreshes."""
        self.page.wait_for_function(
            f"Number(document.body.dataset.refreshes || 0) >= {at_least}", timeout=TIMEOUT_MS
        )

    def testid(self, name: str) -> Any:
        return self.page.locator(f'[data-testid="{name}"]')

    def assert_clean(self, server: Telemetry, allowed_errors: str | None = None) -> None:
        origin = urlsplit(server.url)
        foreign = [
            u for u in self.requests if urlsplit(u).netloc != origin.netloc or not u.startswith("http")
        ]
        assert foreign == [], foreign  # nothing leaves the server: no CDN, no fonts, no beacons
        errors = [e for e in self.errors if not (allowed_errors and re.search(allowed_errors, e))]
        assert errors == []


@contextmanager
def dashboard(browser: Browser, server: Telemetry, query: str = "") -> Iterator[Tab]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab = Tab(page)
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: tab.errors.append(str(e)))

    def record(request: Any) -> None:
        tab.requests.append(request.url)
        tab.authorization.append(request.headers.get("authorization"))

    def navigated(frame: Any) -> None:
        if frame == page.main_frame:
            tab.navigations += 1

    page.on("request", record)
    page.on("framenavigated", navigated)
    page.goto(f"{server.url}/dashboard{query}")
    try:
        yield tab
    finally:
        page.close()


def assert_tiles(tab: Tab, server: Telemetry, summary: dict[str, Any]) -> None:
    for metric, stat in TILES:
        expected = server.fmt(metric, summary["metrics"][metric][stat])
        expect(tab.testid(f"tile-{metric}-{stat}")).to_have_text(expected, timeout=TIMEOUT_MS)
        count = str(summary["metrics"][metric]["count"])
        expect(tab.testid(f"tile-{metric}-{stat}-count")).to_have_text(count, timeout=TIMEOUT_MS)


def assert_breakdown(
    tab: Tab, server: Telemetry, by: str, metric: str, stats: list[str], **filters: str
) -> None:
    rows = server.get("/v1/telemetry/breakdown", metric=metric, by=by, window="24h", **filters)["rows"]
    assert rows
    for row in rows:
        for stat in stats:
            expected = str(row[stat]) if stat == "count" else server.fmt(metric, row[stat])
            expect(tab.testid(f"{by}-{row[by]}-{metric}-{stat}")).to_have_text(expected, timeout=TIMEOUT_MS)
    expect(tab.page.locator(f'[data-testid^="{by}-row-"]')).to_have_count(len(rows))


# ---- the dashboard -------------------------------------------------------------------------------


def test_dashboard_shows_what_the_api_returns(browser: Browser, telemetry: Telemetry) -> None:
    with dashboard(browser, telemetry) as tab:
        tab.refreshed()
        summary = telemetry.get("/v1/telemetry/summary", window="24h")
        assert_tiles(tab, telemetry, summary)

        # the trend charts: one point per bucket the API returns, at the API's value
        for metric, stat in [("ttfa_ms", "p50"), ("ttfa_ms", "p95"), ("stt_ms", "p95"), ("paste_ms", "p95")]:
            series = telemetry.get("/v1/telemetry/series", metric=metric, stats="p50,p95", window="24h")
            points = tab.page.locator(f'[data-testid^="point-{metric}-{stat}-"]')
            assert points.count() == len(series["points"]) > 0
            for p in series["points"]:
                dot = tab.testid(f"point-{metric}-{stat}-{p['t_ms']}")
                assert float(dot.get_attribute("data-value") or "nan") == p[stat]
                assert telemetry.fmt(metric, p[stat]) in (dot.locator("title").text_content() or "")
        for metric in ("streaming_efficiency", "cache_hit_rate", "error_rate", "throughput", "server_ms"):
            count = len(telemetry.get("/v1/telemetry/series", metric=metric, window="24h")["points"])
            assert tab.page.locator(f'[data-testid^="point-{metric}-"]').count() >= count > 0

        # threshold lines: one per level of each threshold on a charted statistic, in the right order
        charted = {("ttfa_ms", "p95"), ("server_ms", "p95"), ("streaming_efficiency", "p50")}
        charted |= {("cache_hit_rate", "value"), ("error_rate", "value")}
        drawn = 0
        for t in summary["thresholds"]:
            if (t["metric"], t["stat"]) not in charted:
                continue
            ys = {}
            for level in ("warning", "error"):
                line = tab.testid(f"threshold-{t['metric']}-{t['stat']}-{level}")
                if t[level] is None:
                    assert line.count() == 0
                    continue
                assert line.count() == 1
                assert float(line.get_attribute("data-value") or "nan") == t[level]
                ys[level] = float(line.get_attribute("y1") or "nan")
                label = tab.testid(f"threshold-{t['metric']}-{t['stat']}-{level}-label")
                assert telemetry.fmt(t["metric"], t[level]) in (label.text_content() or "")
                legend = tab.testid(f"legend-{t['metric']}-{t['stat']}-{level}")
                assert telemetry.fmt(t["metric"], t[level]) in legend.inner_text()
                drawn += 1
            if len(ys) == 2:  # SVG y grows downwards: "above" puts the error line higher up
                assert (ys["error"] < ys["warning"]) == (t["direction"] == "above")
        assert drawn >= 7

        # alert badges: the state /v1/alerts decides, with its value
        alerts = telemetry.get("/v1/alerts")["alerts"]
        assert {a["level"] for a in alerts} - {"ok"}, "the data should raise at least one alert"
        for a in alerts:
            expect(tab.testid(f"alert-{a['key']}")).to_have_attribute("data-level", a["level"])
            expect(tab.testid(f"alert-{a['key']}-level")).to_have_text(a["level"])
            expect(tab.testid(f"alert-{a['key']}-value")).to_have_text(telemetry.fmt(a["metric"], a["value"]))

        # provider comparison and app versions
        assert_breakdown(tab, telemetry, "provider", "ttfa_ms", ["count", "p50", "p95"])
        assert_breakdown(tab, telemetry, "provider", "error_rate", ["value"])
        assert_breakdown(tab, telemetry, "app_version", "ttfa_ms", ["count", "p50", "p95"])
        assert_breakdown(tab, telemetry, "app_version", "stt_ms", ["p95"])

        # the filter selects hold what /v1/telemetry/options offers
        options = telemetry.get("/v1/telemetry/options", window="24h")["filters"]
        for name in ("app_version", "processing_level", "provider"):
            offered = (
                tab.testid(f"filter-{name}").locator("option").evaluate_all("os => os.map(o => o.value)")
            )
            assert offered == ["", *options[name]]
        window = tab.testid("filter-window").locator("option").evaluate_all("os => os.map(o => o.value)")
        assert window == ["1h", "24h", "7d", "30d"]
        tab.assert_clean(telemetry)


def test_filters_requery_every_panel(browser: Browser, telemetry: Telemetry) -> None:
    with dashboard(browser, telemetry) as tab:
        tab.refreshed()
        everything = telemetry.get("/v1/telemetry/summary", window="24h")
        assert_tiles(tab, telemetry, everything)

        tab.testid("filter-app_version").select_option("0.5.0")
        newer = telemetry.get("/v1/telemetry/summary", window="24h", app_version="0.5.0")
        p95 = newer["metrics"]["ttfa_ms"]["p95"]
        assert p95 != everything["metrics"]["ttfa_ms"]["p95"]  # else the check below proves nothing
        assert_tiles(tab, telemetry, newer)
        assert_breakdown(tab, telemetry, "provider", "ttfa_ms", ["count", "p95"], app_version="0.5.0")
        series = telemetry.get("/v1/telemetry/series", metric="ttfa_ms", window="24h", app_version="0.5.0")
        last = series["points"][-1]
        expect(tab.testid(f"point-ttfa_ms-p95-{last['t_ms']}")).to_have_attribute(
            "data-value", str(last["p95"])
        )
        assert "app_version=0.5.0" in tab.page.url  # a link to this view keeps the filter

        tab.testid("filter-provider").select_option("espeak-ng")
        both = telemetry.get("/v1/telemetry/summary", window="24h", app_version="0.5.0", provider="espeak-ng")
        assert_tiles(tab, telemetry, both)

        tab.testid("filter-window").select_option("1h")
        recent = telemetry.get(
            "/v1/telemetry/summary", window="1h", app_version="0.5.0", provider="espeak-ng"
        )
        assert recent["metrics"]["ttfa_ms"]["count"] != both["metrics"]["ttfa_ms"]["count"]
        assert_tiles(tab, telemetry, recent)
        tab.assert_clean(telemetry)


def test_clicking_a_point_lists_that_buckets_slowest_sessions(browser: Browser, telemetry: Telemetry) -> None:
    with dashboard(browser, telemetry) as tab:
        tab.refreshed()
        for metric, stat in [("ttfa_ms", "p95"), ("stt_ms", "p95"), ("streaming_efficiency", "p50")]:
            series = telemetry.get("/v1/telemetry/series", metric=metric, stats=stat, window="24h")
            spike = max(series["points"], key=lambda p: p[stat])
            start, end = spike["t_ms"], spike["t_ms"] + series["bucket_ms"]
            tab.testid(f"point-{metric}-{stat}-{start}").click()

            slowest = telemetry.get("/v1/telemetry/slowest", metric=metric, start_ms=start, end_ms=end)[
                "events"
            ]
            assert slowest and all(start <= e["ts_ms"] < end for e in slowest)
            first = slowest[0]
            expect(tab.testid("drill-range")).to_have_attribute("data-start", str(start), timeout=TIMEOUT_MS)
            expect(tab.testid("slowest-0-session")).to_have_text(first["session_id"], timeout=TIMEOUT_MS)
            expect(tab.testid("slowest-0-value")).to_have_text(telemetry.fmt(metric, first[metric]))
            expect(tab.testid("slowest-0-time")).to_have_text(_utc(first["ts_ms"]))
            expect(tab.testid("slowest-0-app_version")).to_have_text(first["app_version"])
            expect(tab.page.locator('[data-testid^="slowest-row-"]')).to_have_count(len(slowest))
            expect(tab.testid("drill-count")).to_have_text(str(len(slowest)))
            last = len(slowest) - 1
            expect(tab.testid(f"slowest-{last}-session")).to_have_text(slowest[-1]["session_id"])
            headers = tab.testid("slowest").locator("thead th").all_inner_texts()
            assert "Session" in headers and "Time (UTC)" in headers
        tab.assert_clean(telemetry)


def test_live_update_without_reload(browser: Browser, telemetry: Telemetry) -> None:
    with dashboard(browser, telemetry, "?refresh=0.5") as tab:
        tab.refreshed()
        before = telemetry.get("/v1/telemetry/summary", window="24h")
        assert_tiles(tab, telemetry, before)
        stamp = tab.testid("updated-at").get_attribute("data-at")
        tab.page.evaluate("window.__sameDocument = true")
        rounds = int(tab.page.evaluate("document.body.dataset.refreshes"))

        rng = np.random.default_rng(99)
        slow = []
        for i in range(40):  # a burst of very slow requests two minutes ago
            event = speech_event(rng, NOW_MS - 120_000 + i, f"late-{i}", degraded=True, version="0.5.0")
            event["event"]["fields"]["ttfa_ms"] = 9000.0 + i
            slow.append(event)
        telemetry.post(slow)
        after = telemetry.get("/v1/telemetry/summary", window="24h")
        assert after["metrics"]["ttfa_ms"]["p95"] != before["metrics"]["ttfa_ms"]["p95"]

        tab.refreshed(rounds + 1)
        assert_tiles(tab, telemetry, after)
        series = telemetry.get("/v1/telemetry/series", metric="ttfa_ms", window="24h")
        last = series["points"][-1]
        expect(tab.testid(f"point-ttfa_ms-p95-{last['t_ms']}")).to_have_attribute(
            "data-value", str(last["p95"])
        )
        assert tab.testid("updated-at").get_attribute("data-at") != stamp
        assert tab.testid("updated-at").inner_text().startswith("Updated ")
        assert tab.page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
        assert tab.navigations == 1
        tab.assert_clean(telemetry)


def test_api_key_is_asked_for_and_sent(browser: Browser) -> None:
    with telemetry_server(api_keys=["acme:s3cret-key"]) as server:
        server.key = "s3cret-key"
        server.post(realistic_events())
        with dashboard(browser, server) as tab:
            expect(tab.page.get_by_label("API key", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            tab.page.get_by_label("API key", exact=True).fill("s3cret-key")
            tab.testid("api-key-submit").click()
            tab.refreshed()
            assert_tiles(tab, server, server.get("/v1/telemetry/summary", window="24h"))
            assert tab.page.evaluate("sessionStorage.getItem('voxperf.telemetry.apiKey')") == "s3cret-key"
            sent = {a for u, a in zip(tab.requests, tab.authorization, strict=True) if "/v1/" in u}
            assert "Bearer s3cret-key" in sent
            # the only console errors are Chromium's notes on the 401s before the key was given
            tab.assert_clean(server, allowed_errors=r"status of 401")


# ---- the assets ----------------------------------------------------------------------------------


def _raw_get(url: str, path: str) -> tuple[int, bytes, str]:
    """GET a path exactly as written (no client-side normalisation of ``..``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read(), answer.getheader("content-type") or ""
    finally:
        conn.close()


def test_dashboard_assets_and_unknown_paths() -> None:
    with telemetry_server() as server:
        status, page, kind = _raw_get(server.url, "/dashboard")
        assert status == 200 and kind.startswith("text/html")
        for asset, expected in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            status, body, kind = _raw_get(server.url, f"/dashboard/{asset}")
            assert status == 200 and kind.startswith(expected) and body
            assert f"/dashboard/{asset}".encode() in page
            # nothing is loaded from elsewhere: the only absolute URL is the SVG namespace
            urls = set(re.findall(rb"https?://[^\s\"'`)]+", body))
            assert urls <= {b"http://www.w3.org/2000/svg"}, urls
        assert not re.search(rb"""(?:src|href)=["'](?:https?:)?//""", page)
        for path in (
            "/dashboard/../x",
            "/dashboard/../server.py",
            "/dashboard/..%2Fserver.py",
            "/dashboard/%2e%2e%2f%2e%2e%2fserver.py",
            "/dashboard/..%5Cserver.js",
            "/dashboard/nope.js",
            "/dashboard/missing.css",
            "/dashboard/index.html",
            "/dashboard/server.py",
            "/dashboard/..",
        ):
            status, body, _ = _raw_get(server.url, path)
            assert status == 404, (path, status, body[:200])
            assert b"import " not in body and b"def " not in body  # no source file leaked


# ---- the Grafana example -------------------------------------------------------------------------


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def test_grafana_dashboard_uses_only_exposed_metrics(telemetry: Telemetry) -> None:
    board = json.loads(GRAFANA.read_text(encoding="utf-8"))
    assert board["schemaVersion"] == 39
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"

    telemetry.post(realistic_events(seed=8)[:5], extra=b'\n{"not": "an event"}')  # a rejected line
    exposition = httpx.get(telemetry.url + "/metrics", timeout=10).text
    exposed: dict[str, set[str]] = {}
    for name, labels in re.findall(r"^(voxperf_[a-z_]+)(?:\{([^}]*)\})? ", exposition, re.M):
        exposed.setdefault(name, set()).update(re.findall(r"([a-z_]+)=", labels))
    assert "voxperf_telemetry_ttfa_seconds_bucket" in exposed

    panels = [p for p in _panels(board) if p.get("type") != "row"]
    ids = [p["id"] for p in _panels(board)]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            names = re.findall(r"voxperf_[a-z_]+", expr)
            assert names, expr
            for name in names:
                assert name in exposed, f"{panel['title']}: {name} is not in /metrics"
                used.add(name)
            for selector_name, matchers in re.findall(r"(voxperf_[a-z_]+)\{([^}]*)\}", expr):
                for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
                    assert label in exposed[selector_name], f"{selector_name} has no label {label}"
            for label in re.findall(r"by \(([^)]*)\)", expr):
                for name in (s.strip() for s in label.split(",")):
                    assert name == "le" or any(name in ls for n, ls in exposed.items() if n in names), expr
    for wanted in (
        "voxperf_telemetry_ttfa_seconds_bucket",
        "voxperf_telemetry_server_response_seconds_bucket",
        "voxperf_telemetry_stage_seconds_bucket",
        "voxperf_telemetry_streaming_efficiency_ratio_bucket",
        "voxperf_telemetry_tts_cache_total",
        "voxperf_telemetry_events_total",
        "voxperf_telemetry_rejected_lines_total",
    ):
        assert wanted in used, wanted

    # the thresholds are the service's own (alerts.DEFAULT_THRESHOLDS), in the panels' units
    expected = {(t["metric"], t["stat"]): t for t in telemetry.get("/v1/telemetry/summary")["thresholds"]}
    checked = 0
    for panel in panels:
        key = panel.get("description", "")
        found = re.search(r"threshold: ([a-z_]+)\.([a-z0-9]+)", key)
        if not found:
            continue
        t = expected[(found.group(1), found.group(2))]
        scale = 1e-3 if t["metric"].endswith("_ms") else 1.0
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        values = sorted(s["value"] for s in steps if s["value"] is not None)
        limits = sorted(v * scale for v in (t["warning"], t["error"]) if v is not None)
        assert values == pytest.approx(limits), panel["title"]
        colours = {s["value"]: s["color"] for s in steps}
        if t["direction"] == "above":
            assert colours[None] == "green" and colours[t["warning"] * scale] == "orange"
        else:
            assert colours[None] == ("red" if t["error"] is not None else "orange")
            assert colours[t["warning"] * scale] == "green"
        checked += 1
    assert checked >= 8


# ---- voice agent turns (OTLP histograms) ---------------------------------------------------------


def post_turns(server: Telemetry) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Two cumulative exports of one agent process five and two hours ago (the first resent, as an
    exporter retrying would): the service stores the first whole and the second as the difference."""
    first, second = turn_histograms()
    start_ns = (NOW_MS - 6 * HOUR_MS) * 1_000_000
    for counts, t_ms in (
        (first, NOW_MS - 5 * HOUR_MS),
        (second, NOW_MS - 2 * HOUR_MS),
        (first, NOW_MS - 5 * HOUR_MS),
    ):
        receipt = server.post_otlp(livekit_export(counts, start_ns=start_ns, t_ms=t_ms))
        assert receipt["partialSuccess"]["rejectedDataPoints"] == "1"  # the session count (a sum)
    return first, second


def assert_turn_tiles(tab: Tab, server: Telemetry, summary: dict[str, Any]) -> list[str]:
    """The section's tiles are exactly the turn metrics with data, at the summary's p95; returns them."""
    shown = [m for m in TURN_METRICS if summary["metrics"][m]["count"] > 0]
    for metric in TURN_METRICS:
        tile = tab.testid(f"tile-{metric}-p95")
        if metric not in shown:
            expect(tile).to_have_count(0, timeout=TIMEOUT_MS)
            continue
        m = summary["metrics"][metric]
        assert m["source"] == "histogram"
        expect(tile).to_have_text(server.fmt(metric, m["p95"]), timeout=TIMEOUT_MS)
        expect(tile).to_have_attribute("data-value", str(m["p95"]))
        expect(tab.testid(f"tile-{metric}-p95-count")).to_have_text(str(m["count"]))
        expect(tab.testid(f"tile-{metric}-p95-estimated")).to_have_text("estimated from histogram buckets")
    expect(tab.testid("turn-tiles").locator(".tile")).to_have_count(len(shown))
    return shown


def test_voice_agent_turns_show_estimated_histogram_percentiles(
    browser: Browser, telemetry: Telemetry
) -> None:
    first, second = post_turns(telemetry)
    with dashboard(browser, telemetry) as tab:
        tab.refreshed()
        summary = telemetry.get("/v1/telemetry/summary", window="24h")
        shown = assert_turn_tiles(tab, telemetry, summary)
        assert shown == [HISTOGRAM_METRICS[name] for name in first]  # the two without data: no tile
        section = tab.testid("turns")
        expect(section).to_be_visible()
        expect(section.locator("h2")).to_have_text("Voice agent turns (OTLP histograms)")
        note = tab.testid("turns-estimated")
        expect(note).to_be_visible()
        expect(note).to_contain_text("estimated from the histogram's bucket counts")
        expect(note).to_contain_text("not computed from single events")
        chart = tab.testid("chart-turns")
        expect(chart.locator("figcaption")).to_contain_text("estimated from histogram buckets")
        expect(chart.locator(".legend .key")).to_have_count(len(shown))

        # one point per bucket the API returns, at the API's value; the cumulative counts became deltas
        clicked = []
        for name, metric in ((n, HISTOGRAM_METRICS[n]) for n in first):
            series = telemetry.get("/v1/telemetry/series", metric=metric, stats="p95", window="24h")
            points = series["points"]
            assert [p["count"] for p in points] == [sum(first[name]), sum(second[name]) - sum(first[name])]
            assert {p["source"] for p in points} == {"histogram"}
            assert summary["metrics"][metric]["count"] == sum(second[name])
            expect(chart.locator(f'[data-testid^="point-{metric}-p95-"]')).to_have_count(len(points))
            for p in points:
                dot = tab.testid(f"point-{metric}-p95-{p['t_ms']}")
                assert float(dot.get_attribute("data-value") or "nan") == p["p95"]
                title = dot.locator("title").text_content() or ""
                assert telemetry.fmt(metric, p["p95"]) in title
                assert f"({p['count']} observations, estimated from histogram buckets)" in title
                assert "slowest" not in title
                # not offered as a drill-down: no button, not focusable, nothing happens on a click
                assert dot.get_attribute("role") is None and dot.get_attribute("tabindex") is None
                assert "drill" not in (dot.get_attribute("class") or "").split()
                dot.click()
                clicked.append(metric)
                expect(tab.testid("drill-caption")).to_have_text(NO_DRILL)
        assert len(clicked) == 6
        expect(chart.locator('[data-testid^="bucket-turns-"]')).to_have_count(0)
        expect(tab.testid("selected-turns")).to_have_count(0)
        expect(tab.testid("slowest")).to_be_hidden()

        # an event timing still drills down; its request is the only /slowest one the page sent
        ttfa = telemetry.get("/v1/telemetry/series", metric="ttfa_ms", stats="p95", window="24h")["points"][
            -1
        ]
        tab.testid(f"point-ttfa_ms-p95-{ttfa['t_ms']}").click()
        expect(tab.testid("drill-range")).to_have_attribute(
            "data-start", str(ttfa["t_ms"]), timeout=TIMEOUT_MS
        )
        drills = [u for u in tab.requests if "/v1/telemetry/slowest" in u]
        assert len(drills) == 1 and "metric=ttfa_ms" in drills[0], drills
        expect(tab.testid("selected-turns")).to_have_count(0)

        # a window without OTLP points hides the section; the 24 h one shows it again
        tab.testid("filter-window").select_option("1h")
        recent = telemetry.get("/v1/telemetry/summary", window="1h")
        assert recent["metrics"]["ttfa_ms"]["count"] > 0
        assert assert_turn_tiles(tab, telemetry, recent) == []
        expect(section).to_be_hidden()
        # a filter the histograms do not carry gives them no data either
        tab.testid("filter-window").select_option("24h")
        tab.testid("filter-processing_level").select_option("clean")
        clean = telemetry.get("/v1/telemetry/summary", window="24h", processing_level="clean")
        assert assert_turn_tiles(tab, telemetry, clean) == []
        expect(section).to_be_hidden()
        tab.testid("filter-processing_level").select_option("")
        assert assert_turn_tiles(tab, telemetry, summary) == shown
        expect(section).to_be_visible()
        tab.assert_clean(telemetry)


def test_voice_agent_section_is_absent_without_otlp_data(browser: Browser, telemetry: Telemetry) -> None:
    with dashboard(browser, telemetry) as tab:
        tab.refreshed()
        summary = telemetry.get("/v1/telemetry/summary", window="24h")
        assert all(summary["metrics"][m]["count"] == 0 for m in TURN_METRICS)
        assert_tiles(tab, telemetry, summary)  # the rest of the page is drawn
        expect(tab.testid("turns")).to_be_hidden()
        assert assert_turn_tiles(tab, telemetry, summary) == []
        expect(tab.testid("chart-turns")).to_have_count(0)
        expect(tab.page.locator('[data-testid^="point-turn_"]')).to_have_count(0)
        assert not [u for u in tab.requests if "metric=turn_" in u or "metric=llm_" in u]
        tab.assert_clean(telemetry)


def test_voice_agent_turns_without_app_events(browser: Browser) -> None:
    """An agent-only deployment: the section shows although no app event exists."""
    with telemetry_server() as server:
        post_turns(server)
        with dashboard(browser, server) as tab:
            tab.refreshed()
            summary = server.get("/v1/telemetry/summary", window="24h")
            assert summary["metrics"]["ttfa_ms"]["count"] == 0
            expect(tab.testid("turns")).to_be_visible()
            assert len(assert_turn_tiles(tab, server, summary)) == 3
            expect(tab.testid("tile-ttfa_ms-p95")).to_have_text(DASH)
            tab.assert_clean(server)
