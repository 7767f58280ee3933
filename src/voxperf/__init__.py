"""voxperf: how fast is your speech pipeline, really?

The public API is the names in ``__all__``. They are imported lazily, so ``import voxperf`` loads
no engine, no model and reads no environment; the ``TYPE_CHECKING`` block below gives type
checkers the real objects (``reveal_type(voxperf.Trace)`` is the class). A test keeps the block
and ``_EXPORTS`` equal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from voxperf.audio.codec import (
        decode as decode,
    )
    from voxperf.audio.codec import (
        encode as encode,
    )
    from voxperf.audio.codec import (
        resample as resample,
    )
    from voxperf.audio.fixtures import (
        Fixture as Fixture,
    )
    from voxperf.audio.fixtures import (
        load_fixtures as load_fixtures,
    )
    from voxperf.audio.fixtures import (
        make_fixture as make_fixture,
    )
    from voxperf.audio.pcm import (
        Audio as Audio,
    )
    from voxperf.bench.ingest import (
        result_from_traces as result_from_traces,
    )
    from voxperf.bench.runner import (
        BenchConfig as BenchConfig,
    )
    from voxperf.bench.runner import (
        BenchOutcome as BenchOutcome,
    )
    from voxperf.bench.runner import (
        run_bench as run_bench,
    )
    from voxperf.bench.schema import (
        SCHEMA_VERSION as SCHEMA_VERSION,
    )
    from voxperf.bench.schema import (
        BenchResult as BenchResult,
    )
    from voxperf.bench.schema import (
        load_result as load_result,
    )
    from voxperf.bench.stats import (
        mixture_quantile as mixture_quantile,
    )
    from voxperf.bench.stats import (
        summarize as summarize,
    )
    from voxperf.engines.base import (
        EngineInfo as EngineInfo,
    )
    from voxperf.engines.base import (
        Rewriter as Rewriter,
    )
    from voxperf.engines.base import (
        Segment as Segment,
    )
    from voxperf.engines.base import (
        STTEngine as STTEngine,
    )
    from voxperf.engines.base import (
        Transcript as Transcript,
    )
    from voxperf.engines.base import (
        TTSEngine as TTSEngine,
    )
    from voxperf.engines.base import (
        VADEngine as VADEngine,
    )
    from voxperf.engines.base import (
        check_cancelled as check_cancelled,
    )
    from voxperf.engines.base import (
        run_cancellable as run_cancellable,
    )
    from voxperf.engines.fakes import (
        FakeRewriter as FakeRewriter,
    )
    from voxperf.engines.fakes import (
        FakeSTT as FakeSTT,
    )
    from voxperf.engines.fakes import (
        FakeTTS as FakeTTS,
    )
    from voxperf.engines.fakes import (
        FakeVAD as FakeVAD,
    )
    from voxperf.engines.registry import (
        EngineOption as EngineOption,
    )
    from voxperf.engines.registry import (
        EnginePlugin as EnginePlugin,
    )
    from voxperf.engines.registry import (
        create_engine as create_engine,
    )
    from voxperf.engines.registry import (
        describe_engines as describe_engines,
    )
    from voxperf.engines.registry import (
        engine_plugins as engine_plugins,
    )
    from voxperf.engines.registry import (
        parse_spec as parse_spec,
    )
    from voxperf.engines.registry import (
        register_engine as register_engine,
    )
    from voxperf.engines.registry import (
        registered as registered,
    )
    from voxperf.errors import (
        AudioError as AudioError,
    )
    from voxperf.errors import (
        Cancelled as Cancelled,
    )
    from voxperf.errors import (
        DependencyMissingError as DependencyMissingError,
    )
    from voxperf.errors import (
        EngineError as EngineError,
    )
    from voxperf.errors import (
        ExitCode as ExitCode,
    )
    from voxperf.errors import (
        FixtureError as FixtureError,
    )
    from voxperf.errors import (
        ModelNotFoundError as ModelNotFoundError,
    )
    from voxperf.errors import (
        PartialFailure as PartialFailure,
    )
    from voxperf.errors import (
        SchemaVersionError as SchemaVersionError,
    )
    from voxperf.errors import (
        ServiceUnavailableError as ServiceUnavailableError,
    )
    from voxperf.errors import (
        StoreError as StoreError,
    )
    from voxperf.errors import (
        UsageError as UsageError,
    )
    from voxperf.errors import (
        VoxperfError as VoxperfError,
    )
    from voxperf.pipeline.dictation import (
        DictationPipeline as DictationPipeline,
    )
    from voxperf.pipeline.dictation import (
        DictationResult as DictationResult,
    )
    from voxperf.pipeline.sinks import (
        AudioSink as AudioSink,
    )
    from voxperf.pipeline.sinks import (
        FileSink as FileSink,
    )
    from voxperf.pipeline.sinks import (
        NullAudioSink as NullAudioSink,
    )
    from voxperf.pipeline.sinks import (
        NullSink as NullSink,
    )
    from voxperf.pipeline.sinks import (
        RealtimeAudioSink as RealtimeAudioSink,
    )
    from voxperf.pipeline.sinks import (
        TextSink as TextSink,
    )
    from voxperf.pipeline.sinks import (
        WavFileSink as WavFileSink,
    )
    from voxperf.pipeline.speech import (
        SpeechPipeline as SpeechPipeline,
    )
    from voxperf.pipeline.speech import (
        SpeechResult as SpeechResult,
    )
    from voxperf.report.compare import (
        Comparison as Comparison,
    )
    from voxperf.report.compare import (
        comparability as comparability,
    )
    from voxperf.report.compare import (
        compare_results as compare_results,
    )
    from voxperf.report.gate import (
        GateConfig as GateConfig,
    )
    from voxperf.report.gate import (
        GateDecision as GateDecision,
    )
    from voxperf.report.gate import (
        decide as decide,
    )
    from voxperf.store.config import (
        open_store as open_store,
    )
    from voxperf.store.store import (
        ResultStore as ResultStore,
    )
    from voxperf.telemetry.client import (
        TelemetryClient as TelemetryClient,
    )
    from voxperf.trace.core import (
        Clock as Clock,
    )
    from voxperf.trace.core import (
        Event as Event,
    )
    from voxperf.trace.core import (
        Span as Span,
    )
    from voxperf.trace.core import (
        Trace as Trace,
    )
    from voxperf.trace.core import (
        current_trace as current_trace,
    )
    from voxperf.trace.core import (
        span as span,
    )
    from voxperf.trace.export import (
        chrome_trace as chrome_trace,
    )
    from voxperf.trace.export import (
        configure_timing_log as configure_timing_log,
    )
    from voxperf.trace.export import (
        log_event as log_event,
    )
    from voxperf.trace.export import (
        ndjson_line as ndjson_line,
    )
    from voxperf.trace.export import (
        pipeline_timing_event as pipeline_timing_event,
    )
    from voxperf.trace.export import (
        write_ndjson as write_ndjson,
    )
    from voxperf.trace.metrics import (
        Playout as Playout,
    )
    from voxperf.trace.metrics import (
        WordErrors as WordErrors,
    )
    from voxperf.trace.metrics import (
        corpus_wer as corpus_wer,
    )
    from voxperf.trace.metrics import (
        overhead_ns as overhead_ns,
    )
    from voxperf.trace.metrics import (
        playout as playout,
    )
    from voxperf.trace.metrics import (
        rtfx as rtfx,
    )
    from voxperf.trace.metrics import (
        stage_ns as stage_ns,
    )
    from voxperf.trace.metrics import (
        stage_totals_ms as stage_totals_ms,
    )
    from voxperf.trace.metrics import (
        stage_totals_ns as stage_totals_ns,
    )
    from voxperf.trace.metrics import (
        streaming_efficiency as streaming_efficiency,
    )
    from voxperf.trace.metrics import (
        total_ns as total_ns,
    )
    from voxperf.trace.metrics import (
        total_stage_ns as total_stage_ns,
    )
    from voxperf.trace.metrics import (
        ttfa_ns as ttfa_ns,
    )
    from voxperf.trace.metrics import (
        wer as wer,
    )
    from voxperf.trace.metrics import (
        word_errors as word_errors,
    )
    from voxperf.trace.otel import (
        OTelCollector as OTelCollector,
    )
    from voxperf.trace.otel import (
        OTelExporter as OTelExporter,
    )
    from voxperf.trace.otel import (
        traces_from_otlp_json as traces_from_otlp_json,
    )
    from voxperf.trace.stages import (
        ClientEvent as ClientEvent,
    )
    from voxperf.trace.stages import (
        ServerEvent as ServerEvent,
    )
    from voxperf.trace.stages import (
        Stage as Stage,
    )


# public name -> module that defines it (one source of truth per concept)
_EXPORTS: dict[str, str] = {
    "VoxperfError": "voxperf.errors",
    "UsageError": "voxperf.errors",
    "AudioError": "voxperf.errors",
    "FixtureError": "voxperf.errors",
    "ModelNotFoundError": "voxperf.errors",
    "EngineError": "voxperf.errors",
    "DependencyMissingError": "voxperf.errors",
    "SchemaVersionError": "voxperf.errors",
    "PartialFailure": "voxperf.errors",
    "Cancelled": "voxperf.errors",
    "ServiceUnavailableError": "voxperf.errors",
    "StoreError": "voxperf.errors",
    "ExitCode": "voxperf.errors",
    "Trace": "voxperf.trace.core",
    "span": "voxperf.trace.core",
    "current_trace": "voxperf.trace.core",
    "Span": "voxperf.trace.core",
    "Event": "voxperf.trace.core",
    "Clock": "voxperf.trace.core",
    "Stage": "voxperf.trace.stages",
    "ClientEvent": "voxperf.trace.stages",
    "ServerEvent": "voxperf.trace.stages",
    "ttfa_ns": "voxperf.trace.metrics",
    "rtfx": "voxperf.trace.metrics",
    "streaming_efficiency": "voxperf.trace.metrics",
    "wer": "voxperf.trace.metrics",
    "word_errors": "voxperf.trace.metrics",
    "WordErrors": "voxperf.trace.metrics",
    "corpus_wer": "voxperf.trace.metrics",
    "playout": "voxperf.trace.metrics",
    "Playout": "voxperf.trace.metrics",
    "total_ns": "voxperf.trace.metrics",
    "total_stage_ns": "voxperf.trace.metrics",
    "stage_ns": "voxperf.trace.metrics",
    "stage_totals_ns": "voxperf.trace.metrics",
    "stage_totals_ms": "voxperf.trace.metrics",
    "overhead_ns": "voxperf.trace.metrics",
    "pipeline_timing_event": "voxperf.trace.export",
    "chrome_trace": "voxperf.trace.export",
    "write_ndjson": "voxperf.trace.export",
    "ndjson_line": "voxperf.trace.export",
    "log_event": "voxperf.trace.export",
    "configure_timing_log": "voxperf.trace.export",
    "Audio": "voxperf.audio.pcm",
    "decode": "voxperf.audio.codec",
    "encode": "voxperf.audio.codec",
    "resample": "voxperf.audio.codec",
    "Fixture": "voxperf.audio.fixtures",
    "load_fixtures": "voxperf.audio.fixtures",
    "make_fixture": "voxperf.audio.fixtures",
    "STTEngine": "voxperf.engines.base",
    "TTSEngine": "voxperf.engines.base",
    "VADEngine": "voxperf.engines.base",
    "Rewriter": "voxperf.engines.base",
    "EngineInfo": "voxperf.engines.base",
    "Transcript": "voxperf.engines.base",
    "Segment": "voxperf.engines.base",
    "check_cancelled": "voxperf.engines.base",
    "run_cancellable": "voxperf.engines.base",
    "FakeSTT": "voxperf.engines.fakes",
    "FakeTTS": "voxperf.engines.fakes",
    "FakeVAD": "voxperf.engines.fakes",
    "FakeRewriter": "voxperf.engines.fakes",
    "create_engine": "voxperf.engines.registry",
    "parse_spec": "voxperf.engines.registry",
    "EnginePlugin": "voxperf.engines.registry",
    "EngineOption": "voxperf.engines.registry",
    "register_engine": "voxperf.engines.registry",
    "registered": "voxperf.engines.registry",
    "engine_plugins": "voxperf.engines.registry",
    "describe_engines": "voxperf.engines.registry",
    "DictationPipeline": "voxperf.pipeline.dictation",
    "DictationResult": "voxperf.pipeline.dictation",
    "SpeechPipeline": "voxperf.pipeline.speech",
    "SpeechResult": "voxperf.pipeline.speech",
    "TextSink": "voxperf.pipeline.sinks",
    "AudioSink": "voxperf.pipeline.sinks",
    "NullSink": "voxperf.pipeline.sinks",
    "NullAudioSink": "voxperf.pipeline.sinks",
    "FileSink": "voxperf.pipeline.sinks",
    "WavFileSink": "voxperf.pipeline.sinks",
    "RealtimeAudioSink": "voxperf.pipeline.sinks",
    "BenchConfig": "voxperf.bench.runner",
    "BenchOutcome": "voxperf.bench.runner",
    "run_bench": "voxperf.bench.runner",
    "BenchResult": "voxperf.bench.schema",
    "load_result": "voxperf.bench.schema",
    "SCHEMA_VERSION": "voxperf.bench.schema",
    "summarize": "voxperf.bench.stats",
    "mixture_quantile": "voxperf.bench.stats",
    "Comparison": "voxperf.report.compare",
    "compare_results": "voxperf.report.compare",
    "comparability": "voxperf.report.compare",
    "GateConfig": "voxperf.report.gate",
    "GateDecision": "voxperf.report.gate",
    "decide": "voxperf.report.gate",
    "ResultStore": "voxperf.store.store",
    "open_store": "voxperf.store.config",
    "TelemetryClient": "voxperf.telemetry.client",
    "result_from_traces": "voxperf.bench.ingest",
    "traces_from_otlp_json": "voxperf.trace.otel",
    "OTelExporter": "voxperf.trace.otel",
    "OTelCollector": "voxperf.trace.otel",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'voxperf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
