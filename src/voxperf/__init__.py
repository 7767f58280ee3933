"""voxperf: how fast is your speech pipeline, really?

The public API is the names in ``__all__``; they are imported lazily, so ``import voxperf`` loads
no engine, no model and reads no environment.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (one source of truth per concept)
_EXPORTS: dict[str, str] = {
    # errors
    "VoxperfError": "voxperf.errors",
    "UsageError": "voxperf.errors",
    "AudioError": "voxperf.errors",
    "FixtureError": "voxperf.errors",
    "ModelNotFoundError": "voxperf.errors",
    "EngineError": "voxperf.errors",
    "DependencyMissingError": "voxperf.errors",
    "SchemaVersionError": "voxperf.errors",
    "PartialFailure": "voxperf.errors",
    "ExitCode": "voxperf.errors",
    # trace core and metrics
    "Trace": "voxperf.trace.core",
    "Span": "voxperf.trace.core",
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
    # audio and engines
    "Audio": "voxperf.audio.pcm",
    "Fixture": "voxperf.audio.fixtures",
    "load_fixtures": "voxperf.audio.fixtures",
    "make_fixture": "voxperf.audio.fixtures",
    "STTEngine": "voxperf.engines.base",
    "TTSEngine": "voxperf.engines.base",
    "VADEngine": "voxperf.engines.base",
    "Rewriter": "voxperf.engines.base",
    "EngineInfo": "voxperf.engines.base",
    "Transcript": "voxperf.engines.base",
    "create_engine": "voxperf.engines.registry",
    "parse_spec": "voxperf.engines.registry",
    # pipelines
    "DictationPipeline": "voxperf.pipeline.dictation",
    "SpeechPipeline": "voxperf.pipeline.speech",
    # bench
    "BenchConfig": "voxperf.bench.runner",
    "run_bench": "voxperf.bench.runner",
    "BenchResult": "voxperf.bench.schema",
    "load_result": "voxperf.bench.schema",
    "SCHEMA_VERSION": "voxperf.bench.schema",
    "summarize": "voxperf.bench.stats",
    "mixture_quantile": "voxperf.bench.stats",
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
