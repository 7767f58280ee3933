"""The service's one error shape, and the handlers that put every error into it.

Every error, whoever raises it (an endpoint, FastAPI's request validation, a :class:`VoxperfError`
from the library, a limit), is ``{"error": {"message", "type", "hint"}}`` with a 4xx or 5xx status
and, for 429/503, a ``Retry-After`` header. Validation messages name the field and the rule, never
echo the client's value (it may be huge, or not printable).
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxperf.errors import VoxperfError

__all__ = ["ApiError", "ErrorBody", "error", "error_responses", "install_error_handlers", "strict_json"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """OpenAI-style error body (plus a hint that says how to fix it)."""

    error: ErrorDetail


def error(
    status: int,
    message: str,
    kind: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "hint": hint}}
    return JSONResponse(body, status_code=status, headers=headers)


class ApiError(Exception):
    """Raised by an endpoint or dependency: answered as :func:`error` with these arguments."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.hint, self.headers = status, message, kind, hint, headers

    def response(self) -> JSONResponse:
        return error(self.status, self.message, self.kind, self.hint, self.headers)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given codes (401 always: every /v1 route may need a key)."""
    return {code: {"model": ErrorBody} for code in (401, *codes)}


def strict_json(raw: bytes) -> Any:
    """Parse a JSON body as the standard says: no NaN/Infinity, no lone surrogates, UTF-8 only."""

    def refuse(constant: str) -> Any:
        raise ApiError(
            400, f"JSON does not allow {constant}", "invalid_request_error", "send a finite number"
        )

    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=refuse)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8", "invalid_request_error", "send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the body is not JSON: {exc.msg} at line {exc.lineno}",
            "invalid_request_error",
            "send a JSON object",
        ) from None
    _check_strings(value)
    return value


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400,
                "a string holds a lone surrogate (\\ud800-\\udfff)",
                "invalid_request_error",
                "send valid Unicode",
            ) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k)
            _check_strings(v)
    elif isinstance(value, list):
        for v in value:
            _check_strings(v)
    elif isinstance(value, float) and not math.isfinite(value):  # 1e999 parses to inf
        raise ApiError(400, "a number is out of range", "invalid_request_error", "send a finite number")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Map every kind of error onto the one shape (see the module docstring)."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(VoxperfError)
    async def voxperf_error(_request: Request, exc: VoxperfError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.http_status in (503, 507) else None
        return error(exc.http_status, exc.message, type(exc).__name__, exc.hint, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{_field(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
        return error(
            422, "; ".join(problems) or "invalid request", "invalid_request_error", "see the API docs"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
        return error(exc.status_code, str(exc.detail), kind, None, dict(exc.headers or {}) or None)
