"""Codepath-lane overhead and fake-latency accuracy.

Goals (issue 2):
- codepath lane, zero fake latency: orchestration overhead (total - sum of stages) p50 <= 100 µs;
- with --fake-latency stt=60ms the reported stt p50 is within 2 ms of 60 ms;
(The provider lane's stt stage vs a direct WhisperModel.transcribe is benchmarks/test_stt_stage_ratio.py.)
Run: make benchmarks ARGS="-k lanes -s"
"""

from __future__ import annotations

from voxperf.bench.runner import BenchConfig, run_bench


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
