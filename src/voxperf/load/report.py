"""What a load run measured: raw samples in, the figures voice teams need out.

Every figure is computed from the pooled raw samples of all generators (never averaged per
worker), with the definitions stated next to it:

* ``latency`` is from the *intended* start (what a user waiting for the request experiences,
  queueing in the generator included); ``service`` is from the *actual* start (what a closed-loop
  tool reports); ``lag`` is actual minus intended. When the generator or the target falls behind,
  latency grows while service time may not: coordinated omission, shown rather than hidden.
* a request is *late* when its lag exceeds ``late_ms``; *dropped* when it never started.
* ``throughput`` counts successful completions per second of the run; ``audio_rtfx`` is audio
  seconds processed per second (RTFx under load); ``goodput`` counts completions meeting every SLO.
* ``windows`` split the run into equal windows: throughput and p95 per window give the
  sustained-load consistency (min/max throughput ratio, p95 drift first to last window).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxperf.bench import stats
from voxperf.load.sample import LoadSample

__all__ = ["SLO", "LoadReport", "build_report", "parse_slos"]

NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class SLO:
    """``metric_stat <= limit``: e.g. ``ttfa_p95=800ms`` (a run meets it when its p95 ttfa is at
    most 800 ms; a request meets it when its own ttfa is)."""

    metric: str  # latency, service, ttfb, ttfa, job, lag, stall_count ... (the report's metric names)
    stat: str  # p50, p95, p99 or max
    limit_ms: float

    def __str__(self) -> str:
        unit = "" if self.metric.endswith("count") else "ms"
        return f"{self.metric}_{self.stat}<={self.limit_ms:g}{unit}"


_SLO = re.compile(r"^\s*([a-z_]+?)_(p50|p95|p99|max)\s*=\s*([0-9.]+)\s*(ms|s)?\s*$")


def parse_slos(text: str | None) -> list[SLO]:
    """``ttfa_p95=800ms,job_p95=10s`` -> SLOs; a malformed entry is a ``ValueError`` naming it."""
    out: list[SLO] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = _SLO.match(part)
        if m is None:
            raise ValueError(
                f"bad SLO {part.strip()!r}: write metric_STAT=VALUE (STAT p50, p95, p99 or max; "
                "ms or s for times), e.g. ttfa_p95=800ms or stall_count_max=0"
            )
        metric, stat, value, unit = m.groups()
        out.append(SLO(metric, stat, float(value) * (1000.0 if unit == "s" else 1.0)))
    return out


def _metric_ms(s: LoadSample, metric: str) -> float | None:
    """A request's value of a report metric in ms (None when it has none)."""
    if metric == "latency":
        return None if s.last_byte_ns is None else (s.last_byte_ns - s.intended_ns) / NS_PER_MS
    if metric == "service":
        if s.last_byte_ns is None or s.actual_ns is None:
            return None
        return (s.last_byte_ns - s.actual_ns) / NS_PER_MS
    if metric == "lag":
        return None if s.actual_ns is None else (s.actual_ns - s.intended_ns) / NS_PER_MS
    if metric == "ttfb":
        return None if s.first_byte_ns is None else (s.first_byte_ns - s.intended_ns) / NS_PER_MS
    value = s.metrics.get(f"{metric}_ms", s.metrics.get(metric))
    return None if value is None else float(value)


@dataclass
class LoadReport:
    """The figures of one load run (see the module docstring for every definition)."""

    scenario: str
    model: str  # "open" (arrival schedule) or "closed" (concurrency)
    offered_rate: float | None  # requests/s of the schedule
    concurrency: int | None
    duration_s: float  # the schedule's (open) or the run's (closed) length
    span_s: float  # first intended start to last completion
    scheduled: int
    started: int
    ok: int
    errors: dict[str, int]
    error_details: dict[str, int]  # the most frequent error descriptions, with counts
    late: int
    late_ms: float
    achieved_rate: float  # starts per second: over the schedule, or until the last late start
    throughput_rps: float
    audio_rtfx: float | None
    goodput_rps: float | None
    slos: list[str]
    slo_met: dict[str, bool]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> Summary dict
    windows: list[dict[str, Any]] = field(default_factory=list)
    consistency: dict[str, float | None] = field(default_factory=dict)
    wer: dict[str, Any] | None = None  # corpus WER of what the server answered under load
    notes: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return 0.0 if not self.scheduled else sum(self.errors.values()) / self.scheduled

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["errorRate"] = self.error_rate
        return out


METRICS = (
    "latency",
    "service",
    "lag",
    "ttfb",
    "ttfa",
    "job",
    "queue_wait",
    "processing",
    "stall_count",
    "stall",
)


def build_report(
    samples: Sequence[LoadSample],
    *,
    scenario: str,
    offered_rate: float | None,
    concurrency: int | None,
    duration_s: float,
    slos: Iterable[SLO] = (),
    late_ms: float = 5.0,
    windows: int = 10,
    references: Mapping[str, str] | None = None,
) -> LoadReport:
    """The report of a run from its raw samples, pooled over every generator; with
    ``references`` (fixture name -> transcript), the corpus WER of the answers under load."""
    slos = list(slos)
    started = [s for s in samples if s.actual_ns is not None]
    ok = [s for s in samples if s.ok]
    errors = Counter(s.error for s in samples if s.error is not None)
    lags = [(s.actual_ns - s.intended_ns) / NS_PER_MS for s in started if s.actual_ns is not None]
    late = sum(1 for lag in lags if lag > late_ms)
    ends = [s.last_byte_ns for s in samples if s.last_byte_ns is not None]
    first = min((s.intended_ns for s in samples), default=0)
    last = max(ends, default=first)
    span_s = max((last - first) / 1e9, 1e-9)
    starts = sorted(s.actual_ns for s in started if s.actual_ns is not None)
    # starts per second: over the schedule's length, or longer when starts ran late past its end
    start_span_s = max(duration_s, (starts[-1] - first) / 1e9 if starts else 0.0, 1e-9)
    metrics: dict[str, dict[str, Any]] = {}
    for name in METRICS:
        values = [v for s in ok if (v := _metric_ms(s, name)) is not None and math.isfinite(v)]
        if name == "lag":
            values = lags
        if values:
            unit = "count" if name == "stall_count" else "ms"
            metrics[name] = stats.summarize(values, unit).to_dict()
    audio = [s.audio_s for s in ok if s.audio_s]
    notes: list[str] = []
    if scenario == "jobs":
        notes.append(
            "latency of jobs ends when a poll saw the job finished (bounded by the poll interval); "
            "job = the server's own created→completed time (no poll quantisation)"
        )
    good = ok
    slo_met: dict[str, bool] = {}
    for slo in slos:
        summary = metrics.get(slo.metric)
        value = None if summary is None else summary.get(slo.stat)
        slo_met[str(slo)] = value is not None and value <= slo.limit_ms
        if value is None:
            notes.append(f"SLO {slo}: no {slo.stat} of {slo.metric} (too few samples or no such metric)")
        good = [s for s in good if (v := _metric_ms(s, slo.metric)) is not None and v <= slo.limit_ms]
    report = LoadReport(
        scenario=scenario,
        model="open" if offered_rate is not None else "closed",
        offered_rate=offered_rate,
        concurrency=concurrency,
        duration_s=duration_s,
        span_s=span_s,
        scheduled=len(samples),
        started=len(started),
        ok=len(ok),
        errors=dict(sorted(errors.items())),
        error_details=dict(Counter(s.detail for s in samples if s.detail).most_common(5)),
        late=late,
        late_ms=late_ms,
        achieved_rate=len(starts) / start_span_s,
        throughput_rps=len(ok) / span_s,
        audio_rtfx=(sum(a for a in audio if a) / span_s) if audio else None,
        goodput_rps=(len(good) / span_s) if slos else None,
        slos=[str(s) for s in slos],
        slo_met=slo_met,
        metrics=metrics,
        notes=notes,
    )
    report.windows, report.consistency = _windows(ok, first, duration_s, windows)
    report.wer = _wer(ok, references or {})
    return report


def _wer(ok: Sequence[LoadSample], references: Mapping[str, str]) -> dict[str, Any] | None:
    """Corpus WER (Σ edits ÷ Σ reference words, Whisper's English normaliser) of the transcripts the
    server returned under load: a server that answers fast but wrong is not a fast server."""
    from voxperf.trace.metrics import DEFAULT_NORMALIZER, corpus_wer, word_errors

    pairs = [
        (references[s.fixture], s.text)
        for s in ok
        if s.text is not None and s.fixture is not None and s.fixture in references
    ]
    if not pairs:
        return None
    errors = [word_errors(ref, hyp) for ref, hyp in pairs]
    return {
        "corpusWer": corpus_wer(errors),
        "utterances": len(errors),
        "referenceWords": sum(e.substitutions + e.deletions + e.hits for e in errors),
        "normalizer": DEFAULT_NORMALIZER,
    }


def _windows(
    ok: Sequence[LoadSample], first_ns: int, duration_s: float, count: int
) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
    """Throughput and latency p95 per equal window of the schedule (by intended start)."""
    if not ok or count < 1:
        return [], {}
    width_ns = duration_s * 1e9 / count
    rows: list[dict[str, Any]] = []
    for w in range(count):
        lo, hi = first_ns + w * width_ns, first_ns + (w + 1) * width_ns
        inside = [s for s in ok if lo <= s.intended_ns < hi]
        lat = [(s.last_byte_ns - s.intended_ns) / NS_PER_MS for s in inside if s.last_byte_ns is not None]
        rows.append(
            {
                "window": w,
                "requests": len(inside),
                "throughput_rps": len(inside) / (width_ns / 1e9),
                "latency_p95_ms": float(np.quantile(lat, 0.95)) if len(lat) >= 20 else None,
            }
        )
    tp = [r["throughput_rps"] for r in rows]
    p95 = [r["latency_p95_ms"] for r in rows if r["latency_p95_ms"] is not None]
    return rows, {
        "throughput_min_max": (min(tp) / max(tp)) if max(tp) > 0 else None,
        "p95_drift": (p95[-1] / p95[0] - 1.0) if len(p95) >= 2 and p95[0] > 0 else None,
    }


def samples_from(lines: Iterable[Mapping[str, Any]]) -> list[LoadSample]:
    return [LoadSample.from_dict(dict(d)) for d in lines]
