"""``voxperf compare``, ``gate`` and ``report``: thin commands over :mod:`voxperf.report`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voxperf.cli._common import (
    BaseCommitOpt,
    BaseOpt,
    JsonOpt,
    RepoOpt,
    StoreOpt,
    app,
    check_output_paths,
    handle_errors,
    stderr,
)
from voxperf.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from voxperf.load.summaries import SummaryFile


@app.command()
@handle_errors
def compare(
    head: Annotated[Path, typer.Argument(help="Head result file")],
    base: BaseOpt = None,
    base_commit: BaseCommitOpt = None,
    store: StoreOpt = None,
    repo: RepoOpt = Path("."),
    trend: Annotated[int, typer.Option(help="Trend window: latest N stored main-line runs (0 = none)")] = 0,
    pr: Annotated[int | None, typer.Option(help="Include this PR's stored runs in the timeline")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown report (PR comment) here")] = None,
    mermaid: Annotated[bool, typer.Option(help="Add Mermaid charts to the Markdown")] = False,
    json_out: JsonOpt = False,
    all_rows: Annotated[bool, typer.Option("--all", help="Show unchanged rows too")] = False,
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples per CI")] = 1000,
) -> None:
    """Compare a head result with a base: deltas with CIs and verdicts, regressions first."""
    from voxperf.report.render import render_json, render_markdown, render_terminal, trend_points
    from voxperf.report.sources import load_comparison

    check_output_paths((markdown, "--markdown"))
    comparison, vs_trend, trend_runs, _ = load_comparison(
        head, base, base_commit, store, repo, trend, pr, resamples
    )
    if markdown is not None:
        markdown.write_text(
            render_markdown(comparison, trend=trend_points(trend_runs), vs_trend=vs_trend, mermaid=mermaid),
            encoding="utf-8",
        )
    if json_out:
        sys.stdout.write(render_json(comparison) + "\n")
    else:
        render_terminal(comparison, stderr(max_width=100), all_rows=all_rows)


@app.command()
@handle_errors
def gate(
    head: Annotated[Path, typer.Argument(help="Head result file")],
    base: BaseOpt = None,
    base_commit: BaseCommitOpt = None,
    store: StoreOpt = None,
    repo: RepoOpt = Path("."),
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples per CI")] = 1000,
    allow_missing_baseline: Annotated[
        bool, typer.Option(help="Exit 0 when nothing could be compared (e.g. the first run of a project)")
    ] = False,
    gate_metrics: Annotated[
        str | None, typer.Option(help="Gated metrics, comma-separated (default: tool.voxperf.gate metrics)")
    ] = None,
    drift: Annotated[
        str | None,
        typer.Option(
            help="k6/Locust summaries: allowed drift per metric, e.g. job_ms.p95=20%,job_failed.rate=0.02"
        ),
    ] = None,
) -> None:
    """Decide on the headline metrics: exit 1 on a regression, 6 when not comparable, 4 when nothing
    was compared, else 0 (pass, or inconclusive: too noisy to tell). A k6 --summary-export file or a
    Locust stats CSV is compared with its --base by allowed drift (no samples, no CIs)."""
    from voxperf.load.summaries import read_summary

    head_summary = read_summary(head)
    if head_summary is not None:
        _gate_summaries(head_summary, base, drift)
        return
    from voxperf.report.sources import load_comparison
    from voxperf.report.verdict import decision_terminal

    comparison, _, _, _ = load_comparison(
        head, base, base_commit, store, repo, 0, None, resamples, gate_metrics=gate_metrics
    )
    console = stderr(max_width=100)
    decision = comparison.decision
    assert decision is not None  # load_comparison always decides (the gate configuration is the project's)
    decision_terminal(decision, console)
    for s in comparison.skipped:
        console.print(f"not compared: {s}", markup=False)
    for a in comparison.alerts:  # value limits: information, with units
        console.print(
            f"alert ({a.severity}, not gated): {a.lane}/{a.pipeline} {a.metric} p50 "
            f"{_unit_value(a.value, a.metric)} beyond {_unit_value(a.limit, a.metric)}",
            markup=False,
        )
    if decision.status == "fail":
        raise typer.Exit(int(ExitCode.GATE_FAILED))
    if decision.status == "not comparable":
        raise typer.Exit(int(ExitCode.NOT_COMPARABLE))
    if decision.status == "nothing compared" and not allow_missing_baseline:
        raise typer.Exit(int(ExitCode.DATA))


def _production_section(head: Path, source: str, app_version: str | None, window: str) -> str:
    """The "bench vs production" Markdown section for the head result."""
    from voxperf.bench.schema import load_result
    from voxperf.telemetry.production import production_summary, render_markdown, side_by_side

    production = production_summary(
        source, app_version=app_version, window=window, api_key=os.environ.get("VOXPERF_TELEMETRY_KEY")
    )
    rows = side_by_side(load_result(head), production)
    return render_markdown(rows, app_version=app_version, window=window)


def _unit_value(value: float, metric: str) -> str:
    from voxperf.bench.catalog import unit_of
    from voxperf.bench.table import format_value

    return format_value(value, unit_of(metric))


@app.command()
@handle_errors
def report(
    head: Annotated[Path, typer.Argument(help="Head result file")],
    base: BaseOpt = None,
    base_commit: BaseCommitOpt = None,
    store: StoreOpt = None,
    repo: RepoOpt = Path("."),
    trend: Annotated[int, typer.Option(help="Timeline: latest N stored main-line runs")] = 16,
    pr: Annotated[
        int | None, typer.Option(help="Pull request number (timeline and --github-comment)")
    ] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown here (default: stdout)")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here")
    ] = None,
    mermaid: Annotated[
        bool, typer.Option(envvar="VOXPERF_RENDER_MERMAID", help="Add Mermaid charts (off by default in CI)")
    ] = False,
    github_comment: Annotated[
        bool,
        typer.Option(help="Upsert the sticky PR comment (GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL)"),
    ] = False,
    github_repo: Annotated[str | None, typer.Option(envvar="GITHUB_REPOSITORY", help="owner/name")] = None,
    github_api_url: Annotated[str, typer.Option(envvar="GITHUB_API_URL", help="GitHub API base URL")] = (
        "https://api.github.com"
    ),
    synthesize: Annotated[
        bool, typer.Option(help="Add a short synthesis from an OpenAI-compatible endpoint (fails open)")
    ] = False,
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples per CI")] = 1000,
    telemetry: Annotated[
        str | None,
        typer.Option(
            envvar="VOXPERF_TELEMETRY_URL",
            help="Add production p95s: a telemetry server URL, DuckDB path or postgresql:// URL",
        ),
    ] = None,
    app_version: Annotated[
        str | None, typer.Option(help="Production events of this app version only (default: all)")
    ] = None,
    telemetry_window: Annotated[str, typer.Option(help="Production window: 24h, 7d ...")] = "7d",
) -> None:
    """Render the PR report (Markdown) and optionally post it as one sticky PR comment."""
    from voxperf.report.render import render_markdown, trend_points
    from voxperf.report.sources import load_comparison

    check_output_paths((markdown, "--markdown"), (html_out, "--html"))
    comparison, vs_trend, trend_runs, base_result = load_comparison(
        head, base, base_commit, store, repo, trend, pr, resamples
    )
    paragraph = None
    if synthesize:
        from voxperf.report.synthesis import synthesize as ask

        answer = ask(comparison)
        paragraph = answer.text or f"_{answer.note}_"
    text = render_markdown(
        comparison, trend=trend_points(trend_runs), vs_trend=vs_trend, mermaid=mermaid, synthesis=paragraph
    )
    if telemetry:
        text += "\n" + _production_section(head, telemetry, app_version, telemetry_window)
    if markdown is not None:
        markdown.write_text(text, encoding="utf-8")
    elif not github_comment and html_out is None:
        sys.stdout.write(text)
    if html_out is not None:
        from voxperf.bench.schema import load_result
        from voxperf.report.html import render_html

        html_out.write_text(
            render_html(comparison, base_result, load_result(head), trend_points(trend_runs)),
            encoding="utf-8",
        )
    if github_comment:
        from voxperf.report.github import upsert_comment

        if pr is None:
            raise UsageError("--github-comment needs the PR number", "pass --pr N")
        result = upsert_comment(
            text,
            repo=github_repo or "",
            pr=pr,
            token=os.environ.get("GITHUB_TOKEN", ""),
            api_url=github_api_url,
        )
        deleted = f", {len(result.deleted)} duplicate(s) deleted" if result.deleted else ""
        stderr().print(f"PR comment {result.action} (id {result.comment_id}){deleted}")


def _gate_summaries(head: SummaryFile, base: Path | None, drift: str | None) -> None:
    """The allowed-drift gate of two k6 or Locust summaries (exit 1 on a headline regression)."""
    from voxperf.load.summaries import compare_summaries, parse_drift, read_summary

    if base is None:
        raise UsageError(f"{head.path} is a {head.tool} summary: give --base FILE, a {head.tool} summary too")
    base_summary = read_summary(base)
    if base_summary is None or base_summary.tool != head.tool:
        raise UsageError(f"--base {base} is not a {head.tool} summary", f"compare two {head.tool} summaries")
    try:
        rows = compare_summaries(base_summary, head, parse_drift(drift))
    except ValueError as exc:
        raise UsageError(str(exc), "e.g. --drift job_ms.p95=20%") from None
    console = stderr(max_width=100)
    failed = [r for r in rows if r.gated and r.verdict == "regression"]
    verdict = f"FAIL: {len(failed)} headline metric(s) drifted beyond what is allowed" if failed else "PASS"
    console.print(
        f"voxperf gate ({head.tool} summaries; allowed drift, as a summary has no samples, no CI): {verdict}",
        soft_wrap=True,
    )
    for r in sorted(rows, key=lambda r: (not r.gated, r.metric)):
        tag = "" if r.gated else " (information)"
        console.print(
            f"  {r.verdict:<11} {r.metric:<40} {r.base:10.3f} -> {r.head:10.3f}  allowed {r.allowed}{tag}",
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(int(ExitCode.GATE_FAILED))
