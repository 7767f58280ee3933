"""Where the service's clocks stop, checked against the wire, and where its timing lines go.

The response clock is tested with an injected clock and a fake transport; the service over real
HTTP on loopback with a raw-socket client (no HTTP library between the bytes and the stopwatch),
and ``voxperf serve`` as a real process whose stderr is read. No assertion depends on how long
anything took: only on the order of events and on two records agreeing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voxperf import __version__
from voxperf.service.app import ServiceSettings
from voxperf.service.timing import ResponseClock, ResponseClockMiddleware, response_clock
from voxperf.trace.core import Trace
from voxperf.trace.export import (
    PIPELINE_TIMING_FIELDS,
    TIMING_LOGGER,
    configure_timing_log,
    pipeline_timing_event,
)

from .conftest import fake_engines, free_port, serve_app, start_serve, tone

PHRASE = "First sentence here. A second one. And a third."


# -- the response clock, on an injected clock ---------------------------------------------------------


class FakeClock:
    """A nanosecond clock that only moves when told to (the fake transport moves it)."""

    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def _run_middleware(
    messages: list[dict[str, Any]], *, raise_after: bool = False
) -> tuple[ResponseClock, list[tuple[str, int]], list[str]]:
    """Drive ResponseClockMiddleware around an app that sends ``messages``; the fake transport's
    send takes 10 ns per message. Returns the clock, (message type, time send was entered), and the
    order in which the endpoint callback and on_response ran."""
    clock = FakeClock()
    sent: list[tuple[str, int]] = []
    calls: list[str] = []
    seen: list[ResponseClock] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        rc = response_clock(scope)
        seen.append(rc)
        rc.on_complete(lambda _rc: calls.append("endpoint"))
        for message in messages:
            await send(message)
        if raise_after:
            raise RuntimeError("engine crashed")

    async def transport_send(message: dict[str, Any]) -> None:
        sent.append((message["type"], clock.now))
        clock.now += 10  # the write happens inside send; the stamp must come after it

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = ResponseClockMiddleware(
        app, on_response=lambda scope, rc: calls.append(f"response {rc.status}"), clock=clock
    )
    try:
        asyncio.run(middleware({"type": "http", "path": "/"}, receive, transport_send))
    except RuntimeError:
        assert raise_after
    return seen[0], sent, calls


def test_first_body_byte_is_stamped_after_the_transport_took_it() -> None:
    rc, sent, calls = _run_middleware(
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": b"", "more_body": True},  # no byte yet
            {"type": "http.response.body", "body": b"RIFF....", "more_body": True},
            {"type": "http.response.body", "body": b"more", "more_body": True},
            {"type": "http.response.body", "body": b"", "more_body": False},
        ]
    )
    assert [t for _, t in sent] == [1_000, 1_010, 1_020, 1_030, 1_040]
    assert rc.start_ns == 1_000 and rc.status == 200
    assert rc.headers_ns == 1_010  # after the headers' send returned: not a first byte
    assert rc.first_body_ns == 1_030  # after the send of the first bytes returned
    assert rc.end_ns == 1_050 and rc.completed
    assert calls == ["endpoint", "response 200"]  # once each, the endpoint's record first


def test_a_response_that_never_completes_is_still_recorded_once() -> None:
    rc, _, calls = _run_middleware([], raise_after=True)
    assert rc.status is None and rc.first_body_ns is None and not rc.completed
    assert rc.end_ns == rc.start_ns  # the fake clock did not move: no response was sent
    assert calls == ["endpoint", "response None"]


def test_timing_log_handler_is_installed_once_and_only_when_needed() -> None:
    logger = logging.getLogger(TIMING_LOGGER)
    root = logging.getLogger()
    saved = (logger.handlers[:], logger.level, logger.propagate, root.handlers[:])
    try:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        root.handlers.clear()  # as under uvicorn's default logging: nobody handles voxperf.timing
        handler = configure_timing_log()
        assert handler is not None and logger.handlers == [handler] and not logger.propagate
        assert configure_timing_log() is None and logger.handlers == [handler]  # no duplicate lines
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        root.addHandler(logging.NullHandler())  # the user configured logging: leave it to them
        assert configure_timing_log() is None and not logger.handlers
        assert logger.isEnabledFor(logging.INFO)  # but INFO lines are no longer dropped
    finally:
        logger.handlers[:], root.handlers[:] = saved[0], saved[3]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


# -- the service on loopback, a raw-socket client ------------------------------------------------------


def _raw_post(url: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes, int]:
    """POST over a fresh TCP connection (``Connection: close``); returns status, headers, the
    de-chunked body and the client's time to first body byte: request written → the first recv
    that holds a byte past the response headers (connect is not timed)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    data = b""
    first_body_ns: int | None = None
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent_ns = time.perf_counter_ns()
        sock.sendall(request)
        while chunk := sock.recv(1 << 16):
            received_ns = time.perf_counter_ns()
            data += chunk
            if first_body_ns is None and (end := data.find(b"\r\n\r\n")) >= 0 and len(data) > end + 4:
                first_body_ns = received_ns
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    body_out = rest
    if headers.get("transfer-encoding") == "chunked":
        body_out, pos = b"", 0
        while (size := int(rest[pos : rest.index(b"\r\n", pos)], 16)) > 0:
            start = rest.index(b"\r\n", pos) + 2
            body_out += rest[start : start + size]
            pos = start + size + 2
    assert first_body_ns is not None, data[:200]
    return int(lines[0].split()[1]), headers, body_out, first_body_ns - sent_ns


def _samples(
    url: str, headers: dict[str, str] | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    text = response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _speech_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == TIMING_LOGGER]
    return [line for line in lines if line.get("name") == "speech_timing"]


def test_cache_hit_is_timed_to_its_first_body_byte(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=TIMING_LOGGER)
    n = 50
    payload = json.dumps({"input": PHRASE, "response_format": "wav"}).encode()
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):
        status, headers, miss_body, _ = _raw_post(url, "/v1/audio/speech", payload)
        assert status == 200 and headers["server-timing"].startswith("cache;desc=miss;dur=")
        before = _samples(url)
        client_ns = []
        for _ in range(n):
            status, headers, body, ttfb_ns = _raw_post(url, "/v1/audio/speech", payload)
            assert status == 200 and body == miss_body  # the replay is the phrase as first sent
            # the header holds only what was known when it was sent: the lookup, no first-byte time
            assert headers["server-timing"].startswith("cache;desc=hit;dur=")
            assert "first_chunk" not in headers["server-timing"]
            client_ns.append(ttfb_ns)
        after = _samples(url)

    hits = [line for line in _speech_lines(caplog) if line["cache"] == "hit"]
    assert len(hits) == n
    for line in hits:
        events = line["events_ms"]
        assert line["completed"] and line["chunks"] == 3
        assert 0 <= line["cache_lookup_ms"] < line["first_byte_ms"] <= events["REQUEST_COMPLETE"]
    # every hit is in the request histogram, under its endpoint
    request_count = "voxperf_request_duration_seconds_count"
    assert _get(after, request_count, endpoint="speech", code="200") - _get(
        before, request_count, endpoint="speech", code="200"
    ) == float(n)
    # /metrics and the timing lines record the same first-byte times (lines are rounded to 1 µs)
    assert _get(after, "voxperf_tts_first_byte_seconds_count", cache="hit") == float(n)
    metric_sum_ms = 1000 * _get(after, "voxperf_tts_first_byte_seconds_sum", cache="hit")
    assert abs(metric_sum_ms - sum(line["first_byte_ms"] for line in hits)) <= n * 0.0005 + 1e-6
    # the server's interval lies inside the client's: request written → first body byte read
    server_median_ms = statistics.median(line["first_byte_ms"] for line in hits)
    assert server_median_ms <= statistics.median(client_ns) / 1e6


def test_errors_are_in_the_request_histogram(tmp_path: Path) -> None:
    settings = ServiceSettings(job_dir=str(tmp_path), workers=0, max_upload_bytes=1000, api_token="t")
    auth = {"Authorization": "Bearer t"}
    for url in serve_app(settings, fake_engines()):
        assert httpx.post(f"{url}/v1/audio/speech", json={"input": " "}, headers=auth).status_code == 422
        assert httpx.post(f"{url}/v1/audio/speech", json={"input": "hi"}).status_code == 401  # no route yet
        big = {"file": ("a.wav", b"RIFF" + b"\x00" * 2000)}
        assert httpx.post(f"{url}/v1/audio/transcriptions", files=big, headers=auth).status_code == 413
        assert httpx.get(f"{url}/nope").status_code == 404
        assert httpx.get(f"{url}/metrics").status_code == 401  # metrics need a key when keys are set
        samples = _samples(url, auth)
    count = "voxperf_request_duration_seconds_count"
    assert _get(samples, count, endpoint="speech", code="422") == 1.0
    assert _get(samples, count, endpoint="speech", code="401") == 1.0
    assert _get(samples, count, endpoint="transcriptions", code="413") == 1.0
    assert _get(samples, count, endpoint="unmatched", code="404") == 1.0
    assert _get(samples, count, endpoint="prometheus", code="401") == 1.0


# -- voxperf serve as a process: the timing lines on stderr ------------------------------------------------


def _shape(value: Any) -> Any:
    """Key names (in order) and value types, recursively: what two events must share."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__


def test_serve_writes_the_exporters_pipeline_timing_line_on_stderr(tmp_path: Path) -> None:
    canary = "zanzibar-canary-quokka"  # the fake STT's transcript: it must never reach a timing line
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(tmp_path, port, workers=1, stt=f"fake:text={canary}")
    try:
        job = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, data={"level": "clean"}).json()
        undecodable = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 10  # passes the probe, fails to decode
        bad = httpx.post(f"{url}/v1/jobs", files={"file": ("b.wav", undecodable)})
        assert bad.status_code == 422  # decoded once at submission: never queued
        statuses = {}
        for job_id in (job["id"],):
            deadline = time.monotonic() + 30
            while (found := httpx.get(f"{url}/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            statuses[job_id] = found
        assert canary in statuses[job["id"]]["text"].lower()  # the canary went through the pipeline
        sync = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("a.wav", tone())}, timeout=30)
        assert sync.status_code == 200 and canary in sync.json()["text"].lower()
        for _ in range(2):  # a miss, then a hit
            assert httpx.post(f"{url}/v1/audio/speech", json={"input": PHRASE}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    assert canary not in stderr.lower()
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            events.append((line, json.loads(line)))
    timing = [(line, e) for line, e in events if e.get("event", {}).get("name") == "pipeline_timing"]
    # one line per finished dictation: the job and the synchronous request
    job_lines = [e for _, e in timing if e["event"]["sessionID"] == job["id"]]
    assert len(job_lines) == 1 and len(timing) == 2
    reference = pipeline_timing_event(
        Trace().finish(), processing_level="clean", original_bytes=0, encoded_bytes=0, app_version=__version__
    )
    for line, event in timing:
        assert _shape(event) == _shape(reference)  # the exporter's event: same keys, order and types
        assert list(event["event"]["fields"]) == list(PIPELINE_TIMING_FIELDS)
        assert line == json.dumps(event, separators=(",", ":"))  # serialised as bench --events writes
        assert event["appVersion"] == __version__
    fields = job_lines[0]["event"]["fields"]
    assert fields["processing_level"] == "clean"
    assert fields["original_bytes"] == 32_000 and fields["encoded_bytes"] == 0  # 1 s of 16 kHz PCM16
    assert fields["total_ms"] >= fields["stt_ms"] + fields["rewrite_ms"]
    assert {e["event"]["fields"]["processing_level"] for _, e in timing} == {"clean", "raw"}
    speech = [e for _, e in events if e.get("name") == "speech_timing"]
    assert [e["cache"] for e in speech] == ["miss", "hit"]
