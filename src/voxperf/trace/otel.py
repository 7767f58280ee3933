"""voxperf traces to OpenTelemetry and back.

Out: :class:`OTelExporter` replays voxperf traces as OpenTelemetry spans (the API only; bring your
own SDK and exporter). In: :class:`OTelCollector`, an SDK ``SpanProcessor``, and
:func:`traces_from_otlp_json`, for OTLP/JSON files, turn the span trees of an OTel-instrumented
application (pipecat, LiveKit Agents, your own) into voxperf traces, so their stages are summarised,
compared and gated like voxperf's own (see :func:`voxperf.bench.ingest.result_from_traces`).

The trace core stays dependency-free and cheap (about 0.5 µs a span, 24-33x cheaper than an OTel SDK
span measured side by side); a finished trace is replayed afterwards with its real timestamps:
one span for the request, a child span per stage, point events as span events. Monotonic
nanoseconds are mapped to epoch nanoseconds through one anchor taken when the exporter is made.
Only ids, names, timings and attributes are exported, never transcript text.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voxperf.extras import missing_extra
from voxperf.trace.core import NO_PARENT, Trace

__all__ = [
    "OTelCollector",
    "OTelExporter",
    "SpanData",
    "spans_by_trace",
    "spans_from_otlp_json",
    "trace_from_spans",
    "traces_from_otlp_json",
]


class OTelExporter:
    """``OTelExporter(tracer).export(trace, attributes)`` emits one OTel span tree per trace."""

    def __init__(self, tracer: Any = None, *, clock_anchor: tuple[int, int] | None = None) -> None:
        try:
            from opentelemetry import trace as otel_trace
        except ImportError as exc:
            raise missing_extra("otel", "OpenTelemetry export", "opentelemetry-api") from exc
        self._otel = otel_trace
        self.tracer = tracer or otel_trace.get_tracer("voxperf")
        # (epoch ns, monotonic ns) taken together: maps perf_counter_ns timestamps onto the wall clock
        self._wall, self._mono = clock_anchor or (time.time_ns(), time.perf_counter_ns())

    def _epoch(self, t_ns: int) -> int:
        return self._wall + (t_ns - self._mono)

    def export(self, trace: Trace, attributes: Mapping[str, Any] | None = None) -> None:
        if not trace.finished:
            raise ValueError("only finished traces can be exported")
        attrs = {
            "voxperf.request_id": trace.request_id,
            **{f"voxperf.{k}": v for k, v in trace.attrs.items()},
        }
        attrs.update({f"voxperf.{k}": v for k, v in (attributes or {}).items() if v is not None})
        root = self.tracer.start_span(
            str(trace.attrs.get("pipeline", "request")),
            start_time=self._epoch(trace.start_ns),
            attributes=_clean(attrs),
        )
        for ev in trace.events:
            root.add_event(ev.name, attributes=_clean(ev.attrs or {}), timestamp=self._epoch(ev.t_ns))
        spans: list[Any] = []
        for span in trace.spans:
            parent = root if span.parent == NO_PARENT else spans[span.parent]
            ctx = self._otel.set_span_in_context(parent)
            child = self.tracer.start_span(
                span.name,
                context=ctx,
                start_time=self._epoch(span.start_ns),
                attributes=_clean(span.attrs or {}),
            )
            spans.append(child)
        for span, child in zip(trace.spans, spans, strict=True):
            child.end(end_time=self._epoch(span.end_ns))
        root.end(end_time=self._epoch(trace.end_ns))


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """OTel attribute values must be str, bool, int or float."""
    return {k: v if isinstance(v, str | bool | int | float) else str(v) for k, v in attrs.items()}


# ---- ingest: OpenTelemetry span trees -> voxperf traces ------------------------------------------

NameMap = Mapping[str, str | None] | Callable[[str], str | None]
"""OTel span name -> voxperf span name (``None`` drops the span; its children move up a level)."""

_UNSAFE = re.compile(r"[^a-z0-9_]+")
KEEP_PREFIX = "voxperf."  # only attributes under this prefix are kept: OTel spans may carry text


@dataclass(frozen=True, slots=True)
class SpanData:
    """The parts of one OTel span voxperf reads (from the SDK or from OTLP/JSON), epoch ns."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[tuple[str, int], ...] = ()


def _metric_name(name: str) -> str:
    """A span name as a metric stem: lower case, ``[a-z0-9_]`` (``llm.request`` -> ``llm_request``)."""
    return _UNSAFE.sub("_", name.lower()).strip("_") or "span"


def _map_name(names: NameMap | None, name: str) -> str | None:
    if names is None:
        return _metric_name(name)
    mapped = names(name) if callable(names) else names.get(name, name)
    return None if mapped is None else _metric_name(mapped)


def trace_from_spans(spans: Sequence[SpanData], *, names: NameMap | None = None) -> Trace:
    """One voxperf :class:`Trace` from the spans of one OTel trace.

    The root (the span whose parent is not among ``spans``) is the request: its start and end are
    the trace's, its ``voxperf.*`` attributes the trace's attributes (``voxperf.fixture`` groups
    requests, ``voxperf.pipeline`` names the pipeline). Every other span becomes a span nested as
    in OTel, named through ``names``; span events become trace events. Other attributes are dropped,
    because instrumented frameworks put transcripts and prompts in them."""
    if not spans:
        raise ValueError("no spans")
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids]
    if len(roots) != 1:
        raise ValueError(f"trace {spans[0].trace_id} has {len(roots)} root spans; expected one")
    root = roots[0]
    attrs = {k[len(KEEP_PREFIX) :]: v for k, v in root.attributes.items() if k.startswith(KEEP_PREFIX)}
    attrs.setdefault("pipeline", _metric_name(str(attrs.get("pipeline") or root.name)))
    trace = Trace(root.trace_id, clock=lambda: root.end_ns, start_ns=root.start_ns, attrs=attrs)
    children: dict[str, list[SpanData]] = {}
    for s in spans:
        if s is not root and s.parent_id is not None:
            children.setdefault(s.parent_id, []).append(s)
    for name, t_ns in root.events:
        trace.event(_metric_name(name), t_ns=t_ns)

    def add(parent_id: str, parent_index: int) -> None:
        for s in sorted(children.get(parent_id, ()), key=lambda x: (x.start_ns, x.end_ns)):
            name = _map_name(names, s.name)
            index = parent_index
            if name is not None:
                span_attrs = {
                    k[len(KEEP_PREFIX) :]: v for k, v in s.attributes.items() if k.startswith(KEEP_PREFIX)
                }
                trace.add_span(
                    name, s.start_ns, max(s.end_ns, s.start_ns), span_attrs or None, parent=parent_index
                )
                index = len(trace.spans) - 1
            for ev_name, t_ns in s.events:
                trace.event(_metric_name(ev_name), t_ns=t_ns)
            add(s.span_id, index)

    add(root.span_id, NO_PARENT)
    trace.events.sort(key=lambda e: e.t_ns)
    return trace.finish(root.end_ns)


def _group(spans: Iterable[SpanData]) -> dict[str, list[SpanData]]:
    by_trace: dict[str, list[SpanData]] = {}
    for s in spans:
        by_trace.setdefault(s.trace_id, []).append(s)
    return by_trace


def _from_sdk(span: Any) -> SpanData:
    ctx = span.context
    parent = span.parent
    return SpanData(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_id=None if parent is None else f"{parent.span_id:016x}",
        name=span.name,
        start_ns=int(span.start_time),
        end_ns=int(span.end_time),
        attributes=dict(span.attributes or {}),
        events=tuple((e.name, int(e.timestamp)) for e in span.events),
    )


class OTelCollector:
    """An OpenTelemetry SDK ``SpanProcessor`` that turns each finished trace into a voxperf trace.

    ``provider.add_span_processor(collector)``; when a root span ends (a span without a local
    parent: one request of your app), its tree becomes a :class:`Trace` in :attr:`traces`
    (:meth:`drain` takes them). At most ``max_pending`` unfinished traces are held; older ones are
    dropped and counted in :attr:`dropped`, so a span that never ends cannot grow memory."""

    def __init__(self, *, names: NameMap | None = None, max_pending: int = 10_000) -> None:
        self.names = names
        self.max_pending = max_pending
        self.traces: list[Trace] = []
        self.dropped = 0
        self.errors: list[str] = []
        self._pending: dict[str, list[SpanData]] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing to do until spans end."""

    def _on_ending(self, span: Any) -> None:
        """Called by newer SDKs just before ``on_end``; nothing to do."""

    def on_end(self, span: Any) -> None:
        data = _from_sdk(span)
        with self._lock:
            pending = self._pending.setdefault(data.trace_id, [])
            pending.append(data)
            is_root = span.parent is None or span.parent.is_remote
            if not is_root:
                while len(self._pending) > self.max_pending:
                    self._pending.pop(next(iter(self._pending)))
                    self.dropped += 1
                return
            spans = self._pending.pop(data.trace_id)
        try:
            trace = trace_from_spans(spans, names=self.names)
        except ValueError as exc:
            with self._lock:
                self.errors.append(str(exc))
            return
        with self._lock:
            self.traces.append(trace)

    def drain(self) -> list[Trace]:
        """The traces finished so far, removed from the collector."""
        with self._lock:
            out, self.traces = self.traces, []
        return out

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _otlp_value(value: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])  # OTLP/JSON encodes 64-bit integers as strings
    return None


def traces_from_otlp_json(
    data: bytes | str | Mapping[str, Any], *, names: NameMap | None = None
) -> list[Trace]:
    """voxperf traces from an OTLP/JSON trace export (``{"resourceSpans": [...]}``, as written by the
    Collector's file exporter or sent to ``/v1/traces``); one JSON document per line is accepted too.
    Malformed documents are a :class:`ValueError` naming what is wrong."""
    return [trace_from_spans(group, names=names) for group in spans_by_trace(spans_from_otlp_json(data))]


def spans_by_trace(spans: Iterable[SpanData]) -> list[list[SpanData]]:
    """The spans of each trace, in order of first appearance."""
    return list(_group(spans).values())


def spans_from_otlp_json(data: bytes | str | Mapping[str, Any]) -> list[SpanData]:
    """Every span of an OTLP/JSON trace export (see :func:`traces_from_otlp_json`)."""
    if isinstance(data, Mapping):
        documents: list[Any] = [data]
    else:
        text = data.decode() if isinstance(data, bytes) else data
        try:
            documents = [json.loads(text)]
        except json.JSONDecodeError:
            try:
                documents = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError as exc:
                raise ValueError(f"not OTLP/JSON: {exc}") from None
    spans: list[SpanData] = []
    for n, doc in enumerate(documents, 1):
        if not isinstance(doc, Mapping) or not isinstance(doc.get("resourceSpans"), list):
            raise ValueError(f"document {n} has no resourceSpans list: not an OTLP/JSON trace export")
        for resource in doc["resourceSpans"]:
            for scope in resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []:
                for raw in scope.get("spans", []):
                    try:
                        spans.append(
                            SpanData(
                                trace_id=str(raw["traceId"]).lower(),
                                span_id=str(raw["spanId"]).lower(),
                                parent_id=str(raw["parentSpanId"]).lower()
                                if raw.get("parentSpanId")
                                else None,
                                name=str(raw["name"]),
                                start_ns=int(raw["startTimeUnixNano"]),
                                end_ns=int(raw["endTimeUnixNano"]),
                                attributes={
                                    a["key"]: _otlp_value(a.get("value", {}))
                                    for a in raw.get("attributes", [])
                                },
                                events=tuple(
                                    (str(e["name"]), int(e["timeUnixNano"])) for e in raw.get("events", [])
                                ),
                            )
                        )
                    except (KeyError, TypeError, ValueError) as exc:
                        raise ValueError(f"document {n}: a span lacks or mangles {exc}") from None
    return spans
