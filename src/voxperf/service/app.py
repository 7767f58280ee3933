"""``voxperf serve``: a reference voice service made of the library's parts.

:func:`create_app` composes routers (:mod:`.routes_audio`, :mod:`.routes_jobs`, :mod:`.routes_ops`)
over one :class:`~voxperf.service.state.ServiceState`: typed settings, engines, job records, limits.
The middleware, outermost first:

1. :class:`~voxperf.service.timing.ResponseClockMiddleware`: the request's clock, from the app being
   called to the last body byte handed to the transport (every response, errors included);
2. :class:`RequestGuard`: the ``Host`` allow-list, cross-site writes refused (403), the upload limit on
   the declared length and while the body streams (413), a body that stalls (408);
3. CORS, when origins are configured.

Every error has one shape (:mod:`voxperf.service.http`). Jobs run on the embedded queue (worker
threads over SQLite records) or, with a broker, on Celery workers (:mod:`.celery_app`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from voxperf import __version__
from voxperf.service import routes_audio, routes_jobs, routes_ops
from voxperf.service.http import ApiError, error, install_error_handlers
from voxperf.service.jobs import Job, JobRecords
from voxperf.service.runtime import ServiceEngines
from voxperf.service.settings import ServiceSettings
from voxperf.service.state import ServiceState
from voxperf.service.timing import ResponseClock, ResponseClockMiddleware
from voxperf.service.worker import EmbeddedQueue
from voxperf.trace.export import TIMING_LOGGER, configure_timing_log
from voxperf.trace.metrics import NS_PER_S

__all__ = ["RequestGuard", "ServiceEngines", "ServiceSettings", "create_app"]

log = logging.getLogger("voxperf.service")
Scope = MutableMapping[str, Any]
_WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _too_large(limit: int) -> tuple[int, str, str, str]:
    hint = "send a shorter recording or raise VOXPERF_MAX_UPLOAD_BYTES"
    return 413, f"upload larger than {limit} bytes", "request_too_large", hint


class RequestGuard:
    """ASGI middleware: Host allow-list, cross-site writes, upload size and body read timeout."""

    def __init__(self, app: Any, *, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self.settings = state.settings

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        give_back: Callable[[], None] | None = None
        try:
            self._check(scope["method"], headers)
            if scope["method"] == "POST" and scope.get("path") == "/v1/jobs":
                # a submission that will be refused is refused before its upload is read: a full
                # queue or too many uploads at once costs the server no body to receive and parse
                give_back = await self._admit_upload(headers)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        try:
            await self._guarded(scope, receive, send)
        finally:
            if give_back is not None:
                give_back()

    async def _admit_upload(self, headers: dict[str, str]) -> Callable[[], None]:
        """The queue bounds (429 when full), then an upload slot; returns what gives the slot back."""
        try:
            tenant: str | None = self.state.keys.tenant(headers.get("authorization"))
        except ApiError:
            tenant = None  # the endpoint answers 401 in its own words
        if tenant is not None and self.state.records is not None:
            await run_in_threadpool(routes_jobs.admit, self.state, tenant, 0.0, self.state.records)
        return self.state.uploading.claim()

    async def _guarded(self, scope: Scope, receive: Any, send: Any) -> None:
        limit, timeout = self.settings.max_upload_bytes, self.settings.body_timeout_s
        seen = 0
        body_done = scope["method"] in ("GET", "HEAD", "OPTIONS")
        answered = False

        async def answer(status: int, message: str, kind: str, hint: str) -> dict[str, Any]:
            nonlocal answered
            if not answered:  # answer now, before the rest is read
                answered = True
                await error(status, message, kind, hint)(scope, receive, send)
            return {"type": "http.disconnect"}  # the app stops reading

        async def guarded_receive() -> dict[str, Any]:
            nonlocal seen, body_done
            if body_done or answered:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), timeout=timeout or None)
                except TimeoutError:
                    no_data = f"no request body data for {timeout:g} s"
                    return await answer(408, no_data, "request_timeout", "send the body at once")
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    return await answer(*_too_large(limit))
            return message  # type: ignore[no-any-return]

        async def guarded_send(message: dict[str, Any]) -> None:
            if not answered:  # after our answer, whatever the app says is dropped
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)

    def _check(self, method: str, headers: dict[str, str]) -> None:
        """Refuse (ApiError) an unknown Host, a cross-site write or a declared length over the limit."""
        host = headers.get("host", "")
        allowed = {h.lower() for h in self.settings.allowed_hosts}
        if allowed and host.split(":")[0].lower() not in allowed:
            raise ApiError(400, "unknown Host", "invalid_request_error", "use one of the server's host names")
        origin = headers.get("origin")
        cross_site = bool(origin) and urlsplit(origin or "").netloc.lower() != host.lower()
        if method in _WRITES and cross_site and origin not in self.settings.cors_origins:
            raise ApiError(
                403,
                "cross-site requests may not change anything here",
                "forbidden",
                "call the API from a server, or add the origin to VOXPERF_CORS_ORIGINS",
            )
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise ApiError(400, "invalid Content-Length", "invalid_request_error", "send a byte count")
        if declared is not None and int(declared) > self.settings.max_upload_bytes:
            raise ApiError(*_too_large(self.settings.max_upload_bytes))


def _telemetry_forwarder() -> Any:
    """When ``VOXPERF_INGEST_URL`` is set, a handler that uploads the service's timing lines."""
    from voxperf.telemetry.client import TelemetryClient, TimingLogForwarder

    client = TelemetryClient.from_env()
    if client is None:
        return None
    forwarder = TimingLogForwarder(client, app_version=__version__)
    timing = logging.getLogger(TIMING_LOGGER)
    timing.addHandler(forwarder)
    if timing.level == logging.NOTSET or timing.level > logging.INFO:
        timing.setLevel(logging.INFO)
    return forwarder


def create_app(settings: ServiceSettings | None = None, engines: ServiceEngines | None = None) -> FastAPI:
    """The FastAPI application (engines load in the lifespan unless given ready)."""
    cfg = settings or ServiceSettings.load()
    state = ServiceState(cfg, engines or ServiceEngines())

    def on_job_done(job: Job) -> None:
        state.metrics.jobs.labels(outcome=job.status).inc()
        state.metrics.observe_stages(job.timings_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        configure_timing_log()  # after uvicorn configured logging: it sets up only its own loggers
        forwarder = _telemetry_forwarder()  # VOXPERF_INGEST_URL: this service's own events, uploaded
        warming: asyncio.Future[None] | None = None
        state.records = await run_in_threadpool(JobRecords, cfg.records_target)
        if not state.engines.ready:
            await run_in_threadpool(state.engines.load, cfg)
        if not state.engines.warm:  # ready now; the first-call costs are paid in the background
            warming = asyncio.get_running_loop().run_in_executor(None, state.engines.warm_up)
        if cfg.broker_url:
            from voxperf.service.celery_app import enqueue, make_celery

            state.celery = make_celery(cfg.broker_url, cfg.broker_queue)
            for job_id in await run_in_threadpool(state.records.queued_ids):  # duplicates are no-ops
                await run_in_threadpool(enqueue, state.celery, job_id)
        elif cfg.workers > 0 and state.engines.stt is not None:
            queue = EmbeddedQueue(
                state.records, state.engines.dictation(cfg), workers=cfg.workers, on_done=on_job_done
            )
            resumed = queue.start()
            if resumed:
                log.info("resumed %d interrupted job(s)", resumed)
            state.queue = queue
        yield
        # SIGTERM (uvicorn shutdown): stop accepting, let running jobs finish; the rest resume next start
        state.draining = True
        if warming is not None:
            await warming
        if state.queue is not None:
            await run_in_threadpool(state.queue.stop, cfg.drain_timeout_s)
        if forwarder is not None:
            logging.getLogger(TIMING_LOGGER).removeHandler(forwarder)
            await run_in_threadpool(forwarder.client.close)

    app = FastAPI(
        title="voxperf serve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.vox = state
    install_error_handlers(app)
    app.include_router(routes_ops.router)
    app.include_router(routes_audio.router)
    app.include_router(routes_jobs.router)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(RequestGuard, state=state)

    routes = [
        r for router in (routes_ops.router, routes_audio.router, routes_jobs.router) for r in router.routes
    ]

    def route_name(scope: Scope) -> str:
        """The route's name, also for answers given before routing (the guard's 413 ...), by
        Starlette's own matching; "unmatched" for unknown paths. A bounded, safe metric label."""
        route = scope.get("route")
        if route is None:
            matched = {r.matches(scope)[0]: r for r in reversed(routes)}  # the first of each kind
            route = matched.get(Match.FULL) or matched.get(Match.PARTIAL)
        return str(getattr(route, "name", None) or "unmatched")

    def observe_response(scope: Scope, rc: ResponseClock) -> None:
        end_ns = rc.end_ns if rc.end_ns is not None else rc.start_ns
        state.metrics.request_seconds.labels(
            endpoint=route_name(scope), code=str(rc.status if rc.status is not None else 500)
        ).observe((end_ns - rc.start_ns) / NS_PER_S)

    # added last, so it is the outermost middleware: its clock sees every response, errors included
    app.add_middleware(ResponseClockMiddleware, on_response=observe_response)
    return app
