"""The result file schema of ``voxperf bench``: versioned, published as JSON Schema, loaded strictly.

Envelope keys are camelCase like seed 000's files; metric keys are snake_case with their unit in
the name (``stt_ms``, ``ttfa_ms``, ``rtfx``). Raw samples are kept (one :class:`RunRecord` per
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
    "dump_result",
    "json_schema",
    "load_result",
    "parse_result",
]

SCHEMA_VERSION = 1
SCHEMA_HISTORY: dict[int, str] = {
    1: "2026-11: first version. Lanes (provider, codepath) with raw per-request stage ns, "
    "per-fixture and byte-weighted aggregate summaries with bootstrap CIs, engines with versions "
    "and models, fixtures with sha256, machine and git metadata, seed-003 plausibility flags.",
}

LANES = ("provider", "codepath")
PIPELINES = ("dictation", "speech")

Lane = Literal["provider", "codepath"]
Pipeline = Literal["dictation", "speech"]


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
    p95: float
    p99: float
    ci95: dict[str, tuple[float, float]]
    noisy: bool
    notes: list[str] = Field(default_factory=list)
    weighted: bool = False


class GroupSummary(_Model):
    """Summaries of every metric for one pipeline, level and fixture (fixture None = aggregate)."""

    pipeline: Pipeline
    level: str | None = None
    fixture: str | None = None  # None: all fixtures, quantiles weighted by audio bytes
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
    cpuNs: int
    metrics: dict[str, float | None] = Field(default_factory=dict)
    events: dict[str, int] = Field(default_factory=dict)  # event name -> ns after request start


class EngineRecord(_Model):
    role: str
    name: str
    version: str
    model: str | None = None
    modelPath: str | None = None
    modelSource: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    isFake: bool = False
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
    """Process resources over a lane: peak RSS (sampled and kernel high-water mark) and CPU time."""

    peakRssBytes: int
    maxRssBytes: int  # getrusage high-water mark of the whole process so far
    cpuUserS: float
    cpuSystemS: float
    wallS: float
    cpuPercent: float  # (user + system) / wall * 100; up to cores * 100


class Flag(_Model):
    """A caveat attached to a number: implausible (seed 003), fake, noisy, failed."""

    kind: Literal["implausible", "fake", "noisy", "no-audio", "codepath"]
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
    loadAverage1m: float | None = None
    packages: dict[str, str]


class ToolInfo(_Model):
    name: Literal["voxperf"] = "voxperf"
    version: str


class BenchResult(_Model):
    """The whole result file of one ``voxperf bench`` run."""

    schemaVersion: Literal[1] = 1  # == SCHEMA_VERSION
    tool: ToolInfo
    createdAt: str
    config: dict[str, Any]
    git: GitInfo
    machine: MachineInfo
    fixtures: list[FixtureRecord]
    lanes: dict[str, LaneResult]


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the current version (``schema/result-v1.schema.json``)."""
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


def dump_result(result: BenchResult, path: str | Path | None = None) -> str:
    """Serialise a result as indented JSON; write it atomically to ``path`` when given."""
    text = result.model_dump_json(indent=2)
    if path is not None:
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # concurrent writers
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(p)
    return text
