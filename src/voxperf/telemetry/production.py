"""Bench and production side by side: the same metric, measured on fixtures and reported by users.

The bench and the telemetry events share their definitions (``stt_ms`` of a bench run and of a
``pipeline_timing`` event are both the ``stt`` stage span of one request; ``ttfa_ms`` is request
start to the first audible audio in both), so their percentiles can stand in one table. What
differs is the population: the bench's aggregate is over its fixtures (weighted by audio
duration) on the bench machine; production is over the events users' apps sent in the window.

:func:`production_summary` reads a telemetry server (``http(s)://...``, its ``/v1/telemetry/summary``)
or a store directly (a DuckDB path or ``postgresql://`` URL).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from voxperf.bench.schema import BenchResult
from voxperf.errors import ServiceUnavailableError, UsageError

__all__ = ["SHARED_METRICS", "SideBySide", "production_summary", "render_markdown", "side_by_side"]

# bench pipeline -> metrics whose definition the telemetry events share
SHARED_METRICS: dict[str, tuple[str, ...]] = {
    "dictation": ("total_ms", "total_stage_ms", "encode_ms", "stt_ms", "rewrite_ms", "paste_ms"),
    "speech": ("ttfa_ms", "streaming_efficiency"),
}


@dataclass(frozen=True, slots=True)
class SideBySide:
    """One metric: the bench's aggregate and production's, over a stated window and version."""

    pipeline: str
    metric: str
    lane: str
    bench_n: int
    bench_p50: float
    bench_p95: float | None
    prod_n: int
    prod_p50: float | None
    prod_p95: float | None


def production_summary(
    source: str,
    *,
    app_version: str | None = None,
    window: str = "7d",
    api_key: str | None = None,
    timeout_s: float = 10.0,
) -> dict[str, dict[str, Any]]:
    """Each telemetry metric over the window (count, p50, p95 or value), for one app version."""
    params = {"window": window, **({"app_version": app_version} if app_version else {})}
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/") + "/v1/telemetry/summary?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise ServiceUnavailableError(
                f"the telemetry server answered {exc.code} for {url}",
                "check the URL and the API key (VOXPERF_TELEMETRY_KEY)",
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServiceUnavailableError(
                f"cannot read production telemetry from {source}: {exc}", "check the telemetry URL"
            ) from None
        return dict(body["metrics"])
    from voxperf.telemetry.server import parse_duration_ms
    from voxperf.telemetry.store import Query, TelemetryStore

    store = TelemetryStore(source, read_only=True)  # a report reads; it creates or migrates nothing
    try:
        end = int(time.time() * 1000)
        start = max(0, end - parse_duration_ms(window))
        filters = {"app_version": app_version} if app_version else {}
        return store.summary(Query(start, end, end - start, filters=filters))
    finally:
        store.close()


def side_by_side(result: BenchResult, production: dict[str, dict[str, Any]]) -> list[SideBySide]:
    """The shared metrics of the result's aggregate summaries (provider lane first) next to
    production's."""
    lanes = sorted(result.lanes.items(), key=lambda kv: kv[0] != "provider")
    rows: list[SideBySide] = []
    seen: set[tuple[str, str]] = set()
    for lane_name, lane in lanes:
        for group in lane.summaries:
            if group.fixture is not None or group.pipeline not in SHARED_METRICS:
                continue
            for metric in SHARED_METRICS[group.pipeline]:
                bench = group.metrics.get(metric)
                prod = production.get(metric)
                key = (group.pipeline, metric)
                if bench is None or prod is None or key in seen:
                    continue
                seen.add(key)
                rows.append(
                    SideBySide(
                        group.pipeline,
                        metric,
                        lane_name,
                        bench.n,
                        bench.p50,
                        bench.p95,
                        int(prod.get("count") or 0),
                        prod.get("p50"),
                        prod.get("p95"),
                    )
                )
    if not rows and not result.lanes:
        raise UsageError("the result has no lanes", "run voxperf bench first")
    return rows


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f} %" if metric == "streaming_efficiency" else f"{value:.1f} ms"


def render_markdown(rows: list[SideBySide], *, app_version: str | None, window: str) -> str:
    """The "production p95 for this version" section of a report."""
    version = f"version {app_version}" if app_version else "all versions"
    lines = [
        f"### Bench vs production ({version}, last {window})",
        "",
        "Same metric definitions; the bench is its fixtures on the bench machine, production is what "
        "users' apps reported.",
        "",
        "| pipeline | metric | bench p50 | bench p95 | production n | production p50 | production p95 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.pipeline} | {r.metric} | {_fmt(r.bench_p50, r.metric)} | {_fmt(r.bench_p95, r.metric)} | "
            f"{r.prod_n} | {_fmt(r.prod_p50, r.metric)} | {_fmt(r.prod_p95, r.metric)} |"
        )
    if not rows:
        lines.append("| – | no shared metric | | | | | |")
    return "\n".join(lines) + "\n"
