"""The telemetry uploader: opt-in, allow-list privacy (a planted canary never reaches the server),
gzip NDJSON batches with an idempotent id, retries only on 429/5xx, a queue that drops rather
than blocks. The server is a real HTTP server on loopback; backoff sleeps are injected."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.telemetry.client import Response, TelemetryClient, sanitize_event
from voxperf.trace.core import Trace
from voxperf.trace.export import pipeline_timing_event

from .conftest import TELEMETRY_EXAMPLE as EXAMPLE

CANARY = "sk-live-CANARY-7f3a"
TEXT_CANARY = "the patient said CANARY words"


class _Ingest(http.server.BaseHTTPRequestHandler):
    statuses: ClassVar[list[tuple[int, str | None]]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status, retry_after = type(self).statuses.pop(0) if type(self).statuses else (202, None)
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ingest() -> Iterator[tuple[str, type[_Ingest]]]:
    handler = type("Ingest", (_Ingest,), {"statuses": [], "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/telemetry", handler
    finally:
        server.shutdown()


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(body).splitlines()]


def test_telemetry_is_off_unless_an_ingest_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXPERF_INGEST_URL", raising=False)
    monkeypatch.delenv("VOX_PERF_INGEST_URL", raising=False)
    assert TelemetryClient.from_env() is None
    monkeypatch.setenv("VOX_PERF_INGEST_URL", "http://127.0.0.1:9/v1/telemetry")  # the app's own name
    client = TelemetryClient.from_env(start=False)
    assert client is not None and client.url.endswith("/v1/telemetry")


def test_the_documented_example_and_voxperf_own_events_pass_the_allow_list_unchanged() -> None:
    clean = sanitize_event(EXAMPLE)
    assert clean is not None
    assert clean["event"]["fields"] == EXAMPLE["event"]["fields"]  # type: ignore[index]
    assert clean["appVersion"] == "0.4.0" and clean["appBuild"] == "123"
    assert clean["event"]["timestamp"] == "2026-02-19T02:00:00Z"
    now = [0]
    trace = Trace(clock=lambda: now[0])
    now[0] = 5_000_000
    trace.finish()
    ours = pipeline_timing_event(
        trace, processing_level="raw", original_bytes=10, encoded_bytes=5, app_version="1.2.3", app_build="7"
    )
    again = sanitize_event(ours)
    assert again is not None and again["event"]["fields"] == ours["event"]["fields"]  # one definition
    assert again["event"]["sessionID"] == ours["event"]["sessionID"]  # a UUID is kept as it is


def test_a_planted_canary_never_reaches_the_server(ingest: tuple[str, type[_Ingest]]) -> None:
    url, handler = ingest
    event = json.loads(json.dumps(EXAMPLE))
    event["transcript"] = TEXT_CANARY
    event["apiKey"] = CANARY
    event["appVersion"] = f"1.0 {CANARY}"
    event["appBuild"] = CANARY
    event["osVersion"] = f"macOS {CANARY}"
    event["event"]["sessionID"] = CANARY
    event["event"]["note"] = TEXT_CANARY
    event["event"]["fields"].update(text=TEXT_CANARY, key=CANARY, stt_ms=TEXT_CANARY, processing_level=CANARY)
    client = TelemetryClient(url, start=False)
    assert client.record(event)
    client.flush()
    (headers, body) = handler.received[0]
    raw = gzip.decompress(body).decode()
    assert "CANARY" not in raw and "patient" not in raw
    (line,) = _lines(body)
    assert set(line["event"]["fields"]) == set(EXAMPLE["event"]["fields"]) - {"stt_ms", "processing_level"}
    assert headers["Content-Encoding"] == "gzip" and headers["Content-Type"] == "application/x-ndjson"


def test_batches_are_sized_and_a_retried_batch_keeps_its_id(ingest: tuple[str, type[_Ingest]]) -> None:
    url, handler = ingest
    handler.statuses = [(503, "7"), (429, None)]  # then accepted
    slept: list[float] = []
    client = TelemetryClient(url, batch_size=3, backoff_s=0.25, sleep=slept.append, start=False)
    for _ in range(5):
        assert client.record(EXAMPLE)
    client.flush()
    assert slept == [7.0, 0.5]  # Retry-After honoured, then exponential backoff (0.25 × 2)
    ids = [h["X-Voxperf-Batch-Id"] for h, _ in handler.received]
    assert len(ids) == 4 and ids[0] == ids[1] == ids[2] != ids[3]  # 3 tries of batch 1, batch 2 once
    assert [len(_lines(b)) for _, b in handler.received] == [3, 3, 3, 2]
    assert client.sent == 5 and client.retries == 2 and client.failed_batches == 0


def test_a_client_error_is_not_retried_and_a_dead_server_is_given_up_on(
    ingest: tuple[str, type[_Ingest]],
) -> None:
    url, handler = ingest
    handler.statuses = [(400, None)]
    slept: list[float] = []
    client = TelemetryClient(url, max_retries=3, sleep=slept.append, start=False)
    client.record(EXAMPLE)
    client.flush()
    assert len(handler.received) == 1 and slept == [] and client.failed_batches == 1
    dead = TelemetryClient("http://127.0.0.1:9/v1/telemetry", max_retries=2, sleep=slept.append, start=False)
    dead.record(EXAMPLE)
    dead.flush()
    assert dead.failed_batches == 1 and dead.retries == 2 and slept == [0.5, 1.0]


def test_a_full_queue_drops_and_counts_instead_of_blocking_the_app() -> None:
    calls: list[bytes] = []

    def transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        calls.append(body)
        return Response(202)

    client = TelemetryClient("http://x", max_queue=2, transport=transport, start=False)
    accepted = [client.record(EXAMPLE) for _ in range(5)]
    assert accepted == [True, True, False, False, False] and client.dropped == 3
    assert client.record({"event": {"name": "keystrokes"}}) is False and client.rejected == 1
    client.flush()
    assert client.sent == 2 and len(calls) == 1


def test_the_background_thread_sends_without_being_asked(ingest: tuple[str, type[_Ingest]]) -> None:
    url, handler = ingest
    client = TelemetryClient(url, batch_size=2, flush_interval_s=600)  # the interval never elapses here
    client.record(EXAMPLE)
    client.record(EXAMPLE)  # a full batch wakes the sender
    deadline = time.monotonic() + 30
    while not handler.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(len(_lines(b)) for _, b in handler.received) == 2  # sent before anyone flushed
    client.close(timeout_s=10)
    assert client.sent == 2


def test_odd_values_are_repaired_or_dropped_never_raised() -> None:
    from datetime import UTC, datetime

    event = {
        "appVersion": "v1.2.0",
        "appBuild": "nightly build",
        "event": {
            "timestamp": "2026-12-01T01:00:00.5+01:00",
            "name": "speech_timing",
            "fields": {
                "ttfa_ms": 10**400,
                "server_ms": float("nan"),
                "first_byte_ms": 2e15,
                "provider": "piper\n",
            },
        },
    }
    clean = sanitize_event(event)
    assert clean is not None
    assert clean["appVersion"] == "1.2.0" and clean["appBuild"] == "0"
    assert clean["event"]["timestamp"] == "2026-12-01T00:00:00.500Z"  # the same instant, in UTC
    assert clean["event"]["fields"] == {}  # too big, not a number, not an identifier
    assert clean["event"]["sessionID"]  # a missing session becomes the event's own
    assert sanitize_event({**event, "appVersion": "dev"})["appVersion"] == "unknown"  # type: ignore[index]
    stamp = sanitize_event({"event": {"name": "pipeline_timing", "timestamp": "yesterday"}})
    assert stamp is not None
    assert abs(datetime.fromisoformat(stamp["event"]["timestamp"]) - datetime.now(UTC)).total_seconds() < 60


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["appVersion", "appBuild", "osVersion", "schemaVersion", "junk"]),
        st.one_of(st.text(max_size=30), st.integers(), st.none(), st.floats()),
    ),
    st.sampled_from(["pipeline_timing", "speech_timing"]),
    st.dictionaries(
        st.sampled_from(["ttfa_ms", "stt_ms", "provider", "cache", "outcome", "processing_level", "x"]),
        st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none()),
    ),
    st.one_of(st.none(), st.text(max_size=40)),
)
def test_whatever_the_app_passes_what_is_queued_is_accepted_by_the_server(
    envelope: dict[str, Any], name: str, fields: dict[str, Any], stamp: str | None
) -> None:
    from voxperf.telemetry.ingest import parse_batch

    clean = sanitize_event({**envelope, "event": {"name": name, "timestamp": stamp, "fields": fields}})
    assert clean is not None
    batch = parse_batch(json.dumps(clean).encode())
    assert batch.errors == [] and batch.rows == 1  # record() never queues a line the server refuses
