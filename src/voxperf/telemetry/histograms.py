"""OTLP/HTTP JSON latency histograms (LiveKit Agents' ``lk.agents.turn.*``) onto voxperf metrics.

Voice frameworks export turn latencies as OpenTelemetry histograms, not per-request events:
LiveKit Agents records ``lk.agents.turn.{e2e_latency, llm_ttft, tts_ttfb, transcription_delay,
end_of_turn_delay}`` in seconds. Such a point carries explicit bucket bounds and counts, so it is
stored as it came (bounds converted to ms) and its percentiles are *estimated* the way
Prometheus' ``histogram_quantile`` does: linear interpolation inside the bucket holding the rank
(the lowest bucket starts at 0; a rank in the overflow bucket gives its lower bound). The API
labels these points ``source: "histogram"``. Cumulative points are turned into deltas against the
previous point of the same series (a restart, seen as a new start time or a falling count,
starts a new series).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voxperf.telemetry.model import IDENTIFIER_PATTERN, MAX_NUMBER

__all__ = ["HISTOGRAM_METRICS", "HistogramPoint", "histogram_quantile", "points_from_otlp_metrics"]

# OTLP metric name -> voxperf metric (always in ms)
HISTOGRAM_METRICS: dict[str, str] = {
    "lk.agents.turn.e2e_latency": "turn_e2e_latency_ms",
    "lk.agents.turn.llm_ttft": "llm_ttft_ms",
    "lk.agents.turn.tts_ttfb": "tts_ttfb_ms",
    "lk.agents.turn.transcription_delay": "transcription_delay_ms",
    "lk.agents.turn.end_of_turn_delay": "end_of_turn_delay_ms",
}
_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_VERSION_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_MAX_NS = 2**63 - 1  # what a BIGINT of nanoseconds holds
_MAX_COUNT = 2**53  # counts stay exact as JSON numbers and in sums
CUMULATIVE = 2  # OTLP AggregationTemporality


@dataclass(frozen=True)
class HistogramPoint:
    """One OTLP histogram data point, bounds in ms."""

    metric: str
    series: str  # metric + sorted attributes: one cumulative sequence
    ts_ms: int
    start_ns: int
    cumulative: bool
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # len(bounds) + 1: the last is the overflow bucket
    total_ms: float
    count: int
    provider: str | None
    app_version: str | None


def _attrs(raw: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in raw or ():
        value = a.get("value", {})
        for key in ("stringValue", "boolValue", "doubleValue", "intValue"):
            if key in value:
                out[str(a.get("key"))] = value[key]
    return out


def points_from_otlp_metrics(data: bytes) -> tuple[list[HistogramPoint], int, str]:
    """The mapped histogram points of an OTLP/JSON metrics export, how many data points were
    rejected (unknown names, other kinds, malformed), and the first reason. Not OTLP/JSON at all:
    ``ValueError``."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not OTLP/JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceMetrics"), list):
        raise ValueError("no resourceMetrics list: not an OTLP/JSON metrics export")
    points: list[HistogramPoint] = []
    rejected, reason = 0, ""

    def reject(n: int, why: str) -> None:
        nonlocal rejected, reason
        rejected += n
        reason = reason or why

    for resource in doc["resourceMetrics"]:
        resource_attrs = _attrs((resource.get("resource") or {}).get("attributes"))
        for scope in resource.get("scopeMetrics") or []:
            for metric in scope.get("metrics") or []:
                name = str(metric.get("name"))
                kinds = [
                    k for k in ("histogram", "gauge", "sum", "exponentialHistogram", "summary") if k in metric
                ]
                raw_points = (metric.get(kinds[0]) or {}).get("dataPoints", []) if kinds else []
                target = HISTOGRAM_METRICS.get(name)
                if target is None or kinds != ["histogram"]:
                    reject(
                        len(raw_points),
                        f"{name}: only the histograms {', '.join(HISTOGRAM_METRICS)} are mapped",
                    )
                    continue
                scale = _TO_MS.get(str(metric.get("unit") or "s"))
                if scale is None:
                    reject(len(raw_points), f"{name}: unit {metric.get('unit')!r} is not a time unit")
                    continue
                cumulative = metric["histogram"].get("aggregationTemporality") == CUMULATIVE
                for p in raw_points:
                    try:
                        bounds = tuple(float(b) * scale for b in p.get("explicitBounds", []))
                        counts = tuple(int(c) for c in p["bucketCounts"])
                        if len(counts) != len(bounds) + 1 or any(c < 0 for c in counts):
                            raise ValueError("bucketCounts must have one more entry than explicitBounds")
                        if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
                            raise ValueError("explicitBounds must be finite and increasing")
                        attrs = _attrs(p.get("attributes"))
                        series = name + json.dumps(sorted((k, str(v)) for k, v in attrs.items()))
                        provider = attrs.get("voxperf.provider") or attrs.get("provider")
                        if provider is not None and not _IDENTIFIER.fullmatch(str(provider)):
                            raise ValueError(f"provider must match {IDENTIFIER_PATTERN}")
                        version = resource_attrs.get("service.version")
                        if version is not None and not _VERSION_TEXT.fullmatch(str(version)):
                            raise ValueError("service.version must be 1-64 printable characters")
                        t_ns = int(p["timeUnixNano"])
                        if not 0 < t_ns < _MAX_NS or any(c > _MAX_COUNT for c in counts):
                            raise ValueError("timeUnixNano or a bucket count is out of range")
                        total = float(p.get("sum") or 0.0) * scale
                        if not math.isfinite(total) or not 0 <= total <= MAX_NUMBER * max(1, sum(counts)):
                            raise ValueError("sum must be a finite number >= 0")
                        points.append(
                            HistogramPoint(
                                metric=target,
                                series=series,
                                ts_ms=t_ns // 1_000_000,
                                start_ns=min(max(0, int(p.get("startTimeUnixNano") or 0)), _MAX_NS),
                                cumulative=cumulative,
                                bounds=bounds,
                                counts=counts,
                                total_ms=total,
                                count=int(p.get("count") or sum(counts)),
                                provider=str(provider) if provider is not None else None,
                                app_version=str(version) if version else None,
                            )
                        )
                    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                        reject(1, f"{name}: a data point is malformed ({exc})")
    return points, rejected, reason


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of an explicit-bucket histogram, as Prometheus' ``histogram_quantile``
    estimates it (None when it holds no observation)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, c in enumerate(counts):
        if seen + c >= rank and c > 0:
            if i == len(bounds):  # the overflow bucket: its lower bound is all that is known
                return float(bounds[-1]) if bounds else None
            lower = 0.0 if i == 0 else float(bounds[i - 1])
            return lower + (float(bounds[i]) - lower) * (rank - seen) / c
        seen += c
    return float(bounds[-1]) if bounds else None
