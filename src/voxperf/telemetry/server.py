"""The telemetry service: ingest, queries, alerts, ``/metrics`` and the dashboard, over one store.

``voxperf telemetry serve`` runs :func:`create_telemetry_app`; the router is the same whatever
runs it. Endpoints (JSON; errors in the service's one error shape):

* ``POST /v1/telemetry``: NDJSON (gzip or not) of ``pipeline_timing``/``speech_timing`` events.
  200 with ``accepted``, ``rejected`` and each bad line's number and reason (partial success: the
  client must not retry it); 400 when no line is valid; 413/415 for a body too large or not gzip;
  429 with ``Retry-After`` when ``max_inflight`` batches are already being stored. The batch id is
  the ``X-Voxperf-Batch-Id`` (or ``Idempotency-Key``) header, else the body's sha256: a retried
  batch is stored once and answered with its first receipt (``duplicate: true``).
* ``POST /v1/traces``: OTLP/HTTP JSON request-flow traces, mapped onto the same events;
  ``POST /v1/metrics``: OTLP/HTTP JSON latency histograms (LiveKit's ``lk.agents.turn.*``).
* ``GET /v1/telemetry/{summary,series,slowest,breakdown,options}``: what the dashboard draws.
* ``GET /v1/alerts``: each alert's state (ok/warning/error), decided now on complete windows.
* ``GET /metrics`` (Prometheus), ``GET /dashboard``, ``GET /healthz``.

Tenants: with API keys configured each request needs ``Authorization: Bearer KEY`` and sees only
its tenant's events; with none the server is open (one tenant, ``""``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Query as Param
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from voxperf import __version__
from voxperf.errors import UsageError
from voxperf.service.http import ApiError, install_error_handlers
from voxperf.service.security import InFlight, KeyRing
from voxperf.telemetry.alerts import DEFAULT_THRESHOLDS, AlertEngine, Threshold
from voxperf.telemetry.ingest import MAX_BODY_BYTES, IngestError, ParsedBatch, decode_body, parse_batch
from voxperf.telemetry.model import FILTERS, METRICS
from voxperf.telemetry.prometheus import TelemetryMetrics
from voxperf.telemetry.store import HOUR_MS, Query, Receipt, TelemetryStore

__all__ = ["TelemetrySettings", "TelemetryState", "create_telemetry_app", "parse_duration_ms", "router"]

log = logging.getLogger("voxperf.telemetry")
_BATCH_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}
MAX_ERRORS_SHOWN = 100


class TelemetrySettings(BaseModel):
    """Where events go and the service's limits (flags > ``VOXPERF_TELEMETRY_<NAME>`` > defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    store: str = ".voxperf/telemetry.duckdb"  # a DuckDB file, or postgresql://... for a team
    api_keys: list[str] = Field(default_factory=list)  # tenant:KEY or tenant:sha256:HEX
    raw_days: Annotated[float, Field(gt=0)] = 30.0
    rollup_days: Annotated[float, Field(gt=0)] = 400.0
    max_inflight: Annotated[int, Field(ge=1)] = 8  # batches being parsed and stored at once; past it, 429
    webhook_url: str | None = None  # alert state changes are POSTed here
    alert_interval_s: Annotated[float, Field(gt=0)] = 30.0
    compact_interval_s: Annotated[float, Field(gt=0)] = 3600.0
    public_metrics: bool = True  # /metrics without a key (a scrape on a private network)


class GroupWriter:
    """The one thread that decodes, validates and stores batches: the batches waiting together are
    stored in one transaction (group commit: one commit and one bulk insert for all of them, each
    batch still exactly once), and each request is answered only after that commit. One thread
    does all of it because the work holds the GIL: more threads would only take turns."""

    def __init__(
        self,
        store: TelemetryStore,
        metrics: TelemetryMetrics,
        *,
        in_flight: Callable[[], int] = lambda: 0,
        max_batches: int = 16,
        linger_s: float = 0.01,
    ) -> None:
        self.store, self.metrics, self.max_batches = store, metrics, max_batches
        # requests inside the endpoint (their bodies may still be arriving): while there are more
        # of them than batches in hand, wait up to linger_s for theirs, so they share the commit
        self.in_flight, self.linger_s = in_flight, linger_s
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, body: bytes, encoding: str | None, batch_id: str, tenant: str) -> Future[_Stored]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voxperf-telemetry-writer", daemon=True
                )
                self._thread.start()
        done: Future[_Stored] = Future()
        self._queue.put((body, encoding, batch_id, tenant, done))
        return done

    def _take(self, first: _Work) -> list[_Work]:
        group = [first]
        deadline = time.monotonic() + self.linger_s
        while len(group) < self.max_batches:
            wait = deadline - time.monotonic() if self.in_flight() > len(group) else 0.0
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this group
                break
            group.append(item)
        return group

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            parsed: list[tuple[ParsedBatch, str, str, Future[_Stored]]] = []
            for body, encoding, batch_id, tenant, done in self._take(first):
                try:
                    parsed.append((parse_batch(decode_body(body, encoding)), batch_id, tenant, done))
                except BaseException as exc:  # IngestError: this request's answer (4xx)
                    done.set_exception(exc)
            if not parsed:
                continue
            self.metrics.committed(len(parsed))
            try:
                receipts = self.store.ingest_many([(b, i, t) for b, i, t, _ in parsed])
            except BaseException as exc:  # every waiting request gets the error (a 5xx), none hangs
                for *_, done in parsed:
                    done.set_exception(exc)
                continue
            for (batch, *_, done), receipt in zip(parsed, receipts, strict=True):
                self.metrics.observe(batch, receipt.duplicate)
                done.set_result((batch, receipt))

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None


_Stored = tuple[ParsedBatch, Receipt]
_Work = tuple[bytes, str | None, str, str, "Future[_Stored]"]


@dataclass
class TelemetryState:
    settings: TelemetrySettings
    store: TelemetryStore
    clock: Callable[[], float] = time.time
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS
    keys: KeyRing = field(init=False)
    alerts: AlertEngine = field(init=False)
    metrics: TelemetryMetrics = field(init=False, default_factory=TelemetryMetrics)
    ingesting: InFlight = field(init=False)
    writer: GroupWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = GroupWriter(self.store, self.metrics, in_flight=lambda: self.ingesting.active)
        self.keys = KeyRing.from_entries(list(self.settings.api_keys))
        self.alerts = AlertEngine(
            self.store, self.thresholds, webhook_url=self.settings.webhook_url, clock=self.clock
        )
        self.ingesting = InFlight(self.settings.max_inflight, "telemetry batches")

    def tenants(self) -> list[str]:
        return sorted(set(self.keys.digests.values())) or [""]


def parse_duration_ms(text: str) -> int:
    """``15m``, ``24h``, ``7d``, ``500ms`` → milliseconds (a usage error otherwise)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration", "write it like 500ms, 30s, 15m, 24h or 7d")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def _state(request: Request) -> TelemetryState:
    state: TelemetryState = request.app.state.telemetry
    return state


def _tenant(request: Request) -> str:
    return _state(request).keys.tenant(request.headers.get("authorization"))


State = Annotated[TelemetryState, Depends(_state)]
Tenant = Annotated[str, Depends(_tenant)]
router = APIRouter()


def _window(
    request: Request,
    state: State,
    tenant: Tenant,
    window: Annotated[str, Param(description="How far back from the end: 15m, 24h, 7d ...")] = "24h",
    bucket: Annotated[str | None, Param(description="Bucket length (default: window / 48)")] = None,
    start_ms: Annotated[int | None, Param(ge=0)] = None,
    end_ms: Annotated[int | None, Param(ge=0)] = None,
) -> Query:
    """The query window (``end_ms`` default now) and the filters given as query parameters."""
    end = end_ms if end_ms is not None else int(state.clock() * 1000)
    start = start_ms if start_ms is not None else max(0, end - parse_duration_ms(window))
    span = max(1, end - start)
    bucket_ms = parse_duration_ms(bucket) if bucket else max(60_000, span // 48)
    filters = {k: v for k in FILTERS if (v := request.query_params.get(k))}
    return Query(start, end, bucket_ms, tenant, filters)


Window = Annotated[Query, Depends(_window)]


def _stats(stats: str) -> list[str]:
    return [s.strip() for s in stats.split(",") if s.strip()]


def _thresholds(state: TelemetryState) -> list[dict[str, Any]]:
    return [
        {
            "metric": t.metric,
            "stat": t.stat,
            "warning": t.warning,
            "error": t.error,
            "direction": t.direction,
            "window_s": t.window_s,
            "breaches": t.breaches,
            "windows": t.windows,
        }
        for t in state.thresholds
    ]


async def _store_batch(
    state: TelemetryState, body: bytes, encoding: str | None, tenant: str, batch_id: str
) -> tuple[ParsedBatch, Receipt]:
    """Decode, validate and store through the group writer; back once committed. A store that
    fails (disk full, database gone) is a 503 with Retry-After: the client keeps the batch and
    retries it under the same id."""
    try:
        return await asyncio.wrap_future(state.writer.submit(body, encoding, batch_id, tenant))
    except IngestError:
        raise
    except Exception as exc:
        raise _store_failed(exc) from None


BODY_TIMEOUT_S = 30.0


async def _read_body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it passes the size bound, declared or streamed,
    and (408) when it takes longer than ``BODY_TIMEOUT_S``: a client cannot make the server buffer
    an unbounded body, nor hold an ingest slot forever."""
    declared = request.headers.get("content-length")
    too_large = ApiError(
        413,
        f"the body is larger than {MAX_BODY_BYTES} bytes",
        "request_too_large",
        "send smaller batches (1,000 events is plenty)",
    )
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large

    async def read() -> bytes:
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            parts.append(chunk)
        return b"".join(parts)

    try:
        return await asyncio.wait_for(read(), BODY_TIMEOUT_S)
    except TimeoutError:
        raise ApiError(
            408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s", "request_timeout", "send it at once"
        ) from None


def _store_failed(exc: BaseException) -> ApiError:
    log.error("telemetry store failed: %s", exc)
    return ApiError(
        503,
        f"the telemetry store could not take the batch: {type(exc).__name__}",
        "unavailable",
        "retry after the Retry-After seconds with the same batch id",
        {"Retry-After": "5"},
    )


@router.post("/v1/telemetry", tags=["telemetry"])
async def ingest(request: Request, state: State, tenant: Tenant) -> JSONResponse:
    """Store a batch of NDJSON events (see the module docstring for the answers)."""
    give_back = state.ingesting.claim()
    try:
        body = await _read_body(request)
        batch_id = request.headers.get("x-voxperf-batch-id") or request.headers.get("idempotency-key")
        if batch_id is None:
            batch_id = "sha256:" + hashlib.sha256(body).hexdigest()
        elif not _BATCH_ID.match(batch_id):
            raise ApiError(
                400,
                "the batch id is not 1-128 characters of letters, digits and . _ : -",
                "invalid_request_error",
                "send a UUID (hex) as X-Voxperf-Batch-Id",
            )
        try:
            batch, receipt = await _store_batch(
                state, body, request.headers.get("content-encoding"), tenant, batch_id
            )
        except IngestError as exc:
            state.metrics.refused()
            raise ApiError(
                exc.status, str(exc), "invalid_request_error", "fix the batch and send it again"
            ) from None
    finally:
        give_back()
    errors = [{"line": e.line, "reason": e.reason} for e in batch.errors[:MAX_ERRORS_SHOWN]]
    answer = {
        "batch_id": batch_id,
        "accepted": receipt.accepted,
        "rejected": receipt.rejected,
        "duplicate": receipt.duplicate,
        "errors": errors,
        "errors_truncated": len(batch.errors) > MAX_ERRORS_SHOWN,
    }
    if receipt.accepted == 0 and receipt.rejected > 0:
        answer["error"] = {
            "message": f"no valid line in the batch ({receipt.rejected} rejected)",
            "type": "invalid_request_error",
            "hint": "see errors: each bad line's number and reason",
        }
        return JSONResponse(answer, status_code=400)
    return JSONResponse(answer)


_T = TypeVar("_T")


async def _otlp(convert: Callable[[], _T]) -> _T:
    """Decode and map an OTLP/JSON body off the event loop; whatever is wrong with it is a 400
    (a 413/415 for the body itself), never a 500."""
    try:
        return await run_in_threadpool(convert)
    except IngestError as exc:
        raise ApiError(exc.status, str(exc), "invalid_request_error", "send OTLP/HTTP JSON") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise ApiError(
            400,
            f"not a valid OTLP/JSON export: {type(exc).__name__}: {str(exc)[:200]}",
            "invalid_request_error",
            "send OTLP/HTTP JSON (resourceSpans or resourceMetrics)",
        ) from None


@router.post("/v1/traces", tags=["telemetry"])
async def otlp_traces(request: Request, state: State, tenant: Tenant) -> JSONResponse:
    """OTLP/HTTP JSON traces: each request-flow trace becomes one event (see :mod:`.otlp`)."""
    from voxperf.telemetry.otlp import events_from_otlp_traces

    give_back = state.ingesting.claim()
    try:
        body = await _read_body(request)
        encoding = request.headers.get("content-encoding")
        lines, rejected, message = await _otlp(lambda: events_from_otlp_traces(decode_body(body, encoding)))
        batch_id = "otlp:" + hashlib.sha256(body).hexdigest()
        try:
            batch, receipt = await _store_batch(state, lines, None, tenant, batch_id)
        except IngestError as exc:  # e.g. more events than a batch may hold
            raise ApiError(
                exc.status, str(exc), "invalid_request_error", "send fewer traces at once"
            ) from None
    finally:
        give_back()
    rejected += receipt.rejected
    partial: dict[str, Any] = {}
    if rejected:  # OTLP partial success: 200, and the client must not retry
        reasons = [message] if message else []
        reasons += [f"event {e.line}: {e.reason}" for e in batch.errors[:5]]
        partial = {"rejectedSpans": str(rejected), "errorMessage": "; ".join(reasons)}
    return JSONResponse({"partialSuccess": partial})


@router.post("/v1/metrics", tags=["telemetry"])
async def otlp_metrics(request: Request, state: State, tenant: Tenant) -> JSONResponse:
    """OTLP/HTTP JSON metrics: LiveKit-style latency histograms (see :mod:`.histograms`)."""
    from voxperf.telemetry.histograms import points_from_otlp_metrics

    give_back = state.ingesting.claim()
    try:
        body = await _read_body(request)
        encoding = request.headers.get("content-encoding")
        points, rejected, message = await _otlp(lambda: points_from_otlp_metrics(decode_body(body, encoding)))
        batch_id = "otlp-metrics:" + hashlib.sha256(body).hexdigest()
        try:
            await run_in_threadpool(
                state.store.ingest_histograms, points, batch_id=batch_id, tenant=tenant, rejected=rejected
            )
        except Exception as exc:
            raise _store_failed(exc) from None
    finally:
        give_back()
    partial = {"rejectedDataPoints": str(rejected), "errorMessage": message} if rejected else {}
    return JSONResponse({"partialSuccess": partial})


@router.get("/v1/telemetry/summary", tags=["telemetry"])
async def summary(state: State, q: Window) -> dict[str, Any]:
    """Every metric over the window: count and p50/p95 (timings) or the value (rates)."""
    metrics = await run_in_threadpool(state.store.summary, q)
    return {"start_ms": q.start_ms, "end_ms": q.end_ms, "metrics": metrics, "thresholds": _thresholds(state)}


@router.get("/v1/telemetry/series", tags=["telemetry"])
async def series(state: State, q: Window, metric: str = "ttfa_ms", stats: str = "p50,p95") -> dict[str, Any]:
    """One point per bucket: percentiles (``percentile_cont``) of a timing, or a rate."""
    m = METRICS.get(metric)
    wanted = [] if m is not None and m.rate else _stats(stats)
    points = await run_in_threadpool(state.store.series, metric, q, wanted)
    return {
        "metric": metric,
        "bucket_ms": q.bucket_ms,
        "start_ms": q.start_ms,
        "end_ms": q.end_ms,
        "points": [{"t_ms": p.t_ms, "count": p.count, "source": p.source, **p.values} for p in points],
    }


@router.get("/v1/telemetry/slowest", tags=["telemetry"])
async def slowest(state: State, q: Window, metric: str = "ttfa_ms", limit: int = 20) -> dict[str, Any]:
    """The worst events of the window for a timing (drill-down from a spike)."""
    rows = await run_in_threadpool(state.store.slowest, metric, q, max(1, min(limit, 200)))
    return {"metric": metric, "events": rows}


@router.get("/v1/telemetry/breakdown", tags=["telemetry"])
async def breakdown(
    state: State, q: Window, metric: str = "ttfa_ms", by: str = "provider", stats: str = "p50,p95"
) -> dict[str, Any]:
    """A metric per provider, version, level ... over the window (historical analysis)."""
    m = METRICS.get(metric)
    wanted = [] if m is not None and m.rate else _stats(stats)
    rows = await run_in_threadpool(state.store.breakdown, metric, by, q, wanted)
    return {"metric": metric, "by": by, "rows": rows}


@router.get("/v1/telemetry/options", tags=["telemetry"])
async def options(state: State, q: Window) -> dict[str, Any]:
    """The values each filter takes in the window, and the metrics."""
    values = await run_in_threadpool(state.store.options, q)
    metrics = {k: {"label": m.label, "unit": m.unit, "event": m.event} for k, m in METRICS.items()}
    return {"filters": values, "metrics": metrics}


@router.get("/v1/alerts", tags=["telemetry"])
async def alerts(state: State, tenant: Tenant) -> dict[str, Any]:
    """Every alert's state, decided now on the latest complete windows."""
    states = await run_in_threadpool(state.alerts.evaluate, tenant)
    return {"alerts": [s.public() for s in states], "thresholds": _thresholds(state)}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: State) -> Response:
    if not state.settings.public_metrics:
        _tenant(request)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


def _asset(name: str) -> bytes:
    return resources.files("voxperf.telemetry").joinpath("dashboard", name).read_bytes()


_ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The dashboard page; its script and style are served from the package (no CDN)."""
    return HTMLResponse(_asset("index.html"), headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in _ASSET_TYPES:
        raise ApiError(404, f"no dashboard file {name!r}", "not_found", "open /dashboard")
    try:
        data = _asset(name)
    except FileNotFoundError:
        raise ApiError(404, f"no dashboard file {name!r}", "not_found", "open /dashboard") from None
    return Response(data, media_type=_ASSET_TYPES[suffix], headers={"Cache-Control": "no-cache"})


async def _every(seconds: float, work: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(work)
        except Exception:  # a failed round is logged; the next one runs
            log.exception("telemetry background work failed")


def create_telemetry_app(
    settings: TelemetrySettings | None = None,
    *,
    store: TelemetryStore | None = None,
    clock: Callable[[], float] = time.time,
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS,
    background: bool = True,
    own_store: bool = False,
) -> FastAPI:
    """The telemetry app over ``store`` (opened from ``settings.store`` when not given; closed at
    shutdown when opened here or ``own_store``)."""
    cfg = settings or TelemetrySettings()
    owned = store is None or own_store
    the_store = store or TelemetryStore(
        cfg.store, raw_days=cfg.raw_days, rollup_days=cfg.rollup_days, clock=clock
    )
    state = TelemetryState(cfg, the_store, clock, thresholds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if background:

            def evaluate_all() -> None:
                for tenant in state.tenants():
                    state.alerts.evaluate(tenant)

            tasks = [
                asyncio.create_task(_every(cfg.alert_interval_s, evaluate_all)),
                asyncio.create_task(_every(cfg.compact_interval_s, state.store.compact)),
            ]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(state.writer.stop)  # what was accepted is stored before closing
        if owned:
            state.store.close()

    app = FastAPI(
        title="voxperf telemetry", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.telemetry = state
    install_error_handlers(app)
    app.include_router(router)
    return app


def load_settings(flags: dict[str, Any], env: dict[str, str] | None = None) -> TelemetrySettings:
    """Settings from flags (None = not given) > ``VOXPERF_TELEMETRY_<NAME>`` > defaults; a bad value
    is a usage error naming where it came from."""
    import os

    from voxperf.service.settings import validated

    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in TelemetrySettings.model_fields:
        variable = f"VOXPERF_TELEMETRY_{name.upper()}"
        if flags.get(name) is not None:
            values[name], sources[name] = flags[name], f"--{name.replace('_', '-')}"
        elif env.get(variable, "").strip():
            raw = env[variable]
            values[name] = [p.strip() for p in raw.split(",") if p.strip()] if name == "api_keys" else raw
            sources[name] = variable
    return validated(TelemetrySettings, values, sources)
