"""The terminal tables of ``voxperf bench``: one per lane, per-stage p50/p95/p99 with CIs and caveats."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from voxperf.bench.schema import BenchResult, LaneResult, SummaryRecord

__all__ = ["format_value", "render_result"]

DICTATION_ROWS = (
    "decode_ms",
    "resample_ms",
    "vad_ms",
    "encode_ms",
    "stt_ms",
    "rewrite_ms",
    "paste_ms",
    "total_ms",
    "overhead_ms",
    "cpu_ms",
    "stt_rtfx",
    "wer",
)
SPEECH_ROWS = (
    "ttfa_ms",
    "first_chunk_ms",
    "synthesize_ms",
    "sink_ms",
    "total_ms",
    "overhead_ms",
    "cpu_ms",
    "rtfx",
    "streaming_efficiency",
)


def format_value(value: float, unit: str) -> str:
    """Human formatting with the unit: ms with 3 significant digits, ratios as %, RTFx as ×."""
    if value < 0:
        return "-" + format_value(-value, unit)
    if unit == "ms":
        if value >= 100:
            return f"{value:,.0f} ms"
        if value >= 1:
            return f"{value:.1f} ms"
        if value >= 0.01:
            return f"{value:.3f} ms"
        return f"{value * 1000:.1f} µs"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "x":
        return f"{value:.1f}×"
    return f"{value:g} {unit}"


def _ci(s: SummaryRecord) -> str:
    """The p50's 95% CI as ``lo–hi`` in the p50's own unit text (compact)."""
    lo, hi = s.ci95.get("p50", (s.p50, s.p50))
    lo_text, hi_text = format_value(lo, s.unit), format_value(hi, s.unit)
    lo_num, _, lo_unit = lo_text.partition(" ")
    hi_num, _, hi_unit = hi_text.partition(" ")
    if lo_unit == hi_unit:
        return f"{lo_num}–{hi_num}"
    return f"{lo_text}–{hi_text}"


def _lane_table(lane: LaneResult) -> Table:
    codepath = lane.lane == "codepath"
    title = lane.label.upper() if codepath else lane.label
    table = Table(
        title=title, title_style="bold yellow" if codepath else "bold", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for col, justify in (
        ("metric", "left"),
        ("n", "right"),
        ("p50", "right"),
        ("p50 95% CI", "right"),
        ("p95", "right"),
        ("p99", "right"),
        ("notes", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "notes")  # type: ignore[arg-type]
    flagged = {(f.pipeline, f.level, f.fixture, f.metric, f.kind) for f in lane.flags if f.metric}
    for g in lane.summaries:
        if g.fixture is None:
            rows = DICTATION_ROWS if g.pipeline == "dictation" else SPEECH_ROWS
            table.add_row(Text(g.pipeline + (f" · {g.level}" if g.level else ""), style="bold cyan"))
            for metric in rows:
                s = g.metrics.get(metric)
                if s is None:
                    continue
                notes = []
                if (g.pipeline, g.level, None, metric, "implausible") in flagged:
                    notes.append(Text("IMPLAUSIBLE (seed 003)", style="bold red"))
                if s.noisy:
                    notes.append(Text("noisy", style="yellow"))
                table.add_row(
                    metric,
                    str(s.n),
                    format_value(s.p50, s.unit),
                    _ci(s),
                    format_value(s.p95, s.unit),
                    format_value(s.p99, s.unit),
                    Text(" ").join(notes) if notes else "",
                )
    r = lane.resources
    engines = ", ".join(
        f"{e.role}={e.name}" + (f"({e.model})" if e.model else "") + f" load {e.loadMs:.0f} ms"
        for e in lane.engines
    )
    table.caption = (
        "p95/p99 need n≥20/n≥100 samples to be more than the top order statistics; "
        "CI = bootstrap 95% of the p50; aggregates are quantiles weighted by fixture audio bytes\n"
        f"peak RSS {r.peakRssBytes / 2**20:.0f} MiB · CPU {r.cpuUserS + r.cpuSystemS:.1f} s "
        f"({r.cpuPercent:.0f}% of one core) over {r.wallS:.1f} s · {engines}"
    )
    return table


def render_result(result: BenchResult, console: Console) -> None:
    """Print one table per lane, then failures and flags other than the per-row ones."""
    parts = []
    for lane in result.lanes.values():
        parts.append(_lane_table(lane))
    console.print(Group(*parts))
    for lane in result.lanes.values():
        for f in lane.failures:
            hint = f" — {f.hint}" if f.hint else ""
            console.print(
                f"[red]failed[/red] {escape(f'{lane.lane}/{f.pipeline}/{f.fixture}: {f.message}{hint}')}",
                markup=True,
            )
        for fl in lane.flags:
            if fl.kind in ("fake", "no-audio"):
                console.print(
                    f"[bold red]{fl.kind}[/bold red] {escape(f'{lane.lane}: {fl.message}')}", markup=True
                )
