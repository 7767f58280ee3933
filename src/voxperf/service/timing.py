"""Where the service's clocks stop, and where its timing lines go.

:class:`ResponseClockMiddleware` is the outermost ASGI wrapper of the app. It stamps each HTTP
request's :class:`ResponseClock` from the server's side of the wire: when the app was called, and
when uvicorn's ``send()`` returned for the first and for the last response body message (the bytes
had then been written to the connection's asyncio transport, which passes them to the socket at
once unless the client is not reading). Response headers are not a first byte: a streaming
response's headers go out before any audio does.

The service's timing lines go to the library's timing log (:func:`voxperf.trace.export.log_event`):
the exporter's ``pipeline_timing`` event for every finished dictation and a ``speech_timing`` event
per speech response; neither ever holds transcript text or other user content.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from voxperf.trace.core import Clock, default_clock

__all__ = ["ResponseClock", "ResponseClockMiddleware", "response_clock"]

log = logging.getLogger("voxperf.service")

_SCOPE_KEY = "voxperf.response_clock"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ResponseClock:
    """The clock of one HTTP request as the server's transport sees it (nanoseconds, one clock).

    * ``start_ns``: the app was called (uvicorn had parsed the request head; the body may still
      be arriving). This is the request start for every service metric.
    * ``headers_ns``: ``send()`` returned for ``http.response.start``; ``status`` its code.
    * ``first_body_ns``: ``send()`` returned for the first ``http.response.body`` message that
      carries bytes: they were written to the transport. The first byte of the body, not of the
      headers; None if the body was empty.
    * ``end_ns``: ``send()`` returned for the last body message (``more_body`` false), or the app
      returned without completing a response (``completed`` is then False).

    Endpoints register :meth:`on_complete` callbacks; they run right after ``end_ns`` is stamped,
    before the event loop serves anything else.
    """

    __slots__ = ("_callbacks", "completed", "end_ns", "first_body_ns", "headers_ns", "start_ns", "status")

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.status: int | None = None
        self.headers_ns: int | None = None
        self.first_body_ns: int | None = None
        self.end_ns: int | None = None
        self.completed = False
        self._callbacks: list[Callable[[ResponseClock], None]] = []

    def on_complete(self, callback: Callable[[ResponseClock], None]) -> None:
        """Call ``callback(self)`` once the response has ended (completed or not)."""
        self._callbacks.append(callback)

    def _finish(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # telemetry must not break a response that was already sent
                log.exception("response timing callback failed")


def response_clock(scope: Scope) -> ResponseClock:
    """The :class:`ResponseClock` of the request whose ASGI scope this is."""
    clock = scope.get(_SCOPE_KEY)
    if not isinstance(clock, ResponseClock):
        raise RuntimeError("no ResponseClock in the scope: add ResponseClockMiddleware last (outermost)")
    return clock


class ResponseClockMiddleware:
    """ASGI middleware that stamps a :class:`ResponseClock` per HTTP request (add it last, so it
    wraps every other middleware) and calls ``on_response(scope, clock)`` once per response, after
    the endpoints' callbacks. The clock is injectable for tests."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_response: Callable[[Scope, ResponseClock], None] | None = None,
        clock: Clock = default_clock,
    ) -> None:
        self.app = app
        self.on_response = on_response
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = self.clock
        rc = ResponseClock(clock())
        scope[_SCOPE_KEY] = rc

        async def timed_send(message: Message) -> None:
            await send(message)
            t_ns = clock()
            kind = message["type"]
            if kind == "http.response.start":
                rc.status = int(message["status"])
                rc.headers_ns = t_ns
            elif kind == "http.response.body" and rc.end_ns is None:
                if rc.first_body_ns is None and message.get("body"):
                    rc.first_body_ns = t_ns
                if not message.get("more_body", False):
                    rc.end_ns = t_ns
                    rc.completed = True
                    self._done(scope, rc)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if rc.end_ns is None:  # an error, a disconnect, or no response from the app
                rc.end_ns = clock()
                self._done(scope, rc)

    def _done(self, scope: Scope, rc: ResponseClock) -> None:
        rc._finish()
        if self.on_response is not None:
            try:
                self.on_response(scope, rc)
            except Exception:
                log.exception("response metrics failed")
