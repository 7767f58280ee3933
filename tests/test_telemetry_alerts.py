"""Alerts change state only on a sustained breach (N of M windows), clear with hysteresis, and
call the webhook once per change; checked on the pure rule and on a store with an injected
slowdown and an injected clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxperf.telemetry.alerts import DEFAULT_THRESHOLDS, AlertEngine, Threshold, level_of, next_level
from voxperf.telemetry.ingest import parse_batch
from voxperf.telemetry.store import TelemetryStore

from .conftest import telemetry_line

TTFA = Threshold("ttfa_ms", "p95", 1000.0, 2000.0, windows=6, breaches=4, min_events=5)
EFFICIENCY = Threshold("streaming_efficiency", "p50", 0.8, 0.6, "below", windows=6, breaches=4, min_events=5)


def run(threshold: Threshold, values: list[float | None], n: int = 50) -> list[str]:
    """The state after each new window of ``values`` (None: an empty window)."""
    level, seen, out = "ok", [], []
    for v in values:
        seen.append((v, 0 if v is None else n))
        level = next_level(threshold, level, seen)  # type: ignore[arg-type]
        out.append(level)
    return out


def test_one_slow_window_is_not_an_incident_but_four_of_six_are() -> None:
    assert run(TTFA, [500, 500, 3000, 500, 500, 500, 500]) == ["ok"] * 7
    states = run(TTFA, [500, 1500, 1500, 500, 1500, 1500, 1500])
    assert states == ["ok"] * 5 + ["warning"] * 2  # the fourth slow window of the last six
    assert run(TTFA, [2500] * 5)[-2:] == ["error", "error"]  # N windows past the error level
    assert run(TTFA, [2500, 2500, 1500, 2500, 2500])[-1] == "error"  # an error window is also a warning one


def test_clearing_needs_n_of_m_windows_clear_by_the_margin() -> None:
    hovering = [1500] * 4 + [950] * 8  # below 1,000 ms but inside the 10 % margin: stays warning
    assert run(TTFA, hovering)[-1] == "warning"
    cleared = [1500] * 4 + [950, 850, 850, 850, 850]
    states = run(TTFA, cleared)
    assert states[4] == "warning" and states[-1] == "ok"  # four windows under 900 ms
    assert run(TTFA, [2500] * 4 + [1500] * 4)[-1] == "warning"  # error clears down to warning


def test_lower_is_worse_for_efficiency_and_too_few_events_decide_nothing() -> None:
    assert run(EFFICIENCY, [0.7] * 4)[-1] == "warning"
    assert run(EFFICIENCY, [0.5] * 4)[-1] == "error"
    assert level_of(EFFICIENCY, 0.95, 100) == "ok"
    assert level_of(TTFA, 5000.0, 4) is None  # below min_events
    assert run(TTFA, [1500] * 4 + [None] * 6)[-1] == "warning"  # no data: no clearing either


@given(st.lists(st.one_of(st.none(), st.floats(0, 5000)), min_size=1, max_size=40))
def test_the_state_rises_only_on_n_breaching_windows_of_m(values: list[float | None]) -> None:
    states = run(TTFA, values)
    for i, state in enumerate(states):
        if state != "ok" and (i == 0 or states[i - 1] == "ok"):  # the moment it rose
            recent = values[max(0, i - TTFA.windows + 1) : i + 1]
            assert sum(v is not None and v > TTFA.warning for v in recent) >= TTFA.breaches
    if all(v is None or v <= TTFA.warning for v in values):
        assert set(states) == {"ok"}


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    arrived: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received, _Hook.arrived = [], threading.Event()
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_an_injected_slowdown_raises_the_alert_only_once_sustained(webhook: str) -> None:
    window_ms = 300_000
    t0 = 1_796_083_200_000
    clock = [t0 / 1000]
    store = TelemetryStore(":memory:", clock=lambda: clock[0])
    engine = AlertEngine(store, DEFAULT_THRESHOLDS, webhook_url=webhook, clock=lambda: clock[0])
    rng = np.random.default_rng(5)

    def traffic(window: int, ttfa_ms: float) -> None:
        start = t0 + window * window_ms
        lines = [
            telemetry_line(
                "speech_timing",
                start + int(rng.integers(0, window_ms)),
                ttfa_ms=float(ttfa_ms * rng.uniform(0.9, 1.0)),
                cache="hit",
                outcome="ok",
                streaming_efficiency=0.97,
            )
            for _ in range(40)
        ]
        store.ingest(parse_batch("\n".join(lines).encode()), batch_id=f"w{window}")

    def level_after(window: int) -> str:
        clock[0] = (t0 + (window + 1) * window_ms) / 1000  # the window has just completed
        states = {s.key: s.level for s in engine.evaluate()}
        return states["ttfa_ms.p95"]

    plan = [400] * 6 + [2600] + [400] * 3 + [1400] * 5 + [400] * 6  # a spike, then a slowdown
    levels = []
    for window, ttfa in enumerate(plan):
        traffic(window, ttfa)
        levels.append(level_after(window))
    assert levels[:10] == ["ok"] * 10  # the single 2.6 s window did not raise it
    assert levels[10:13] == ["ok"] * 3  # nor did the first three slow windows
    assert levels[13] == "warning"  # the fourth slow window of six did
    assert levels[-1] == "ok"  # four clear windows after the slowdown ended
    assert _Hook.arrived.wait(10)
    changes = [(c["from"], c["to"]) for c in engine.changes if c["alert"] == "ttfa_ms.p95"]
    assert changes == [("ok", "warning"), ("warning", "ok")]  # no flapping in between
    first = _Hook.received[0]["voxperf_alert"]
    assert first["alert"] == "ttfa_ms.p95" and first["to"] == "warning" and first["value"] > 1000
    others = {s.key: s.level for s in engine.current()}
    assert others["cache_hit_rate.value"] == "ok" and others["streaming_efficiency.p50"] == "ok"
