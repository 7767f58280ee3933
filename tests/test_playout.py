"""Streaming playout under a real-time player: the metric against an independent simulation.

``playout()`` computes stalls offline from delivery times; the tests check it against a
millisecond-by-millisecond player written here from scratch, and against the online account of a
``RealtimeAudioSink`` fed by the real speech pipeline on an injected clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo
from voxperf.pipeline.sinks import RealtimeAudioSink, parse_audio_sink
from voxperf.pipeline.speech import SpeechPipeline
from voxperf.trace.metrics import playout, streaming_efficiency

MS = 1_000_000


def simulate_ms(delivered_ms: list[int], durations_ms: list[int], prebuffer_ms: int = 0) -> tuple[int, int]:
    """An independent player at 1 ms resolution: (stall count, stall ms).

    Each millisecond the player plays one ms of buffered audio if it has any; once started, a
    millisecond with nothing buffered while audio is still to come is stall time."""
    start = delivered_ms[0] + prebuffer_ms
    total = sum(durations_ms)
    arrived = 0  # ms of audio delivered so far
    played = 0
    stalls = stall_ms = 0
    stalled = False
    t = start
    i = 0
    while played < total:
        while i < len(delivered_ms) and delivered_ms[i] <= t:
            arrived += durations_ms[i]
            i += 1
        if played < arrived:
            played += 1
            stalled = False
        else:
            if not stalled:
                stalls += 1
                stalled = True
            stall_ms += 1
        t += 1
    return stalls, stall_ms


chunks_strategy = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 300)),  # (gap after previous delivery, duration) in ms
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(chunks_strategy, st.integers(0, 300))
def test_playout_matches_a_millisecond_simulation(chunks: list[tuple[int, int]], prebuffer: int) -> None:
    delivered = list(np.cumsum([gap for gap, _ in chunks]) + 50)
    durations = [d for _, d in chunks]
    got = playout([d * MS for d in delivered], [d * MS for d in durations], prebuffer_ns=prebuffer * MS)
    stalls, stall_ms = simulate_ms(delivered, durations, prebuffer)
    assert got.stall_count == stalls
    assert got.stall_ns == stall_ms * MS
    assert got.end_ns == (delivered[0] + prebuffer + sum(durations) + stall_ms) * MS
    # the pre-buffer it asks for is the smallest one that plays without a gap
    need = got.prebuffer_needed_ns // MS
    assert simulate_ms(delivered, durations, need) == (0, 0)
    if need > 0:
        assert simulate_ms(delivered, durations, need - 1)[0] > 0
    assert 0 < got.efficiency <= 1.0
    assert (got.efficiency == 1.0) == (stall_ms == 0)


def test_playout_known_example() -> None:
    # three 1 s chunks delivered at 0, 1.5 s and 2.0 s: the player runs dry at 1.0 s for 0.5 s
    p = playout([0, 1500 * MS, 2000 * MS], [1000 * MS] * 3)
    assert (p.stall_count, p.stall_ns) == (1, 500 * MS)
    assert p.end_ns == 3500 * MS
    assert p.prebuffer_needed_ns == 500 * MS
    assert p.efficiency == pytest.approx(3.0 / 3.5)
    # a player that waits 0.5 s before starting never stalls
    q = playout([0, 1500 * MS, 2000 * MS], [1000 * MS] * 3, prebuffer_ns=500 * MS)
    assert (q.stall_count, q.efficiency) == (0, 1.0)


def test_efficiency_is_not_a_speed_ratio() -> None:
    # a TTS 10x faster than real time delivering all audio at once: 100 %, never 1000 %
    p = playout([0, 1 * MS, 2 * MS], [1000 * MS] * 3)
    assert p.stall_count == 0 and p.efficiency == 1.0
    # the TTS logging plan's example: 6.89 s of audio that took 27.39 s to play
    assert streaming_efficiency(6.89, 27.39) == pytest.approx(0.2515, abs=1e-4)
    with pytest.raises(ValueError):
        streaming_efficiency(1.0, 0.0)


def test_leading_silence_is_not_counted_as_played_audio() -> None:
    # 0.5 s of silence, then audio; the stall happens after the first audible sample
    p = playout([0, 2000 * MS], [1000 * MS, 1000 * MS], first_audible_offset_ns=500 * MS)
    assert p.audible_ns == 500 * MS
    assert p.audible_audio_ns == 1500 * MS
    assert p.efficiency == pytest.approx(1.5 / 2.5)


def test_playout_refuses_impossible_input() -> None:
    with pytest.raises(ValueError):
        playout([], [])
    with pytest.raises(ValueError):
        playout([2, 1], [1, 1])
    with pytest.raises(ValueError):
        playout([0], [-1])


class Clock:
    """A clock that only moves when the scripted engine says so."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class SlowTTS:
    """Chunks of fixed audio length, each taking a scripted time to generate."""

    def __init__(self, clock: Clock, gen_ms: list[int], chunk_ms: int, rate: int = 16_000) -> None:
        self.info = EngineInfo(role="tts", name="scripted", version="0", is_fake=True)
        self.sample_rate = rate
        self.clock = clock
        self.gen_ms = gen_ms
        t = np.arange(rate * chunk_ms // 1000) / rate
        self.chunk = Audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)

    def stream(self, text: str) -> Iterator[Audio]:
        for ms in self.gen_ms:
            self.clock.now += ms * MS
            yield self.chunk

    def warmup(self) -> None:
        return None


@pytest.mark.parametrize(
    "gen_ms",
    [
        [100, 100, 100, 100],  # 5x faster than real time: never stalls
        [100, 700, 100, 900],  # two chunks arrive after the buffer ran dry
        [300, 600, 600, 600],  # slower than real time throughout
    ],
)
def test_realtime_sink_sees_the_stalls_the_pipeline_reports(gen_ms: list[int]) -> None:
    clock = Clock()
    sink = RealtimeAudioSink(clock=clock)
    res = SpeechPipeline(SlowTTS(clock, gen_ms, chunk_ms=500), sink=sink, clock=clock).run("text")
    assert res.playout is not None
    seen = sink.requests[-1]
    assert (res.playout.stall_count, res.playout.stall_ns) == (seen.stalls, seen.stall_ns)
    delivered = list(np.cumsum(gen_ms))
    assert simulate_ms(delivered, [500] * len(gen_ms)) == (seen.stalls, seen.stall_ns // MS)
    if seen.stalls == 0:
        assert res.streaming_efficiency == 1.0
    else:
        # (the sine's first sample is 0, so the first audible sample sits a few samples in)
        assert res.streaming_efficiency == pytest.approx(2.0 / (2.0 + seen.stall_ns / 1e9), rel=1e-3)


def test_realtime_sink_is_a_cli_sink() -> None:
    assert isinstance(parse_audio_sink("realtime"), RealtimeAudioSink)
