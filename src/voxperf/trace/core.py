"""The trace core: one request's spans and point events on a monotonic nanosecond clock.

A :class:`Trace` is opened at request start and finished at request end. Stages are timed with
``with trace.span(Stage.STT): ...``; point events (request-flow events such as ``FIRST_CHUNK_GENERATED``) with
``trace.event(name)``. Spans nest: each records the index of the span that was open when it began.
The clock is injectable (any ``() -> int`` nanosecond counter) so metrics are tested without sleeps.

The hot path is kept small on purpose (one object per span, two clock reads, no locks): a trace
belongs to one request and one thread at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any

__all__ = ["Clock", "Event", "Span", "Trace", "current_trace", "default_clock", "span"]

Clock = Callable[[], int]
"""A monotonic clock returning integer nanoseconds."""

default_clock: Clock = perf_counter_ns

NO_PARENT = -1


class Span:
    """One timed stage: ``name`` from :class:`~voxperf.trace.stages.Stage`, start and end in ns.

    Used as a context manager from :meth:`Trace.span`; ``parent`` is the index in
    ``trace.spans`` of the enclosing span, or -1 at top level.
    """

    __slots__ = ("_trace", "attrs", "end_ns", "name", "parent", "start_ns")

    def __init__(self, trace: Trace, name: str, attrs: dict[str, Any] | None) -> None:
        self._trace = trace
        self.name = name
        self.attrs = attrs
        self.start_ns = 0
        self.end_ns = 0
        self.parent = NO_PARENT

    def __enter__(self) -> Span:
        trace = self._trace
        spans = trace.spans
        self.parent = trace._open
        trace._open = len(spans)
        spans.append(self)
        self.start_ns = trace.clock()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        trace = self._trace
        self.end_ns = trace.clock()
        trace._open = self.parent
        if exc_type is not None:
            self.set("error", getattr(exc_type, "__name__", str(exc_type)))

    @property
    def duration_ns(self) -> int:
        """End minus start, in nanoseconds (0 while the span is still open)."""
        return self.end_ns - self.start_ns if self.end_ns else 0

    def set(self, key: str, value: Any) -> None:
        """Attach an attribute (never user content such as transcript text)."""
        if self.attrs is None:
            self.attrs = {}
        self.attrs[key] = value

    def __repr__(self) -> str:
        return f"Span({self.name!r}, {self.duration_ns} ns, parent={self.parent})"


class Event:
    """A point in time within a request (a request-flow event)."""

    __slots__ = ("attrs", "name", "t_ns")

    def __init__(self, name: str, t_ns: int, attrs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.t_ns = t_ns
        self.attrs = dict(attrs) if attrs else None

    def __repr__(self) -> str:
        return f"Event({self.name!r}, t={self.t_ns})"


class Trace:
    """All spans and events of one request, from request start to :meth:`finish`."""

    __slots__ = ("_open", "attrs", "clock", "end_ns", "events", "request_id", "spans", "start_ns")

    def __init__(
        self,
        request_id: str | None = None,
        *,
        clock: Clock = default_clock,
        start_ns: int | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.clock = clock
        self.request_id = request_id or uuid.uuid4().hex
        self.spans: list[Span] = []
        self.events: list[Event] = []
        self.attrs: dict[str, Any] = dict(attrs) if attrs else {}
        self._open = NO_PARENT  # index of the innermost open span
        self.end_ns = 0
        # request start: taken last so set-up above is not part of the request
        self.start_ns = clock() if start_ns is None else start_ns

    def span(self, name: str, attrs: dict[str, Any] | None = None) -> Span:
        """A context manager timing one stage; nests inside any span already open."""
        return Span(self, name, attrs)

    def add_span(
        self,
        name: str,
        start_ns: int,
        end_ns: int,
        attrs: dict[str, Any] | None = None,
        *,
        parent: int | None = None,
    ) -> Span:
        """Record a span measured elsewhere (e.g. by a server) with explicit timestamps, nested in
        the open span, or in ``trace.spans[parent]`` (``NO_PARENT``: top level) when given."""
        if end_ns < start_ns:
            raise ValueError(f"span {name!r} ends before it starts ({end_ns} < {start_ns})")
        if parent is not None and not NO_PARENT <= parent < len(self.spans):
            raise ValueError(f"span {name!r} names parent {parent}, which is not a span of this trace")
        span = Span(self, name, attrs)
        span.parent = self._open if parent is None else parent
        span.start_ns = start_ns
        span.end_ns = end_ns
        self.spans.append(span)
        return span

    def event(self, name: str, attrs: Mapping[str, Any] | None = None, *, t_ns: int | None = None) -> Event:
        """Record a point event now (or at ``t_ns``)."""
        ev = Event(name, self.clock() if t_ns is None else t_ns, attrs)
        self.events.append(ev)
        return ev

    def finish(self, t_ns: int | None = None) -> Trace:
        """Mark request end; spans still open are an error in the caller."""
        if self._open != NO_PARENT:
            raise RuntimeError(f"trace finished with span {self.spans[self._open].name!r} still open")
        self.end_ns = self.clock() if t_ns is None else t_ns
        return self

    @property
    def finished(self) -> bool:
        return self.end_ns != 0

    def first_event(self, name: str) -> Event | None:
        """The earliest event with this name, or None."""
        for ev in self.events:
            if ev.name == name:
                return ev
        return None

    @contextmanager
    def activate(self) -> Iterator[Trace]:
        """Make this the current trace of the running context (the pipelines do, for each request),
        so engines and user code can add spans with :func:`span` without being passed the trace."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def __repr__(self) -> str:
        return f"Trace({self.request_id}, {len(self.spans)} spans, {len(self.events)} events)"


_current: ContextVar[Trace | None] = ContextVar("voxperf_current_trace", default=None)


def current_trace() -> Trace | None:
    """The trace of the request running in this context, or None outside a request."""
    return _current.get()


def span(name: str, attrs: dict[str, Any] | None = None) -> AbstractContextManager[Span | None]:
    """A span on the current trace (nested in whatever span is open: inside an engine, a sub-span of
    its stage, summarised as ``<stage>.<name>_ms``), or nothing outside a request."""
    trace = _current.get()
    return trace.span(name, attrs) if trace is not None else nullcontext()
