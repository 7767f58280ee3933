"""The gate's answer first: the decision on the headline metrics as a terminal table or Markdown.

Reports open with these few rows (one per gated metric), then "where the time went", then the
full table (collapsed in Markdown, behind ``--all`` in the terminal). Terminal tables fit 100
columns: long cells wrap, numbers are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from voxperf.bench.table import format_value
from voxperf.report.gate import Change, GateDecision, GateRow

if TYPE_CHECKING:
    from voxperf.bench.paired import PairedRun

__all__ = [
    "ICON",
    "change_rows_markdown",
    "decision_markdown",
    "decision_terminal",
    "paired_markdown",
    "paired_terminal",
    "value_with_unit",
]

ICON = {
    "fail": "❌",
    "pass": "✅",
    "inconclusive": "⚠️",
    "not comparable": "⛔",
    "nothing compared": "∅",
}
_STYLE = {"regression": "bold red", "improvement": "green", "inconclusive": "yellow", "unchanged": "dim"}
MAX_WIDTH = 100


def value_with_unit(value: float, c: Change) -> str:
    """A base or head value with its unit ("412 ms", "4.1×", "12.3%")."""
    if c.metric == "wer":
        return f"{value * 100:.2f}%"
    return format_value(value, c.unit)


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _md(text: object) -> str:
    from voxperf.report.render import md

    return md(text)


def decision_markdown(decision: GateDecision, *, title: str = "voxperf gate") -> list[str]:
    """The verdict line and one row per gated metric."""
    lines = [f"### {ICON[decision.status]} {title}: {_md(decision.headline())}", ""]
    if decision.rows:
        lines += [
            "| verdict | metric | where | base | head | change [95% CI] | tolerance | p (Holm) |",
            "|---|---|---|---:|---:|---|---:|---:|",
        ]
        for r in decision.rows:
            c = r.change
            lines.append(
                f"| {r.verdict} | {c.metric} | {_md(c.where)} | {value_with_unit(c.base, c)} | "
                f"{value_with_unit(c.head, c)} | {c.change_text()} | {c.tolerance_text()} | "
                f"{_p(r.p_worse_adjusted)} |"
            )
        lines.append("")
        lines.append(
            f"<sub>The gate fails only when a gated metric is worse than its tolerance with "
            f"family-wise error ≤ {decision.alpha:g} (Holm over {len(decision.rows)} metrics); "
            "unchanged = the whole CI is inside the tolerance. Every other row is information.</sub>"
        )
        lines.append("")
    return lines


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    table.add_column("verdict", overflow="fold")
    table.add_column("metric · where", overflow="fold", max_width=24)
    table.add_column("base → head", overflow="fold")
    table.add_column("change [95% CI]", overflow="fold")
    table.add_column("tol.", overflow="fold")
    table.add_column("p (Holm)", overflow="fold", justify="right")
    return table


def _row(table: Table, r: GateRow) -> None:
    c = r.change
    table.add_row(
        Text(r.verdict, style=_STYLE[r.verdict]),
        f"{c.metric}\n{c.where}",
        f"{value_with_unit(c.base, c)} →\n{value_with_unit(c.head, c)}",
        c.change_text(),
        c.tolerance_text(),
        _p(r.p_worse_adjusted),
    )


def decision_terminal(decision: GateDecision, console: Console, *, title: str = "voxperf gate") -> None:
    """The decision as a table no wider than 100 columns."""
    width = min(console.width, MAX_WIDTH)
    style = {"fail": "bold red", "pass": "bold green"}.get(decision.status, "bold yellow")
    console.print(Text(f"{title}: {decision.headline()}", style=style), width=width)
    if decision.rows:
        table = _table("gated metrics")
        for r in decision.rows:
            _row(table, r)
        console.print(table, width=width)


def change_rows_markdown(changes: Sequence[Change]) -> list[str]:
    """Every metric's paired change (information, not gated)."""
    lines = [
        "| where | metric | base | head | change [95% CI] | n |",
        "|---|---|---:|---:|---|---:|",
    ]
    for c in changes:
        lines.append(
            f"| {_md(c.where)} | {c.metric} | {value_with_unit(c.base, c)} | "
            f"{value_with_unit(c.head, c)} | {c.change_text()} | {c.n} |"
        )
    return lines


def _paired_context(run: PairedRun) -> list[str]:
    rounds = ", ".join(f"{lane} {n} round(s)" for lane, n in run.rounds.items())
    why = {
        "iterations": "after the configured iterations",
        "decided": "as soon as the gate could decide",
        "target": f"when every gated CI was within ±{(run.target_ci or 0) * 100:.3g} %",
        "budget": "when the time budget ran out",
        "interrupted": "when interrupted (Ctrl-C): only the pairs measured so far",
        "worker failed": "when a worker failed: only the pairs measured before",
    }.get(run.stopped_by, run.stopped_by)
    return [
        f"base: {run.base.describe()}",
        f"head: {run.head.describe()}",
        f"paired, interleaved A B B A; {rounds}; stopped {why}; time to verdict {run.elapsed_s:.1f} s",
    ]


def _attribution_lines(run: PairedRun) -> list[str]:
    lines = []
    for group, deltas in run.attribution.items():
        total = deltas.get("total", 0.0)
        parts = ", ".join(
            f"{k} {v:+.2f} ms"
            for k, v in sorted(deltas.items(), key=lambda kv: -abs(kv[1]))
            if k != "total" and abs(v) >= 0.005
        )
        lines.append(f"{group}: total {total:+.2f} ms" + (f" ({parts})" if parts else ""))
    return lines


def paired_markdown(run: PairedRun) -> str:
    """A PR comment for a paired run: decision, context, where the time went, all rows collapsed."""
    from voxperf.report.render import COMMENT_MARKER

    lines = [COMMENT_MARKER, "## voxperf A/B (paired, one job)", ""]
    lines += decision_markdown(run.decision, title="gate")
    lines += [f"- {_md(t)}" for t in _paired_context(run)]
    lines.append("")
    attribution = _attribution_lines(run)
    if attribution:
        lines += ["**Where the time went** (mean paired head − base per stage):", ""]
        lines += [f"- {_md(t)}" for t in attribution]
        lines.append("")
    for f in run.failures:
        lines.append(
            f"- ⚠️ {_md(f['side'])} failed {_md(f['pipeline'])}/{_md(f['fixture'])}: {_md(f['message'])}"
        )
    lines += [f"<details><summary>All metrics ({len(run.rows)} rows, information)</summary>", ""]
    lines += change_rows_markdown(run.rows)
    lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"


def paired_terminal(run: PairedRun, console: Console, *, all_rows: bool = False) -> None:
    """The paired run in the terminal: decision, context, attribution; every row with ``all_rows``."""
    width = min(console.width, MAX_WIDTH)
    decision_terminal(run.decision, console, title="voxperf ab")
    for line in _paired_context(run):
        console.print(escape(line), width=width, markup=False)
    attribution = _attribution_lines(run)
    if attribution:
        console.print("where the time went (mean paired head − base):", width=width)
        for line in attribution:
            console.print("  " + line, width=width, markup=False)
    for f in run.failures:
        console.print(
            f"failed on {f['side']}: {f['pipeline']}/{f['fixture']}: {f['message']}",
            width=width,
            markup=False,
        )
    if all_rows:
        table = Table(title="all metrics (information)", title_justify="left", pad_edge=False)
        for col in ("metric · where", "base → head", "change [95% CI]", "n"):
            table.add_column(col, overflow="fold")
        for c in run.rows:
            table.add_row(
                f"{c.metric}\n{c.where}",
                f"{value_with_unit(c.base, c)} → {value_with_unit(c.head, c)}",
                c.change_text(),
                str(c.n),
            )
        console.print(table, width=width)
    else:
        console.print(f"{len(run.rows)} metric rows hidden (--all shows them)", width=width)
