"""The terminal tables of ``voxperf bench``: one per lane, per-stage p50/p95/p99 with CIs and caveats."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from voxperf.bench.catalog import DICTATION_ROWS, SPEECH_ROWS, catalogue_order, is_span_metric
from voxperf.bench.schema import BenchResult, LaneResult, SummaryRecord, definitions_label

__all__ = ["format_value", "render_result"]

TOO_FEW = "n too small"


def format_value(value: float | None, unit: str) -> str:
    """Human formatting with the unit: ms with 3 significant digits, ratios as %, RTFx as ×.

    ``None`` is a quantile the samples cannot carry (p95 below 40, p99 below 200 samples)."""
    if value is None:
        return TOO_FEW
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
    if unit == "count":
        return f"{value:g}"
    if unit == "instr":
        return f"{value / 1e6:,.3f} M" if value >= 1e5 else f"{value:,.0f}"
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
            rows = _rows(g.pipeline, set(g.metrics))
            table.add_row(Text(g.pipeline + (f" · {g.level}" if g.level else ""), style="bold cyan"))
            for metric in rows:
                s = g.metrics.get(metric)
                if s is None:
                    continue
                notes = []
                if (g.pipeline, g.level, None, metric, "implausible") in flagged:
                    notes.append(Text("IMPLAUSIBLE (mocked?)", style="bold red"))
                if s.noisy:
                    notes.append(Text("noisy", style="yellow"))
                table.add_row(
                    metric,
                    str(s.n),
                    format_value(s.p50, s.unit),
                    _ci(s),
                    Text(format_value(s.p95, s.unit), style="dim" if s.p95 is None else ""),
                    Text(format_value(s.p99, s.unit), style="dim" if s.p99 is None else ""),
                    Text(" ").join(notes) if notes else "",
                )
            if g.pipeline == "dictation":
                _wer_row(table, lane, g.level)
    r = lane.resources
    engines = ", ".join(
        f"{e.role}={e.name}" + (f"({e.model})" if e.model else "") + f" load {e.loadMs:.0f} ms"
        for e in lane.engines
    )
    usage = (
        f"peak RSS {r.peakRssBytes / 2**20:.0f} MiB · CPU {r.cpuUserS + r.cpuSystemS:.1f} s "
        f"({r.cpuPercent:.0f}% of one core) over {r.wallS:.1f} s"
        if r.measured
        else f"memory and CPU not measured (requests traced in another process) · {r.wallS:.1f} s of requests"
    )
    table.caption = (
        "p95/p99 need n≥40/n≥200 (effective) samples; CI = 95% of the p50; aggregates: quantiles of "
        "the fixtures' mixture weighted by audio duration; noisy = the CI is wider than a change the "
        "gate flags; wer = corpus WER (Σ edits ÷ Σ reference words"
        + (f", {lane.wer[0].normalizer} normaliser" if lane.wer else "")
        + ")\n"
        f"{usage}" + (f" · {engines}" if engines else "")
    )
    return table


def _rows(pipeline: str, present: set[str]) -> list[str]:
    """The rows of a pipeline's table: its standard ones, with any custom stage (a span of the
    user's own, e.g. ``stt.punctuate_ms``) before ``total_ms``; every metric for traced apps."""
    ordered = catalogue_order(present)
    if pipeline not in ("dictation", "speech"):
        return ordered
    rows = list(DICTATION_ROWS if pipeline == "dictation" else SPEECH_ROWS)
    custom = [m for m in ordered if m not in rows and is_span_metric(m) and m != "total_stage_ms"]
    at = rows.index("total_ms")
    return [*rows[:at], *custom, *rows[at:]]


def _wer_row(table: Table, lane: LaneResult, level: str | None) -> None:
    """Corpus WER of one level: value, CI over utterances and S/D/I counts."""
    for w in lane.wer:
        if w.level != level or w.pipeline != "dictation":
            continue
        lo, hi = w.ci95
        note = f"S {w.substitutions} D {w.deletions} I {w.insertions} of {w.referenceWords} words"
        if w.notes:
            note += " · iterations disagree"
        table.add_row(
            "wer (corpus)",
            str(len(w.utterances)),
            format_value(w.corpusWer, "ratio"),
            f"{lo * 100:.1f}–{hi * 100:.1f}",
            "",
            "",
            note,
        )


def render_result(result: BenchResult, console: Console) -> None:
    """Print one table per lane, then failures and flags other than the per-row ones."""
    label = definitions_label(result)
    if label:
        console.print(f"[yellow]schema v{result.schemaVersion}:[/yellow] {escape(label)}", markup=True)
    if result.incomplete:
        console.print(
            "[bold yellow]INCOMPLETE[/bold yellow]: interrupted; only finished requests", markup=True
        )
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
            if fl.kind in ("fake", "no-audio", "wer"):
                console.print(
                    f"[bold red]{fl.kind}[/bold red] {escape(f'{lane.lane}: {fl.message}')}", markup=True
                )
