"""The result file schema of ``voxperf bench``: versioned, published as JSON Schema, loaded strictly.

Envelope keys are camelCase like the dictation audit's result files; metric keys are snake_case with
their unit in the name (``stt_ms``, ``ttfa_ms``, ``rtfx``). Raw samples are kept (one :class:`RunRecord` per
request, per-stage nanoseconds), so every summary can be recomputed and compared later.

The schema's history is :data:`SCHEMA_HISTORY`: bump :data:`SCHEMA_VERSION` and add an entry for
every change. :func:`parse_result` refuses versions it does not know.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxperf.errors import SchemaVersionError, UsageError

__all__ = [
    "LANES",
    "OLD_DEFINITIONS",
    "PIPELINES",
    "SCHEMA_HISTORY",
    "SCHEMA_VERSION",
    "BenchResult",
    "EngineRecord",
    "FailureRecord",
    "FixtureRecord",
    "Flag",
    "GroupSummary",
    "LaneResult",
    "Resources",
    "RunRecord",
    "SummaryRecord",
    "WerRecord",
    "WerUtterance",
    "default_result_path",
    "definitions_label",
    "dump_result",
    "json_schema",
    "load_result",
    "parse_result",
    "utc_timestamp",
]

SCHEMA_VERSION = 3
SCHEMA_HISTORY: dict[int, str] = {
    1: "2026-11: first version. Lanes (provider, codepath) with raw per-request stage ns, "
    "per-fixture and byte-weighted aggregate summaries with bootstrap CIs, engines with versions "
    "and models, fixtures with sha256, machine and git metadata, plausibility flags for mocked "
    "engines.",
    2: "2026-12: every number true. WER is corpus WER (Σ edits ÷ Σ reference words) per lane, "
    "pipeline and level with a bootstrap CI over utterances, S/D/I counts, per-utterance WER and "
    "hypothesis (lane 'wer' records; 'wer' is no longer a per-request distribution) under a named "
    "normaliser (Whisper's English normaliser by default). streaming_efficiency is measured under "
    "a simulated real-time player (100 % = no stall) with stall_count, stall_ms and prebuffer_ms "
    "beside it. Aggregates weight fixtures by audio duration, independent of sample counts. p95 "
    "and p99 are null below 40 and 200 effective samples. stt_rtfx divides the input duration "
    "(stt_rtfx_trimmed the VAD-trimmed one). 'noisy' compares the p50 CI with the gate's "
    "threshold. Each lane runs in its own worker process with resources sampled between requests; "
    "machine load, CPU frequency and governor are recorded; an interrupted run is marked "
    "incomplete. A lane records its instrument: wall time, or instructions per request counted by "
    "callgrind (codepath lane).",
    3: "2026-12: provenance and plugins. Engines record modelFiles (sha256 of every weight file "
    "that ran, from a package, a path or a cache); engines may come from installed plugins and "
    "configs may name an engine factory (module:qualname) instead of a spec; any span is a metric "
    "(<name>_ms; a sub-span <stage>.<name>_ms). Pipeline 'app': requests traced in an application "
    "(e.g. OpenTelemetry spans ingested by voxperf), whose cpuNs is null (not measured) and whose "
    "fixtures are request groups. Pipeline 'load': one record per request of a voxperf load run "
    "(latency_ms from the intended start, service_ms from the actual start, lag_ms, ttfb_ms, the "
    "scenario's own metrics), level = the scenario. The definitions of v2's numbers are unchanged.",
}

# What changed in the definitions of the numbers since each older version: a result of that
# version is shown with this label, never silently mixed with current numbers.
OLD_DEFINITIONS: dict[int, str] = {
    1: "measured under schema v1 definitions: WER is a byte-weighted median of per-request WERs (not "
    "corpus WER), streaming_efficiency is a speed ratio (not real-time playout), aggregates are "
    "byte-weighted, p95/p99 may come from too few samples",
}

LANES = ("provider", "codepath")
PIPELINES = ("dictation", "speech")

Lane = Literal["provider", "codepath"]
Pipeline = Literal[
    "dictation", "speech", "app", "load"
]  # app (v3): requests traced in the user's own application


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SummaryRecord(_Model):
    """Summary statistics of one metric (see :mod:`voxperf.bench.stats`)."""

    n: int
    unit: str
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p95: float | None  # None: too few (effective) samples to carry a p95 (schema v2: n < 40)
    p99: float | None  # None: n < 200
    ci95: dict[str, tuple[float, float]]
    noisy: bool
    notes: list[str] = Field(default_factory=list)
    weighted: bool = False


class GroupSummary(_Model):
    """Summaries of every metric for one pipeline, level and fixture (fixture None = aggregate)."""

    pipeline: Pipeline
    level: str | None = None
    fixture: str | None = None  # None: all fixtures, weighted by audio duration (v1: by bytes)
    metrics: dict[str, SummaryRecord]


class RunRecord(_Model):
    """One request: raw per-stage times in ns and its derived metrics."""

    pipeline: Pipeline
    fixture: str
    level: str | None = None
    iteration: int
    warmup: bool
    requestId: str
    stagesNs: dict[str, int]
    totalNs: int
    totalStageNs: int
    cpuNs: int | None  # None (v3): not measured (requests traced elsewhere, e.g. ingested from OTel)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    events: dict[str, int] = Field(default_factory=dict)  # event name -> ns after request start


class WerUtterance(_Model):
    """One utterance (fixture) of a WER record: its alignment counts and what the engine heard."""

    fixture: str
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    referenceWords: int
    hypothesis: str | None = None  # normalised as scored; None when run with --no-text
    iterations: int  # measured requests of this utterance
    distinctHypotheses: int = 1  # > 1: iterations disagree; the first measured one is scored


class WerRecord(_Model):
    """Corpus WER of one configuration (lane × pipeline × level): Σ edits ÷ Σ reference words."""

    pipeline: Pipeline = "dictation"
    level: str | None = None
    normalizer: str
    corpusWer: float
    ci95: tuple[float, float]  # bootstrap over utterances
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    referenceWords: int
    utterances: list[WerUtterance]
    notes: list[str] = Field(default_factory=list)


class EngineRecord(_Model):
    role: str
    name: str
    version: str
    model: str | None = None
    modelPath: str | None = None
    modelSource: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    isFake: bool = False
    modelFiles: dict[str, str] = Field(default_factory=dict)  # file -> sha256 of the weights that ran
    spec: str
    selectionPolicy: Literal["default", "forced"]
    loadMs: float  # constructing the engine (loading weights), measured separately from runs
    warmupMs: float


class FixtureRecord(_Model):
    name: str
    path: str | None = None
    variant: str | None = None
    durationS: float
    sampleRate: int
    bytes: int
    sha256: str
    hasTranscript: bool
    text: str | None = None


class Resources(_Model):
    """Resources of a lane: peak RSS (sampled and kernel high-water mark) and CPU time.

    Since v2 each lane runs in its own worker process, so these belong to that lane alone; RSS is
    sampled between requests, never by a thread inside the timed region."""

    peakRssBytes: int
    maxRssBytes: int  # getrusage high-water mark of the process that ran the lane
    cpuUserS: float
    cpuSystemS: float
    wallS: float
    cpuPercent: float  # (user + system) / wall * 100; up to cores * 100
    # v2: CPU seconds other processes used on the machine meanwhile (otherCpuS / wallS = cores
    # they kept busy); the gate's comparability check reads it
    otherCpuS: float | None = None
    measured: bool = True  # v3: False for requests traced elsewhere (only wallS is known)
    # v2: seconds the lane's threads waited for a CPU (schedstat run delay): the contention it met
    runDelayS: float | None = None


class Flag(_Model):
    """A caveat attached to a number: implausible (mocked?), fake, noisy, no audio, load, incomplete."""

    kind: Literal[
        "implausible", "fake", "noisy", "no-audio", "codepath", "load", "incomplete", "wer", "budget"
    ]
    pipeline: str | None = None
    level: str | None = None
    fixture: str | None = None
    metric: str | None = None
    message: str


class FailureRecord(_Model):
    pipeline: str
    fixture: str
    level: str | None = None
    error: str
    message: str
    hint: str | None = None


class LaneResult(_Model):
    lane: Lane
    label: str
    fakeLatencyMs: dict[str, float] = Field(default_factory=dict)
    engines: list[EngineRecord]
    runs: list[RunRecord]
    summaries: list[GroupSummary]
    resources: Resources
    flags: list[Flag] = Field(default_factory=list)
    failures: list[FailureRecord] = Field(default_factory=list)
    wer: list[WerRecord] = Field(default_factory=list)  # v2: corpus WER per pipeline and level
    process: Literal["worker", "inline"] = "inline"  # v2: "worker" = the lane had its own process
    instrument: Literal["wall", "instructions"] = "wall"  # v2: what produced the lane's numbers


class GitInfo(_Model):
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None


class MachineInfo(_Model):
    hostname: str
    os: str
    kernel: str
    arch: str
    cpuModel: str | None = None
    coresLogical: int | None = None
    coresPhysical: int | None = None
    ramBytes: int
    python: str
    pythonImplementation: str
    timerResolutionNs: float
    loadAverage1m: float | None = None  # at the start of the run
    loadAverageEnd1m: float | None = None  # at the end of the run (v2)
    cpuFreqMhz: float | None = None  # current frequency of CPU 0 where readable (v2)
    cpuGovernor: str | None = None  # cpufreq scaling governor where readable (v2)
    mallocPolicy: str | None = None  # the C heap policy engines ran under (voxperf.engines.alloc)
    packages: dict[str, str]


class ToolInfo(_Model):
    name: Literal["voxperf"] = "voxperf"
    version: str


class BenchResult(_Model):
    """The whole result file of one ``voxperf bench`` run."""

    schemaVersion: Literal[1, 2, 3] = 3  # == SCHEMA_VERSION for new results; 1 and 2 still load
    tool: ToolInfo
    createdAt: str
    config: dict[str, Any]
    git: GitInfo
    machine: MachineInfo
    fixtures: list[FixtureRecord]
    lanes: dict[str, LaneResult]
    incomplete: bool = False  # v2: interrupted (Ctrl-C); holds the requests that finished


def definitions_label(result: BenchResult) -> str | None:
    """How an older result's numbers were defined, or None for a current one."""
    return OLD_DEFINITIONS.get(result.schemaVersion)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the current version (``schema/result-v{N}.schema.json``)."""
    schema = BenchResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://voxperf.dev/schema/result-v{SCHEMA_VERSION}.schema.json"
    return schema


def parse_result(data: dict[str, Any], *, source: str = "result") -> BenchResult:
    """Validate a decoded result; unknown or missing schema versions are refused, not guessed."""
    if not isinstance(data, dict):
        raise UsageError(
            f"{source} is not a voxperf result (top level is not an object)", "pass a file from voxperf bench"
        )
    version = data.get("schemaVersion")
    if version is None:
        raise SchemaVersionError(
            f"{source} has no schemaVersion", "pass a result file written by voxperf bench"
        )
    if not isinstance(version, int) or version not in SCHEMA_HISTORY:
        known = ", ".join(str(v) for v in SCHEMA_HISTORY)
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise SchemaVersionError(
            f"{source} has schemaVersion {version!r}; this voxperf reads version(s) {known}",
            "upgrade voxperf to read it" if newer else "re-run voxperf bench to produce a current file",
        )
    try:
        return BenchResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(
            f"{source} does not match result schema v{version}: {where}: {first['msg']}",
            "the file was edited or truncated; re-run voxperf bench",
        ) from exc


def load_result(path: str | Path) -> BenchResult:
    """Read a result file (``.json`` or ``.json.gz``) and validate it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read result file {p}: {exc.strerror}", "check the path") from exc
    try:
        if raw[:2] == b"\x1f\x8b":
            from voxperf.store.backend import bounded_gunzip

            raw = bounded_gunzip(raw, str(p))
        data = json.loads(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise UsageError(
            f"{p} is not valid JSON: {exc}", "the file is truncated or not a voxperf result"
        ) from exc
    return parse_result(data, source=str(p))


def utc_timestamp() -> str:
    """Now as a result's ``createdAt``: UTC, whole seconds, ``Z``."""
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_result_path(result: BenchResult, directory: Path = Path(".voxperf") / "runs") -> Path:
    """Where a result goes when no ``--output`` is given: ``<time>-<commit>-<pid>.json``, unique per run."""
    commit = (result.git.commit or "nogit")[:12]
    stamp = result.createdAt.replace(":", "").replace("-", "")
    return directory / f"{stamp}-{commit}-{os.getpid()}.json"


def dump_result(result: BenchResult, path: str | Path | None = None) -> str:
    """Serialise a result as indented JSON; write it atomically to ``path`` when given."""
    text = result.model_dump_json(indent=2)
    if path is not None:
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # concurrent writers
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(p)
    return text
