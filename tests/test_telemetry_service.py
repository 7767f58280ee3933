"""The telemetry service over HTTP: partial success with line numbers, idempotent batches, tenants,
429 when busy, bounded bodies, OTLP/HTTP JSON traces onto the same events, /metrics histograms
equal to the events, and the uploader → a real server → store path with a privacy canary."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from voxperf.telemetry.client import TelemetryClient
from voxperf.telemetry.ingest import MAX_BODY_BYTES
from voxperf.telemetry.prometheus import LATENCY_BUCKETS_S
from voxperf.telemetry.server import TelemetrySettings, create_telemetry_app
from voxperf.telemetry.store import HOUR_MS, Query, TelemetryStore

from .conftest import TELEMETRY_EXAMPLE, run_cli, serve_app, telemetry_line

T0 = 1_796_083_200_000
NOW_S = (T0 + 6 * HOUR_MS) / 1000


def app_for(**settings: Any) -> tuple[FastAPI, TelemetryStore]:
    store = TelemetryStore(":memory:", clock=lambda: NOW_S)
    app = create_telemetry_app(
        TelemetrySettings(**settings), store=store, clock=lambda: NOW_S, background=False, own_store=True
    )
    return app, store


@pytest.fixture
def client() -> Iterator[TestClient]:
    app, _ = app_for()
    with TestClient(app) as c:
        yield c


def speech(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ttfa = np.round(rng.lognormal(6.3, 0.5, n), 3)
    lines = [
        telemetry_line(
            "speech_timing",
            T0 + int(rng.integers(0, 6 * HOUR_MS)),
            session=f"{seed}-{i}",
            ttfa_ms=float(ttfa[i]),
            provider="piper",
            cache="miss",
            outcome="ok",
        )
        for i in range(n)
    ]
    return lines, ttfa


def test_the_documented_example_line_is_accepted_verbatim_and_stored_as_sent(client: TestClient) -> None:
    line = json.dumps(TELEMETRY_EXAMPLE, indent=None)
    answer = client.post(
        "/v1/telemetry", content=line.encode(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1 and answer.json()["errors"] == []
    stamp = 1_771_466_400_000  # 2026-02-19T02:00:00Z
    stored = client.get(
        "/v1/telemetry/slowest", params={"metric": "stt_ms", "start_ms": stamp, "end_ms": stamp + 1}
    ).json()["events"]
    fields = TELEMETRY_EXAMPLE["event"]["fields"]
    assert stored[0]["stt_ms"] == fields["stt_ms"]
    assert stored[0]["processing_level"] == fields["processing_level"]
    assert stored[0]["session_id"] == TELEMETRY_EXAMPLE["event"]["sessionID"]
    assert stored[0]["app_version"] == TELEMETRY_EXAMPLE["appVersion"]
    assert stored[0]["os_version"] == TELEMETRY_EXAMPLE["osVersion"]


def test_partial_success_reports_every_bad_line_by_number(client: TestClient) -> None:
    lines, _ = speech(1000)
    bad = sorted(random.Random(3).sample(range(1000), 10))
    for k, i in enumerate(bad):
        lines[i] = ["{broken", lines[i].replace('"ttfa_ms": ', '"ttfa_ms": -')][k % 2]
    body = gzip.compress("\n".join(lines).encode())
    answer = client.post("/v1/telemetry", content=body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200
    got = answer.json()
    assert (got["accepted"], got["rejected"]) == (990, 10)
    assert [e["line"] for e in got["errors"]] == [i + 1 for i in bad]
    assert all(e["reason"] for e in got["errors"])
    summary = client.get("/v1/telemetry/summary", params={"window": "7h"}).json()["metrics"]
    assert summary["ttfa_ms"]["count"] == 990


def test_a_retried_batch_is_stored_once(client: TestClient) -> None:
    lines, ttfa = speech(300, seed=1)
    body = "\n".join(lines).encode()
    first = client.post("/v1/telemetry", content=body, headers={"X-Voxperf-Batch-Id": "abc-1"}).json()
    again = client.post("/v1/telemetry", content=body, headers={"X-Voxperf-Batch-Id": "abc-1"}).json()
    unnamed = [client.post("/v1/telemetry", content=body).json() for _ in range(2)]  # id = body hash
    assert (first["duplicate"], again["duplicate"], again["accepted"]) == (False, True, 300)
    assert [u["duplicate"] for u in unnamed] == [False, True]
    summary = client.get("/v1/telemetry/summary", params={"window": "7h"}).json()["metrics"]
    assert summary["ttfa_ms"]["count"] == 600  # the named batch once, the unnamed one once
    assert summary["ttfa_ms"]["p95"] == pytest.approx(np.percentile(np.concatenate([ttfa, ttfa]), 95))


def test_client_mistakes_are_4xx_with_one_line_each(client: TestClient) -> None:
    cases = [
        (b"{bad", {}, 400, "no valid line"),
        (b"x", {"Content-Encoding": "br"}, 415, "not supported"),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (b"x" * (MAX_BODY_BYTES + 1), {}, 413, "larger than"),
        (b"{}", {"X-Voxperf-Batch-Id": "a b"}, 400, "batch id"),
    ]
    for body, headers, status, words in cases:
        answer = client.post("/v1/telemetry", content=body, headers=headers)
        assert answer.status_code == status, (words, answer.text)
        assert words in answer.json()["error"]["message"]
    assert client.get("/v1/telemetry/series", params={"window": "7x"}).status_code == 400
    assert client.get("/v1/telemetry/series", params={"metric": "wpm"}).status_code == 400
    assert client.get("/v1/telemetry/summary", params={"window": "1h", "bucket": "0s"}).status_code == 400


def test_tenants_see_only_their_own_events() -> None:
    app, _ = app_for(api_keys=["acme:key-a", "globex:key-b"])
    lines, _ = speech(50)
    with TestClient(app) as c:
        assert c.post("/v1/telemetry", content=lines[0].encode()).status_code == 401
        wrong = c.post("/v1/telemetry", content=lines[0].encode(), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        assert c.post("/v1/telemetry", content="\n".join(lines).encode(), headers=a).json()["accepted"] == 50
        count = lambda h: c.get("/v1/telemetry/summary", params={"window": "7h"}, headers=h).json()  # noqa: E731
        assert count(a)["metrics"]["ttfa_ms"]["count"] == 50
        assert count(b)["metrics"]["ttfa_ms"]["count"] == 0
        assert c.get("/v1/alerts").status_code == 401


def test_a_busy_server_answers_429_with_retry_after() -> None:
    app, _ = app_for(max_inflight=1)
    with TestClient(app) as c:
        give_back = app.state.telemetry.ingesting.claim()  # one batch is being stored
        try:
            busy = c.post("/v1/telemetry", content=speech(1)[0][0].encode())
        finally:
            give_back()
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert c.post("/v1/telemetry", content=speech(1)[0][0].encode()).status_code == 200


def _otlp(trace_id: str, start_ns: int, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                **s,
                                "startTimeUnixNano": str(start_ns + s.pop("t0")),
                                "endTimeUnixNano": str(start_ns + s.pop("t1")),
                            }
                            for s in spans
                        ]
                    }
                ]
            }
        ]
    }


def test_otlp_traces_become_the_same_events() -> None:
    app, _ = app_for()
    start = T0 * 1_000_000 + 3600 * 10**9
    ms = 1_000_000
    speech_trace = _otlp(
        "a" * 32,
        start,
        [
            {
                "spanId": "1" * 16,
                "name": "tts.request",
                "t0": 0,
                "t1": 900 * ms,
                "attributes": [
                    {"key": "voxperf.provider", "value": {"stringValue": "piper"}},
                    {"key": "voxperf.app_version", "value": {"stringValue": "2.0.0"}},
                    {"key": "gen_ai.prompt", "value": {"stringValue": "CANARY text"}},
                ],
                "events": [
                    {"name": "FIRST_BYTE_RECEIVED", "timeUnixNano": str(start + 250 * ms)},
                    {"name": "FIRST_AUDIO_CHUNK", "timeUnixNano": str(start + 310 * ms)},
                ],
            },
            {
                "spanId": "2" * 16,
                "parentSpanId": "1" * 16,
                "name": "synthesize",
                "t0": 10 * ms,
                "t1": 300 * ms,
            },
        ],
    )
    dictation_trace = _otlp(
        "b" * 32,
        start,
        [
            {"spanId": "3" * 16, "name": "dictation", "t0": 0, "t1": 1000 * ms},
            {"spanId": "4" * 16, "parentSpanId": "3" * 16, "name": "stt", "t0": 100 * ms, "t1": 700 * ms},
        ],
    )
    other = _otlp("c" * 32, start, [{"spanId": "5" * 16, "name": "db.query", "t0": 0, "t1": ms}])
    docs = [speech_trace, dictation_trace, other]
    body = "\n".join(json.dumps(d) for d in docs).encode()
    with TestClient(app) as c:
        answer = c.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        assert answer.json()["partialSuccess"]["rejectedSpans"] == "1"  # the db trace
        window = {"window": "2h", "end_ms": T0 + 2 * HOUR_MS}
        slow = c.get("/v1/telemetry/slowest", params={**window, "metric": "ttfa_ms"}).json()["events"]
        assert slow[0]["ttfa_ms"] == 310.0  # from the request's start, not the chunk's
        assert slow[0]["provider"] == "piper" and slow[0]["app_version"] == "2.0.0"
        stt = c.get("/v1/telemetry/slowest", params={**window, "metric": "stt_ms"}).json()["events"]
        assert stt[0]["stt_ms"] == 600.0
        assert "CANARY" not in json.dumps(slow)
        assert c.post("/v1/traces", content=b'{"nope": 1}').status_code == 400


def test_metrics_histograms_count_the_ingested_events(client: TestClient) -> None:
    lines, ttfa = speech(400, seed=9)
    client.post("/v1/telemetry", content="\n".join(lines).encode())
    text = client.get("/metrics").text
    buckets = {
        float(le): float(n)
        for le, n in re.findall(
            r'voxperf_telemetry_ttfa_seconds_bucket\{le="([0-9.e+-]+)"\} ([0-9.e+]+)', text
        )
    }
    for le in LATENCY_BUCKETS_S:
        assert buckets[le] == (ttfa / 1000 <= le).sum()
    assert re.search(r"voxperf_telemetry_ttfa_seconds_count ([0-9.e+]+)", text).group(1) == "400.0"  # type: ignore[union-attr]
    assert 'voxperf_telemetry_events_total{event="speech_timing",outcome="ok"} 400.0' in text


def test_the_uploader_to_a_real_server_stores_events_and_never_sends_the_canary() -> None:
    received: list[bytes] = []
    app, _ = app_for()

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def tap() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                received.append(message.get("body", b""))
            return message

        await app(scope, tap if scope["type"] == "http" else receive, send)

    for url in serve_app(None, None, app=recording):  # type: ignore[arg-type]
        uploader = TelemetryClient(f"{url}/v1/telemetry", start=False)
        event = json.loads(telemetry_line("speech_timing", T0 + 1000, ttfa_ms=420.0, provider="piper"))
        event["event"]["fields"]["transcript"] = "CANARY the patient's words"
        event["apiKey"] = "sk-CANARY"
        event["event"]["sessionID"] = "CANARY-session"
        for _ in range(25):
            assert uploader.record(event)
        uploader.flush()
        assert uploader.sent == 25 and uploader.failed_batches == 0
        summary = httpx.get(f"{url}/v1/telemetry/summary", params={"window": "7h"}).json()
        assert summary["metrics"]["ttfa_ms"]["count"] == 25
    wire = gzip.decompress(b"".join(received))
    assert b"ttfa_ms" in wire and b"CANARY" not in wire


def test_voxperf_telemetry_serve_refuses_a_bad_store_in_one_line(tmp_path: Any) -> None:
    bad = tmp_path / "not-a-db.duckdb"
    bad.write_bytes(b"this is not a DuckDB file" * 100)
    done = run_cli("telemetry", "serve", "--store", str(bad), "--port", "1")
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: cannot open the telemetry store") and "Traceback" not in done.stderr


def test_voxperf_serve_reports_its_own_requests_when_an_ingest_url_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import logging

    from voxperf.service.runtime import ServiceEngines
    from voxperf.service.settings import ServiceSettings
    from voxperf.trace.export import TIMING_LOGGER

    lines: list[dict[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(record.getMessage()))

    capture = Capture()
    logging.getLogger(TIMING_LOGGER).addHandler(capture)
    telemetry = create_telemetry_app(  # on the real clock: the service stamps its events now
        TelemetrySettings(), store=TelemetryStore(":memory:"), background=False, own_store=True
    )
    try:
        for ingest_url in serve_app(None, None, app=telemetry):  # type: ignore[arg-type]
            monkeypatch.setenv("VOXPERF_INGEST_URL", f"{ingest_url}/v1/telemetry")
            settings = ServiceSettings(stt_spec="fake", tts_spec="fake", workers=0, job_dir=str(tmp_path))
            engines = ServiceEngines()
            engines.load(settings)
            for voice_url in serve_app(settings, engines):
                for text in ("hello there", "a second phrase to speak", "hello there"):  # one cache hit
                    answer = httpx.post(f"{voice_url}/v1/audio/speech", json={"input": text})
                    assert answer.status_code == 200
            # the voice service has stopped: its uploader flushed on shutdown
            summary = httpx.get(f"{ingest_url}/v1/telemetry/summary", params={"window": "1h"}).json()
            slow = httpx.get(
                f"{ingest_url}/v1/telemetry/slowest", params={"window": "1h", "metric": "server_ms"}
            )
    finally:
        logging.getLogger(TIMING_LOGGER).removeHandler(capture)
    spoken = [line for line in lines if line.get("name") == "speech_timing"]
    assert len(spoken) == 3
    metrics = summary["metrics"]
    assert metrics["server_ms"]["count"] == 3
    assert metrics["cache_hit_rate"]["value"] == pytest.approx(1 / 3)
    assert metrics["ttfa_ms"]["count"] == sum(1 for line in spoken if line.get("ttfa_ms") is not None)
    stored = sorted(e["server_ms"] for e in slow.json()["events"])
    assert stored == sorted(line["events_ms"]["REQUEST_COMPLETE"] for line in spoken)  # the same numbers
    assert {e["provider"] for e in slow.json()["events"]} == {"fake"}


def test_one_bad_batch_in_a_group_commit_fails_alone() -> None:
    from voxperf.telemetry.ingest import IngestError
    from voxperf.telemetry.prometheus import TelemetryMetrics
    from voxperf.telemetry.server import GroupWriter

    store = TelemetryStore(":memory:", clock=lambda: NOW_S)
    writer = GroupWriter(store, TelemetryMetrics(), in_flight=lambda: 3, linger_s=5.0)
    lines, _ = speech(20)
    good = writer.submit("\n".join(lines).encode(), None, "good", "")
    bad = writer.submit(b"not gzip", "gzip", "bad", "")
    same = writer.submit("\n".join(lines).encode(), None, "good", "")  # a resend racing its original
    try:
        batch, receipt = good.result(timeout=30)
        assert (receipt.accepted, receipt.duplicate) == (20, False) and batch.rows == 20
        with pytest.raises(IngestError, match="not valid gzip"):
            bad.result(timeout=30)
        assert same.result(timeout=30)[1].duplicate
    finally:
        writer.stop()
    assert store.count(Query(T0, T0 + 7 * HOUR_MS)) == 20


def test_a_failing_store_is_a_503_the_client_retries_and_nothing_is_half_stored() -> None:
    app, store = app_for()
    lines, _ = speech(10)
    body = "\n".join(lines).encode()
    with TestClient(app) as c:
        real = store.ingest_many

        def full_disk(items: Any) -> Any:
            raise OSError(28, "No space left on device")

        store.ingest_many = full_disk  # type: ignore[method-assign]
        failed = c.post("/v1/telemetry", content=body, headers={"X-Voxperf-Batch-Id": "r1"})
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "5"
        assert "could not take the batch" in failed.json()["error"]["message"]
        store.ingest_many = real  # type: ignore[method-assign]
        retried = c.post("/v1/telemetry", content=body, headers={"X-Voxperf-Batch-Id": "r1"})
        assert retried.status_code == 200 and retried.json()["duplicate"] is False
        assert (
            c.get("/v1/telemetry/summary", params={"window": "7h"}).json()["metrics"]["ttfa_ms"]["count"]
            == 10
        )


def _start_telemetry(store: str, port: int, log: Any) -> Any:
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import wait_until_up

    voxperf = str(Path(sys.executable).parent / "voxperf")
    proc = subprocess.Popen(
        [voxperf, "telemetry", "serve", "--port", str(port), "--store", store],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    wait_until_up(proc, f"http://127.0.0.1:{port}/healthz")
    return proc


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_batch(tmp_path: Any) -> None:
    import signal

    from .conftest import free_port

    path = str(tmp_path / "t.duckdb")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/telemetry"
    log = (tmp_path / "server.log").open("wb")
    proc = _start_telemetry(path, port, log)
    acknowledged = 0
    try:
        for k in range(20):
            lines, _ = speech(100, seed=100 + k)
            answer = httpx.post(
                url, content="\n".join(lines).encode(), headers={"X-Voxperf-Batch-Id": f"k{k}"}
            )
            assert answer.status_code == 200
            acknowledged += answer.json()["accepted"]
        proc.send_signal(signal.SIGKILL)  # no shutdown, no checkpoint: only the write-ahead log is left
        proc.wait()
        proc = _start_telemetry(path, port, log)
        lines, _ = speech(100, seed=100)  # the first batch again, as a client that never saw its answer
        again = httpx.post(url, content="\n".join(lines).encode(), headers={"X-Voxperf-Batch-Id": "k0"})
        assert again.json()["duplicate"] is True
    finally:
        proc.terminate()
        proc.wait()
    store = TelemetryStore(path)
    try:
        assert store.count(Query(T0, T0 + 7 * HOUR_MS)) == acknowledged == 2000
    finally:
        store.close()


def test_the_service_on_postgresql(tmp_path: Any) -> None:
    from .conftest import PG_URL, drop_schema, pg_url, postgres_schema

    schema = postgres_schema()
    if schema is None:
        pytest.skip(f"no PostgreSQL at {PG_URL} (set VOXPERF_TEST_POSTGRES_URL)")
    try:
        store = TelemetryStore(pg_url(schema), clock=lambda: NOW_S)
        app = create_telemetry_app(
            TelemetrySettings(), store=store, clock=lambda: NOW_S, background=False, own_store=True
        )
        lines, ttfa = speech(500, seed=31)
        body = gzip.compress("\n".join([*lines, "{broken"]).encode())
        with TestClient(app) as c:
            headers = {"Content-Encoding": "gzip", "X-Voxperf-Batch-Id": "pg-1"}
            first = c.post("/v1/telemetry", content=body, headers=headers).json()
            again = c.post("/v1/telemetry", content=body, headers=headers).json()
            assert (first["accepted"], first["rejected"], again["duplicate"]) == (500, 1, True)
            assert first["errors"] == [{"line": 501, "reason": first["errors"][0]["reason"]}]
            summary = c.get("/v1/telemetry/summary", params={"window": "7h"}).json()["metrics"]["ttfa_ms"]
            assert summary["count"] == 500
            assert summary["p95"] == pytest.approx(np.percentile(ttfa, 95), rel=1e-9)
            assert c.get("/v1/telemetry/series", params={"stats": ""}).status_code == 400
            assert c.get("/v1/telemetry/summary", params={"window": "7h"}).status_code == 200  # still usable
    finally:
        drop_schema(schema)


def test_an_endless_chunked_body_is_cut_off_at_the_bound() -> None:
    app, _ = app_for()
    sent = [0]

    def endless() -> Any:
        chunk = b"x" * 65536
        while sent[0] < 4 * MAX_BODY_BYTES:  # no Content-Length: only the streamed size can say
            sent[0] += len(chunk)
            yield chunk

    for url in serve_app(None, None, app=app):  # type: ignore[arg-type]
        try:
            answer = httpx.post(f"{url}/v1/telemetry", content=endless(), timeout=30)
            status = answer.status_code
        except httpx.HTTPError:  # the server answered and closed while the client was still sending
            status = 413
        assert status == 413  # (uvicorn drains what the client still sends; the app keeps none of it)
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_settings_come_from_flags_then_the_environment_and_a_bad_one_is_named() -> None:
    from voxperf.errors import UsageError
    from voxperf.telemetry.server import load_settings

    env = {"VOXPERF_TELEMETRY_API_KEYS": "acme:k1, globex:k2", "VOXPERF_TELEMETRY_RAW_DAYS": "7"}
    got = load_settings({"raw_days": 3.0, "store": None}, env=env)
    assert got.api_keys == ["acme:k1", "globex:k2"] and got.raw_days == 3.0  # the flag wins
    with pytest.raises(UsageError, match="bad VOXPERF_TELEMETRY_MAX_INFLIGHT"):
        load_settings({}, env={"VOXPERF_TELEMETRY_MAX_INFLIGHT": "0"})
