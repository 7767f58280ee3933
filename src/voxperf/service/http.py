"""The service's one error shape, and the handlers that put every error into it.

Every error, whoever raises it (an endpoint, FastAPI's request validation, a :class:`VoxperfError`
from the library, a limit), is ``{"error": {"message", "type", "hint"}}`` with a 4xx or 5xx status
and, for 429/503, a ``Retry-After`` header. Validation messages name the field and the rule, never
echo the client's value (it may be huge, or not printable).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxperf.errors import VoxperfError

__all__ = [
    "ApiError",
    "ErrorBody",
    "error",
    "error_responses",
    "install_error_handlers",
    "strict_json",
    "validation_message",
]


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
    """Parse a JSON body as the standard says: UTF-8, no NaN/Infinity or out-of-range numbers
    (``1e999``), no lone surrogates (``"\\ud800"``); each refusal is a 400 naming the problem."""

    def bad(message: str, hint: str) -> ApiError:
        return ApiError(400, message, "invalid_request_error", hint)

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=lambda c: float("nan"))
    except UnicodeDecodeError:
        raise bad("the body is not UTF-8", "send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise bad(f"the body is not JSON: {exc.msg} at line {exc.lineno}", "send a JSON object") from None
    except RecursionError:
        raise bad("the JSON nests too deeply", "send a flat JSON object") from None
    try:  # what cannot be written back as standard JSON was not standard JSON
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad("a string holds a lone surrogate (\\ud800-\\udfff)", "send valid Unicode") from None
    except ValueError:
        raise bad("JSON has no NaN, Infinity or numbers out of range", "send a finite number") from None
    return value


def validation_message(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line naming each field and rule (never the client's value)."""
    problems = []
    for e in errors[:5]:
        field = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "form", "path"))
        problems.append(f"{field or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


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
        return error(422, validation_message(exc.errors()), "invalid_request_error", "see the API docs")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
        return error(exc.status_code, str(exc.detail), kind, None, dict(exc.headers or {}) or None)
