"""``voxperf serve``: a reference voice service on the voxperf engines and trace core.

Synchronous OpenAI-compatible endpoints (``/v1/audio/transcriptions``, streaming
``/v1/audio/speech``, ``/v1/models``) plus ``/healthz`` and ``/readyz``. Transcriptions carry a
``Server-Timing`` header built from the request's trace; speech responses carry only what is known
when their headers are sent (the cache lookup, and on a miss the time to the first synthesised
chunk). Times that end with a body byte (the request histogram, a speech response's first audio
byte) are taken by :class:`~voxperf.service.timing.ResponseClockMiddleware` where the bytes are
handed to uvicorn's transport, and go to ``/metrics`` and the ``voxperf.timing`` lines (see
:mod:`voxperf.service.timing`).

Client mistakes get 4xx with an OpenAI-style error body, never a 5xx:

* 401 (with ``WWW-Authenticate: Bearer``) when ``VOXPERF_API_TOKEN`` is set and not presented;
* 413 when the upload exceeds the limit, checked on the declared length and while the body streams;
* 415 when the upload's bytes are not a known audio container (the name and type are ignored);
* 422 when the audio cannot be decoded or is longer than the duration limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.routing import Match

from voxperf.audio.codec import probe_format
from voxperf.errors import UsageError, VoxperfError
from voxperf.service.cache import PhraseCache
from voxperf.service.jobs import JOB_STATUSES, Job, SQLiteJobStore, new_job_id
from voxperf.service.metrics import ServiceMetrics
from voxperf.service.timing import (
    ResponseClock,
    ResponseClockMiddleware,
    configure_timing_log,
    response_clock,
    timing_log,
)
from voxperf.service.worker import EmbeddedQueue, stage_ms, transcribe_bytes
from voxperf.trace.core import Trace, default_clock
from voxperf.trace.metrics import NS_PER_MS, NS_PER_S
from voxperf.trace.stages import ServerEvent

__all__ = ["ServiceEngines", "ServiceSettings", "create_app", "server_timing"]

log = logging.getLogger("voxperf.service")
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


@dataclass
class ServiceSettings:
    """Limits and security; defaults are safe for a single machine."""

    max_upload_bytes: int = 25 * 1024 * 1024
    max_duration_s: float = 600.0
    api_token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    stt_spec: str = "faster-whisper"
    tts_spec: str = "piper"
    job_dir: str = ".voxperf/jobs"  # embedded queue: SQLite + spooled audio
    workers: int = 1  # embedded worker threads
    queue_url: str | None = None  # redis://... → Celery workers (voxperf worker)
    tts_cache_bytes: int = 32 * 1024 * 1024
    drain_timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> ServiceSettings:
        env = os.environ
        origins = env.get("VOXPERF_CORS_ORIGINS", "")
        try:
            return cls(
                max_upload_bytes=int(env.get("VOXPERF_MAX_UPLOAD_BYTES", 25 * 1024 * 1024)),
                max_duration_s=float(env.get("VOXPERF_MAX_DURATION_S", 600)),
                api_token=env.get("VOXPERF_API_TOKEN") or None,
                cors_origins=[o.strip() for o in origins.split(",") if o.strip()],
                job_dir=env.get("VOXPERF_JOB_DIR", ".voxperf/jobs"),
                workers=int(env.get("VOXPERF_WORKERS", 1)),
                queue_url=env.get("VOXPERF_QUEUE") or None,
                tts_cache_bytes=int(env.get("VOXPERF_TTS_CACHE_BYTES", 32 * 1024 * 1024)),
            )
        except ValueError as exc:
            raise UsageError(
                f"bad VOXPERF_* setting: {exc}", "numbers must be plain integers or decimals"
            ) from exc


@dataclass
class ServiceEngines:
    """Engines loaded once at start-up and warmed up (``/readyz`` is 200 once they are)."""

    stt: Any = None
    tts: Any = None
    rewriter: Any = None
    ready: bool = False

    def load(self, settings: ServiceSettings) -> None:
        from voxperf.engines.registry import create_engine, parse_spec

        if self.rewriter is None:
            self.rewriter = create_engine(parse_spec("rewrite", "local"))
        if self.stt is None:
            spec = parse_spec("stt", settings.stt_spec)
            if spec.name == "faster-whisper" and settings.workers > 1 and "num_workers" not in spec.options:
                # one model, one CTranslate2 worker per job worker: jobs run in parallel, weights load once
                spec.options["num_workers"] = str(settings.workers)
            self.stt = create_engine(spec)
            self.stt.warmup()
        if self.tts is None:
            self.tts = create_engine(parse_spec("tts", settings.tts_spec))
            self.tts.warmup()
        self.ready = True


def server_timing(trace: Trace, extra: dict[str, int] | None = None) -> str:
    """``Server-Timing`` header value: each stage's duration in ms (spans of the trace)."""
    parts = []
    for span in trace.spans:
        parts.append(f"{span.name};dur={(span.end_ns - span.start_ns) / NS_PER_MS:.3f}")
    for name, ns in (extra or {}).items():
        parts.append(f"{name};dur={ns / NS_PER_MS:.3f}")
    return ", ".join(parts)


def _wav_header(rate: int) -> bytes:
    """A streaming WAV header (sizes unknown: 0xFFFFFFFF), 16-bit mono."""
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def _srt_time(s: float, sep: str) -> str:
    ms = round(s * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def _subtitles(segments: list[Any], kind: str) -> str:
    sep = "," if kind == "srt" else "."
    lines = [] if kind == "srt" else ["WEBVTT", ""]
    for i, seg in enumerate(segments, start=1):
        if kind == "srt":
            lines.append(str(i))
        lines += [f"{_srt_time(seg.start_s, sep)} --> {_srt_time(seg.end_s, sep)}", seg.text, ""]
    return "\n".join(lines)


class ErrorDetail(BaseModel):
    message: str
    type: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """OpenAI-style error body (plus a hint that says how to fix it)."""

    error: ErrorDetail


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in (401, *codes)}


class SpeechRequest(BaseModel):
    """OpenAI's ``/v1/audio/speech`` body."""

    model: str = "piper"
    input: str = Field(min_length=1, max_length=4096)
    voice: str = "default"
    response_format: str = "wav"
    speed: float = Field(1.0, gt=0.25, le=4.0)


def create_app(settings: ServiceSettings | None = None, engines: ServiceEngines | None = None) -> Any:
    """The FastAPI application (engines load in the lifespan unless given ready)."""
    cfg = settings or ServiceSettings.from_env()
    eng = engines or ServiceEngines()
    metrics = ServiceMetrics()
    cache = PhraseCache(cfg.tts_cache_bytes)
    state: dict[str, Any] = {"draining": False, "store": None, "queue": None, "celery": None}

    def on_job_done(job: Job, _trace: Trace | None) -> None:
        # the job's pipeline_timing line is logged by process_job when its completion is recorded
        metrics.jobs.labels(outcome=job.status).inc()
        metrics.observe_stages(job.timings_ms)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        configure_timing_log()  # after uvicorn configured logging: it sets up only its own loggers
        if cfg.queue_url:
            from voxperf.service.celery_app import make_celery
            from voxperf.service.redis_jobs import RedisJobStore

            prefix = os.environ.get("VOXPERF_JOB_PREFIX") or "voxperf"
            state["store"] = RedisJobStore(cfg.queue_url, prefix=prefix)
            state["celery"] = make_celery(cfg.queue_url, prefix=prefix)
        else:
            state["store"] = SQLiteJobStore(cfg.job_dir)
        if not eng.ready:
            await run_in_threadpool(eng.load, cfg)
        if not cfg.queue_url and cfg.workers > 0:
            queue = EmbeddedQueue(
                state["store"],
                eng,
                workers=cfg.workers,
                max_duration_s=cfg.max_duration_s,
                on_done=on_job_done,
            )
            resumed = queue.start()
            if resumed:
                log.info("resumed %d interrupted job(s)", resumed)
            state["queue"] = queue
        yield
        # SIGTERM (uvicorn shutdown): stop accepting, let running jobs finish; the rest resume next start
        state["draining"] = True
        if state["queue"] is not None:
            await run_in_threadpool(state["queue"].stop, cfg.drain_timeout_s)

    app = FastAPI(title="voxperf serve", version="0.1.0", lifespan=lifespan)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )

    def error(
        status: int, message: str, kind: str, hint: str | None = None, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "hint": hint}}
        return JSONResponse(body, status_code=status, headers=headers)

    def check_upload(data: bytes) -> JSONResponse | None:
        """Empty (422) or not audio by its bytes (415); None when the upload may be decoded."""
        if not data:
            return error(422, "the uploaded file is empty", "invalid_audio", "upload a recording")
        if probe_format(data) is None:
            return error(
                415,
                "the upload is not a supported audio container (checked from its bytes)",
                "unsupported_media_type",
                "send WAV, FLAC, OGG/Opus, MP3, M4A or WebM",
            )
        return None

    @app.exception_handler(VoxperfError)
    async def voxperf_error(_request: Request, exc: VoxperfError) -> JSONResponse:
        return error(exc.http_status, exc.message, type(exc).__name__, exc.hint)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        """Auth, then the upload limit on the declared length (the stream is counted again below)."""
        if cfg.api_token and request.url.path.startswith("/v1/"):
            supplied = request.headers.get("authorization", "")
            expected = f"Bearer {cfg.api_token}"
            if not hmac.compare_digest(supplied.encode(), expected.encode()):
                return error(
                    401,
                    "missing or invalid bearer token",
                    "authentication_error",
                    "send Authorization: Bearer <VOXPERF_API_TOKEN>",
                    {"WWW-Authenticate": "Bearer"},
                )
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > cfg.max_upload_bytes
            except ValueError:
                return error(400, "invalid Content-Length", "invalid_request_error")
            if too_big:
                return error(
                    413,
                    f"upload larger than {cfg.max_upload_bytes} bytes",
                    "request_too_large",
                    "send a shorter recording or raise VOXPERF_MAX_UPLOAD_BYTES",
                )
        return await call_next(request)

    class _LimitedBody:
        """ASGI middleware: count the body as it streams and stop at the limit (chunked uploads)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            seen = 0
            answered = False

            async def limited() -> dict[str, Any]:
                nonlocal seen, answered
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > cfg.max_upload_bytes:
                        if not answered:  # answer now, before the rest is spooled
                            answered = True
                            response = error(
                                413,
                                f"upload larger than {cfg.max_upload_bytes} bytes",
                                "request_too_large",
                                "send a shorter recording or raise VOXPERF_MAX_UPLOAD_BYTES",
                            )
                            await response(scope, receive, send)
                        return {"type": "http.disconnect"}  # the app stops reading
                return message

            async def guarded_send(message: dict[str, Any]) -> None:
                if not answered:  # after our 413, whatever the app says is dropped
                    await send(message)

            await self.inner(scope, limited, guarded_send)

    app.add_middleware(_LimitedBody)

    def route_name(scope: dict[str, Any]) -> str:
        """The route's name (its endpoint function), also for answers given before routing (401,
        413); "unmatched" for unknown paths. Bounded by the routes, so a safe metric label."""
        route = scope.get("route")
        if route is None:
            for candidate in app.router.routes:
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    route = candidate
                    break
                if match is Match.PARTIAL and route is None:
                    route = candidate
        return str(getattr(route, "name", None) or "unmatched")

    def observe_response(scope: Any, rc: ResponseClock) -> None:
        end_ns = rc.end_ns if rc.end_ns is not None else rc.start_ns
        metrics.request_seconds.labels(
            endpoint=route_name(scope), code=str(rc.status if rc.status is not None else 500)
        ).observe((end_ns - rc.start_ns) / NS_PER_S)

    # added last, so it is the outermost middleware: its clock sees every response, errors included
    app.add_middleware(ResponseClockMiddleware, on_response=observe_response)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz() -> Any:
        if not eng.ready:
            return error(503, "models are loading", "not_ready")
        return {"status": "ready", "stt": eng.stt.info.model, "tts": eng.tts.info.model}

    @app.get("/v1/models", responses=_errors())
    async def models() -> dict[str, Any]:
        data = []
        for e in (eng.stt, eng.tts):
            if e is not None:
                data.append(
                    {
                        "id": e.info.model or e.info.name,
                        "object": "model",
                        "owned_by": "voxperf",
                        "created": 0,
                        "engine": e.info.name,
                        "role": e.info.role,
                    }
                )
        return {"object": "list", "data": data}

    @app.post("/v1/audio/transcriptions", responses=_errors(400, 413, 415, 422))
    async def transcriptions(
        request: Request,
        file: UploadFile = File(...),  # noqa: B008 - FastAPI's declaration style
        model: str = Form("tiny.en"),
        language: str | None = Form(None),
        prompt: str | None = Form(None),
        response_format: str = Form("json"),
    ) -> Any:
        received = response_clock(request.scope).start_ns  # request start, before the upload was read
        if response_format not in RESPONSE_FORMATS:
            return error(
                400,
                f"unknown response_format {response_format!r}",
                "invalid_request_error",
                f"use one of {', '.join(RESPONSE_FORMATS)}",
            )
        data = await file.read()
        if (refused := check_upload(data)) is not None:
            return refused
        del model, language, prompt  # one loaded model serves every request; recorded in /v1/models
        result = await run_in_threadpool(
            lambda: transcribe_bytes(eng, data, max_duration_s=cfg.max_duration_s, start_ns=received)
        )
        result.log_timing()
        transcript, trace, duration = result.transcript, result.trace, result.input_audio_s
        metrics.observe_stages(stage_ms(trace))
        headers = {"Server-Timing": server_timing(trace)}
        if response_format == "text":
            return PlainTextResponse(transcript.text, headers=headers)
        if response_format in ("srt", "vtt"):
            return PlainTextResponse(_subtitles(list(transcript.segments), response_format), headers=headers)
        body: dict[str, Any] = {"text": transcript.text}
        if response_format == "verbose_json":
            body.update(
                task="transcribe",
                language=transcript.language or "en",
                duration=duration,
                segments=[
                    {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text}
                    for i, s in enumerate(transcript.segments)
                ],
            )
        return JSONResponse(body, headers=headers)

    def log_speech(
        trace: Trace, cache_state: str, chunks: int, lookup_done_ns: int, rc: ResponseClock
    ) -> None:
        """One ``speech_timing`` line (ms after request start; no text): the server events of the
        request, when the cache lookup was done and when the first audio byte was handed over."""
        if not timing_log.isEnabledFor(logging.INFO):
            return
        start = trace.start_ns

        def ms(t_ns: int | None) -> float | None:
            return None if t_ns is None else round((t_ns - start) / NS_PER_MS, 3)

        line = {
            "name": "speech_timing",
            "request": trace.request_id,
            "cache": cache_state,
            "chunks": chunks,
            "completed": rc.completed,
            "cache_lookup_ms": ms(lookup_done_ns),
            "first_byte_ms": ms(rc.first_body_ns),
            "events_ms": {e.name: ms(e.t_ns) for e in trace.events},
        }
        timing_log.info(json.dumps(line, separators=(",", ":")))

    @app.post("/v1/audio/speech", responses=_errors(400, 422), response_class=StreamingResponse)
    async def speech(req: SpeechRequest, request: Request) -> Any:
        """Stream synthesised audio. The body's first message holds the WAV header (if any) together
        with the first audio, so the first body byte a client receives is the first audio byte."""
        rc = response_clock(request.scope)
        received = rc.start_ns
        if req.response_format not in ("wav", "pcm"):
            return error(
                400,
                f"unsupported response_format {req.response_format!r}",
                "invalid_request_error",
                "use wav or pcm",
            )
        if not req.input.strip():
            return error(422, "input is blank", "invalid_request_error", "send some text")
        key = (req.input, req.voice, req.response_format)
        lookup_start_ns = default_clock()
        cached = cache.get(key)  # a phrase's body pieces exactly as they were first sent
        lookup_done_ns = default_clock()
        lookup = f"dur={(lookup_done_ns - lookup_start_ns) / NS_PER_MS:.3f}"
        media = "audio/wav" if req.response_format == "wav" else "audio/pcm"
        trace = Trace(start_ns=received)
        trace.event(ServerEvent.REQUEST_RECEIVED, t_ns=received)

        def done(cache_state: str, pieces: list[bytes]) -> Callable[[ResponseClock], None]:
            """What a finished speech response records (``pieces``: its body, counted at the end)."""

            def record(rc: ResponseClock) -> None:
                if rc.first_body_ns is not None:
                    metrics.first_byte_seconds.labels(cache=cache_state).observe(
                        (rc.first_body_ns - received) / NS_PER_S
                    )
                end_ns = rc.end_ns if rc.end_ns is not None else default_clock()
                trace.finish(end_ns)
                trace.event(ServerEvent.REQUEST_COMPLETE, t_ns=end_ns)
                log_speech(trace, cache_state, len(pieces), lookup_done_ns, rc)

            return record

        if cached is not None:
            metrics.cache_hits.inc()
            pieces, rate = cached

            async def replay() -> AsyncIterator[bytes]:
                for piece in pieces:
                    yield piece

            rc.on_complete(done("hit", pieces))
            # the header cannot hold the first-byte time: it is sent before the body
            return StreamingResponse(
                replay(),
                media_type=media,
                headers={"Server-Timing": f"cache;desc=hit;{lookup}", "X-Sample-Rate": str(rate)},
            )
        metrics.cache_misses.inc()
        # the TTS logging plan's server-side request flow, on the trace core
        trace.event(ServerEvent.PROCESSING_START)
        chunks = iterate_in_threadpool(iter(eng.tts.stream(req.input)))
        trace.event(ServerEvent.INFERENCE_START)
        first = await anext(chunks, None)  # headers wait for real audio, so first_chunk is honest
        first_chunk_ns = trace.event(ServerEvent.FIRST_CHUNK_GENERATED).t_ns - received
        rate = eng.tts.sample_rate
        produced: list[bytes] = []

        async def body() -> AsyncIterator[bytes]:
            piece = (_wav_header(rate) if req.response_format == "wav" else b"") + (
                first.pcm16_bytes() if first is not None else b""
            )
            if piece:
                produced.append(piece)
                yield piece
            async for chunk in chunks:
                trace.event(ServerEvent.AUDIO_CHUNK_GENERATED)
                produced.append(chunk.pcm16_bytes())
                yield produced[-1]
            trace.event(ServerEvent.INFERENCE_COMPLETE)
            trace.event(ServerEvent.AUDIO_GENERATION_COMPLETE)
            cache.put(key, produced, rate)  # only a complete phrase is cached

        rc.on_complete(done("miss", produced))
        first_chunk = f"first_chunk;dur={first_chunk_ns / NS_PER_MS:.3f}"
        return StreamingResponse(
            body(),
            media_type=media,
            headers={"Server-Timing": f"cache;desc=miss;{lookup}, {first_chunk}", "X-Sample-Rate": str(rate)},
        )

    @app.post("/v1/jobs", status_code=202, responses=_errors(400, 413, 415, 422, 503))
    async def create_job(
        file: UploadFile = File(...),  # noqa: B008 - FastAPI's declaration style
        model: str = Form("tiny.en"),
        language: str | None = Form(None),
        level: str = Form("raw"),
    ) -> Any:
        if state["draining"]:
            return error(
                503,
                "the server is shutting down and accepts no new jobs",
                "unavailable",
                "retry on another instance",
                {"Retry-After": "5"},
            )
        if level not in ("raw", "clean"):
            return error(
                400, f"unknown processing level {level!r}", "invalid_request_error", "use raw or clean"
            )
        data = await file.read()
        if (refused := check_upload(data)) is not None:
            return refused
        job = Job(id=new_job_id(), level=level, model=model, language=language)
        await run_in_threadpool(state["store"].create, job, data)
        if state["celery"] is not None:
            from voxperf.service.celery_app import enqueue

            try:
                await run_in_threadpool(enqueue, state["celery"], job.id)
            except VoxperfError as exc:  # no message was sent: do not leave a job nobody will run
                await run_in_threadpool(state["store"].cancel, job.id)
                return error(
                    503,
                    f"the job queue is unavailable: {exc.message}",
                    "unavailable",
                    exc.hint,
                    {"Retry-After": "5"},
                )
        elif state["queue"] is not None:
            state["queue"].notify()
        return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs/{job_id}", responses=_errors(404))
    async def get_job(job_id: str) -> Any:
        job = await run_in_threadpool(state["store"].get, job_id)
        if job is None:
            return error(404, f"no job {job_id}", "not_found")
        return job.to_dict()

    @app.delete("/v1/jobs/{job_id}", responses=_errors(404, 409))
    async def cancel_job(job_id: str) -> Any:
        job = await run_in_threadpool(state["store"].get, job_id)
        if job is None:
            return error(404, f"no job {job_id}", "not_found")
        if job.status not in ("queued", "running"):
            return error(
                409, f"job {job_id} is already {job.status}", "conflict", "only queued or running jobs cancel"
            )
        job = await run_in_threadpool(state["store"].cancel, job_id)
        if job is not None and job.status == "cancelled":
            metrics.jobs.labels(outcome="cancelled").inc()
        return job.to_dict() if job else error(404, f"no job {job_id}", "not_found")

    @app.get("/v1/jobs", responses=_errors(400))
    async def list_jobs(status: str | None = None, limit: int = 100) -> Any:
        if status is not None and status not in JOB_STATUSES:
            return error(
                400,
                f"unknown status {status!r}",
                "invalid_request_error",
                f"use one of {', '.join(JOB_STATUSES)}",
            )
        if not 1 <= limit <= 1000:
            return error(400, "limit must be between 1 and 1000", "invalid_request_error")
        jobs = await run_in_threadpool(state["store"].list, status, limit)
        return {"object": "list", "data": [j.to_dict() for j in jobs]}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Any:
        counts = await run_in_threadpool(state["store"].counts) if state["store"] is not None else {}
        metrics.queue_depth.set(counts.get("queued", 0))
        payload, content_type = metrics.render()
        return PlainTextResponse(payload, media_type=content_type)

    return app
