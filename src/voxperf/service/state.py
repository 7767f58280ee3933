"""What the routers share: one :class:`ServiceState` per app, and the request dependencies on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from voxperf.service.cache import PhraseCache
from voxperf.service.http import ApiError
from voxperf.service.jobs import JobRecords
from voxperf.service.metrics import ServiceMetrics
from voxperf.service.runtime import ServiceEngines
from voxperf.service.security import InFlight, KeyRing, RateLimiter
from voxperf.service.settings import ServiceSettings
from voxperf.service.worker import EmbeddedQueue

__all__ = ["ServiceState", "get_state", "get_tenant", "not_draining"]


@dataclass
class ServiceState:
    """Settings and engines, and what derives from them (limits, keys, cache); what the lifespan
    opens (records, queue, Celery app) and whether the server is draining."""

    settings: ServiceSettings
    engines: ServiceEngines
    metrics: ServiceMetrics = field(init=False, default_factory=ServiceMetrics)
    records: JobRecords | None = None
    queue: EmbeddedQueue | None = None
    celery: Any = None
    draining: bool = False

    def __post_init__(self) -> None:
        cfg = self.settings
        self.keys = KeyRing.from_settings(cfg)
        self.rate = RateLimiter(cfg.tenant_rate_per_s, cfg.tenant_burst)
        self.cache = PhraseCache(cfg.tts_cache_bytes)
        self.transcribing = InFlight(cfg.max_inflight_transcriptions, "transcriptions")
        self.speaking = InFlight(cfg.max_inflight_speech, "speech streams")
        self.uploading = InFlight(cfg.max_inflight_uploads, "job uploads")

    def jobs(self) -> JobRecords:
        if self.records is None:
            raise ApiError(
                503,
                "the job records are not open yet",
                "not_ready",
                "retry in a moment",
                {"Retry-After": "1"},
            )
        return self.records


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.vox
    return state


def get_tenant(request: Request) -> str:
    """The calling tenant (401 without a valid key when keys are configured), after its rate check."""
    state = get_state(request)
    tenant = state.keys.tenant(request.headers.get("authorization"))
    state.rate.check(tenant)
    return tenant


def not_draining(request: Request) -> None:
    if get_state(request).draining:
        raise ApiError(
            503,
            "the server is shutting down and accepts no new work",
            "unavailable",
            "retry on another instance",
            {"Retry-After": "5"},
        )
