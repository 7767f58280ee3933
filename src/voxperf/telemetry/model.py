"""The telemetry event model: which events exist, their fields, and the columns they are stored in.

Defined once and used by the client's allow-list (:mod:`.client`), the ingest validation
(:mod:`.ingest`), every store (:mod:`.store`) and the dashboard's metric names.

* ``pipeline_timing``: a finished dictation, exactly the fields of the dictation app's NDJSON event
  (:data:`voxperf.trace.export.PIPELINE_TIMING_FIELDS`, the line ``voxperf bench`` and ``serve``
  write).
* ``speech_timing``: one speech (TTS) request as a TTS server's request-flow logging plan tracks it,
  with the same field names as the service's ``speech_timing`` line: ``ttfa_ms`` from request start
  to the first audible audio, ``first_byte_ms`` to the first body byte, ``server_ms`` the server's
  response time, ``streaming_efficiency`` as :func:`voxperf.trace.metrics.streaming_efficiency`
  defines it (audio duration / playout time), the phrase ``cache`` hit or miss, the ``provider``
  that synthesised it and the request's ``outcome``.

No field can hold free text: numbers are numbers, and the few words are checked against a closed
set or a short identifier shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voxperf.engines.base import LEVELS
from voxperf.trace.export import PIPELINE_TIMING_FIELDS

__all__ = [
    "ENVELOPE_COLUMNS",
    "EVENTS",
    "MAX_NUMBER",
    "METRICS",
    "NUMBER_COLUMNS",
    "SCHEMA_VERSION",
    "TEXT_COLUMNS",
    "FieldSpec",
    "Metric",
]

SCHEMA_VERSION = 1
Kind = Literal["number", "choice", "identifier"]
IDENTIFIER_PATTERN = r"[a-z][a-z0-9._-]{0,31}"  # (whole string) an engine or provider name, never a sentence
MAX_NUMBER = 1e15  # any field: ms (31,000 years), bytes (a petabyte); keeps sums finite everywhere


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an event: its kind, its unit (numbers) or its allowed values (choices)."""

    name: str
    kind: Kind = "number"
    unit: str = "ms"
    choices: tuple[str, ...] = ()


def _number(name: str) -> FieldSpec:
    unit = "bytes" if name.endswith("_bytes") else "ms" if name.endswith("_ms") else "1"
    return FieldSpec(name, "number", unit)


EVENTS: dict[str, tuple[FieldSpec, ...]] = {
    "pipeline_timing": tuple(
        FieldSpec(name, "choice", "", tuple(LEVELS)) if name == "processing_level" else _number(name)
        for name in PIPELINE_TIMING_FIELDS
    ),
    "speech_timing": (
        FieldSpec("provider", "identifier", ""),
        FieldSpec("cache", "choice", "", ("hit", "miss")),
        FieldSpec("outcome", "choice", "", ("ok", "error", "cancelled")),
        _number("ttfa_ms"),
        _number("first_byte_ms"),
        _number("first_chunk_ms"),
        _number("server_ms"),
        _number("total_ms"),
        _number("streaming_ms"),
        FieldSpec("audio_s", "number", "s"),
        FieldSpec("streaming_efficiency", "number", "1"),
        FieldSpec("rtfx", "number", "1"),
        FieldSpec("chunks", "number", "1"),
    ),
}

# the stored row: the envelope, then every field of every event (one wide table, NULL where absent)
ENVELOPE_COLUMNS = ("name", "session_id", "app_version", "app_build", "os_version")
_all = [f for specs in EVENTS.values() for f in specs]
TEXT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(f.name for f in _all if f.kind != "number"))
NUMBER_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(f.name for f in _all if f.kind == "number"))
FILTERS = ("app_version", "processing_level", "provider", "name", "cache", "outcome")


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric the dashboard and alerts know: a numeric column, or a rate over events."""

    name: str
    label: str
    unit: str
    event: str  # which event carries it ("otlp": OTLP histograms)
    column: str | None = None  # None: a rate (cache hit rate, error rate, throughput)
    histogram: bool = False  # from OTLP explicit-bucket histograms: percentiles are estimates

    @property
    def rate(self) -> bool:
        """A rate (one value per window), not a distribution with percentiles."""
        return self.column is None and not self.histogram


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("ttfa_ms", "TTFA (request start → first audio)", "ms", "speech_timing", "ttfa_ms"),
        Metric("first_byte_ms", "Time to first byte", "ms", "speech_timing", "first_byte_ms"),
        Metric("server_ms", "Server response time", "ms", "speech_timing", "server_ms"),
        Metric("streaming_efficiency", "Streaming efficiency", "1", "speech_timing", "streaming_efficiency"),
        Metric("cache_hit_rate", "Phrase cache hit rate", "1", "speech_timing"),
        Metric("error_rate", "Error rate", "1", "speech_timing"),
        Metric("throughput", "Events per second", "1/s", "*"),
        *(
            Metric(f.name, f.name.removesuffix("_ms").replace("_", " "), "ms", "pipeline_timing", f.name)
            for f in EVENTS["pipeline_timing"]
            if f.unit == "ms"
        ),
        *(
            Metric(
                name,
                f"{name.removesuffix('_ms').replace('_', ' ')} (OTLP histogram)",
                "ms",
                "otlp",
                None,
                True,
            )
            for name in (
                "turn_e2e_latency_ms",
                "llm_ttft_ms",
                "tts_ttfb_ms",
                "transcription_delay_ms",
                "end_of_turn_delay_ms",
            )
        ),
    )
}
