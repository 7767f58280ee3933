"""A voxperf stage span vs an OpenTelemetry SDK span, in the same run.

Goal (issue 2): a span costs <= 1 µs and is >= 10x cheaper than an OTel SDK span.
Run: make benchmarks ARGS="-k span"
"""

from __future__ import annotations

import time

from voxperf.trace.core import Trace

SPANS = 1_000


def _voxperf_spans() -> None:
    trace = Trace("bench")
    for _ in range(SPANS):
        with trace.span("stt"):
            pass


def _otel_tracer():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("voxperf-bench"), exporter


def test_voxperf_span(benchmark) -> None:
    benchmark(_voxperf_spans)
    per_span_ns = benchmark.stats.stats.median / SPANS * 1e9
    benchmark.extra_info["per_span_ns"] = round(per_span_ns, 1)


def test_otel_sdk_span(benchmark) -> None:
    tracer, exporter = _otel_tracer()

    def run() -> None:
        for _ in range(SPANS):
            with tracer.start_as_current_span("stt"):
                pass
        exporter.clear()

    benchmark(run)
    benchmark.extra_info["per_span_ns"] = round(benchmark.stats.stats.median / SPANS * 1e9, 1)


def test_span_ratio_interleaved() -> None:
    """Both kinds measured alternately in one loop, so machine noise hits both alike."""
    tracer, exporter = _otel_tracer()
    vox, otel = [], []
    for _ in range(30):
        t0 = time.perf_counter_ns()
        _voxperf_spans()
        t1 = time.perf_counter_ns()
        for _ in range(SPANS):
            with tracer.start_as_current_span("stt"):
                pass
        t2 = time.perf_counter_ns()
        exporter.clear()
        vox.append((t1 - t0) / SPANS)
        otel.append((t2 - t1) / SPANS)
    vox.sort()
    otel.sort()
    v, o = vox[len(vox) // 2], otel[len(otel) // 2]
    print(f"\nvoxperf span median {v:.0f} ns, OTel SDK span median {o:.0f} ns, ratio {o / v:.1f}x")
    assert v <= 1_000, f"voxperf span costs {v:.0f} ns (goal <= 1000 ns)"
    assert o / v >= 10, f"only {o / v:.1f}x cheaper than an OTel SDK span (goal >= 10x)"
