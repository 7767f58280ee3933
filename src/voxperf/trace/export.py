"""Trace exporters: the ``pipeline_timing`` NDJSON event, the timing log and Chrome trace JSON.

No exporter ever writes transcript text or other user content: only stage names, timings, byte
counts, the processing level and ids. The timing log is the ``voxperf.timing`` logger: one NDJSON
event per line (``voxperf serve`` and its workers write every finished request's event there).
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from voxperf.trace.core import Trace
from voxperf.trace.metrics import NS_PER_MS, stage_ns, total_ns
from voxperf.trace.stages import Stage

__all__ = [
    "PIPELINE_TIMING_FIELDS",
    "PIPELINE_TIMING_SCHEMA_VERSION",
    "TIMING_LOGGER",
    "chrome_trace",
    "configure_timing_log",
    "log_event",
    "ndjson_line",
    "pipeline_timing_event",
    "write_ndjson",
]

TIMING_LOGGER = "voxperf.timing"
_timing_log = logging.getLogger(TIMING_LOGGER)

PIPELINE_TIMING_SCHEMA_VERSION = 1
# exactly the pipeline_timing event's fields, in its order
PIPELINE_TIMING_FIELDS = (
    "processing_level",
    "total_ms",
    "total_stage_ms",
    "encode_ms",
    "stt_ms",
    "rewrite_ms",
    "paste_ms",
    "original_bytes",
    "encoded_bytes",
)


def _ms(ns: int) -> int:
    return round(ns / NS_PER_MS)


def pipeline_timing_event(
    trace: Trace,
    *,
    processing_level: str,
    original_bytes: int,
    encoded_bytes: int,
    app_version: str,
    app_build: str = "0",
    os_version: str | None = None,
    session_id: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """One ``pipeline_timing`` line (schemaVersion 1) for a finished dictation trace.

    Integer milliseconds, as the dictation app's runtime upload sends them. ``total_stage_ms`` is
    its sum of encode, stt, rewrite and paste (the app's own stages), so voxperf's front-end stages
    (decode, resample, vad) show up in ``total_ms - total_stage_ms`` exactly as an app that does not
    time them would see.
    """
    stages = {s: stage_ns(trace, s) for s in (Stage.ENCODE, Stage.STT, Stage.REWRITE, Stage.PASTE)}
    fields = {
        "processing_level": processing_level,
        "total_ms": _ms(total_ns(trace)),
        "total_stage_ms": _ms(sum(stages.values())),
        "encode_ms": _ms(stages[Stage.ENCODE]),
        "stt_ms": _ms(stages[Stage.STT]),
        "rewrite_ms": _ms(stages[Stage.REWRITE]),
        "paste_ms": _ms(stages[Stage.PASTE]),
        "original_bytes": int(original_bytes),
        "encoded_bytes": int(encoded_bytes),
    }
    ts = (timestamp or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schemaVersion": PIPELINE_TIMING_SCHEMA_VERSION,
        "appVersion": app_version,
        "appBuild": app_build,
        "osVersion": os_version or platform.platform(terse=True),
        "event": {
            "timestamp": ts,
            "name": "pipeline_timing",
            "sessionID": session_id or str(uuid.uuid4()),
            "fields": fields,
        },
    }


def ndjson_line(event: Mapping[str, Any]) -> str:
    """One event as one compact JSON line (without the newline)."""
    return json.dumps(event, separators=(",", ":"))


def write_ndjson(events: Iterable[Mapping[str, Any]], fh: Any) -> int:
    """Write one compact JSON object per line; returns the number of lines."""
    n = 0
    for ev in events:
        fh.write(ndjson_line(ev) + "\n")
        n += 1
    return n


def log_event(event: Mapping[str, Any]) -> None:
    """Log one event as an NDJSON line on the timing log (``voxperf.timing``, INFO)."""
    if _timing_log.isEnabledFor(logging.INFO):
        _timing_log.info(ndjson_line(event))


def configure_timing_log(stream: TextIO | None = None) -> logging.Handler | None:
    """Make timing-log lines reach stderr (or ``stream``), once.

    The logger is set to INFO if it has no level of its own. A handler is added only when none
    would see its records yet (on ``voxperf.timing`` or an ancestor, e.g. a root handler from
    ``logging.basicConfig`` or uvicorn's ``--log-config``); it writes the bare line and does not
    propagate, so a root handler configured later does not print it twice. Returns the handler
    it added, or None.
    """
    if _timing_log.level == logging.NOTSET:
        _timing_log.setLevel(logging.INFO)
    if _timing_log.hasHandlers():
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _timing_log.addHandler(handler)
    _timing_log.propagate = False
    return handler


def chrome_trace(traces: Iterable[tuple[Trace, Mapping[str, Any]]]) -> dict[str, Any]:
    """Chrome trace-event JSON: each request on its own track (tid), spans as complete events.

    ``traces`` pairs each trace with labels (lane, pipeline, fixture, level, iteration) that name
    its track. Timestamps are microseconds relative to the earliest request start, so the file opens
    in Perfetto (ui.perfetto.dev) or chrome://tracing.
    """
    items = list(traces)
    events: list[dict[str, Any]] = []
    if not items:
        return {"traceEvents": events, "displayTimeUnit": "ms"}
    origin = min(t.start_ns for t, _ in items)
    pids: dict[str, int] = {}
    for tid, (trace, labels) in enumerate(items, start=1):
        lane = str(labels.get("lane", "voxperf"))
        if lane not in pids:
            pids[lane] = len(pids) + 1
            events.append(
                {"ph": "M", "name": "process_name", "pid": pids[lane], "args": {"name": f"{lane} lane"}}
            )
        pid = pids[lane]
        track = " ".join(
            str(labels[k]) for k in ("pipeline", "fixture", "level", "iteration") if labels.get(k) is not None
        )
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}})
        args = {"request_id": trace.request_id, **{k: v for k, v in labels.items() if v is not None}}
        events.append(
            {
                "name": str(labels.get("pipeline", "request")),
                "cat": "request",
                "ph": "X",
                "ts": (trace.start_ns - origin) / 1000,
                "dur": (trace.end_ns - trace.start_ns) / 1000,
                "pid": pid,
                "tid": tid,
                "args": args,
            }
        )
        for span in trace.spans:
            events.append(
                {
                    "name": span.name,
                    "cat": "stage",
                    "ph": "X",
                    "ts": (span.start_ns - origin) / 1000,
                    "dur": (span.end_ns - span.start_ns) / 1000,
                    "pid": pid,
                    "tid": tid,
                    "args": dict(span.attrs or {}),
                }
            )
        for ev in trace.events:
            events.append(
                {
                    "name": ev.name,
                    "cat": "event",
                    "ph": "i",
                    "s": "t",
                    "ts": (ev.t_ns - origin) / 1000,
                    "pid": pid,
                    "tid": tid,
                    "args": dict(ev.attrs or {}),
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms"}
