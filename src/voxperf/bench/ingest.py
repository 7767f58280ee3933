"""Bench results from requests traced elsewhere: an application's own traces (e.g. OpenTelemetry
spans turned into voxperf traces by :mod:`voxperf.trace.otel`) become a result file that
``compare``, ``gate`` and ``report`` treat like ``voxperf bench`` output.

Each trace is one request of pipeline ``app``. Requests are grouped by their ``fixture`` attribute
(``voxperf.fixture`` on the OTel root span: the utterance or scenario the request served), else by
the root span's name; the aggregate weights groups by their ``audio_s`` attribute when every
group has one, else equally. CPU time is not known for such requests and is recorded as not
measured; WER is not scored (no reference transcripts travel with traces)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from pathlib import Path

from voxperf import __version__
from voxperf.bench.catalog import is_stage_metric
from voxperf.bench.environment import git_info, machine_info
from voxperf.bench.runner import summarize_records
from voxperf.bench.schema import (
    BenchResult,
    FixtureRecord,
    GitInfo,
    LaneResult,
    MachineInfo,
    Resources,
    RunRecord,
    ToolInfo,
    utc_timestamp,
)
from voxperf.errors import UsageError
from voxperf.trace.core import NO_PARENT, Trace
from voxperf.trace.metrics import NS_PER_MS, stage_totals_ns, total_ns

__all__ = ["record_from_trace", "result_from_traces"]


def record_from_trace(trace: Trace, *, fixture: str, iteration: int, warmup: bool = False) -> RunRecord:
    """The raw record of one traced request: every span as ``<path>_ms``, totals, events."""
    if not trace.finished:
        raise UsageError(
            f"trace {trace.request_id} is not finished", "finish() each trace before ingesting it"
        )
    stages = stage_totals_ns(trace)
    metrics: dict[str, float | None] = {f"{k}_ms": v / NS_PER_MS for k, v in stages.items()}
    metrics["total_ms"] = total_ns(trace) / NS_PER_MS
    # stages of a streaming app overlap (the LLM still generating while TTS speaks): a sum of
    # overlapping stages is no decomposition of the total, so total_stage and overhead are left out
    top = sorted(
        (s.start_ns, s.end_ns)
        for s in trace.spans
        if s.parent == NO_PARENT and is_stage_metric(f"{s.name}_ms")
    )
    stage_sum = sum(end - start for start, end in top)
    if all(a[1] <= b[0] for a, b in itertools.pairwise(top)):
        metrics["total_stage_ms"] = stage_sum / NS_PER_MS
        metrics["overhead_ms"] = (total_ns(trace) - stage_sum) / NS_PER_MS
    events: dict[str, int] = {}
    for ev in trace.events:
        events.setdefault(ev.name, ev.t_ns - trace.start_ns)
    return RunRecord(
        pipeline="app",
        fixture=fixture,
        level=None,
        iteration=iteration,
        warmup=warmup,
        requestId=trace.request_id,
        stagesNs=stages,
        totalNs=total_ns(trace),
        totalStageNs=stage_sum,
        cpuNs=None,
        metrics=metrics,
        events=events,
    )


def _group_of(trace: Trace) -> str:
    return str(trace.attrs.get("fixture") or trace.attrs.get("pipeline") or "request")


def result_from_traces(
    traces: Iterable[Trace],
    *,
    source: str = "traces",
    warmup: int = 0,
    cwd: Path | None = None,
    with_machine: bool = True,
) -> BenchResult:
    """A versioned result (lane ``provider``, pipeline ``app``) from finished traces.

    ``warmup`` first requests of each group are kept but marked warm-up (not summarised).
    ``with_machine`` records this machine, which is right when the traced app ran here."""
    by_group: dict[str, list[Trace]] = {}
    for trace in traces:
        by_group.setdefault(_group_of(trace), []).append(trace)
    if not by_group:
        raise UsageError(f"no traces in {source}", "trace at least one request (a root span per request)")
    records: list[RunRecord] = []
    for group, group_traces in by_group.items():
        group_traces.sort(key=lambda t: t.start_ns)
        records += [
            record_from_trace(t, fixture=group, iteration=i, warmup=i < warmup)
            for i, t in enumerate(group_traces)
        ]
    audio = {g: ts[0].attrs.get("audio_s") for g, ts in by_group.items()}
    durations = {g: float(a) for g, a in audio.items() if isinstance(a, int | float) and a > 0}
    weights = durations if len(durations) == len(by_group) else {g: 1.0 for g in by_group}
    fixtures = [
        FixtureRecord(
            name=group,
            variant="traced",
            durationS=weights[group],  # the aggregate's weight: audio_s when every group has one, else 1
            sampleRate=0,
            bytes=0,
            sha256=hashlib.sha256(f"traced:{group}".encode()).hexdigest(),  # the group's identity
            hasTranscript=False,
        )
        for group in by_group
    ]
    starts = [t.start_ns for ts in by_group.values() for t in ts]
    ends = [t.end_ns for ts in by_group.values() for t in ts]
    lane = LaneResult(
        lane="provider",
        label=f"requests traced in the application ({source}): real work, timed by its own spans",
        engines=[],
        runs=records,
        summaries=summarize_records(records, weights),
        resources=Resources(
            peakRssBytes=0,
            maxRssBytes=0,
            cpuUserS=0.0,
            cpuSystemS=0.0,
            wallS=(max(ends) - min(starts)) / 1e9,
            cpuPercent=0.0,
            measured=False,  # the app's process was not ours to sample
        ),
        process="inline",
    )
    machine = machine_info() if with_machine else {}
    return BenchResult(
        tool=ToolInfo(version=__version__),
        createdAt=utc_timestamp(),
        config={
            "source": source,
            "ingested": "traces",
            "warmup": warmup,
            "weights": "audio_s" if weights is durations else "equal",
        },
        git=GitInfo(**git_info(cwd)),
        machine=MachineInfo(**machine)
        if machine
        else MachineInfo(
            hostname="unknown",
            os="unknown",
            kernel="unknown",
            arch="unknown",
            ramBytes=0,
            python="unknown",
            pythonImplementation="unknown",
            timerResolutionNs=0.0,
            packages={},
        ),
        fixtures=fixtures,
        lanes={"provider": lane},
    )
