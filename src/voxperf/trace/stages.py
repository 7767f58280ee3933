"""The standard stage and event names: defined once here and imported everywhere.

Dictation stages follow the dictation app's audited pipeline (``encode``, ``stt``, ``rewrite``,
``paste``), extended with the audio front end (``decode``, ``resample``, ``vad``). Speech (TTS) spans
and point events follow a TTS server's request-flow logging plan.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DICTATION_STAGES",
    "ENGINE_STAGES",
    "SPEECH_STAGES",
    "ClientEvent",
    "ServerEvent",
    "Stage",
]


class Stage(StrEnum):
    """Timed spans (a start and an end) of the voxperf pipelines."""

    # dictation: audio in, text out (the dictation audit's stages + front end)
    DECODE = "decode"
    RESAMPLE = "resample"
    VAD = "vad"
    ENCODE = "encode"
    STT = "stt"
    REWRITE = "rewrite"
    PASTE = "paste"
    # speech: text in, audio out (request-flow stages)
    SYNTHESIZE = "synthesize"  # time spent waiting on the TTS engine for a chunk (one span per chunk)
    SINK = "sink"  # handing one chunk to the sink (one span per chunk)


DICTATION_STAGES: tuple[Stage, ...] = (
    Stage.DECODE,
    Stage.RESAMPLE,
    Stage.VAD,
    Stage.ENCODE,
    Stage.STT,
    Stage.REWRITE,
    Stage.PASTE,
)
SPEECH_STAGES: tuple[Stage, ...] = (Stage.SYNTHESIZE, Stage.SINK)

# Stages whose time is spent inside a speech engine; the plausibility guard checks these for
# implausibly small provider-lane measurements.
ENGINE_STAGES: frozenset[Stage] = frozenset({Stage.STT, Stage.SYNTHESIZE, Stage.VAD})


class ClientEvent(StrEnum):
    """Client-side request-flow events of a speech request."""

    REQUEST_START = "REQUEST_START"
    REQUEST_SENT = "REQUEST_SENT"
    FIRST_BYTE_RECEIVED = "FIRST_BYTE_RECEIVED"
    FIRST_AUDIO_CHUNK = "FIRST_AUDIO_CHUNK"
    AUDIO_CHUNK_RECEIVED = "AUDIO_CHUNK_RECEIVED"
    LAST_AUDIO_CHUNK = "LAST_AUDIO_CHUNK"
    REQUEST_COMPLETE = "REQUEST_COMPLETE"


class ServerEvent(StrEnum):
    """Server-side request-flow events of a speech request."""

    REQUEST_RECEIVED = "REQUEST_RECEIVED"
    PROCESSING_START = "PROCESSING_START"
    TEXT_PROCESSING_COMPLETE = "TEXT_PROCESSING_COMPLETE"
    PHONEME_GENERATION_COMPLETE = "PHONEME_GENERATION_COMPLETE"
    INFERENCE_START = "INFERENCE_START"
    INFERENCE_COMPLETE = "INFERENCE_COMPLETE"
    FIRST_CHUNK_GENERATED = "FIRST_CHUNK_GENERATED"
    AUDIO_CHUNK_GENERATED = "AUDIO_CHUNK_GENERATED"
    AUDIO_GENERATION_COMPLETE = "AUDIO_GENERATION_COMPLETE"
    REQUEST_COMPLETE = "REQUEST_COMPLETE"
