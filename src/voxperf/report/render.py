"""Render a :class:`~voxperf.report.compare.Comparison`: Markdown (PR comment), terminal, JSON.

The Markdown starts with a hidden marker so a CI job can find and update its own sticky comment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from voxperf.bench.catalog import HEADLINE_METRICS, unit_of
from voxperf.bench.schema import BenchResult
from voxperf.bench.table import format_value
from voxperf.report.compare import Comparison, MetricComparison

__all__ = [
    "COMMENT_MARKER",
    "TrendPoint",
    "render_json",
    "render_markdown",
    "render_terminal",
    "trend_points",
]

COMMENT_MARKER = "<!-- voxperf-report -->"
_ICON = {"regression": "🔴", "improvement": "🟢", "unchanged": "⚪", "inconclusive": "🟡"}
_HEADLINE = HEADLINE_METRICS


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One run in the timeline: where it came from and its p50 per (lane, pipeline, level, metric).

    p50, not p95: a run of a few iterations cannot carry a p95 (see voxperf.bench.stats)."""

    source: str  # "main" or "pr/<n>"
    commit: str
    created_at: str
    p50: dict[tuple[str, str, str | None, str], float]


def trend_points(results: Sequence[tuple[str, BenchResult]]) -> list[TrendPoint]:
    """Timeline points from stored results (aggregate p50 of each metric), oldest first."""
    out = []
    for source, r in results:
        p50: dict[tuple[str, str, str | None, str], float] = {}
        for lane_name, lane in r.lanes.items():
            for g in lane.summaries:
                if g.fixture is None:
                    for metric, s in g.metrics.items():
                        p50[(lane_name, g.pipeline, g.level, metric)] = s.p50
        out.append(TrendPoint(source, r.git.commit or "-", r.createdAt, p50))
    return out


def _fmt_delta(r: MetricComparison) -> tuple[str, str]:
    d = r.delta
    sign = "+" if d.abs >= 0 else "−"
    rel = f" ({d.rel * 100:+.1f}%)" if d.rel is not None else ""
    delta = f"{sign}{format_value(abs(d.abs), r.unit)}{rel}"
    if d.rel_ci is not None:
        ci = f"[{d.rel_ci[0] * 100:+.1f}%, {d.rel_ci[1] * 100:+.1f}%]"
    else:
        ci = f"[{format_value(d.abs_ci[0], r.unit)}, {format_value(d.abs_ci[1], r.unit)}]"
    return delta, ci


def _verdict_text(r: MetricComparison) -> str:
    sev = f" ({r.severity})" if r.severity else ""
    return f"{_ICON[r.verdict]} {r.verdict}{sev}"


_MD_SPECIAL = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "@&#8203;"} | {c: f"\\{c}" for c in "\\`*_{}[]()#+!|~"}
)


def md(text: object) -> str:
    """Untrusted text (fixture names, lanes, commits, paths from result files) made inert in
    GitHub Markdown: no table breaks, links, images, HTML or @mentions under the bot's name."""
    return str(text).replace("\n", " ").translate(_MD_SPECIAL)


def _code(text: object) -> str:
    """Inline code for identifiers; backticks removed so the span cannot be closed early."""
    return "`" + str(text).replace("`", "").replace("\n", " ").replace("|", "/") + "`"


def _where(lane: str, pipeline: str, level: str | None) -> str:
    return f"{lane} · {pipeline}" + (f" · {level}" if level else "")


def _group(r: MetricComparison) -> str:
    return md(_where(r.lane, r.pipeline, r.level))


def render_markdown(
    comparison: Comparison,
    *,
    trend: Sequence[TrendPoint] = (),
    vs_trend: Comparison | None = None,
    timeline_metrics: Sequence[str] = ("total_ms", "ttfa_ms"),
    mermaid: bool = False,
    synthesis: str | None = None,
) -> str:
    """A PR comment: verdict line, summary table, attribution, per-fixture details, timeline."""
    from voxperf.report.verdict import decision_markdown

    c = comparison
    lines = [COMMENT_MARKER, "## voxperf report", ""]
    if c.decision is not None:
        lines += decision_markdown(c.decision, title="gate")
    mode = f" ({c.baseline_mode.replace('_', ' ')})" if c.baseline_mode else ""
    lines.append(f"Head {_code(c.head_label)} vs base {_code(c.base_label)}{md(mode)}.")
    lines.append("")
    if synthesis:
        lines += [f"> {synthesis}", ""]
    lines += _attribution_markdown(c)
    trend_index = {}
    if vs_trend is not None:
        trend_index = {(r.lane, r.pipeline, r.level, r.fixture, r.metric, r.stat): r for r in vs_trend.rows}
    agg = [r for r in c.rows if r.fixture is None and (r.metric in _HEADLINE or r.verdict != "unchanged")]
    lines += [f"<details><summary>All metrics ({len(agg)} aggregate rows, information)</summary>", ""]
    header = "| group | metric | base | head | Δ vs base | 95% CI | vs base |"
    sep = "|---|---|---:|---:|---:|---|---|"
    if vs_trend is not None:
        header += " vs trend |"
        sep += "---|"
    lines += [header, sep]
    for r in agg:
        delta, ci = _fmt_delta(r)
        row = (
            f"| {_group(r)} | {r.metric} {r.stat} | {format_value(r.delta.base, r.unit)} | "
            f"{format_value(r.delta.head, r.unit)} | {delta} | {ci} | {_verdict_text(r)} |"
        )
        if vs_trend is not None:
            t = trend_index.get((r.lane, r.pipeline, r.level, r.fixture, r.metric, r.stat))
            row += f" {_verdict_text(t) if t else 'n/a'} |"
        lines.append(row)
    lines += ["", "</details>", ""]
    if c.alerts:
        lines.append("**Alerts** (value limits; information, not gated):")
        for alert in c.alerts:
            unit = unit_of(alert.metric)
            lines.append(
                f"- {alert.severity}: {md(f'{alert.lane}/{alert.pipeline}/{alert.level or chr(45)}')} "
                f"{alert.metric} p50 {format_value(alert.value, unit)} beyond limit "
                f"{format_value(alert.limit, unit)}"
            )
        lines.append("")
    for hint in c.hints:
        lines.append(f"💡 {md(hint)}")
    if c.hints:
        lines.append("")
    fixtures = [
        r
        for r in c.rows
        if r.fixture is not None and r.stat == "p50" and (r.metric in _HEADLINE or r.verdict != "unchanged")
    ]
    if fixtures:
        lines += [
            "<details><summary>Per-fixture breakdown (p50)</summary>",
            "",
            "| group | fixture | metric | base | head | Δ | 95% CI | verdict |",
            "|---|---|---|---:|---:|---:|---|---|",
        ]
        for r in fixtures:
            delta, ci = _fmt_delta(r)
            lines.append(
                f"| {_group(r)} | {md(r.fixture)} | {r.metric} | {format_value(r.delta.base, r.unit)} | "
                f"{format_value(r.delta.head, r.unit)} | {delta} | {ci} | {_verdict_text(r)} |"
            )
        lines += ["", "</details>", ""]
    if trend:
        lines += _timeline(trend, timeline_metrics, mermaid)
    if c.skipped:
        lines += (
            ["<details><summary>Not compared</summary>", ""]
            + [f"- {md(s)}" for s in c.skipped]
            + ["", "</details>", ""]
        )
    lines.append(
        "<sub>Information rows: a regression exceeds its threshold and its 95% CI excludes 0; "
        "inconclusive means too noisy or too few samples to tell. Only the gated metrics above decide. "
        "Generated by voxperf.</sub>"
    )
    return "\n".join(lines) + "\n"


def _stage_parts(a: Any) -> str:
    """Stage deltas of an attribution, largest first: "stt +12.0 ms, decode +0.1 ms"."""
    return ", ".join(
        f"{k} {v:+.1f} ms"
        for k, v in sorted(a.stage_deltas_ms.items(), key=lambda kv: -abs(kv[1]))
        if abs(v) >= 0.05
    )


def _attribution_markdown(c: Comparison) -> list[str]:
    attributions = [a for a in c.attributions if a.dominant and abs(a.total_delta_ms) > 0]
    if not attributions:
        return []
    lines = [
        "**Where the time went** (duration-weighted mean Δ per stage; they add up to the total's Δ):",
        "",
    ]
    for a in attributions:
        parts = _stage_parts(a)
        lines.append(
            f"- {md(_where(a.lane, a.pipeline, a.level))}: total {a.total_delta_ms:+.1f} ms"
            f" — dominant **{md(a.dominant)}**" + (f" ({md(parts)})" if parts else "")
        )
        for stage, files in a.files.items():
            lines.append(
                f"  - touched for {md(stage)}: "
                + ", ".join(_code(f) for f in files[:10])
                + (f" (+{len(files) - 10} more)" if len(files) > 10 else "")
            )
    lines.append("")
    return lines


def _timeline(trend: Sequence[TrendPoint], metrics: Sequence[str], mermaid: bool) -> list[str]:
    keys = sorted({k for p in trend for k in p.p50 if k[3] in metrics}, key=str)
    if not keys:
        return []
    lines = [f"<details><summary>Run timeline (latest {len(trend)} runs, p50)</summary>", ""]
    cols = [f"{lane}·{pipe}{'·' + lvl if lvl else ''} {metric}" for lane, pipe, lvl, metric in keys]
    lines.append("| source | commit | " + " | ".join(cols) + " |")
    lines.append("|---|---|" + "---:|" * len(cols))
    for p in trend:
        cells = [f"{p.p50[k]:.1f}" if k in p.p50 else "–" for k in keys]
        lines.append(f"| {md(p.source)} | {_code(p.commit[:8])} | " + " | ".join(cells) + " |")
    lines.append("")
    if mermaid:
        key = keys[0]
        points = [p for p in trend if key in p.p50]  # runs without the metric are left out, not drawn as 0
        title = "".join(ch for ch in cols[0] if ch.isalnum() or ch in " ·_-")
        lines += [
            "```mermaid",
            "xychart-beta",
            f'  title "{title} p50 (ms)"',
            "  x-axis ["
            + ", ".join('"' + "".join(ch for ch in p.commit[:7] if ch.isalnum()) + '"' for p in points)
            + "]",
            "  line [" + ", ".join(f"{p.p50[key]:.1f}" for p in points) + "]",
            "```",
            "",
        ]
    lines += ["</details>", ""]
    return lines


def render_terminal(comparison: Comparison, console: Console, *, all_rows: bool = False) -> None:
    """The gate's decision first, then where the time went; the full table with ``all_rows``
    (else only rows that are not unchanged). At most 100 columns; long cells wrap, never cut."""
    from voxperf.report.verdict import MAX_WIDTH, decision_terminal

    width = min(console.width, MAX_WIDTH)
    if comparison.decision is not None:
        decision_terminal(comparison.decision, console, title="voxperf gate")
    for a in comparison.attributions:
        if a.dominant and abs(a.total_delta_ms) > 0:
            parts = _stage_parts(a)
            console.print(
                f"where the time went, {_where(a.lane, a.pipeline, a.level)}: total "
                f"{a.total_delta_ms:+.1f} ms ({parts})",
                width=width,
                markup=False,
            )
    table = Table(
        title=f"all metrics: {comparison.head_label} vs {comparison.base_label} (information)",
        title_justify="left",
        pad_edge=False,
    )
    for col in ("metric · where", "base → head", "Δ [95% CI]", "verdict"):
        table.add_column(col, overflow="fold")
    style = {"regression": "bold red", "improvement": "green", "inconclusive": "yellow", "unchanged": "dim"}
    shown = 0
    for r in comparison.rows:
        if r.verdict == "unchanged" and not all_rows:
            continue
        shown += 1
        delta, ci = _fmt_delta(r)
        where = f"{r.lane}/{r.pipeline}" + (f"/{r.level}" if r.level else "") + f" [{r.fixture or 'all'}]"
        table.add_row(
            f"{r.metric} {r.stat}\n{where}",
            f"{format_value(r.delta.base, r.unit)} →\n{format_value(r.delta.head, r.unit)}",
            f"{delta}\n{ci}",
            Text(r.verdict + (f" ({r.severity})" if r.severity else ""), style=style[r.verdict]),
        )
    if shown:
        console.print(table, width=width)
    unchanged = sum(r.verdict == "unchanged" for r in comparison.rows)
    console.print(
        f"{unchanged} of {len(comparison.rows)} comparisons unchanged"
        + ("" if all_rows else " (hidden; --all shows them)"),
        width=width,
    )
    for alert in comparison.alerts:
        unit = unit_of(alert.metric)
        console.print(
            f"alert ({alert.severity}, not gated): {alert.lane}/{alert.pipeline} {alert.metric} p50 "
            f"{format_value(alert.value, unit)} beyond {format_value(alert.limit, unit)}",
            width=width,
            markup=False,
        )
    for h in comparison.hints:
        console.print(f"hint: {h}", width=width, markup=False)
    for s in comparison.skipped:
        console.print(f"[dim]not compared: {escape(s)}[/dim]", markup=True, width=width)


def render_json(comparison: Comparison) -> str:
    return json.dumps(comparison.to_dict(), indent=2)
