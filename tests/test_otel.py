"""Traces replayed into a real OpenTelemetry SDK (in-memory exporter)."""

from __future__ import annotations

import pytest

from voxperf.trace.core import Trace
from voxperf.trace.otel import OTelExporter
from voxperf.trace.stages import ServerEvent, Stage

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed")


def test_trace_becomes_an_otel_span_tree() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    now = [1_000_000]

    def clock() -> int:
        return now[0]

    trace = Trace("req-7", clock=clock, attrs={"pipeline": "dictation", "level": "clean"})
    now[0] += 5_000
    with trace.span(Stage.STT):
        now[0] += 40_000
        with trace.span("beam"):
            now[0] += 10_000
    trace.event(ServerEvent.REQUEST_COMPLETE)
    now[0] += 1_000
    trace.finish()
    OTelExporter(provider.get_tracer("test"), clock_anchor=(10**18, 0)).export(trace, {"fixture": "short"})
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"dictation", "stt", "beam"}
    root, stt, beam = spans["dictation"], spans["stt"], spans["beam"]
    assert stt.parent.span_id == root.context.span_id and beam.parent.span_id == stt.context.span_id
    assert (root.end_time - root.start_time) == 56_000
    assert (stt.start_time - root.start_time, stt.end_time - stt.start_time) == (5_000, 50_000)
    assert root.start_time == 10**18 + 1_000_000
    assert root.attributes["voxperf.request_id"] == "req-7" and root.attributes["voxperf.fixture"] == "short"
    assert [e.name for e in root.events] == ["REQUEST_COMPLETE"]


def test_unfinished_trace_is_refused() -> None:
    with pytest.raises(ValueError):
        OTelExporter().export(Trace())
