"""OTLP/HTTP JSON latency histograms (LiveKit's ``lk.agents.turn.*``): cumulative points become
deltas, a resent export is stored once, unknown metrics are rejected as partial success, and
percentiles are estimated as Prometheus' ``histogram_quantile`` does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from voxperf.telemetry.histograms import histogram_quantile
from voxperf.telemetry.server import TelemetrySettings, create_telemetry_app
from voxperf.telemetry.store import HOUR_MS, TelemetryStore

from .conftest import livekit_export

T0 = 1_796_083_200_000
BOUNDS_S = [0.1, 0.2, 0.5, 1.0]


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile() -> None:
    bounds, counts = [100.0, 200.0, 500.0], [10, 30, 50, 10]  # 100 observations
    assert histogram_quantile(0.05, bounds, counts) == pytest.approx(50.0)  # rank 5 of the first 10
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(260.0)  # 200 + 300 * 10/50
    assert histogram_quantile(0.95, bounds, counts) == 500.0  # the overflow bucket: its lower bound
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0]) is None


@given(
    st.lists(st.integers(0, 1000), min_size=4, max_size=4),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
)
def test_estimates_are_monotone_and_inside_the_bounds(counts: list[int], a: float, b: float) -> None:
    bounds = [10.0, 50.0, 200.0]
    lo, hi = sorted((a, b))
    x, y = histogram_quantile(lo, bounds, counts), histogram_quantile(hi, bounds, counts)
    if sum(counts) == 0:
        assert x is None and y is None
        return
    assert x is not None and y is not None
    assert 0.0 <= x <= y <= bounds[-1]


def export(
    counts: list[int], *, start_ns: int, t_ms: int, name: str = "lk.agents.turn.e2e_latency"
) -> dict[str, Any]:
    return livekit_export({name: counts}, bounds_s=BOUNDS_S, start_ns=start_ns, t_ms=t_ms, version="3.1.0")


def test_cumulative_livekit_histograms_become_deltas_stored_once() -> None:
    store = TelemetryStore(":memory:")
    app = create_telemetry_app(TelemetrySettings(), store=store, clock=lambda: T0 / 1000, background=False)
    start = T0 * 1_000_000
    first = export([5, 10, 3, 2, 0], start_ns=start, t_ms=T0 + 60_000)
    second = export([6, 30, 10, 3, 1], start_ns=start, t_ms=T0 + 120_000)  # cumulative: +1, +20, +7, +1, +1
    restarted = export([0, 4, 0, 0, 0], start_ns=start + 5, t_ms=T0 + 180_000)  # a new process
    with TestClient(app) as c:
        answer = c.post("/v1/metrics", content=json.dumps(first).encode())
        assert answer.status_code == 200
        assert answer.json()["partialSuccess"]["rejectedDataPoints"] == "1"  # the cpu sum
        assert "only the histograms" in answer.json()["partialSuccess"]["errorMessage"]
        c.post("/v1/metrics", content=json.dumps(first).encode())  # resent: stored once
        c.post("/v1/metrics", content=json.dumps(second).encode())
        params = {"metric": "turn_e2e_latency_ms", "stats": "p50,p95", "start_ms": T0, "end_ms": T0 + HOUR_MS,
                  "bucket": "1h"}  # fmt: skip
        (point,) = c.get("/v1/telemetry/series", params=params).json()["points"]
        assert point["count"] == 50 and point["source"] == "histogram"  # the last cumulative count
        bounds_ms = [b * 1000 for b in BOUNDS_S]
        assert point["p95"] == pytest.approx(histogram_quantile(0.95, bounds_ms, [6, 30, 10, 3, 1]))
        assert point["p50"] == pytest.approx(histogram_quantile(0.5, bounds_ms, [6, 30, 10, 3, 1]))
        c.post("/v1/metrics", content=json.dumps(restarted).encode())
        (point,) = c.get("/v1/telemetry/series", params=params).json()["points"]
        assert point["count"] == 54  # the new series' first point is counted whole
        by_version = c.get("/v1/telemetry/series", params={**params, "app_version": "9.9"}).json()["points"]
        assert by_version == []
        assert c.post("/v1/metrics", content=b'{"resourceSpans": []}').status_code == 400


def test_late_points_and_malformed_exports_are_answered_not_stored_or_crashed() -> None:
    store = TelemetryStore(":memory:")
    app = create_telemetry_app(TelemetrySettings(), store=store, clock=lambda: T0 / 1000, background=False)
    start = T0 * 1_000_000
    params = {
        "metric": "turn_e2e_latency_ms",
        "stats": "p95",
        "start_ms": T0,
        "end_ms": T0 + HOUR_MS,
        "bucket": "1h",
    }
    with TestClient(app) as c:
        for t, counts in (
            (2, [2, 10, 5, 2, 1]),
            (1, [1, 5, 2, 1, 1]),
            (3, [3, 20, 5, 2, 0 + 1]),
        ):  # t=1 is late
            c.post(
                "/v1/metrics",
                content=json.dumps(export(counts, start_ns=start, t_ms=T0 + t * 60_000)).encode(),
            )
        (point,) = c.get("/v1/telemetry/series", params=params).json()["points"]
        assert point["count"] == 31  # the last cumulative count: the late point added nothing
        bad_sum = export([1, 1, 1, 1, 1], start_ns=start + 9, t_ms=T0 + 300_000)
        bad_sum["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["dataPoints"][0][
            "sum"
        ] = float("inf")
        far = export([1, 1, 1, 1, 1], start_ns=start + 9, t_ms=T0)
        far["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["dataPoints"][0][
            "timeUnixNano"
        ] = "1e30"
        for doc in (bad_sum, far):
            answer = c.post("/v1/metrics", content=json.dumps(doc).encode())
            assert answer.status_code == 200 and answer.json()["partialSuccess"]["rejectedDataPoints"] == "2"
        for body in (b'{"resourceMetrics": [1]}', b"[" * 100_000, b'{"resourceSpans": [1]}'):
            for path in ("/v1/metrics", "/v1/traces"):
                assert c.post(path, content=body).status_code == 400
        (point,) = c.get("/v1/telemetry/series", params=params).json()["points"]
        assert point["count"] == 31


def test_new_bucket_bounds_start_a_new_baseline_and_agent_versions_are_filter_choices() -> None:
    store = TelemetryStore(":memory:")
    app = create_telemetry_app(TelemetrySettings(), store=store, clock=lambda: T0 / 1000, background=False)
    start = T0 * 1_000_000
    params = {"metric": "turn_e2e_latency_ms", "stats": "p95,mean", "start_ms": T0, "end_ms": T0 + HOUR_MS,
              "bucket": "1h"}  # fmt: skip
    with TestClient(app) as c:
        c.post(
            "/v1/metrics",
            content=json.dumps(export([2, 4, 2, 1, 1], start_ns=start, t_ms=T0 + 60_000)).encode(),
        )
        more_bounds = [*BOUNDS_S, 2.0]  # one more bound, same series and start time
        for counts, t_ms in (([3, 5, 3, 2, 1, 1], T0 + 120_000), ([4, 8, 3, 2, 1, 2], T0 + 180_000)):
            doc = livekit_export(
                {"lk.agents.turn.e2e_latency": counts},
                bounds_s=more_bounds,
                start_ns=start,
                t_ms=t_ms,
                version="3.1.0",
            )
            c.post("/v1/metrics", content=json.dumps(doc).encode())  # the second adds +1, +3, 0, 0, 0, +1
        (got,) = c.get("/v1/telemetry/series", params=params).json()["points"]
        assert got["count"] == 10 + 5  # the first point, then the growth after the new baseline
        options = c.get("/v1/telemetry/options", params={"start_ms": T0, "end_ms": T0 + HOUR_MS}).json()
        assert options["filters"]["app_version"] == ["3.1.0"]  # from the OTLP resource
