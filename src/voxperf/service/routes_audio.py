"""OpenAI-compatible audio endpoints on the library's pipelines.

* ``POST /v1/audio/transcriptions`` runs :class:`~voxperf.pipeline.dictation.DictationPipeline`
  (traced from the request's arrival) and answers with a ``Server-Timing`` header of its stages.
* ``POST /v1/audio/speech`` runs :class:`~voxperf.pipeline.speech.SpeechPipeline` with the response
  as its sink (:mod:`voxperf.pipeline.handoff`): TTFA, chunk gaps and streaming efficiency are the
  library's own, measured at the wire. Long input is synthesised in bounded units.
* ``GET /v1/models`` lists the loaded engines.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import struct
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from voxperf.audio.codec import probe_format
from voxperf.pipeline.handoff import ClientGone, HandoffSink
from voxperf.pipeline.speech import SpeechResult
from voxperf.service.http import ApiError, error_responses, strict_json
from voxperf.service.state import ServiceState, get_state, get_tenant, not_draining
from voxperf.service.timing import response_clock, timing_log
from voxperf.service.worker import log_dictation, stage_ms
from voxperf.trace.core import Trace, default_clock
from voxperf.trace.metrics import NS_PER_MS, NS_PER_S

__all__ = ["SpeechRequest", "check_upload", "router", "server_timing"]

log = logging.getLogger("voxperf.service")
router = APIRouter(dependencies=[Depends(get_tenant)])
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
SHORT_TEXT = 64  # model, language, voice: names, not documents


def server_timing(trace: Trace) -> str:
    """``Server-Timing`` header value: each stage's duration in ms (the library's stage totals)."""
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in stage_ms(trace).items())


def check_upload(data: bytes) -> None:
    """Empty (422) or not audio by its bytes (415)."""
    if not data:
        raise ApiError(422, "the uploaded file is empty", "invalid_audio", "upload a recording")
    if probe_format(data) is None:
        raise ApiError(
            415,
            "the upload is not a supported audio container (checked from its bytes)",
            "unsupported_media_type",
            "send WAV, FLAC, OGG/Opus, MP3, M4A or WebM",
        )


def short(name: str, value: str | None) -> None:
    if value is not None and len(value) > SHORT_TEXT:
        raise ApiError(
            400,
            f"{name} is longer than {SHORT_TEXT} characters",
            "invalid_request_error",
            f"send a {name} name",
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


@router.get("/v1/models")
async def models(state: ServiceState = Depends(get_state)) -> dict[str, Any]:  # noqa: B008
    data = [
        {
            "id": e.info.model or e.info.name,
            "object": "model",
            "owned_by": "voxperf",
            "created": 0,
            "engine": e.info.name,
            "role": e.info.role,
        }
        for e in (state.engines.stt, state.engines.tts)
        if e is not None
    ]
    return {"object": "list", "data": data}


@router.post(
    "/v1/audio/transcriptions",
    responses=error_responses(400, 413, 415, 422, 429, 503),
    dependencies=[Depends(not_draining)],
)
async def transcriptions(
    request: Request,
    file: UploadFile = File(...),  # noqa: B008 - FastAPI's declaration style
    model: str = Form("tiny.en"),
    language: str | None = Form(None),
    prompt: str | None = Form(None),
    response_format: str = Form("json"),
    state: ServiceState = Depends(get_state),  # noqa: B008
) -> Any:
    received = response_clock(request.scope).start_ns  # request start, before the upload was read
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            "unknown response_format",
            "invalid_request_error",
            f"use one of {', '.join(RESPONSE_FORMATS)}",
        )
    short("model", model)
    short("language", language)
    del prompt  # accepted for compatibility; the engines here take no prompt
    pipeline = state.engines.dictation(state.settings)
    async with state.transcribing.queued_slot(state.settings.inflight_wait_s):
        data = await file.read()
        check_upload(data)
        if await request.is_disconnected():
            raise ApiError(400, "the client went away", "cancelled")  # nobody to answer: no work
        result = await run_in_threadpool(pipeline.run, data, "raw", name="upload", start_ns=received)
    log_dictation(result)
    trace = result.trace
    state.metrics.observe_stages(stage_ms(trace))
    headers = {"Server-Timing": server_timing(trace)}
    if response_format == "text":
        return PlainTextResponse(result.text, headers=headers)
    segments = list(result.segments)
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(_subtitles(segments, response_format), headers=headers)
    body: dict[str, Any] = {"text": result.text}
    if response_format == "verbose_json":
        body.update(
            task="transcribe",
            language=result.language or "en",
            duration=result.input_audio_s,
            segments=[
                {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text} for i, s in enumerate(segments)
            ],
        )
    return JSONResponse(body, headers=headers)


class SpeechRequest(BaseModel):
    """OpenAI's ``/v1/audio/speech`` body. ``speed`` other than 1 and voices other than the loaded
    one are refused (400), not ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field("piper", max_length=SHORT_TEXT)
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field("default", max_length=SHORT_TEXT)
    response_format: str = Field("wav", max_length=SHORT_TEXT)
    speed: float = Field(1.0, ge=0.25, le=4.0)


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


async def _speech_request(request: Request) -> SpeechRequest:
    raw = await request.body()
    value = strict_json(raw)
    if not isinstance(value, dict):
        raise ApiError(
            400, "the body must be a JSON object", "invalid_request_error", 'send {"input": "..."}'
        )
    try:
        req = SpeechRequest.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ApiError(422, problems, "invalid_request_error", "see the API docs") from None
    if "\x00" in req.input:
        raise ApiError(400, "input holds a NUL character", "invalid_request_error", "send plain text")
    return req


def _check_speech(req: SpeechRequest, state: ServiceState) -> None:
    if req.response_format not in ("wav", "pcm"):
        raise ApiError(400, "unsupported response_format", "invalid_request_error", "use wav or pcm")
    if not req.input.strip():
        raise ApiError(422, "input is blank", "invalid_request_error", "send some text")
    if req.speed != 1.0:
        raise ApiError(
            400,
            "speed is not supported by this server's TTS",
            "invalid_request_error",
            "omit speed or send 1.0",
        )
    tts = state.engines.tts
    voices = {"default"} | ({tts.info.model} if tts is not None and tts.info.model else set())
    if req.voice not in voices:
        raise ApiError(
            400,
            "unknown voice",
            "invalid_request_error",
            f"this server speaks with one voice: {', '.join(sorted(voices))}",
        )


@router.post(
    "/v1/audio/speech",
    responses=error_responses(400, 422, 429, 503),
    response_class=StreamingResponse,
    dependencies=[Depends(not_draining)],
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}},
            "required": True,
        }
    },
)
async def speech(request: Request, state: ServiceState = Depends(get_state)) -> Any:  # noqa: B008
    """Stream synthesised audio; the first body message holds the WAV header with the first audio."""
    rc = response_clock(request.scope)
    received = rc.start_ns
    req = await _speech_request(request)
    _check_speech(req, state)
    key = (req.input, req.voice, req.response_format)
    media = "audio/wav" if req.response_format == "wav" else "audio/pcm"
    lookup_start_ns = default_clock()
    cached = state.cache.get(key)  # a phrase's body pieces exactly as they were first sent
    lookup_done_ns = default_clock()
    lookup = f"dur={(lookup_done_ns - lookup_start_ns) / NS_PER_MS:.3f}"
    if cached is not None:
        state.metrics.cache_hits.inc()
        pieces, rate = cached

        async def replay() -> Any:
            for piece in pieces:
                yield piece

        rc.on_complete(lambda rc: _log_speech(state, "hit", len(pieces), lookup_done_ns, rc, None))
        # the header cannot hold the first-byte time: it is sent before the body
        headers = {"X-Sample-Rate": str(rate), "Server-Timing": f"cache;desc=hit;{lookup}"}
        return StreamingResponse(replay(), media_type=media, headers=headers)
    state.metrics.cache_misses.inc()
    rate = state.engines.require_tts().sample_rate
    release_slot = state.speaking.claim()  # given back once the stream ends, however it ends
    try:
        sink = HandoffSink(
            asyncio.get_running_loop(),
            encode=lambda chunk, first: (
                (_wav_header(rate) if first and req.response_format == "wav" else b"") + chunk.pcm16_bytes()
            ),
            deadline_s=state.settings.request_deadline_s,
        )
        pipeline = state.engines.speech(sink)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = pipeline.run(req.input, start_ns=received)
            except ClientGone:
                pass  # the client went away or the deadline passed: the synthesis stopped there
            except BaseException as exc:
                sink.fail(exc)
            finally:
                sink.close()

        task = asyncio.get_running_loop().run_in_executor(None, run)
        first = await sink.first()  # headers wait for real audio
        first_chunk_ms = (default_clock() - received) / NS_PER_MS
        if isinstance(first, BaseException) or first is None:
            await task
            if isinstance(first, BaseException):
                raise first
            raise ApiError(422, "the input produced no audio", "invalid_request_error", "send words to speak")
    except BaseException:
        release_slot()
        raise

    async def body() -> Any:
        try:
            async for piece in sink.body(first):
                yield piece
        finally:
            await task  # the pipeline has stopped (done, failed or told the client is gone)
            release_slot()
            if "result" in outcome:
                state.cache.put(key, sink.sent_bytes, rate)  # only a complete phrase is cached
            await asyncio.get_running_loop().run_in_executor(None, release_free_memory)

    def done(rc: Any) -> None:
        sink.abandon()  # a body that never started (the client left first) stops the pipeline too
        release_slot()
        _log_speech(state, "miss", len(sink.sent_bytes), lookup_done_ns, rc, outcome.get("result"))

    rc.on_complete(done)
    headers = {
        "X-Sample-Rate": str(rate),
        "Server-Timing": f"cache;desc=miss;{lookup}, first_chunk;dur={first_chunk_ms:.3f}",
    }
    return StreamingResponse(body(), media_type=media, headers=headers)


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system after a long synthesis: glibc keeps them
    (its mmap threshold rises with the audio buffers freed), so RSS would stay at its peak."""
    if _TRIM is not None:
        _TRIM(0)


def _log_speech(
    state: ServiceState, cache: str, chunks: int, lookup_done_ns: int, rc: Any, result: SpeechResult | None
) -> None:
    """One ``speech_timing`` line per response (no text): the wire's times (first body byte, end)
    and, for a synthesised phrase, the library's speech metrics and request-flow events."""
    start = rc.start_ns
    if rc.first_body_ns is not None:
        state.metrics.first_byte_seconds.labels(cache=cache).observe((rc.first_body_ns - start) / NS_PER_S)
    if result is not None and result.ttfa_ns is not None:
        state.metrics.ttfa_seconds.observe(result.ttfa_ns / NS_PER_S)
    if not timing_log.isEnabledFor(logging.INFO):
        return

    def ms(t_ns: int | None) -> float | None:
        return None if t_ns is None else round(t_ns / NS_PER_MS, 3)

    end_ns = rc.end_ns if rc.end_ns is not None else default_clock()
    line: dict[str, Any] = {
        "name": "speech_timing",
        "cache": cache,
        "chunks": chunks,
        "completed": rc.completed,
        "cache_lookup_ms": ms(lookup_done_ns - start),
        "first_byte_ms": ms(rc.first_body_ns - start) if rc.first_body_ns is not None else None,
    }
    if result is not None:
        line.update(
            request=result.trace.request_id,
            audio_s=round(result.audio_s, 3),
            first_chunk_ms=ms(result.first_chunk_ns),
            ttfa_ms=ms(result.ttfa_ns),
            streaming_ms=ms(result.streaming_ns),
            rtfx=result.rtfx,
            streaming_efficiency=result.streaming_efficiency,
            stage_ms=stage_ms(result.trace),
        )
        events = {e.name: ms(e.t_ns - start) for e in result.trace.events if e.name != "REQUEST_COMPLETE"}
    else:
        events = {"REQUEST_RECEIVED": 0.0}
    events["REQUEST_COMPLETE"] = ms(end_ns - start)  # the last body byte handed to the transport
    line["events_ms"] = events
    timing_log.info(json.dumps(line, separators=(",", ":")))
