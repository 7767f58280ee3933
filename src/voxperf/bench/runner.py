"""The bench runner: fixtures × levels × iterations through both pipelines, in one or two lanes.

Lanes:

* ``provider`` — the real engines named by the specs (faster-whisper, Piper, Silero ...);
* ``codepath`` — deterministic fakes of the same Protocols with configurable simulated latency,
  so what remains is voxperf's and the pipeline's own overhead. Its numbers are labelled as such.

Each iteration interleaves fixtures and levels (A B A B) so slow drift of a noisy machine spreads
over all of them. Warm-up iterations run the same work and are recorded with ``warmup: true`` but
excluded from statistics. Engine load and warm-up are timed separately from requests.
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing
import pickle
import queue as queue_module
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from voxperf import __version__, errors
from voxperf.audio.fixtures import Fixture, default_cache_dir, load_fixtures, make_fixture
from voxperf.audio.texts import VARIANTS
from voxperf.bench import stats
from voxperf.bench.catalog import METRIC_UNITS, catalogue_order, noise_thresholds, unit_of
from voxperf.bench.environment import ResourceMeter, git_info, load_average, machine_info
from voxperf.bench.instructions import (
    INSTRUMENTS,
    check_lanes,
    dumped_counts,
    mark,
    require_callgrind,
    spawn_under_callgrind,
)
from voxperf.bench.schedule import round_jobs, rounds
from voxperf.bench.schema import (
    LANES,
    PIPELINES,
    BenchResult,
    EngineRecord,
    FailureRecord,
    FixtureRecord,
    Flag,
    GroupSummary,
    LaneResult,
    Resources,
    RunRecord,
    SummaryRecord,
    WerRecord,
    WerUtterance,
    utc_timestamp,
)
from voxperf.engines.alloc import fix_malloc_thresholds
from voxperf.engines.base import LEVELS
from voxperf.engines.models import hash_model_files
from voxperf.engines.registry import (
    ROLES,
    EngineSource,
    EngineSpec,
    describe_source,
    is_factory,
    parse_spec,
    resolve_engine,
)
from voxperf.errors import EngineError, UsageError, VoxperfError
from voxperf.pipeline.dictation import ENCODE_FORMATS, DictationPipeline, DictationResult
from voxperf.pipeline.sinks import parse_audio_sink, parse_text_sink
from voxperf.pipeline.speech import SpeechPipeline, SpeechResult
from voxperf.trace.core import Trace
from voxperf.trace.metrics import (
    DEFAULT_NORMALIZER,
    NORMALIZERS,
    NS_PER_MS,
    WordErrors,
    overhead_ns,
    rtfx,
    stage_ns,
    stage_totals_ns,
    total_ns,
    total_stage_ns,
    word_errors,
)
from voxperf.trace.stages import ENGINE_STAGES, Stage

__all__ = [
    "DEFAULT_SPECS",
    "LEVELS",
    "METRIC_UNITS",
    "BenchConfig",
    "BenchOutcome",
    "parse_fake_latency",
    "run_bench",
]

DEFAULT_SPECS = {"stt": "faster-whisper", "tts": "piper", "vad": "silero", "rewrite": "local"}
FAKE_STAGES = {"stt": "stt", "tts": "tts", "synthesize": "tts", "vad": "vad", "rewrite": "rewrite"}

# a provider-lane engine stage faster than this (per request) did not do real work (the
# orchestrator's baseline report measured mocks and printed 0.00 ms)
IMPLAUSIBLE_FLOOR_MS = {"stt_ms": 1.0, "synthesize_ms": 1.0, "vad_ms": 0.02, "ttfa_ms": 0.5}


def parse_fake_latency(text: str | None) -> dict[str, float]:
    """``stt=60ms,rewrite=100ms`` -> {"stt": 0.06, "rewrite": 0.1} (seconds); units ms or s only."""
    from voxperf.engines.fakes import parse_duration_s

    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in FAKE_STAGES:
            raise UsageError(
                f"bad --fake-latency entry {part.strip()!r}",
                f"write stage=duration with stage in {', '.join(sorted(FAKE_STAGES))}, e.g. stt=60ms",
            )
        out[FAKE_STAGES[key]] = parse_duration_s(value.strip(), units=("ms", "s"))
    return out


@dataclass
class BenchConfig:
    """Everything a bench run depends on; recorded verbatim in the result's ``config``."""

    lanes: tuple[str, ...] = LANES
    pipelines: tuple[str, ...] = PIPELINES
    fixtures: Path | None = None  # directory or JSONL manifest; None = built-in variants
    variants: tuple[str, ...] = ("short", "medium")
    levels: tuple[str, ...] = ("raw", "clean")
    # engines: a spec ("faster-whisper:threads=2"), or an engine factory (a class or function;
    # picklable to cross into a lane's process), or an engine instance (with isolate=False)
    stt: EngineSource = DEFAULT_SPECS["stt"]
    tts: EngineSource = DEFAULT_SPECS["tts"]
    vad: EngineSource = DEFAULT_SPECS["vad"]  # or "none"
    rewrite: EngineSource = DEFAULT_SPECS["rewrite"]
    iterations: int = 5
    warmup: int = 1
    fake_latency: dict[str, float] = field(default_factory=dict)  # seconds per fake stage
    encode: str = "flac"
    paste: str = "null"
    audio_sink: str = "null"
    cache_dir: Path | None = None
    resamples: int = 2000
    keep_traces: bool = False
    normalizer: str = DEFAULT_NORMALIZER  # WER text normaliser (recorded in the result)
    instrument: str = "wall"  # or "instructions": callgrind counts per request (codepath lane)
    keep_text: bool = True  # False (--no-text): no transcripts or hypotheses in the result
    target_ci: float | None = None  # keep iterating until every gated p50's CI is within ±this
    max_time_s: float | None = None  # per lane: stop when spent (even before `iterations`)

    def validate(self) -> None:
        """Refuse impossible combinations before any model loads."""
        _subset("--lane", self.lanes, LANES)
        _subset("--pipeline", self.pipelines, PIPELINES)
        _subset("--levels", self.levels, LEVELS)
        if self.fixtures is None:
            _subset("--variant", self.variants, tuple(VARIANTS))
        if self.iterations < 1:
            raise UsageError(
                f"--iterations must be at least 1, got {self.iterations}", "use e.g. --iterations 5"
            )
        if self.warmup < 0:
            raise UsageError(f"--warmup cannot be negative, got {self.warmup}", "use 0 to skip warm-up")
        if self.normalizer not in NORMALIZERS:
            raise UsageError(
                f"unknown --normalizer {self.normalizer!r}", f"use one of {', '.join(NORMALIZERS)}"
            )
        if self.target_ci is not None and not 0 < self.target_ci < 1:
            raise UsageError(f"--target-ci must be between 0 and 100 %, got {self.target_ci:.0%}", "e.g. 2%")
        if self.max_time_s is not None and self.max_time_s <= 0:
            raise UsageError("--max-time must be positive", "e.g. --max-time 5min")
        if self.instrument not in INSTRUMENTS:
            raise UsageError(
                f"unknown --instrument {self.instrument!r}", f"use one of {', '.join(INSTRUMENTS)}"
            )
        if self.instrument == "instructions":
            check_lanes(self.lanes)
            require_callgrind()
        if self.encode not in ENCODE_FORMATS:
            raise UsageError(f"unknown --encode {self.encode!r}", f"use one of {', '.join(ENCODE_FORMATS)}")
        for role in ROLES:
            source = getattr(self, role)
            if isinstance(source, str) and not (role == "vad" and source == "none"):
                parse_spec(role, source)
        if (
            "polish" in self.levels
            and "provider" in self.lanes
            and isinstance(self.rewrite, str)
            and parse_spec("rewrite", self.rewrite).name != "openai"
        ):
            raise UsageError(
                "processing level 'polish' needs an OpenAI-compatible endpoint",
                "pass --rewrite openai:base_url=URL,model=NAME, or drop polish from --levels",
            )

    def check_isolation(self) -> None:
        """Engines given as objects must be able to cross into a lane's own process."""
        for role in ROLES:
            source = getattr(self, role)
            if isinstance(source, str):
                continue
            if not is_factory(source):
                raise UsageError(
                    f"the {role} engine is an instance, which cannot move into a lane's own process",
                    "pass its class or a module-level factory function, or run with isolate=False",
                )
            try:
                pickle.dumps(source)
            except Exception:
                raise UsageError(
                    f"the {role} engine factory {describe_source(source)} cannot be sent to a lane's process",
                    "use a class or a module-level function (not a lambda or closure), or isolate=False",
                ) from None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: engines are not copied
        d["fixtures"] = str(self.fixtures) if self.fixtures else None
        d["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        d["fake_latency_ms"] = {k: v * 1000 for k, v in d.pop("fake_latency").items()}
        for k in ("lanes", "pipelines", "variants", "levels"):
            d[k] = list(d[k])
        for role in ROLES:  # api keys in specs never reach result files
            d[role] = describe_source(d[role])
        return d


def _subset(option: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not values:
        raise UsageError(f"{option} is empty", f"choose from {', '.join(allowed)}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UsageError(f"unknown {option} value(s): {', '.join(bad)}", f"choose from {', '.join(allowed)}")


Progress = Callable[..., None]  # (description, advance, total=None)


@dataclass
class BenchOutcome:
    """The result plus what happened on the way (warnings, kept traces, timing events)."""

    result: BenchResult
    warnings: list[str]
    traces: list[tuple[Trace, dict[str, Any]]]
    timing_events: list[dict[str, Any]]  # pipeline_timing events of the provider lane's dictation runs

    @property
    def failures(self) -> list[FailureRecord]:
        return [f for lane in self.result.lanes.values() for f in lane.failures]

    @property
    def incomplete(self) -> bool:
        """The run was interrupted: the result holds only the requests that finished."""
        return self.result.incomplete


@dataclass
class _LaneOutput:
    """What one lane sends back from its worker process."""

    lane: LaneResult
    traces: list[tuple[Trace, dict[str, Any]]]
    timing_events: list[dict[str, Any]]
    interrupted: bool


class EngineCache:
    """Engines created once per spec and shared between fixture making and lanes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, EngineRecord]] = {}
        self._warmed: set[str] = set()

    def get(
        self, role: str, source: EngineSpec | EngineSource, *, policy: str, warm: bool = True
    ) -> tuple[Any, EngineRecord]:
        """The engine for a spec (or factory, or instance), created once (load timed) and warmed
        up once before timed use."""
        label = str(source) if isinstance(source, EngineSpec) else describe_source(source)
        key = f"{role}:{label}" if isinstance(source, EngineSpec | str) else f"{role}:{id(source)}"
        if key not in self._cache:
            t0 = time.perf_counter_ns()
            try:
                engine, _ = resolve_engine(role, source)
            except VoxperfError:
                raise
            except Exception as exc:  # an engine package failing to load is a provider problem
                raise EngineError(
                    f"{role} engine {label!r} failed to load: {exc}", "check its options"
                ) from exc
            load_ms = (time.perf_counter_ns() - t0) / NS_PER_MS
            info = engine.info
            record = EngineRecord(
                **info.to_dict(),
                modelFiles=hash_model_files(info.weights or (info.model_path,)),
                spec=label,
                selectionPolicy=policy,  # type: ignore[arg-type]
                loadMs=load_ms,
                warmupMs=0.0,
            )
            self._cache[key] = (engine, record)
        engine, record = self._cache[key]
        if warm and key not in self._warmed:
            t1 = time.perf_counter_ns()
            warmup = getattr(engine, "warmup", None)  # rewriters have none
            if warmup is not None:
                warmup()
            record = record.model_copy(update={"warmupMs": (time.perf_counter_ns() - t1) / NS_PER_MS})
            self._cache[key] = (engine, record)
            self._warmed.add(key)
        return engine, record


def _fixture_record(fx: Fixture, *, keep_text: bool = True) -> FixtureRecord:
    return FixtureRecord(
        name=fx.name,
        path=str(fx.path),
        variant=fx.variant,
        durationS=fx.duration_s,
        sampleRate=fx.sample_rate,
        bytes=fx.bytes,
        sha256=fx.sha256,
        hasTranscript=fx.text is not None,
        text=fx.text if keep_text else None,
    )


def prepare_fixtures(config: BenchConfig, engines: EngineCache, warnings: list[str]) -> list[Fixture]:
    if config.fixtures is not None:
        fixtures, found_warnings = load_fixtures(Path(config.fixtures))
        warnings.extend(found_warnings)
        return fixtures
    # built-in fixtures are synthesised with Piper (cached by content hash)
    tts, _ = engines.get("tts", parse_spec("tts", DEFAULT_SPECS["tts"]), policy="default", warm=False)
    cache = config.cache_dir or default_cache_dir()
    return [make_fixture(v, tts, cache) for v in config.variants]


def run_bench(
    config: BenchConfig,
    *,
    progress: Progress | None = None,
    cwd: Path | None = None,
    isolate: bool = True,
) -> BenchOutcome:
    """Run the whole bench and build the versioned result.

    With ``isolate`` (the default) each lane runs in a fresh worker process, so peak RSS, CPU time
    and engine thread pools belong to that lane alone and one lane cannot slow the other. Ctrl-C
    stops after the request in flight; the result then holds the finished requests and is marked
    ``incomplete`` (a second Ctrl-C abandons the run)."""
    config.validate()
    fix_malloc_thresholds()  # this process and the lanes' alike: see voxperf.engines.alloc
    if isolate:
        config.check_isolation()
    if config.instrument == "instructions" and not isolate:
        raise UsageError("instruction counts need the lane in its own process", "run with isolate=True")
    created = utc_timestamp()
    load_start = load_average()
    warnings: list[str] = []
    engines = EngineCache()
    fixtures = prepare_fixtures(config, engines, warnings)
    if isolate:
        del engines  # the fixture synthesiser is not needed by the lanes' own processes
    if progress:
        per_lane = total_requests(config, len(fixtures), sum(1 for f in fixtures if f.text))
        progress("running", 0, per_lane * len(config.lanes))
    traces: list[tuple[Trace, dict[str, Any]]] = []
    timing_events: list[dict[str, Any]] = []
    lanes: dict[str, LaneResult] = {}
    interrupted = False
    for lane in config.lanes:
        if isolate:
            out = _run_lane_in_worker(lane, config, fixtures, progress)
        else:
            out = _run_lane(lane, config, fixtures, progress, engines=engines)
        lanes[lane] = out.lane
        traces.extend(out.traces)
        timing_events.extend(out.timing_events)
        if out.interrupted:
            interrupted = True
            break
    machine = machine_info()
    machine["loadAverage1m"] = load_start
    machine["loadAverageEnd1m"] = load_average()
    _check_load(machine, lanes, warnings)
    if interrupted:
        warnings.append(
            "interrupted: the result holds only the requests that finished and is marked incomplete"
        )
    result = BenchResult(
        tool={"version": __version__},  # type: ignore[arg-type]
        createdAt=created,
        config=config.to_dict(),
        git=git_info(cwd),  # type: ignore[arg-type]
        machine=machine,  # type: ignore[arg-type]
        fixtures=[_fixture_record(f, keep_text=config.keep_text) for f in fixtures],
        lanes=lanes,
        incomplete=interrupted,
    )
    return BenchOutcome(result=result, warnings=warnings, traces=traces, timing_events=timing_events)


def _check_load(machine: dict[str, Any], lanes: dict[str, LaneResult], warnings: list[str]) -> None:
    """Warn (and flag every lane) when the machine had more runnable work than cores."""
    cores = machine.get("coresLogical") or 0
    loads = [v for v in (machine.get("loadAverage1m"), machine.get("loadAverageEnd1m")) if v is not None]
    if not cores or not loads or max(loads) <= cores:
        return
    message = (
        f"load average reached {max(loads):.2f} on {cores} core(s): other work competed for the CPU, "
        "so absolute times are inflated; compare ratios measured side by side, or rerun on a quiet machine"
    )
    warnings.append(message)
    for lane in lanes.values():
        lane.flags.append(Flag(kind="load", message=message))


def _lane_worker(
    lane: str,
    config: BenchConfig,
    fixtures: list[Fixture],
    channel: Any,
    stop: Any,
    callgrind_dir: Path | None = None,
) -> None:  # pragma: no cover - runs in the worker process (covered through run_bench)
    """Body of a lane's worker process: run the lane, send progress and the result back."""
    fix_malloc_thresholds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent asks us to stop between requests

    def report(description: str, advance: int, total: int | None = None) -> None:
        channel.put(("progress", description, advance))

    try:
        # counting instructions: no progress messages, whose queue thread would run inside requests
        quiet = callgrind_dir is not None
        out = _run_lane(
            lane, config, fixtures, None if quiet else report, stop=stop.is_set, callgrind_dir=callgrind_dir
        )
    except errors.VoxperfError as exc:
        channel.put(("error", type(exc).__name__, exc.message, exc.hint))
    except BaseException as exc:
        channel.put(("error", "EngineError", f"the {lane} lane failed: {type(exc).__name__}: {exc}", None))
    else:
        channel.put(("done", out))


def _run_lane_in_worker(
    lane: str, config: BenchConfig, fixtures: list[Fixture], progress: Progress | None
) -> _LaneOutput:
    """Run one lane in a fresh ``spawn`` process and wait for its result (Ctrl-C: stop politely).

    With ``--instrument instructions`` the process runs under callgrind (see bench.instructions)."""
    with contextlib.ExitStack() as stack:
        callgrind_dir = None
        if config.instrument == "instructions":
            callgrind_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="voxperf-cg-")))
        return _wait_for_lane(lane, config, fixtures, progress, callgrind_dir)
    raise AssertionError("unreachable")  # pragma: no cover - for type checkers


def _wait_for_lane(
    lane: str,
    config: BenchConfig,
    fixtures: list[Fixture],
    progress: Progress | None,
    callgrind_dir: Path | None,
) -> _LaneOutput:
    ctx = multiprocessing.get_context("spawn")
    channel = ctx.Queue()
    stop = ctx.Event()
    proc = ctx.Process(
        target=_lane_worker,
        args=(lane, config, fixtures, channel, stop, callgrind_dir),
        name=f"voxperf-{lane}-lane",
    )
    if callgrind_dir is not None:
        with spawn_under_callgrind(callgrind_dir):
            proc.start()
    else:
        proc.start()
    try:
        while True:
            try:
                message = channel.get(timeout=0.5)
                if message[0] == "progress":
                    if progress:
                        progress(message[1], message[2])
                    continue
            except queue_module.Empty:
                if not proc.is_alive():
                    raise EngineError(
                        f"the {lane} lane's worker process exited with code {proc.exitcode} without a result",
                        "an engine crashed the process; run with --lane to isolate it",
                    ) from None
                continue
            except KeyboardInterrupt:
                if stop.is_set():  # second Ctrl-C: give up on the lane
                    raise
                stop.set()  # the worker stops after the request in flight and sends what it has
                continue
            if message[0] == "done":
                out: _LaneOutput = message[1]
                out.interrupted = out.interrupted or stop.is_set()
                return out
            cls = getattr(errors, message[1], EngineError)
            raise cls(message[2], message[3])
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join()


def total_requests(config: BenchConfig, fixtures: int, speech_fixtures: int) -> int:
    """How many requests one lane runs (for the progress bar)."""
    per_iter = 0
    if "dictation" in config.pipelines:
        per_iter += fixtures * len(config.levels)
    if "speech" in config.pipelines:
        per_iter += speech_fixtures
    return per_iter * (config.iterations + config.warmup)


def lane_engines(
    lane: str, config: BenchConfig, engines: EngineCache
) -> tuple[dict[str, Any], list[EngineRecord]]:
    """Create (or reuse) the engines of a lane: real specs, or fakes with simulated latency."""
    made: dict[str, Any] = {}
    records: list[EngineRecord] = []
    roles = ["stt", "rewrite"] if "dictation" in config.pipelines else []
    if "speech" in config.pipelines:
        roles.append("tts")
    if config.vad != "none":
        roles.append("vad")
    for role in roles:
        source: EngineSpec | EngineSource
        if lane == "codepath":
            latency = config.fake_latency.get(role, 0.0)
            source = EngineSpec(role=role, name="fake", options={"latency": f"{latency}s"})
            policy = "forced"
        else:
            source = getattr(config, role)
            policy = "default" if source == DEFAULT_SPECS[role] else "forced"
            if isinstance(source, str):
                source = parse_spec(role, source)
        engine, record = engines.get(role, source, policy=policy)
        made[role] = engine
        records.append(record)
    return made, records


def lane_pipelines(
    made: dict[str, Any], config: BenchConfig
) -> tuple[DictationPipeline | None, SpeechPipeline | None]:
    """The pipelines a config asks for, built on a lane's engines and the configured sinks."""
    dictation = speech = None
    if "dictation" in config.pipelines:
        dictation = DictationPipeline(
            made["stt"],
            made["rewrite"],
            vad=made.get("vad"),
            sink=parse_text_sink(config.paste),
            encode_format=config.encode,
        )
    if "speech" in config.pipelines:
        speech = SpeechPipeline(made["tts"], sink=parse_audio_sink(config.audio_sink), vad=made.get("vad"))
    return dictation, speech


def _read_payloads(fixtures: list[Fixture]) -> dict[str, bytes | Exception]:
    payloads: dict[str, bytes | Exception] = {}
    for fx in fixtures:
        try:
            payloads[fx.name] = fx.path.read_bytes()
        except OSError as exc:
            payloads[fx.name] = exc
    return payloads


def _run_lane(
    lane: str,
    config: BenchConfig,
    fixtures: list[Fixture],
    progress: Progress | None,
    *,
    engines: EngineCache | None = None,
    stop: Callable[[], bool] | None = None,
    callgrind_dir: Path | None = None,
) -> _LaneOutput:
    """Run one lane's iterations; ``stop()`` is asked between requests (never inside one).

    With ``callgrind_dir`` (the process runs under callgrind) each request is bracketed by dump
    marks and gets its instruction count."""
    if callgrind_dir is not None:
        run_requests_inline()
    failures: list[FailureRecord] = []
    records: list[RunRecord] = []
    traces: list[tuple[Trace, dict[str, Any]]] = []
    timing_events: list[dict[str, Any]] = []
    hypotheses: dict[tuple[str, str], list[str]] = {}  # (level, fixture) -> delivered texts
    payloads = _read_payloads(fixtures)
    interrupted = False
    marked: list[RunRecord | None] = []  # one entry per bracketed request, None if it failed
    with ResourceMeter() as meter:
        cache = engines or EngineCache()
        made, engine_records = on_request_thread(lambda: lane_engines(lane, config, cache))
        dictation, speech = lane_pipelines(made, config)
        speech_fixtures = [f for f in fixtures if f.text]
        failed: set[tuple[str, str]] = set()
        label = f"{lane} lane"
        budget: dict[str, Any] = {}
        more = (
            _stopping_rule(config, records, fixtures, budget)
            if (config.target_ci or config.max_time_s)
            else None
        )
        for it, warm, phase, job in _schedule(config, fixtures, speech_fixtures, dictation, speech, more):
            if stop is not None and stop():
                interrupted = True
                break
            pipeline, fx, level = job
            if progress:
                where = f"{pipeline} · {fx.name}" + (f" · {level}" if level else "")
                with _interruptible() as cut:
                    progress(f"{label} · {where} · {phase}", 1)
                if cut:
                    interrupted = True
                    break
            if (pipeline, fx.name) in failed:
                continue
            if callgrind_dir is not None:
                gc.collect()  # a collection starts every request from the same heap state
                mark()
                marked.append(None)
            with _capture_failure(failures, failed, pipeline, fx.name, level), _interruptible() as cut:
                if pipeline == "dictation":
                    assert dictation is not None and level is not None
                    payload = payloads[fx.name]
                    if isinstance(payload, Exception):
                        raise UsageError(f"cannot read fixture {fx.path}: {payload}", "check the file")
                    rec, res = dictation_request(dictation, payload, fx, level, it, warm, lane)
                    if not warm and lane == "provider":
                        hypotheses.setdefault((level, fx.name), []).append(res.text)
                        timing_events.append(res.timing_event(__version__))
                    trace = res.trace
                else:
                    assert speech is not None
                    rec, sres = speech_request(speech, fx, it, warm, lane)
                    trace = sres.trace
                records.append(rec)
                if callgrind_dir is not None:
                    marked[-1] = rec
                if config.keep_traces:
                    traces.append((trace, _labels(lane, pipeline, fx.name, level, it, warm)))
            if callgrind_dir is not None:
                mark()
            if cut:  # Ctrl-C inside a request (inline lanes): that request is not recorded
                interrupted = True
                break
            meter.sample()  # between requests: no sampling thread runs inside the timed region
    only: tuple[str, ...] | None = None
    if callgrind_dir is not None:
        for counted, count in zip(marked, dumped_counts(callgrind_dir, len(marked)), strict=True):
            if counted is not None:
                counted.metrics["instructions"] = float(count)
        only = ("instructions",)  # wall times under valgrind are not figures
    summaries = _summaries(records, fixtures, only=only)
    flags = _flags(lane, engine_records, summaries, records, config)
    wer = _wer_records(hypotheses, fixtures, config) if lane == "provider" else []
    for w in wer:
        flags.extend(Flag(kind="wer", pipeline=w.pipeline, level=w.level, message=n) for n in w.notes)
    if interrupted:
        flags.append(Flag(kind="incomplete", message="interrupted: only the requests that finished are here"))
    if budget.get("message"):
        flags.append(Flag(kind="budget", message=budget["message"]))
    result = LaneResult(
        lane=lane,  # type: ignore[arg-type]
        label=_lane_label(lane, config),
        fakeLatencyMs={k: v * 1000 for k, v in config.fake_latency.items()} if lane == "codepath" else {},
        engines=engine_records,
        runs=records,
        summaries=summaries,
        resources=Resources(**meter.result),
        flags=flags,
        failures=failures,
        wer=wer,
        process="worker" if engines is None else "inline",
        instrument="instructions" if callgrind_dir is not None else "wall",
    )
    return _LaneOutput(result, traces, timing_events, interrupted)


Job = tuple[str, Fixture, str | None]  # pipeline, fixture, level


def _stopping_rule(
    config: BenchConfig, records: list[RunRecord], fixtures: list[Fixture], note: dict[str, Any]
) -> Callable[[int], bool]:
    """``more(measured)`` for --target-ci / --max-time; writes what happened into ``note``."""
    started = time.monotonic()

    def more(measured: int) -> bool:
        if measured == 0:
            return True  # at least one measured iteration, whatever the budget
        spent = config.max_time_s is not None and time.monotonic() - started >= config.max_time_s
        if config.target_ci is None:
            if spent and measured < config.iterations:
                note["message"] = f"time budget spent after {measured} of {config.iterations} iterations"
            return measured < config.iterations and not spent
        widest = widest_ci(records, fixtures)
        if measured >= config.iterations and widest <= config.target_ci:
            note["message"] = (
                f"target reached after {measured} iterations: every gated p50 CI within "
                f"±{widest * 100:.2g} % (target ±{config.target_ci * 100:.3g} %)"
            )
            return False
        if spent:
            note["message"] = (
                f"inconclusive within budget: {measured} iterations in {config.max_time_s:g} s; widest gated "
                f"p50 CI ±{widest * 100:.3g} % (target ±{config.target_ci * 100:.3g} %)"
            )
            return False
        return True

    return more


def _schedule(
    config: BenchConfig,
    fixtures: list[Fixture],
    speech_fixtures: list[Fixture],
    dictation: DictationPipeline | None,
    speech: SpeechPipeline | None,
    more: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, bool, str, Job]]:
    """Every request of a lane in order (the schedule of :mod:`voxperf.bench.schedule`), with its
    round: ``config.iterations`` measured rounds, or while ``more(measured so far)`` says so (the
    target-CI and time-budget rule)."""
    pipelines = [p for p, pipeline in (("dictation", dictation), ("speech", speech)) if pipeline is not None]
    by_name = {fx.name: fx for fx in fixtures}
    with_text = {fx.name for fx in speech_fixtures}
    jobs = round_jobs(pipelines, config.levels, [(fx.name, fx.name in with_text) for fx in fixtures])
    for rnd in rounds(warmup=config.warmup, iterations=config.iterations, more=more):
        for pipeline, name, level in jobs:
            yield rnd.index, rnd.warm, rnd.phase, (pipeline, by_name[name], level)


# the metrics --target-ci waits for (the gate's wall-clock headline metrics)
TARGET_METRICS = ("total_ms", "stt_ms", "ttfa_ms", "stt_rtfx", "rtfx")


def widest_ci(records: list[RunRecord], fixtures: list[Fixture]) -> float:
    """The widest relative half-width (log scale) of the gated metrics' aggregate p50 CIs so far."""
    weights = {f.name: f.duration_s for f in fixtures}
    groups: dict[tuple[str, str | None, str], dict[str, list[float]]] = {}
    for r in records:
        if r.warmup:
            continue
        for metric in TARGET_METRICS:
            value = r.metrics.get(metric)
            if value is not None and value > 0:
                groups.setdefault((r.pipeline, r.level, metric), {}).setdefault(r.fixture, []).append(value)
    widest = 0.0
    for per_fixture in groups.values():
        lo, hi = stats.mixture_quantile_ci([(v, weights.get(n, 1.0)) for n, v in per_fixture.items()], 0.5)
        widest = max(widest, (math.log(hi) - math.log(lo)) / 2 if lo > 0 else math.inf)
    return widest


def _wer_records(
    hypotheses: dict[tuple[str, str], list[str]], fixtures: list[Fixture], config: BenchConfig
) -> list[WerRecord]:
    """Corpus WER per level: Σ edits ÷ Σ reference words, CI by bootstrap over utterances.

    WER is deterministic per configuration: the first measured hypothesis of each utterance is
    scored; when iterations produced different texts the record says so instead of averaging."""
    texts = {f.name: f.text for f in fixtures}
    out: list[WerRecord] = []
    for level in config.levels:
        utterances: list[WerUtterance] = []
        counts: list[WordErrors] = []
        notes: list[str] = []
        for fx in fixtures:
            said = hypotheses.get((level, fx.name))
            reference = texts.get(fx.name)
            if not said or not reference:
                continue
            try:
                e = word_errors(reference, said[0], config.normalizer)
            except ValueError:
                notes.append(f"{fx.name}: reference transcript is empty after normalisation; not scored")
                continue
            distinct = len(set(said))
            if distinct > 1:
                rates = sorted({word_errors(reference, h, config.normalizer).wer for h in said})
                notes.append(
                    f"{fx.name}: {distinct} different hypotheses over {len(said)} iterations (WER "
                    f"{rates[0]:.1%}–{rates[-1]:.1%}); the first measured one is scored"
                )
            counts.append(e)
            utterances.append(
                WerUtterance(
                    fixture=fx.name,
                    wer=e.wer,
                    substitutions=e.substitutions,
                    deletions=e.deletions,
                    insertions=e.insertions,
                    hits=e.hits,
                    referenceWords=e.reference_words,
                    hypothesis=said[0] if config.keep_text else None,
                    iterations=len(said),
                    distinctHypotheses=distinct,
                )
            )
        if not counts:
            continue
        total = sum(counts, WordErrors(0, 0, 0, 0))
        ci = stats.ratio_of_sums_ci(
            [c.edits for c in counts], [c.reference_words for c in counts], resamples=config.resamples
        )
        out.append(
            WerRecord(
                pipeline="dictation",
                level=level,
                normalizer=config.normalizer,
                corpusWer=total.wer,
                ci95=ci,
                substitutions=total.substitutions,
                deletions=total.deletions,
                insertions=total.insertions,
                hits=total.hits,
                referenceWords=total.reference_words,
                utterances=utterances,
                notes=notes,
            )
        )
    return out


def _lane_label(lane: str, config: BenchConfig) -> str:
    if lane == "codepath" and config.instrument == "instructions":
        return (
            "codepath lane under callgrind: instructions per request (deterministic, whatever the load); "
            "its wall times ran under valgrind and are not reported"
        )
    if lane == "codepath":
        lat = (
            ", ".join(f"{k}={v * 1000:g}ms" for k, v in config.fake_latency.items()) or "no simulated latency"
        )
        return f"codepath lane: deterministic fake engines ({lat}); measures pipeline overhead, not engines"
    return "provider lane: real engines"


def _labels(lane: str, pipeline: str, fixture: str, level: str | None, it: int, warm: bool) -> dict[str, Any]:
    return {
        "lane": lane,
        "pipeline": pipeline,
        "fixture": fixture,
        "level": level,
        "iteration": it,
        "warmup": warm,
    }


@contextlib.contextmanager
def _interruptible() -> Iterator[list[bool]]:
    """Swallow a KeyboardInterrupt inside one request; the yielded list becomes truthy if it came."""
    cut: list[bool] = []
    try:
        yield cut
    except KeyboardInterrupt:
        cut.append(True)


@contextlib.contextmanager
def _capture_failure(
    failures: list[FailureRecord],
    failed: set[tuple[str, str]],
    pipeline: str,
    fixture: str,
    level: str | None,
) -> Iterator[None]:
    """Record a fixture's failure once and stop retrying it; the other fixtures go on."""
    try:
        yield
    except Exception as exc:  # an engine crashing on one input must not lose the others
        failed.add((pipeline, fixture))
        failures.append(
            FailureRecord(
                pipeline=pipeline,
                fixture=fixture,
                level=level,
                error=type(exc).__name__,
                message=exc.message if isinstance(exc, VoxperfError) else str(exc)[:500],
                hint=exc.hint if isinstance(exc, VoxperfError) else "the engine raised; see the message",
            )
        )


T = TypeVar("T")
_request_thread: ThreadPoolExecutor | None = None
_inline_requests = False  # counting instructions: one thread, so thread hand-offs add no count


def run_requests_inline() -> None:
    """Run requests on the calling thread from now on (for instruction counts under callgrind:
    a hand-off between two threads adds a varying number of instructions, 0.1 % measured)."""
    global _inline_requests
    _inline_requests = True


def on_request_thread(run: Callable[[], T]) -> T:
    """Run one request (or the engines' creation) on the process's request thread, one thread kept
    for the process's life.

    Engines are created and requests run where a server or an app runs them, off the main thread:
    the main thread's C heap (glibc's main arena, grown with brk) is not a worker thread's. Decoding
    the same WAV took 15-18 % longer on the main thread than in a pool thread, which is where
    ``voxperf serve`` runs it, and an engine loaded there holds its weights in another heap."""
    global _request_thread
    if _inline_requests:
        return run()
    if _request_thread is None:
        _request_thread = ThreadPoolExecutor(1, thread_name_prefix="voxperf-request")
    return _request_thread.submit(run).result()


def _timed(run: Callable[[], T]) -> tuple[T, int]:
    """Run one request on the request thread; its result and the process CPU time it took (all threads)."""

    def timed() -> tuple[T, int]:
        cpu0 = time.process_time_ns()
        res = run()
        return res, time.process_time_ns() - cpu0

    return on_request_thread(timed)


def _record(
    trace: Trace,
    cpu_ns: int,
    *,
    pipeline: str,
    fx: Fixture,
    level: str | None,
    it: int,
    warm: bool,
    extra: dict[str, float | None],
) -> RunRecord:
    """The raw record of one request: per-stage ns, totals (total, total_stage), CPU, pipeline metrics."""
    stages = stage_totals_ns(trace)
    metrics: dict[str, float | None] = {f"{k}_ms": v / NS_PER_MS for k, v in stages.items()}
    metrics.update(
        total_ms=total_ns(trace) / NS_PER_MS,
        total_stage_ms=total_stage_ns(trace) / NS_PER_MS,
        overhead_ms=overhead_ns(trace) / NS_PER_MS,
        cpu_ms=cpu_ns / NS_PER_MS,
        **extra,
    )
    events: dict[str, int] = {}
    for ev in trace.events:
        events.setdefault(ev.name, ev.t_ns - trace.start_ns)
    return RunRecord(
        pipeline=pipeline,  # type: ignore[arg-type]
        fixture=fx.name,
        level=level,
        iteration=it,
        warmup=warm,
        requestId=trace.request_id,
        stagesNs=stages,
        totalNs=total_ns(trace),
        totalStageNs=total_stage_ns(trace),
        cpuNs=cpu_ns,
        metrics=metrics,
        events=events,
    )


def dictation_request(
    pipeline: DictationPipeline, payload: bytes, fx: Fixture, level: str, it: int, warm: bool, lane: str
) -> tuple[RunRecord, DictationResult]:
    res, cpu = _timed(lambda: pipeline.run(payload, level, name=fx.name))
    # RTFx and WER describe an engine: in the codepath lane the "engine" is a fake, so they are omitted
    # (WER is scored per configuration at the end of the lane, see _wer_records)
    real = lane == "provider"
    stt = stage_ns(res.trace, Stage.STT)
    extra: dict[str, float | None] = {
        "audio_s": res.input_audio_s,
        "trimmed_audio_s": res.audio_s,
        "original_bytes": res.original_bytes,
        "encoded_bytes": res.encoded_bytes,
        "stt_rtfx": rtfx(res.input_audio_s, stt / 1e9) if (real and stt > 0) else None,
        "stt_rtfx_trimmed": rtfx(res.audio_s, stt / 1e9) if (real and stt > 0) else None,
    }
    record = _record(res.trace, cpu, pipeline="dictation", fx=fx, level=level, it=it, warm=warm, extra=extra)
    return record, res


def speech_request(
    pipeline: SpeechPipeline, fx: Fixture, it: int, warm: bool, lane: str
) -> tuple[RunRecord, SpeechResult]:
    assert fx.text is not None
    text = fx.text
    res = on_request_thread(lambda: pipeline.run(text))
    cpu = res.cpu_ns  # measured by the pipeline up to request end, not over the output analysis
    real = lane == "provider"
    extra: dict[str, float | None] = {
        "ttfa_ms": res.ttfa_ns / NS_PER_MS if res.ttfa_ns is not None else None,
        "first_chunk_ms": res.first_chunk_ns / NS_PER_MS,
        "generation_ms": res.generation_ns / NS_PER_MS,
        "streaming_ms": res.streaming_ns / NS_PER_MS,
        "leading_silence_ms": res.leading_silence_s * 1000 if res.leading_silence_s is not None else None,
        "rtfx": res.rtfx if real else None,
        "streaming_efficiency": res.streaming_efficiency if real else None,
        "stall_count": float(res.playout.stall_count) if (real and res.playout) else None,
        "stall_ms": res.playout.stall_ns / NS_PER_MS if (real and res.playout) else None,
        "prebuffer_ms": res.playout.prebuffer_needed_ns / NS_PER_MS if (real and res.playout) else None,
        "audio_s": res.audio_s,
        "chunks": res.chunks,
    }
    return _record(res.trace, cpu, pipeline="speech", fx=fx, level=None, it=it, warm=warm, extra=extra), res


def _summary_record(s: stats.Summary) -> SummaryRecord:
    return SummaryRecord.model_validate(s.to_dict())


def _summaries(
    records: list[RunRecord], fixtures: list[Fixture], *, only: tuple[str, ...] | None = None
) -> list[GroupSummary]:
    """Per-fixture summaries and the aggregate over fixtures weighted by audio duration."""
    return summarize_records(records, {f.name: float(f.duration_s) for f in fixtures}, only=only)


def summarize_records(
    records: list[RunRecord], weights: dict[str, float], *, only: tuple[str, ...] | None = None
) -> list[GroupSummary]:
    """Per-fixture summaries of measured records and the aggregate over fixtures with ``weights``
    (bench: audio duration), per pipeline and level."""
    measured = [r for r in records if not r.warmup]
    groups: dict[tuple[str, str | None], dict[str, list[RunRecord]]] = {}
    for r in measured:
        groups.setdefault((r.pipeline, r.level), {}).setdefault(r.fixture, []).append(r)
    out: list[GroupSummary] = []
    for (pipeline, level), by_fixture in groups.items():
        metric_names = [
            m
            for m in (
                only or catalogue_order({k for rs in by_fixture.values() for r in rs for k in r.metrics})
            )
            if any(r.metrics.get(m) is not None for rs in by_fixture.values() for r in rs)
        ]
        aggregate: dict[str, SummaryRecord] = {}
        per_fixture: dict[str, dict[str, SummaryRecord]] = {name: {} for name in by_fixture}
        for metric in metric_names:
            unit = unit_of(metric)
            rel_thr, abs_thr = noise_thresholds(metric)
            weighted_groups = []
            for name, runs in by_fixture.items():
                values = [float(v) for r in runs if (v := r.metrics.get(metric)) is not None]
                if not values:
                    continue
                per_fixture[name][metric] = _summary_record(
                    stats.summarize(values, unit, rel_threshold=rel_thr, abs_threshold=abs_thr)
                )
                weighted_groups.append((values, weights[name]))
            if weighted_groups:
                agg = _summary_record(
                    stats.summarize_weighted(
                        weighted_groups,
                        unit,
                        rel_threshold=rel_thr,
                        abs_threshold=abs_thr,
                    )
                )
                # pooled spread across fixtures of different lengths is not noise: the aggregate is
                # noisy when one of its fixtures is, for that fixture's reasons
                noisy = [n for n, m in per_fixture.items() if metric in m and m[metric].noisy]
                agg.noisy = bool(noisy)
                agg.notes = [f"{n}: {note}" for n in noisy for note in per_fixture[n][metric].notes]
                aggregate[metric] = agg
        out.append(GroupSummary(pipeline=pipeline, level=level, fixture=None, metrics=aggregate))  # type: ignore[arg-type]
        for name, metrics in per_fixture.items():
            out.append(GroupSummary(pipeline=pipeline, level=level, fixture=name, metrics=metrics))  # type: ignore[arg-type]
    return out


def _flags(
    lane: str,
    engines: list[EngineRecord],
    summaries: list[GroupSummary],
    records: list[RunRecord],
    config: BenchConfig,
) -> list[Flag]:
    """Honesty labels: codepath, fake engines, implausible (mocked?) and noisy numbers."""
    flags: list[Flag] = []
    if lane == "codepath":
        flags.append(Flag(kind="codepath", message=_lane_label(lane, config)))
    else:
        for e in engines:
            if e.isFake:
                flags.append(
                    Flag(
                        kind="fake",
                        metric=f"{e.role}",
                        message=f"provider lane ran a fake {e.role} engine: "
                        f"its {e.role} numbers are not engine measurements",
                    )
                )
    resolution_ms = time.get_clock_info("perf_counter").resolution * 1000
    engine_metrics = {f"{s.value}_ms" for s in ENGINE_STAGES}
    for g in summaries:
        for metric, s in g.metrics.items():
            if (
                lane == "provider"
                and (metric in engine_metrics or metric == "ttfa_ms")
                and unit_of(metric) == "ms"
            ):
                floor = max(IMPLAUSIBLE_FLOOR_MS.get(metric, 0.0), resolution_ms)
                if s.p50 < floor:
                    flags.append(
                        Flag(
                            kind="implausible",
                            pipeline=g.pipeline,
                            level=g.level,
                            fixture=g.fixture,
                            metric=metric,
                            message=f"{metric} p50 {s.p50:.4f} ms is below {floor:g} ms: "
                            "no real engine is that fast; was a mock or cache measured?",
                        )
                    )
            if s.noisy and g.fixture is None:
                flags.append(
                    Flag(
                        kind="noisy",
                        pipeline=g.pipeline,
                        level=g.level,
                        metric=metric,
                        message="; ".join(s.notes) or "noisy",
                    )
                )
    for r in records:
        if r.pipeline == "speech" and not r.warmup and r.metrics.get("ttfa_ms") is None:
            flags.append(
                Flag(
                    kind="no-audio",
                    pipeline="speech",
                    fixture=r.fixture,
                    message="no audible sample was delivered",
                )
            )
            break
    return flags
