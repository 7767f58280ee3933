"""Prometheus metrics of the service: ``voxperf_`` prefix, base units, histograms, low cardinality.

Request clocks are the server's side of the wire (:class:`~voxperf.service.timing.ResponseClock`):
they start when the app is called for a request and stop when uvicorn's ``send()`` has returned
for a response body message, i.e. the bytes were written to the connection's transport.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """One registry per app (so tests and several apps in one process do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "voxperf_stage_duration_seconds",
            "Duration of one pipeline stage of a request",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "voxperf_request_duration_seconds",
            "Request start (app called) to the last response body byte handed to the transport; "
            "every HTTP response, by route name and status code",
            ["endpoint", "code"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.first_byte_seconds = Histogram(
            "voxperf_tts_first_byte_seconds",
            "Speech: request start (app called) to the first audio body bytes handed to the transport "
            "(not the response headers), by phrase-cache hit or miss",
            ["cache"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.ttfa_seconds = Histogram(
            "voxperf_tts_ttfa_seconds",
            "Speech, synthesised (cache misses): request start (app called) to the body message holding "
            "the first audible sample handed to the transport (the library's TTFA)",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Counter("voxperf_jobs_total", "Jobs by outcome", ["outcome"], registry=self.registry)
        self.queue_depth = Gauge("voxperf_queue_depth", "Jobs waiting in the queue", registry=self.registry)
        self.cache_hits = Counter(
            "voxperf_tts_cache_hits_total", "TTS phrase cache hits", registry=self.registry
        )
        self.cache_misses = Counter(
            "voxperf_tts_cache_misses_total", "TTS phrase cache misses", registry=self.registry
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(stage=stage).observe(ms / 1000)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
