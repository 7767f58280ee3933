"""``/metrics`` of the telemetry server: histograms of what apps reported, with explicit buckets.

Counts are updated per batch with numpy (one ``searchsorted`` per column), not per event through
``Histogram.observe``, so exposing them costs the ingest path almost nothing. Names follow
Prometheus conventions (base units: seconds; ``_total`` counters); buckets are explicit and
documented here so a Grafana panel's ``histogram_quantile`` means the same thing everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from voxperf.telemetry.ingest import ParsedBatch
from voxperf.telemetry.model import EVENTS

__all__ = ["LATENCY_BUCKETS_S", "RATIO_BUCKETS", "TelemetryMetrics"]

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
RATIO_BUCKETS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 5.0)

# (metric name, help, source column, label value, buckets, scale to the base unit)
_HISTOGRAMS: tuple[tuple[str, str, str, str | None, tuple[float, ...], float], ...] = (
    (
        "voxperf_telemetry_ttfa_seconds",
        "Speech: request start to the first audible audio, as apps reported it",
        "ttfa_ms",
        None,
        LATENCY_BUCKETS_S,
        1e-3,
    ),
    (
        "voxperf_telemetry_first_byte_seconds",
        "Speech: request start to the first response body byte, as apps reported it",
        "first_byte_ms",
        None,
        LATENCY_BUCKETS_S,
        1e-3,
    ),
    (
        "voxperf_telemetry_server_response_seconds",
        "Speech: the server's response time, as reported",
        "server_ms",
        None,
        LATENCY_BUCKETS_S,
        1e-3,
    ),
    (
        "voxperf_telemetry_streaming_efficiency_ratio",
        "Speech: audio duration / playout time under a real-time player (1 = no stall)",
        "streaming_efficiency",
        None,
        RATIO_BUCKETS,
        1.0,
    ),
    *(
        (
            "voxperf_telemetry_stage_seconds",
            "Dictation: time in one pipeline stage (pipeline_timing event), as apps reported it",
            spec.name,
            spec.name.removesuffix("_ms"),
            LATENCY_BUCKETS_S,
            1e-3,
        )
        for spec in EVENTS["pipeline_timing"]
        if spec.unit == "ms"
    ),
)


class TelemetryMetrics:
    """Bucket counts and sums per histogram, and ingest counters, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hist = {
            (name, label): (np.zeros(len(buckets) + 1, dtype=np.int64), [0.0])
            for name, _, _, label, buckets, _ in _HISTOGRAMS
        }
        self.events: dict[tuple[str, str], int] = {}  # (event, outcome) -> count
        self.cache: dict[str, int] = {"hit": 0, "miss": 0}
        self.rejected_lines = 0
        self.batches: dict[str, int] = {"stored": 0, "duplicate": 0, "refused": 0}
        self.commits = self.grouped_batches = 0  # group commit: batches per transaction
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, batch: ParsedBatch, duplicate: bool) -> None:
        with self._lock:
            self.rejected_lines += len(batch.errors) if not duplicate else 0
            refused = not batch.rows and bool(batch.errors)  # answered 400: no valid line
            self.batches["duplicate" if duplicate else "refused" if refused else "stored"] += 1
            if duplicate or not batch.rows:
                return
            cols = batch.columns
            for name, _, column, label, buckets, scale in _HISTOGRAMS:
                values = cols[column]
                values = values[~np.isnan(values)] * scale
                if not len(values):
                    continue
                counts, total = self._hist[(name, label)]
                counts += np.bincount(
                    np.searchsorted(np.asarray(buckets), values, side="left"), minlength=len(counts)
                )
                total[0] += float(values.sum())
            names, outcomes = cols["name"], cols["outcome"]
            for event in EVENTS:
                mask = names == event
                if not mask.any():
                    continue
                for outcome in ("ok", "error", "cancelled", None):
                    n = int((mask & (outcomes == outcome)).sum())
                    if n:
                        key = (event, outcome or "unknown")
                        self.events[key] = self.events.get(key, 0) + n
            for kind in ("hit", "miss"):
                self.cache[kind] += int((cols["cache"] == kind).sum())

    def committed(self, batches: int) -> None:
        with self._lock:
            self.commits += 1
            self.grouped_batches += batches

    def refused(self) -> None:
        with self._lock:
            self.batches["refused"] += 1

    def collect(self) -> Iterator[Any]:
        with self._lock:
            families: dict[str, HistogramMetricFamily] = {}
            for name, help_text, _, label, buckets, _ in _HISTOGRAMS:
                family = families.get(name)
                if family is None:
                    family = families[name] = HistogramMetricFamily(
                        name, help_text, labels=["stage"] if label else []
                    )
                counts, total = self._hist[(name, label)]
                cumulative = np.cumsum(counts)
                family.add_metric(
                    [label] if label else [],
                    [(repr(b), int(c)) for b, c in zip(buckets, cumulative[:-1], strict=True)]
                    + [("+Inf", int(cumulative[-1]))],
                    total[0],
                )
            yield from families.values()
            events = CounterMetricFamily(
                "voxperf_telemetry_events", "Events stored, by event and outcome", labels=["event", "outcome"]
            )
            for (event, outcome), n in sorted(self.events.items()):
                events.add_metric([event, outcome], n)
            yield events
            cache = CounterMetricFamily(
                "voxperf_telemetry_tts_cache", "Speech events by phrase-cache result", labels=["result"]
            )
            for kind, n in self.cache.items():
                cache.add_metric([kind], n)
            yield cache
            yield CounterMetricFamily(
                "voxperf_telemetry_rejected_lines", "Lines refused by validation", value=self.rejected_lines
            )
            yield CounterMetricFamily(
                "voxperf_telemetry_commits",
                "Store transactions (each stores the batches that were waiting together)",
                value=self.commits,
            )
            yield CounterMetricFamily(
                "voxperf_telemetry_committed_batches",
                "Batches stored through those transactions",
                value=self.grouped_batches,
            )
            batches = CounterMetricFamily("voxperf_telemetry_batches", "Batches by result", labels=["result"])
            for kind, n in self.batches.items():
                batches.add_metric([kind], n)
            yield batches

    def render(self) -> bytes:
        return generate_latest(self.registry)
