"""OpenTelemetry in: span trees of an instrumented app (through the real SDK, or an OTLP/JSON
export) become voxperf traces and a result that compare and gate read like bench output.

Spans get explicit timestamps, so every expected duration is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from voxperf.bench.ingest import result_from_traces
from voxperf.bench.schema import dump_result, parse_result
from voxperf.report.compare import compare_results
from voxperf.trace.metrics import stage_totals_ns
from voxperf.trace.otel import OTelCollector, traces_from_otlp_json

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed ([otel])")

MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # epoch ns, as OTel timestamps are
CANARY = "my credit card is 4111"


def _turn(tracer: Any, start: int, llm_ms: int, fixture: str = "greeting") -> None:
    """One voice-agent turn: stt (with a network sub-span), llm, tts overlapping llm's tail."""
    from opentelemetry import trace

    root = tracer.start_span(
        "turn", start_time=start, attributes={"voxperf.fixture": fixture, "transcript": CANARY}
    )
    ctx = trace.set_span_in_context(root)
    stt = tracer.start_span("stt", context=ctx, start_time=start)
    net = tracer.start_span("network", context=trace.set_span_in_context(stt), start_time=start + 10 * MS)
    net.end(end_time=start + 60 * MS)
    stt.end(end_time=start + 100 * MS)
    llm = tracer.start_span(
        "llm_node", context=ctx, start_time=start + 100 * MS, attributes={"prompt": CANARY}
    )
    llm.end(end_time=start + (100 + llm_ms) * MS)
    tts = tracer.start_span("tts", context=ctx, start_time=start + (50 + llm_ms) * MS)
    tts.add_event("first_audio", timestamp=start + (70 + llm_ms) * MS)
    tts.end(end_time=start + (200 + llm_ms) * MS)
    root.end(end_time=start + (220 + llm_ms) * MS)


def _collect(llm_ms: list[int]) -> OTelCollector:
    collector = OTelCollector(names={"llm_node": "llm"})
    provider = sdk.TracerProvider()
    provider.add_span_processor(collector)  # type: ignore[arg-type]
    tracer = provider.get_tracer("app")
    for i, ms in enumerate(llm_ms):
        _turn(tracer, T0 + i * 10**9, ms)
    return collector


def test_the_sdk_processor_turns_each_finished_trace_into_a_voxperf_trace() -> None:
    (trace,) = _collect([200]).drain()
    assert stage_totals_ns(trace) == {
        "stt": 100 * MS,
        "stt.network": 50 * MS,
        "llm": 200 * MS,
        "tts": 150 * MS,
    }
    assert trace.end_ns - trace.start_ns == 420 * MS
    assert [(e.name, e.t_ns - trace.start_ns) for e in trace.events] == [("first_audio", 270 * MS)]
    assert trace.attrs == {"fixture": "greeting", "pipeline": "turn"}  # voxperf.* only: no transcript
    assert CANARY not in repr([s.attrs for s in trace.spans]) + repr(trace.attrs)


def test_ingested_traces_compare_and_gate_like_bench_results() -> None:
    base = result_from_traces(_collect([200] * 12).drain(), source="base", with_machine=False)
    head = result_from_traces(_collect([320] * 12).drain(), source="head", with_machine=False)
    run = base.lanes["provider"].runs[0]
    assert run.pipeline == "app" and run.cpuNs is None and run.metrics["llm_ms"] == pytest.approx(200.0)
    assert run.metrics["stt.network_ms"] == pytest.approx(50.0)
    assert "total_stage_ms" not in run.metrics and "overhead_ms" not in run.metrics  # stages overlap
    assert run.events == {"first_audio": 270 * MS}
    assert not base.lanes["provider"].resources.measured
    assert parse_result(json.loads(dump_result(base))) == base  # a valid v3 result file
    comparison = compare_results(base, head, resamples=200)
    rows = {r.metric: r for r in comparison.rows if r.fixture is None and r.stat == "p50"}
    assert rows["llm_ms"].verdict == "regression" and rows["total_ms"].verdict == "regression"
    assert rows["stt_ms"].verdict == "unchanged" and rows["stt.network_ms"].verdict == "unchanged"


def test_a_span_that_never_ends_cannot_grow_the_collector() -> None:
    from opentelemetry import trace

    collector = OTelCollector(max_pending=2)
    provider = sdk.TracerProvider()
    provider.add_span_processor(collector)  # type: ignore[arg-type]
    tracer = provider.get_tracer("app")
    for i in range(5):  # five requests whose root never ends
        root = tracer.start_span("turn", start_time=T0 + i)
        tracer.start_span("stt", context=trace.set_span_in_context(root), start_time=T0 + i).end(
            end_time=T0 + i + 1
        )
    assert collector.dropped == 3 and collector.drain() == []


def _otlp(llm_ms: int, trace_no: int) -> dict[str, Any]:
    start = T0 + trace_no * 10**9
    tid = f"{trace_no + 1:032x}"

    def span(sid: int, parent: int | None, name: str, a: int, b: int, **attrs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "traceId": tid,
            "spanId": f"{sid:016x}",
            "name": name,
            "startTimeUnixNano": str(start + a * MS),
            "endTimeUnixNano": str(start + b * MS),
            "attributes": [{"key": k, "value": v} for k, v in attrs.items()],
        }
        if parent is not None:
            out["parentSpanId"] = f"{parent:016x}"
        return out

    spans = [
        span(1, None, "turn", 0, 120 + llm_ms, **{"voxperf.fixture": {"stringValue": "weather"}}),
        span(2, 1, "stt", 0, 100),
        span(3, 1, "llm_node", 100, 100 + llm_ms, **{"gen_ai.usage.output_tokens": {"intValue": "42"}}),
    ]
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "app"}, "spans": spans}]}]}


def test_otlp_json_exports_become_results_on_the_command_line(tmp_path: Path) -> None:
    for name, llm in (("base", 300), ("head", 300)):
        lines = "\n".join(json.dumps(_otlp(llm + i % 3, i)) for i in range(10))  # one document a line
        (tmp_path / f"{name}.jsonl").write_text(lines + "\n")
    traces = traces_from_otlp_json((tmp_path / "base.jsonl").read_text(), names={"llm_node": "llm"})
    assert len(traces) == 10 and stage_totals_ns(traces[0]) == {"stt": 100 * MS, "llm": 300 * MS}
    for name in ("base", "head"):
        out = run_cli(
            "from-otel",
            str(tmp_path / f"{name}.jsonl"),
            "--map",
            "llm_node=llm",
            "-o",
            str(tmp_path / f"{name}.json"),
        )
        assert out.returncode == 0, out.stderr
        assert "10 traced request(s)" in out.stderr and "llm_ms" in out.stderr
    gate = run_cli(
        "gate",
        "--base",
        str(tmp_path / "base.json"),
        str(tmp_path / "head.json"),
        "--gate-metrics",
        "llm_ms,total_ms",
    )
    assert "llm_ms" in gate.stdout + gate.stderr and gate.returncode in (0, 3)
    (tmp_path / "bad.json").write_text('{"spans": []}')
    bad = run_cli("from-otel", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "no resourceSpans list" in bad.stderr and "Traceback" not in bad.stderr
