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
import functools
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxperf.audio.codec import probe_format, wav_stream_header
from voxperf.engines.alloc import release_free_memory
from voxperf.pipeline.handoff import HandoffSink
from voxperf.pipeline.speech import SpeechResult
from voxperf.service.http import ApiError, error_responses, strict_json, validation_message
from voxperf.service.state import ServiceState, get_state, get_tenant, not_draining
from voxperf.service.timing import ResponseClock, response_clock
from voxperf.service.worker import cancellable_run, log_dictation
from voxperf.trace.core import Trace, default_clock
from voxperf.trace.export import log_event
from voxperf.trace.metrics import NS_PER_MS, NS_PER_S, stage_totals_ms

__all__ = ["SHORT_TEXT", "SpeechRequest", "check_upload", "router", "server_timing"]

router = APIRouter(dependencies=[Depends(get_tenant)])
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
SHORT_TEXT = 64  # model, language, voice: names, not documents


def server_timing(trace: Trace) -> str:
    """``Server-Timing`` header value: each stage's duration in ms (the library's stage totals)."""
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in stage_totals_ms(trace).items())


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


@router.get("/v1/models")
async def models(state: ServiceState = Depends(get_state)) -> dict[str, Any]:  # noqa: B008
    engines = [e for e in (state.engines.stt, state.engines.tts) if e is not None]
    data = [
        {"id": e.info.model or e.info.name, "object": "model", "owned_by": "voxperf", "created": 0}
        | {"engine": e.info.name, "role": e.info.role}
        for e in engines
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
    model: str = Form("tiny.en", max_length=SHORT_TEXT),
    language: str | None = Form(None, max_length=SHORT_TEXT),
    prompt: str | None = Form(None),  # accepted for compatibility; the engines here take no prompt
    response_format: str = Form("json"),
    state: ServiceState = Depends(get_state),  # noqa: B008
) -> Any:
    received = response_clock(request.scope).start_ns  # request start, before the upload was read
    if response_format not in RESPONSE_FORMATS:
        raise _bad("unknown response_format", f"use one of {', '.join(RESPONSE_FORMATS)}")
    pipeline = state.engines.dictation(state.settings)
    async with state.transcribing.queued_slot(state.settings.inflight_wait_s):
        data = await file.read()
        check_upload(data)
        run = functools.partial(pipeline.run, data, "raw", name="upload", start_ns=received)
        result = await cancellable_run(run, request.is_disconnected)
    log_dictation(result)
    state.metrics.observe_stages(stage_totals_ms(result.trace))
    headers = {"Server-Timing": server_timing(result.trace)}
    if response_format == "text":
        return PlainTextResponse(result.text, headers=headers)
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(result.subtitles(response_format), headers=headers)
    body: dict[str, Any] = {"text": result.text}
    if response_format == "verbose_json":
        body.update(
            task="transcribe",
            language=result.language or "en",
            duration=result.input_audio_s,
            segments=[
                {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text}
                for i, s in enumerate(result.segments)
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


def _bad(message: str, hint: str, status: int = 400) -> ApiError:
    return ApiError(status, message, "invalid_request_error", hint)


async def _speech_request(request: Request, state: ServiceState) -> SpeechRequest:
    """The body as standard JSON, validated, and only what this server can honour."""
    value = strict_json(await request.body())
    if not isinstance(value, dict):
        raise _bad("the body must be a JSON object", 'send {"input": "..."}')
    try:
        req = SpeechRequest.model_validate(value)
    except ValidationError as exc:
        raise _bad(validation_message(exc.errors()), "see the API docs", 422) from None
    if "\x00" in req.input:
        raise _bad("input holds a NUL character", "send plain text")
    if not req.input.strip():
        raise _bad("input is blank", "send some text", 422)
    if req.response_format not in ("wav", "pcm"):
        raise _bad("unsupported response_format", "use wav or pcm")
    if req.speed != 1.0:
        raise _bad("speed is not supported by this server's TTS", "omit speed or send 1.0")
    tts = state.engines.tts
    voices = {"default"} | ({tts.info.model} if tts is not None and tts.info.model else set())
    if req.voice not in voices:
        raise _bad("unknown voice", f"this server speaks with one voice: {', '.join(sorted(voices))}")
    return req


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
    req = await _speech_request(request, state)
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
    header = wav_stream_header(rate) if req.response_format == "wav" else b""
    release_slot = state.speaking.claim()  # given back once the stream ends, however it ends
    try:
        sink = HandoffSink(
            asyncio.get_running_loop(),
            encode=lambda chunk, first: (header if first else b"") + chunk.pcm16_bytes(),
            deadline_s=state.settings.request_deadline_s,
        )
        task = sink.start(functools.partial(state.engines.speech(sink).run, req.input, start_ns=rc.start_ns))
        first = await sink.first()  # headers wait for real audio
        first_chunk_ms = (default_clock() - rc.start_ns) / NS_PER_MS
        if not isinstance(first, bytes):
            await task
            if isinstance(first, BaseException):
                raise first
            raise _bad("the input produced no audio", "send words to speak", 422)
    except BaseException:
        release_slot()
        raise

    async def body() -> Any:
        try:
            async for piece in sink.body(first):
                yield piece
        finally:
            result = await task  # the pipeline has stopped (done, failed or told the client is gone)
            release_slot()
            if result is not None:
                state.cache.put(key, sink.sent_bytes, rate)  # only a complete phrase is cached
            await asyncio.get_running_loop().run_in_executor(None, release_free_memory)

    def done(rc: ResponseClock) -> None:
        sink.abandon()  # a body that never started (the client left first) stops the pipeline too
        release_slot()
        result = task.result() if task.done() and not task.cancelled() else None
        _log_speech(state, "miss", len(sink.sent_bytes), lookup_done_ns, rc, result)

    rc.on_complete(done)
    headers = {
        "X-Sample-Rate": str(rate),
        "Server-Timing": f"cache;desc=miss;{lookup}, first_chunk;dur={first_chunk_ms:.3f}",
    }
    return StreamingResponse(body(), media_type=media, headers=headers)


def _log_speech(
    state: ServiceState,
    cache: str,
    chunks: int,
    lookup_ns: int,
    rc: ResponseClock,
    result: SpeechResult | None,
) -> None:
    """One ``speech_timing`` line per response (no text): the library's speech metrics and
    request-flow events for a synthesised phrase, with the wire's times (first body byte, end)."""
    start = rc.start_ns
    if rc.first_body_ns is not None:
        state.metrics.first_byte_seconds.labels(cache=cache).observe((rc.first_body_ns - start) / NS_PER_S)
    if result is not None and result.ttfa_ns is not None:
        state.metrics.ttfa_seconds.observe(result.ttfa_ns / NS_PER_S)
    event: dict[str, Any] = result.timing_event() if result is not None else {"name": "speech_timing"}
    event.setdefault("events_ms", {"REQUEST_RECEIVED": 0.0})
    end_ns = rc.end_ns if rc.end_ns is not None else default_clock()
    event["events_ms"]["REQUEST_COMPLETE"] = round((end_ns - start) / NS_PER_MS, 3)  # the last byte sent
    first_byte = None if rc.first_body_ns is None else round((rc.first_body_ns - start) / NS_PER_MS, 3)
    event.update(
        cache=cache,
        chunks=chunks,
        completed=rc.completed,
        cache_lookup_ms=round((lookup_ns - start) / NS_PER_MS, 3),
        first_byte_ms=first_byte,
        provider=state.engines.tts.info.name if state.engines.tts is not None else None,
    )
    log_event(event)
