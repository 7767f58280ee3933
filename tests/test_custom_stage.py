"""Your stages count: a span opened by user code (here an engine's sub-span on the ambient trace)
is summarised, compared and gated like the built-in stages, end to end through ``run_bench``.

The engine records its phase with explicit timestamps (as a cloud API reports server-side phases),
so every duration here is exact and nothing depends on how long anything took."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxperf.audio.pcm import Audio
from voxperf.bench.catalog import is_known_metric, is_stage_metric, thresholds_of, unit_of
from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.engines.base import Transcript
from voxperf.engines.fakes import FakeSTT
from voxperf.engines.registry import EngineOption, EnginePlugin, registered
from voxperf.report.compare import compare_results
from voxperf.report.gate import gate_config_from
from voxperf.trace.core import Trace, current_trace, span
from voxperf.trace.metrics import stage_totals_ns, total_stage_ns


class DiarizingSTT(FakeSTT):
    """A fake STT whose work includes a ``diarize`` phase of exactly ``diarize_ms``."""

    def __init__(self, diarize_ms: float = 3.0, **options: str) -> None:
        super().__init__(**options)
        self.diarize_ns = int(float(diarize_ms) * 1_000_000)

    def transcribe(self, audio: Audio) -> Transcript:
        out = super().transcribe(audio)
        trace = current_trace()
        assert trace is not None, "the pipeline makes its trace current while a request runs"
        now = trace.clock()
        trace.add_span("diarize", now - self.diarize_ns, now)  # nested in the open stt span
        return out


def test_spans_of_any_name_are_metrics_and_sub_spans_keep_their_path() -> None:
    now = [0]
    trace = Trace(clock=lambda: now[0])
    with trace.activate():
        with span("stt"):
            now[0] += 10
            with span("encode"):
                now[0] += 5
        with span("diarize"):  # a custom top-level stage
            now[0] += 7
    assert span("outside") is not None and current_trace() is None  # no request: nothing recorded
    trace.finish()
    assert stage_totals_ns(trace) == {"stt": 15, "stt.encode": 5, "diarize": 7}
    assert total_stage_ns(trace) == 22  # the sub-span is part of stt, not counted twice
    assert is_stage_metric("diarize_ms") and not is_stage_metric("stt.encode_ms")
    assert is_known_metric("stt.encode_ms") and unit_of("stt.encode_ms") == "ms"
    assert thresholds_of("diarize_ms") == thresholds_of("stt_ms")
    assert not is_stage_metric("ttfa_ms") and not is_known_metric("nope")


def _bench(tone_dir: Path, diarize_ms: float) -> object:
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        stt=f"diarizing:diarize_ms={diarize_ms}",
        vad="none",
        levels=("raw",),
        iterations=6,
        warmup=0,
        resamples=200,
    )
    return run_bench(config, isolate=False).result


def test_a_custom_stage_is_summarised_compared_and_gated(tone_dir: Path) -> None:
    plugin = EnginePlugin(
        role="stt",
        name="diarizing",
        factory=DiarizingSTT,
        options=(EngineOption("diarize_ms", "float", 3.0), EngineOption("latency", "duration", "0")),
    )
    with registered(plugin):
        base = _bench(tone_dir, 3.0)
        head = _bench(tone_dir, 30.0)
    lane = head.lanes["provider"]  # type: ignore[attr-defined]
    assert all(r.metrics["stt.diarize_ms"] == pytest.approx(30.0) for r in lane.runs)
    aggregate = next(g for g in lane.summaries if g.fixture is None)
    assert aggregate.metrics["stt.diarize_ms"].p50 == pytest.approx(30.0)  # summarised
    comparison = compare_results(base, head, resamples=200)  # type: ignore[arg-type]
    rows = [r for r in comparison.rows if r.metric == "stt.diarize_ms" and r.fixture is None]
    assert rows and all(r.verdict == "regression" for r in rows)  # compared, in ms, lower is better
    assert rows[0].unit == "ms"
    assert gate_config_from({"metrics": ["stt.diarize_ms", "total_ms"]}).metrics == (
        "stt.diarize_ms",
        "total_ms",
    )
