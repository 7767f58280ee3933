"""Trace core and metric formulas, on an injected clock (no sleeps, no timing assertions)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxperf.trace.core import NO_PARENT, Trace
from voxperf.trace.metrics import (
    normalize_transcript,
    overhead_ns,
    rtfx,
    stage_ns,
    stage_totals_ns,
    streaming_efficiency,
    total_ns,
    total_stage_ns,
    ttfa_ns,
    wer,
)
from voxperf.trace.stages import DICTATION_STAGES, ClientEvent, ServerEvent, Stage


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: int = 1_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


def test_spans_record_injected_clock_and_nesting() -> None:
    clock = ManualClock()
    trace = Trace("req-1", clock=clock)
    clock.advance(5)
    with trace.span(Stage.DECODE):
        clock.advance(100)
    with trace.span(Stage.STT) as stt:
        clock.advance(10)
        with trace.span("inner") as inner:
            clock.advance(30)
        clock.advance(60)
    clock.advance(7)
    trace.finish()

    assert [s.name for s in trace.spans] == ["decode", "stt", "inner"]
    assert trace.spans[0].parent == NO_PARENT
    assert stt.parent == NO_PARENT
    assert inner.parent == 1  # index of the stt span
    assert stage_ns(trace, Stage.DECODE) == 100
    assert stage_ns(trace, Stage.STT) == 100
    assert inner.duration_ns == 30
    assert total_ns(trace) == 5 + 100 + 100 + 7
    # nested spans are not counted twice in the stage total
    assert total_stage_ns(trace) == 200
    assert overhead_ns(trace) == 12


def test_stage_summed_when_repeated_and_order_kept() -> None:
    clock = ManualClock()
    trace = Trace(clock=clock)
    for d in (10, 20, 30):
        with trace.span(Stage.SYNTHESIZE):
            clock.advance(d)
        with trace.span(Stage.SINK):
            clock.advance(1)
    trace.finish()
    assert stage_ns(trace, Stage.SYNTHESIZE) == 60
    assert list(stage_totals_ns(trace)) == ["synthesize", "sink"]
    assert stage_totals_ns(trace)["sink"] == 3


def test_span_records_exception_and_closes() -> None:
    clock = ManualClock()
    trace = Trace(clock=clock)
    with pytest.raises(ZeroDivisionError), trace.span(Stage.STT):
        clock.advance(4)
        _ = 1 / 0
    assert trace.spans[0].attrs == {"error": "ZeroDivisionError"}
    assert trace.spans[0].duration_ns == 4
    trace.finish()  # nothing left open


def test_finish_with_open_span_is_an_error() -> None:
    trace = Trace(clock=ManualClock())
    span = trace.span(Stage.STT)
    span.__enter__()
    with pytest.raises(RuntimeError, match="stt"):
        trace.finish()


def test_total_needs_finished_trace() -> None:
    with pytest.raises(ValueError, match="finished"):
        total_ns(Trace(clock=ManualClock()))


def test_events_and_add_span() -> None:
    clock = ManualClock(0)
    trace = Trace(clock=clock)
    trace.event(ClientEvent.REQUEST_START, t_ns=trace.start_ns)
    clock.advance(50)
    trace.event(ServerEvent.FIRST_CHUNK_GENERATED)
    trace.add_span(Stage.SYNTHESIZE, 10, 40)
    with pytest.raises(ValueError):
        trace.add_span(Stage.SYNTHESIZE, 40, 10)
    first = trace.first_event(ServerEvent.FIRST_CHUNK_GENERATED)
    assert first is not None and first.t_ns == 50
    assert trace.first_event("nope") is None
    assert stage_ns(trace, Stage.SYNTHESIZE) == 30


def test_request_ids_unique_by_default() -> None:
    ids = {Trace().request_id for _ in range(100)}
    assert len(ids) == 100


def test_stage_names_defined_once() -> None:
    assert [s.value for s in DICTATION_STAGES] == [
        "decode",
        "resample",
        "vad",
        "encode",
        "stt",
        "rewrite",
        "paste",
    ]
    # the TTS server's request-flow order (server side)
    assert [e.value for e in ServerEvent][:3] == [
        "REQUEST_RECEIVED",
        "PROCESSING_START",
        "TEXT_PROCESSING_COMPLETE",
    ]


def test_ttfa_from_request_start() -> None:
    # the TTS server's plan: request start at 0, first audible chunk delivered at 1841 ms
    assert ttfa_ns(0, 1_841_000_000) == 1_841_000_000
    assert ttfa_ns(500, 800) == 300
    with pytest.raises(ValueError):
        ttfa_ns(800, 500)


def test_streaming_efficiency_matches_the_logging_plans_example() -> None:
    assert streaming_efficiency(6.89, 27.39) == pytest.approx(0.2515, abs=1e-4)
    assert streaming_efficiency(10.0, 5.0) == 1.0  # a player cannot play faster than real time
    with pytest.raises(ValueError):
        streaming_efficiency(1.0, 0.0)


def test_rtfx() -> None:
    assert rtfx(10.0, 0.5) == 20.0
    with pytest.raises(ValueError):
        rtfx(1.0, 0.0)
    with pytest.raises(ValueError):
        rtfx(-1.0, 1.0)


@given(st.floats(0.01, 1e4), st.floats(1e-3, 1e4))
def test_rtfx_and_efficiency_scale(audio: float, proc: float) -> None:
    assert math.isclose(rtfx(audio, proc) * proc, audio, rel_tol=1e-9)
    assert math.isclose(rtfx(2 * audio, proc), 2 * rtfx(audio, proc), rel_tol=1e-9)


def test_wer_normaliser() -> None:
    assert normalize_transcript("  Hello, World!  It's  fine-tuned. ") == "hello world it is fine tuned"
    assert wer("Hello world.", "hello, WORLD") == 0.0
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
    assert wer("the cat sat", "") == 1.0
    with pytest.raises(ValueError):
        wer(" ?! ", "anything")
