"""Probes, metrics and the API docs (served from assets installed with the package, no CDN: a
Content-Security-Policy keeps the pages from loading anything from elsewhere).

``/healthz`` (alive) and ``/readyz`` (engines loaded, job records writable, not draining) are open
to the load balancer; ``/metrics`` and the docs need an API key when the server has tenants (unless
``public_metrics``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from voxperf.service.http import ApiError, ErrorBody, error
from voxperf.service.state import ServiceState, get_state, get_tenant

__all__ = ["router"]

router = APIRouter()
_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(state: ServiceState = Depends(get_state)) -> Any:  # noqa: B008
    if state.draining:
        return error(503, "the server is draining", "not_ready", None, {"Retry-After": "5"})
    if not state.engines.ready or state.records is None:
        return error(503, "models are loading", "not_ready", None, {"Retry-After": "1"})
    problem = await run_in_threadpool(state.records.healthy)
    if problem is not None:
        return error(
            503, f"jobs cannot be stored: {problem}", "not_ready", "free disk space or fix the database"
        )
    engines = state.engines
    return {
        "status": "ready",
        "warm": engines.warm,  # false while the first-call costs are still being paid
        "stt": engines.stt.info.model if engines.stt is not None else None,
        "tts": engines.tts.info.model if engines.tts is not None else None,
    }


def _metrics_access(request: Request) -> None:
    state = get_state(request)
    if not state.settings.public_metrics:
        get_tenant(request)


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(_metrics_access)])
async def prometheus(state: ServiceState = Depends(get_state)) -> Any:  # noqa: B008
    if state.records is not None:
        counts = await run_in_threadpool(state.records.counts)
        state.metrics.queue_depth.set(counts.get("queued", 0))
    payload, content_type = state.metrics.render()
    return PlainTextResponse(payload, media_type=content_type)


@router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(get_tenant)])
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


# the docs pages load nothing from elsewhere (Redoc would fetch its logo from a CDN)
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'"
)


@router.get("/docs", include_in_schema=False, dependencies=[Depends(get_tenant)])
@router.get("/redoc", include_in_schema=False, dependencies=[Depends(get_tenant)])
async def docs(request: Request) -> Any:
    """Swagger UI (``/docs``) or Redoc (``/redoc``) on the assets installed with the package."""
    assets = "/docs-assets/"
    if request.url.path == "/docs":
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="voxperf serve",
            swagger_js_url=assets + "swagger-ui-bundle.js",
            swagger_css_url=assets + "swagger-ui.css",
            swagger_favicon_url=assets + "favicon.png",
        )
    else:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title="voxperf serve",
            redoc_js_url=assets + "redoc.standalone.js",
            redoc_favicon_url=assets + "favicon.png",
            with_google_fonts=False,
        )
    page.headers["Content-Security-Policy"] = _CSP
    return page


@router.get("/docs-assets/{name}", include_in_schema=False)
async def docs_asset(name: str) -> Any:
    if name not in _ASSETS:
        raise ApiError(404, "no such asset", "not_found")
    return FileResponse(_assets_dir() / name, headers={"Cache-Control": "public, max-age=86400"})
