"""Codepath-lane overhead and fake-latency accuracy; provider STT stage vs a direct engine call.

Goals (issue 2):
- codepath lane, zero fake latency: orchestration overhead (total - sum of stages) p50 <= 100 µs;
- with --fake-latency stt=60ms the reported stt p50 is within 2 ms of 60 ms;
- provider lane: voxperf's stt stage / direct WhisperModel.transcribe of the same audio, interleaved, <= 1.03.
Run: make benchmarks ARGS="-k lanes -s"
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from voxperf.audio.codec import decode, resample
from voxperf.audio.fixtures import default_cache_dir, make_fixture
from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.engines.fakes import FakeRewriter
from voxperf.pipeline.dictation import DictationPipeline
from voxperf.trace.metrics import stage_ns


def _agg(result, lane: str, pipeline: str, level: str, metric: str) -> float:
    g = next(
        g
        for g in result.lanes[lane].summaries
        if g.pipeline == pipeline and g.level == level and g.fixture is None
    )
    return g.metrics[metric].p50


def test_codepath_overhead_zero_latency() -> None:
    config = BenchConfig(lanes=("codepath",), levels=("raw",), iterations=50, warmup=5, resamples=200)
    result = run_bench(config).result
    dictation = _agg(result, "codepath", "dictation", "raw", "overhead_ms") * 1000
    speech = _agg(result, "codepath", "speech", None, "overhead_ms") * 1000
    print(
        f"\ncodepath overhead p50: dictation {dictation:.1f} µs, speech {speech:.1f} µs (n=100 per pipeline)"
    )
    assert dictation <= 100 and speech <= 100


def test_fake_latency_is_reported_faithfully() -> None:
    config = BenchConfig(
        lanes=("codepath",),
        pipelines=("dictation",),
        levels=("raw",),
        iterations=20,
        warmup=1,
        fake_latency={"stt": 0.060},
        resamples=200,
    )
    result = run_bench(config).result
    stt = _agg(result, "codepath", "dictation", "raw", "stt_ms")
    print(f"\n--fake-latency stt=60ms: reported stt p50 {stt:.3f} ms")
    assert abs(stt - 60.0) <= 2.0


@pytest.mark.engines
def test_provider_stt_stage_vs_direct_transcribe() -> None:
    from voxperf.engines.stt.faster_whisper import FasterWhisperSTT
    from voxperf.engines.tts.piper import PiperTTS

    fixture = make_fixture("medium", PiperTTS(), default_cache_dir())
    data = Path(fixture.path).read_bytes()
    stt = FasterWhisperSTT()
    stt.warmup()
    audio16 = resample(decode(data), 16_000)
    pipe = DictationPipeline(stt, FakeRewriter(), encode_format="none")
    model = stt.model
    ours, direct = [], []
    for _ in range(12):
        res = pipe.run(data, "raw")
        ours.append(stage_ns(res.trace, "stt"))
        t0 = time.perf_counter_ns()
        segments, _info = model.transcribe(
            audio16.samples, language="en", beam_size=1, condition_on_previous_text=False
        )
        " ".join(s.text for s in segments)  # the work happens while iterating
        direct.append(time.perf_counter_ns() - t0)
    ratio = statistics.median(ours) / statistics.median(direct)
    print(
        f"\nstt stage p50 {statistics.median(ours) / 1e6:.1f} ms vs direct WhisperModel.transcribe "
        f"{statistics.median(direct) / 1e6:.1f} ms: ratio {ratio:.3f} (n=12, interleaved)"
    )
    assert ratio <= 1.03
