"""What one request of a load test does: a small class per scenario, on one base.

A scenario turns a scheduled request into HTTP calls through the generator's client (Locust's
``FastHttpSession``: its statistics, CSV and web UI see every call) and fills in a
:class:`~voxperf.load.sample.LoadSample`: when the first and last bytes came, what went wrong
(by class), the audio it sent or received, its own metrics. Add your own by subclassing
:class:`Scenario` and registering it with :func:`register_scenario`.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from voxperf.load.sample import LoadSample

__all__ = [
    "SCENARIOS",
    "FixtureRef",
    "GetScenario",
    "JobsScenario",
    "Scenario",
    "SpeechScenario",
    "TranscribeScenario",
    "multipart",
    "register_scenario",
]

Clock = Callable[[], int]  # ns since the run's t0


@dataclass(frozen=True, slots=True)
class FixtureRef:
    """An audio fixture a load scenario sends (STT) or a text it asks for (TTS)."""

    name: str
    audio: bytes | None  # encoded file bytes (what is uploaded)
    filename: str
    duration_s: float | None
    text: str | None  # its transcript: WER under load, and the text speech scenarios speak


def multipart(fields: Mapping[str, str], file_field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its Content-Type (what an upload form sends)."""
    boundary = f"voxperf-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for key, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _error_of_status(status: int) -> str | None:
    if 200 <= status < 400:
        return None
    return "http_4xx" if status < 500 else "http_5xx"


class Scenario:
    """Base of the load scenarios: ``run`` sends one request and fills ``sample``.

    ``clock()`` is ns since the run's t0 (the clock of ``sample``'s times). Subclasses set
    ``name``, declare ``defaults`` (their options) and implement :meth:`run`."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    needs_audio: ClassVar[bool] = True  # else: fixtures with a text
    needs_fixtures: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any], fixtures: list[FixtureRef]) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(sorted(unknown))} for scenario {self.name!r}; "
                f"valid: {', '.join(self.defaults) or 'none'}"
            )
        self.options = {**self.defaults, **options}
        usable = [f for f in fixtures if (f.audio is not None if self.needs_audio else f.text)]
        if not usable and self.needs_fixtures:
            what = "audio" if self.needs_audio else "a text"
            raise ValueError(f"scenario {self.name!r} needs fixtures with {what}")
        self.fixtures = usable

    def fixture(self, seq: int) -> FixtureRef:
        """The fixture of request ``seq``: fixtures in turn, the same on every generator."""
        return self.fixtures[seq % len(self.fixtures)]

    def run(self, client: Any, sample: LoadSample, clock: Clock) -> None:
        raise NotImplementedError


class TranscribeScenario(Scenario):
    """OpenAI-compatible ``POST /v1/audio/transcriptions`` (multipart), any server that speaks it."""

    name = "transcribe"
    defaults: ClassVar[dict[str, Any]] = {
        "path": "/v1/audio/transcriptions",
        "model": "whisper-1",
        "timeout_s": 60.0,
    }

    def run(self, client: Any, sample: LoadSample, clock: Clock) -> None:
        fx = self.fixture(sample.seq)
        assert fx.audio is not None
        body, ctype = multipart(
            {"model": str(self.options["model"]), "response_format": "json"}, "file", fx.filename, fx.audio
        )
        sample.fixture, sample.audio_s, sample.bytes_out = fx.name, fx.duration_s, len(body)
        response = client.request(
            "POST",
            self.options["path"],
            data=body,
            headers={"Content-Type": ctype},
            name="transcribe",
            stream=True,
        )
        sample.first_byte_ns = clock()
        content = _read_all(response)
        sample.last_byte_ns = clock()
        sample.status, sample.bytes_in = response.status_code, len(content)
        sample.error = _transport_error(response) or _error_of_status(response.status_code or 0)
        sample.detail = error_detail(response) if sample.error else None
        if sample.error is None:
            try:
                sample.text = str(json.loads(content)["text"])
            except (ValueError, KeyError, TypeError):
                sample.error = "bad_response"


class JobsScenario(Scenario):
    """A job API: multipart upload (``POST /v1/jobs``), then poll ``GET /v1/jobs/{id}`` until done.

    Latency comes from the server's own ``created_at``/``completed_at`` when the job has them
    (``job_ms``: no poll quantisation); the client-side end (``last_byte``) is when a poll saw the
    job finished, so it is bounded by ``poll_interval_s`` and the report labels it so. A job that
    fails, is cancelled or does not finish within ``max_polls`` is a failure: the success rate can
    fall."""

    name = "jobs"
    defaults: ClassVar[dict[str, Any]] = {
        "path": "/v1/jobs",
        "level": "raw",
        "poll_interval_s": 0.1,
        "max_polls": 600,
    }

    def run(self, client: Any, sample: LoadSample, clock: Clock) -> None:
        fx = self.fixture(sample.seq)
        assert fx.audio is not None
        body, ctype = multipart({"level": str(self.options["level"])}, "file", fx.filename, fx.audio)
        sample.fixture, sample.audio_s, sample.bytes_out = fx.name, fx.duration_s, len(body)
        response = client.request(
            "POST", self.options["path"], data=body, headers={"Content-Type": ctype}, name="jobs: upload"
        )
        sample.first_byte_ns = clock()
        sample.status = response.status_code
        error = _transport_error(response) or _error_of_status(response.status_code or 0)
        if error is not None:
            sample.error, sample.detail, sample.last_byte_ns = error, error_detail(response), clock()
            return
        try:
            job = json.loads(response.content)
            job_id = str(job["id"])
        except (ValueError, KeyError, TypeError):
            sample.error, sample.last_byte_ns = "bad_response", clock()
            return
        interval = float(self.options["poll_interval_s"])
        for _ in range(int(self.options["max_polls"])):
            time.sleep(interval)  # cooperative under gevent
            poll = client.request("GET", f"{self.options['path']}/{job_id}", name="jobs: poll")
            if _transport_error(poll) or poll.status_code != 200:
                continue  # a lost poll is retried; the job itself decides the outcome
            try:
                job = json.loads(poll.content)
            except ValueError:
                continue
            status = job.get("status")
            if status in ("done", "failed", "cancelled"):
                sample.last_byte_ns = clock()
                if status != "done":
                    sample.error = "job_failed"
                    return
                sample.text = job.get("text")
                created, completed = job.get("created_at"), job.get("completed_at")
                if isinstance(created, int | float) and isinstance(completed, int | float):
                    sample.metrics["job_ms"] = (completed - created) * 1000  # the server's clock
                    sample.metrics["completed_epoch_s"] = float(completed)
                for key in ("queue_wait_ms", "processing_ms"):
                    if isinstance(job.get(key), int | float):
                        sample.metrics[key] = float(job[key])
                return
        sample.error, sample.last_byte_ns = "job_timeout", clock()


class SpeechScenario(Scenario):
    """Streaming ``POST /v1/audio/speech`` played out in real time at the client.

    ``ttfa_ms`` is from the intended start to the first chunk holding a non-silent sample (as a
    listener hears it, queueing included); chunk gaps and stalls come from a real-time player fed
    by the chunks as they arrived (the same model as ``voxperf bench``'s). ``unique_text`` adds a
    request number to each text so a server's phrase cache cannot answer instead of its TTS."""

    name = "speech"
    needs_audio = False
    defaults: ClassVar[dict[str, Any]] = {
        "path": "/v1/audio/speech",
        "model": "tts-1",
        "voice": "default",
        "unique_text": True,
        "silence_threshold": 0.01,
        "chunk_bytes": 4096,
    }

    def __init__(self, options: Mapping[str, Any], fixtures: list[FixtureRef]) -> None:
        super().__init__(options, fixtures)
        self.nonce = secrets.randbelow(9000) + 1000  # per process: each generator's texts differ too

    def run(self, client: Any, sample: LoadSample, clock: Clock) -> None:
        fx = self.fixture(sample.seq)
        assert fx.text is not None
        # the run's nonce too: a cache must not answer for a text spoken in an earlier run
        unique = f"{fx.text} Request {self.nonce} {sample.seq}."
        text = unique if self.options["unique_text"] else fx.text
        payload = json.dumps(
            {
                "model": self.options["model"],
                "input": text,
                "voice": self.options["voice"],
                "response_format": "pcm",
            }
        ).encode()
        sample.fixture, sample.bytes_out = fx.name, len(payload)
        response = client.request(
            "POST",
            self.options["path"],
            data=payload,
            headers={"Content-Type": "application/json"},
            name="speech",
            stream=True,
        )
        sample.first_byte_ns = clock()
        sample.status = response.status_code
        error = _transport_error(response) or _error_of_status(response.status_code or 0)
        if error is not None:
            sample.error, sample.detail, sample.last_byte_ns = error, error_detail(response), clock()
            return
        rate = int(response.headers.get("x-sample-rate") or 24000)  # OpenAI's pcm is 24 kHz s16le
        threshold = int(float(self.options["silence_threshold"]) * 32767)
        arrivals: list[int] = []
        sizes: list[int] = []
        carry = b""
        audible_ns: int | None = None
        try:
            for chunk in _chunks(response, int(self.options["chunk_bytes"])):
                now = clock()
                data = carry + chunk
                usable = len(data) - len(data) % 2
                carry = data[usable:]
                if not usable:
                    continue
                pcm = np.frombuffer(data[:usable], dtype="<i2")
                if audible_ns is None and np.any(np.abs(pcm.astype(np.int32)) > threshold):
                    audible_ns = now
                arrivals.append(now)
                sizes.append(len(pcm))
        except Exception:  # the stream broke off: what arrived is kept, the request failed
            sample.error = "connect"
        sample.last_byte_ns = clock()
        sample.bytes_in = sum(sizes) * 2
        if not sizes:
            sample.error = sample.error or "bad_response"
            return
        from voxperf.trace.metrics import playout

        durations = [round(n * 1e9 / rate) for n in sizes]
        play = playout(arrivals, durations)
        sample.audio_s = play.audio_ns / 1e9
        if audible_ns is not None:
            sample.metrics["ttfa_ms"] = (audible_ns - sample.intended_ns) / 1e6
        sample.metrics["stall_count"] = float(play.stall_count)
        sample.metrics["stall_ms"] = play.stall_ns / 1e6
        sample.metrics["prebuffer_ms"] = play.prebuffer_needed_ns / 1e6
        gaps = np.diff(arrivals) if len(arrivals) > 1 else np.zeros(1)
        sample.metrics["max_chunk_gap_ms"] = float(gaps.max()) / 1e6


def _chunks(response: Any, size: int) -> Iterator[bytes]:
    raw = getattr(response, "_response", None)
    if raw is None:  # not streamed (an error response): its whole body at once
        yield response.content or b""
        return
    while True:
        chunk = raw.read(size)
        if not chunk:
            return
        yield chunk


def _read_all(response: Any) -> bytes:
    return b"".join(_chunks(response, 65536))


def _transport_error(response: Any) -> str | None:
    """``connect`` or ``timeout`` when no HTTP answer came (Locust's clients record the exception)."""
    if response.status_code:  # an HTTP answer came (Locust also records 4xx/5xx as an "error")
        return None
    error = getattr(response, "error", None)
    name = type(error).__name__.lower() if error is not None else ""
    return "timeout" if "timeout" in name else "connect"


def error_detail(response: Any) -> str | None:
    """A short description of what went wrong: the exception, or the start of an error body."""
    error = getattr(response, "error", None)
    if error is not None and not response.status_code:
        return f"{type(error).__name__}: {str(error)[:120]}"
    if response.status_code and response.status_code >= 400:
        return f"HTTP {response.status_code}"  # the body was read (or streamed) by the scenario
    return None


class GetScenario(Scenario):
    """``GET path`` (default ``/healthz``): a trivial endpoint, to measure the generator itself."""

    name = "get"
    needs_fixtures = False
    defaults: ClassVar[dict[str, Any]] = {"path": "/healthz"}

    def run(self, client: Any, sample: LoadSample, clock: Clock) -> None:
        response = client.request("GET", self.options["path"], name="get", stream=True)
        sample.first_byte_ns = clock()
        content = _read_all(response)
        sample.last_byte_ns = clock()
        sample.status, sample.bytes_in = response.status_code, len(content)
        sample.error = _transport_error(response) or _error_of_status(response.status_code or 0)
        sample.detail = error_detail(response) if sample.error else None


SCENARIOS: dict[str, type[Scenario]] = {}


def register_scenario(cls: type[Scenario]) -> type[Scenario]:
    """Make a scenario class available by its ``name`` (``voxperf load NAME``); usable as a decorator."""
    if not cls.name:
        raise ValueError("a scenario needs a name")
    SCENARIOS[cls.name] = cls
    return cls


for _cls in (TranscribeScenario, JobsScenario, SpeechScenario, GetScenario):
    register_scenario(_cls)
