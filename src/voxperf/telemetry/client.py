"""The opt-in uploader an app embeds: events in, gzip NDJSON batches out, never blocking the app.

* **Opt-in.** :meth:`TelemetryClient.from_env` returns ``None`` unless ``VOXPERF_INGEST_URL`` (or
  the dictation app's ``VOX_PERF_INGEST_URL``) is set.
* **Privacy by allow-list.** :func:`sanitize_event` rebuilds every event from the fields the event
  model allows (:mod:`voxperf.telemetry.model`: ``pipeline_timing``, the definition bench and
  serve write, and ``speech_timing``), with typed values; anything else (a transcript, a key, a
  stray field) is dropped before the event is queued, so it cannot be sent.
* **Never in the app's way.** :meth:`TelemetryClient.record` puts the event on a bounded queue and
  returns; when the queue is full the event is dropped and counted. A background thread sends
  batches (by size or after ``flush_interval_s``), gzip-compressed, each with an idempotent batch id
  (kept across retries so the server can store it exactly once).
* **Retries only where they help**: on 429 and 5xx (honouring ``Retry-After``) and on a failed
  connection, with exponential backoff, ``max_retries`` times; a 4xx is the client's mistake and is
  not repeated.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import platform
import queue
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voxperf.telemetry.model import EVENTS, IDENTIFIER_PATTERN, MAX_NUMBER, FieldSpec
from voxperf.trace.export import PIPELINE_TIMING_SCHEMA_VERSION

__all__ = [
    "EVENT_FIELDS",
    "INGEST_ENV",
    "Response",
    "TelemetryClient",
    "TimingLogForwarder",
    "sanitize_event",
    "speech_event",
]

INGEST_ENV = ("VOXPERF_INGEST_URL", "VOX_PERF_INGEST_URL")
KEY_ENV = "VOXPERF_INGEST_KEY"

# event name -> its fields: the allow-list (the one event model, shared with ingest and the exporter)
EVENT_FIELDS: dict[str, dict[str, FieldSpec]] = {
    name: {f.name: f for f in specs} for name, specs in EVENTS.items()
}
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
# what may travel, by shape: a version starts with a digit (a key or a sentence cannot pass), a
# build is a number or a commit hash, the OS is this machine's own (the app's value is not used)
_VERSION = re.compile(r"\d+(\.\d+){0,3}([-+][0-9A-Za-z.]{1,20})?")
_BUILD = re.compile(r"\d{1,12}|[0-9a-f]{7,40}")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SESSION_NS = uuid.UUID("6f1d3c52-9a4e-4b7c-8f1e-2d5a7c9b0e13")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _value(spec: FieldSpec, value: object) -> object | None:
    if spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(value, int) and not 0 <= value <= MAX_NUMBER:  # before float(): 10**400 overflows
            return None
        number = float(value)
        if not math.isfinite(number) or not 0 <= number <= MAX_NUMBER:
            return None
        return int(number) if number.is_integer() else number
    if spec.kind == "choice":
        return value if isinstance(value, str) and value in spec.choices else None
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None


def _timestamp(value: object) -> str:
    """An ISO-8601 time with a zone as UTC ``...Z`` (ms); anything else is the time of recording."""
    when = None
    if isinstance(value, str) and len(value) <= 40:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            when = None
    if when is None or when.tzinfo is None:
        when = datetime.now(UTC)
    spec = "seconds" if when.microsecond == 0 else "milliseconds"
    return when.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def sanitize_event(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event rebuilt from allowed fields only (None when it is not an event voxperf knows).

    Free text never survives: versions and builds must look like versions and builds, fields must
    be numbers (or a known processing level), the OS is this machine's, and a session id that is
    not a UUID is replaced by a UUID derived from it (events of a session still group; whatever
    the app put there is not sent)."""
    inner = event.get("event")
    if not isinstance(inner, Mapping):
        return None
    name = inner.get("name")
    allowed = EVENT_FIELDS.get(name) if isinstance(name, str) else None
    if allowed is None:
        return None
    fields_in = inner.get("fields")
    fields: dict[str, object] = {}
    if isinstance(fields_in, Mapping):
        for key, spec in allowed.items():
            value = _value(spec, fields_in.get(key))
            if value is not None:
                fields[key] = value
    out: dict[str, Any] = {"schemaVersion": PIPELINE_TIMING_SCHEMA_VERSION}
    version = event.get("appVersion")
    if isinstance(version, str) and version[:1] in ("v", "V"):
        version = version[1:]  # v1.2.0 is 1.2.0
    out["appVersion"] = version if isinstance(version, str) and _VERSION.fullmatch(version) else "unknown"
    build = event.get("appBuild")
    out["appBuild"] = build if isinstance(build, str) and _BUILD.fullmatch(build) else "0"
    out["osVersion"] = platform.platform(terse=True)[:128]
    session = inner.get("sessionID")
    if not isinstance(session, str) or not session:
        session = str(uuid.uuid4())  # one event, its own session
    elif not _UUID.fullmatch(session.lower()):
        session = str(uuid.uuid5(_SESSION_NS, session))
    out["event"] = {
        "timestamp": _timestamp(inner.get("timestamp")),
        "name": name,
        "sessionID": session.lower(),
        "fields": fields,
    }
    return out


@dataclass(frozen=True, slots=True)
class Response:
    """What a transport got back: the status (0 when no answer came) and Retry-After, if any."""

    status: int
    retry_after_s: float | None = None


Transport = Callable[[str, bytes, dict[str, str], float], Response]


def http_transport(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Response:
    """POST with urllib (no dependency); connection failures are status 0."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read()
            return Response(answer.status)
    except urllib.error.HTTPError as exc:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        try:
            after = float(retry) if retry is not None else None
        except ValueError:
            after = None
        if after is not None and not (math.isfinite(after) and after >= 0):
            after = None
        return Response(exc.code, after)
    except (urllib.error.URLError, OSError):
        return Response(0)


class TelemetryClient:
    """A background uploader of sanitised events (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        batch_size: int = 1000,
        flush_interval_s: float = 2.0,
        max_queue: int = 10_000,
        timeout_s: float = 5.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        transport: Transport = http_transport,
        sleep: Callable[[float], None] = time.sleep,
        start: bool = True,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.transport = transport
        self.sleep = sleep
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self.sent = self.dropped = self.rejected = self.failed_batches = self.retries = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="voxperf-telemetry", daemon=True)
            self._thread.start()

    @classmethod
    def from_env(cls, **options: Any) -> TelemetryClient | None:
        """A client for the configured ingest URL, or None when telemetry is not switched on."""
        url = next((os.environ[name] for name in INGEST_ENV if os.environ.get(name)), None)
        if url is None:
            return None
        return cls(url, api_key=os.environ.get(KEY_ENV) or None, **options)

    def record(self, event: Mapping[str, Any]) -> bool:
        """Queue one event (sanitised first); False when it was not accepted (unknown, or queue full)."""
        clean = sanitize_event(event)
        if clean is None:
            with self._lock:
                self.rejected += 1
            return False
        try:
            self.queue.put_nowait(clean)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False
        if self.queue.qsize() >= self.batch_size:
            self._wake.set()
        return True

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def send_batch(self, batch: list[dict[str, Any]]) -> bool:
        """Send one batch with retries; True when the server accepted it."""
        body = gzip.compress(b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in batch))
        headers = {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
            "X-Voxperf-Batch-Id": uuid.uuid4().hex,  # the same on every retry: stored once
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            answer = self.transport(self.url, body, headers, self.timeout_s)
            if 200 <= answer.status < 300:
                with self._lock:
                    self.sent += len(batch)
                return True
            if answer.status and answer.status not in _RETRY_STATUSES:
                break  # the request is wrong: repeating it cannot help
            if attempt == self.max_retries:
                break
            with self._lock:
                self.retries += 1
            delay = answer.retry_after_s if answer.retry_after_s is not None else self.backoff_s * 2**attempt
            self.sleep(max(0.0, min(delay, 60.0)))  # a server's odd Retry-After cannot stop the thread
        with self._lock:
            self.failed_batches += 1
        return False

    def flush(self) -> None:
        """Send everything queued now (on the caller's thread)."""
        while batch := self._take():
            self.send_batch(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the background thread and send what is left (bounded by ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()


def speech_event(
    line: Mapping[str, Any], *, app_version: str, timestamp: str | None = None
) -> dict[str, Any]:
    """The telemetry ``speech_timing`` event of one line of the service's timing log (the same
    metric definitions: TTFA from request start, streaming efficiency under a real-time player;
    ``server_ms`` is request start to the last byte handed to the transport)."""
    events = line.get("events_ms") or {}
    fields = {
        key: line.get(key)
        for key in ("ttfa_ms", "first_byte_ms", "first_chunk_ms", "streaming_ms", "audio_s", "rtfx", "chunks")
    }
    fields |= {
        "streaming_efficiency": line.get("streaming_efficiency"),
        "server_ms": events.get("REQUEST_COMPLETE"),
        "total_ms": events.get("REQUEST_COMPLETE"),
        "cache": line.get("cache"),
        "provider": line.get("provider"),
        "outcome": "ok" if line.get("completed", True) else "cancelled",
    }
    stamp = timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "schemaVersion": PIPELINE_TIMING_SCHEMA_VERSION,
        "appVersion": app_version,
        "event": {
            "timestamp": stamp,
            "name": "speech_timing",
            "sessionID": str(line.get("request") or uuid.uuid4()),
            "fields": {k: v for k, v in fields.items() if v is not None},
        },
    }


class TimingLogForwarder(logging.Handler):
    """A logging handler on the timing log (``voxperf.timing``) that hands each ``pipeline_timing``
    and ``speech_timing`` line to a :class:`TelemetryClient`: how ``voxperf serve`` reports its own
    requests when ``VOXPERF_INGEST_URL`` is set. Never raises into the logging call."""

    def __init__(self, client: TelemetryClient, *, app_version: str) -> None:
        super().__init__(logging.INFO)
        self.client = client
        self.app_version = app_version

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.loads(record.getMessage())
        except (ValueError, TypeError):
            return
        if not isinstance(line, dict):
            return
        if isinstance(line.get("event"), dict):  # already an envelope (pipeline_timing)
            self.client.record(line)
        elif line.get("name") == "speech_timing":
            self.client.record(speech_event(line, app_version=self.app_version))
