"""OTLP/HTTP JSON traces onto the telemetry events: one request-flow trace, one event.

A trace is read as voxperf reads any OTel trace (:func:`voxperf.trace.otel.trace_from_spans`: the
root span is the request, only ``voxperf.*`` attributes are kept, because frameworks put
transcripts and prompts in theirs). Then:

* a trace with dictation stage spans (``encode``, ``stt``, ``rewrite``, ``paste``) becomes a
  ``pipeline_timing`` event: each stage's total, ``total_ms`` the root span, ``total_stage_ms`` the
  top-level stages;
* a trace with speech request-flow events (``FIRST_AUDIO_CHUNK``, ``FIRST_BYTE_RECEIVED``,
  ``FIRST_CHUNK_GENERATED``) or ``synthesize`` spans becomes a ``speech_timing`` event: TTFA is
  ``FIRST_AUDIO_CHUNK`` minus the root span's start (the request start, never a chunk's start);
  ``server_ms`` is a ``server`` child span when the trace is a client's, else the root span;
* anything else is rejected and counted (OTLP partial success).

Root attributes used (all optional): ``voxperf.app_version``, ``voxperf.app_build``,
``voxperf.os_version``, ``voxperf.session_id``, ``voxperf.provider``, ``voxperf.cache``,
``voxperf.outcome``, ``voxperf.processing_level``, ``voxperf.original_bytes``,
``voxperf.encoded_bytes``, ``voxperf.audio_s``, ``voxperf.streaming_efficiency``. The events are
then validated like any NDJSON line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from voxperf.telemetry.model import SCHEMA_VERSION
from voxperf.trace.core import Trace
from voxperf.trace.metrics import NS_PER_MS, stage_totals_ns, total_stage_ns
from voxperf.trace.otel import spans_by_trace, spans_from_otlp_json, trace_from_spans
from voxperf.trace.stages import ClientEvent, ServerEvent, Stage

__all__ = ["event_from_trace", "events_from_otlp_traces"]

_DICTATION = (Stage.ENCODE, Stage.STT, Stage.REWRITE, Stage.PASTE)


def _ms(ns: int) -> float:
    return round(ns / NS_PER_MS, 3)


def event_from_trace(trace: Trace) -> dict[str, Any] | None:
    """The telemetry event (NDJSON shape) of one request-flow trace; None if it is not one."""
    attrs = trace.attrs
    totals = stage_totals_ns(trace)
    # the first of each event name (OTel span events arrive as lower-case metric stems)
    first = {e.name.upper(): e.t_ns for e in reversed(trace.events)}
    duration = trace.end_ns - trace.start_ns
    fields: dict[str, Any]
    if any(stage in totals for stage in _DICTATION):
        name = "pipeline_timing"
        fields = {f"{stage}_ms": _ms(totals[stage]) for stage in _DICTATION if stage in totals}
        fields |= {"total_ms": _ms(duration), "total_stage_ms": _ms(total_stage_ns(trace))}
        for key in ("processing_level", "original_bytes", "encoded_bytes"):
            if attrs.get(key) is not None:
                fields[key] = attrs[key]
    elif Stage.SYNTHESIZE in totals or {
        ClientEvent.FIRST_AUDIO_CHUNK,
        ClientEvent.FIRST_BYTE_RECEIVED,
        ServerEvent.FIRST_CHUNK_GENERATED,
    } & set(first):
        name = "speech_timing"
        fields = {"total_ms": _ms(duration)}
        server = [s for s in trace.spans if s.name == "server"]
        fields["server_ms"] = _ms(server[0].end_ns - server[0].start_ns) if server else _ms(duration)
        for key, event in (
            ("ttfa_ms", ClientEvent.FIRST_AUDIO_CHUNK),
            ("first_byte_ms", ClientEvent.FIRST_BYTE_RECEIVED),
            ("first_chunk_ms", ServerEvent.FIRST_CHUNK_GENERATED),
        ):
            if event in first:
                fields[key] = _ms(first[event] - trace.start_ns)
        fields["chunks"] = sum(1 for s in trace.spans if s.name == Stage.SYNTHESIZE) or None
        for key in ("provider", "cache", "outcome", "audio_s", "streaming_efficiency"):
            if attrs.get(key) is not None:
                fields[key] = attrs[key]
        fields.setdefault("outcome", "ok")
    else:
        return None
    wall_s = trace.start_ns / 1e9  # OTLP times are epoch nanoseconds
    return {
        "schemaVersion": SCHEMA_VERSION,
        "appVersion": str(attrs.get("app_version") or "unknown"),
        "appBuild": str(attrs.get("app_build") or "0"),
        "osVersion": str(attrs.get("os_version") or "unknown"),
        "event": {
            "timestamp": datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="microseconds"),
            "name": name,
            "sessionID": str(attrs.get("session_id") or trace.request_id),
            "fields": {k: v for k, v in fields.items() if v is not None},
        },
    }


def events_from_otlp_traces(data: bytes) -> tuple[bytes, int, str]:
    """NDJSON of the events of an OTLP/JSON export, how many traces were rejected, and why (the
    first reason). A document that is not OTLP/JSON at all is a ``ValueError``."""
    lines: list[bytes] = []
    rejected, reason = 0, ""
    for group in spans_by_trace(spans_from_otlp_json(data)):
        try:
            event = event_from_trace(trace_from_spans(group))
        except (ValueError, OverflowError, OSError, RecursionError) as exc:  # this trace only
            event, why = None, f"trace {group[0].trace_id}: {type(exc).__name__}: {str(exc)[:200]}"
        else:
            why = f"trace {group[0].trace_id}: no dictation stage spans and no speech request-flow events"
        if event is None:
            rejected += 1
            reason = reason or why
            continue
        lines.append(msgspec.json.encode(event))
    return b"\n".join(lines), rejected, reason
