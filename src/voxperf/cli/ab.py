"""``voxperf ab`` (and ``bench --vs``): paired A/B of two versions, a thin command over
:mod:`voxperf.bench.paired`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from voxperf.cli._common import (
    RepoOpt,
    app,
    bench_config,
    check_output_paths,
    handle_errors,
    stderr,
)
from voxperf.errors import ExitCode, PartialFailure, UsageError, WorkerError


def run_ab_command(config: Any, vs: str, *, output: Path | None, json_out: bool, quiet: bool) -> None:
    """bench --vs: A (this configuration) and B (with the overrides) as a paired run in two workers."""
    from dataclasses import replace

    from voxperf.bench.paired import Side, parse_overrides

    overrides = parse_overrides(vs)
    config = replace(
        config, lanes=tuple(lane for lane in config.lanes if lane == "provider") or ("provider",)
    )
    paired_run(
        config,
        Side("base"),
        Side("head", overrides=overrides),
        output=output,
        json_out=json_out,
        quiet=quiet,
        markdown=None,
        all_rows=False,
        target_ci=None,
        max_time_s=None,
        gate_metrics=None,
        gate_exit=False,  # an engine comparison, not a gate: B being slower is the answer, not a failure
    )


def paired_run(
    config: Any,
    base: Any,
    head: Any,
    *,
    output: Path | None,
    json_out: bool,
    quiet: bool,
    markdown: Path | None,
    all_rows: bool,
    target_ci: float | None,
    max_time_s: float | None,
    gate_metrics: str | None,
    log_dir: Path | None = None,
    request_timeout_s: float = 900.0,
    gate_exit: bool = True,
    github_pr: int | None = None,
) -> None:
    """Run a paired A/B, print the decision first, write the document, exit like the gate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from voxperf.bench.paired import run_paired
    from voxperf.report.gate import gate_config_from
    from voxperf.report.verdict import paired_markdown, paired_terminal
    from voxperf.store.config import project_config

    project, _ = project_config()
    gate = gate_config_from(project.get("gate", {}), gate_metrics)
    console = stderr(max_width=100)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
        auto_refresh=False,
    )
    with progress:
        task = progress.add_task("starting base and head workers", total=None)

        def on_progress(description: str, advance: int, total: int | None = None) -> None:
            if total is not None:
                progress.update(task, total=total, completed=0)
            progress.update(task, description=description, advance=advance)
            progress.refresh()

        run = run_paired(
            config,
            base,
            head,
            gate=gate,
            target_ci=target_ci,
            max_time_s=max_time_s,
            progress=on_progress,
            log_dir=log_dir,
            request_timeout_s=request_timeout_s,
        )
    doc = run.to_dict()
    if output is not None:
        output.write_text(json.dumps(doc, indent=2) + "\n")
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    if markdown is not None:
        markdown.write_text(paired_markdown(run), encoding="utf-8")
    if not quiet:
        paired_terminal(run, console, all_rows=all_rows)
    if github_pr is not None:
        from voxperf.report.github import upsert_comment

        posted = upsert_comment(
            paired_markdown(run),
            repo=os.environ.get("GITHUB_REPOSITORY", ""),
            pr=github_pr,
            token=os.environ.get("GITHUB_TOKEN", ""),
            api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
        )
        console.print(f"PR comment {posted.action} (id {posted.comment_id})", markup=False)
    if output is not None:
        console.print(f"A/B result written to {output}", markup=False)
    if run.stopped_by == "interrupted":
        console.print("interrupted: the decision above uses only the pairs measured so far", markup=False)
        raise typer.Exit(130)
    if run.stopped_by == "worker failed":
        raise WorkerError(
            "a worker failed during the run: " + run.failures[-1]["message"],
            "the decision above uses the pairs measured before; see the worker logs (--log-dir)",
        )
    if run.decision.failed and gate_exit:
        raise typer.Exit(int(ExitCode.GATE_FAILED))
    if run.failures:
        names = ", ".join(sorted({f"{f['pipeline']}/{f['fixture']}" for f in run.failures}))
        raise PartialFailure(
            f"{len(run.failures)} request(s) failed and their jobs were dropped on both sides ({names}); "
            "the other pairs were compared and written",
            run.failures[0]["message"],
        )
    if run.decision.status == "nothing compared":
        raise typer.Exit(int(ExitCode.DATA))


def parse_percent(text: str | None, option: str) -> float | None:
    """ "2%" or "2" -> 0.02."""
    if text is None:
        return None
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"bad {option} {text!r}", f"give a percentage, e.g. {option} 2%") from None
    if not 0 < value < 100:
        raise UsageError(f"{option} must be between 0 and 100 %, got {text}", f"e.g. {option} 2%")
    return value / 100


def parse_budget_s(text: str, option: str = "--max-time") -> float:
    """ "300s", "5min", "1.5h" -> seconds."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(s|sec|m|min|h)\s*", text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"bad {option} {text!r}", "give a positive duration with a unit: 300s, 5min, 1h")
    scale = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


@app.command("ab")
@handle_errors
def ab(
    base_cmd: Annotated[
        str | None, typer.Option(help="Command that runs the base's voxperf, e.g. ../base/.venv/bin/voxperf")
    ] = None,
    base_ref: Annotated[
        str | None,
        typer.Option(help="Git ref of the base: checked out as a worktree, run with this environment"),
    ] = None,
    head_cmd: Annotated[
        str | None, typer.Option(help="Command that runs the head's voxperf (default: this one)")
    ] = None,
    base_set: Annotated[
        str | None, typer.Option(help='Config overrides for the base, e.g. "stt=pocketsphinx"')
    ] = None,
    head_set: Annotated[
        str | None, typer.Option(help='Config overrides for the head, e.g. "fake_latency=stt=66ms"')
    ] = None,
    lane: Annotated[str, typer.Option(help="provider | codepath | both")] = "both",
    pipeline: Annotated[str, typer.Option(help="dictation,speech (comma-separated)")] = "dictation,speech",
    fixtures: Annotated[
        Path | None, typer.Option(help="Directory of audio + .txt, or a JSONL manifest")
    ] = None,
    variant: Annotated[str, typer.Option(help="Built-in fixtures: short,medium,long")] = "short",
    levels: Annotated[str, typer.Option(help="Processing levels: raw,clean,polish")] = "raw",
    stt: Annotated[str, typer.Option(help="STT engine spec")] = "faster-whisper",
    tts: Annotated[str, typer.Option(help="TTS engine spec")] = "piper",
    vad: Annotated[str, typer.Option(help="VAD engine spec or none")] = "silero",
    rewrite: Annotated[str, typer.Option(help="Rewrite engine spec")] = "local",
    fake_latency: Annotated[str, typer.Option(help="Codepath lane latency, e.g. stt=60ms")] = "",
    # 20: measured, 10 pairs caught a +10 % stt change in 28 of 40 decisions under load, 20 pairs in 40 of 40
    iterations: Annotated[
        int, typer.Option(help="Measured rounds (at least this many with --target-ci)")
    ] = 20,
    warmup: Annotated[int, typer.Option(help="Warm-up rounds, not measured")] = 1,
    instrument: Annotated[str, typer.Option(help="wall | instructions (callgrind; codepath lane)")] = "wall",
    normalizer: Annotated[str, typer.Option(help="WER normaliser")] = "whisper-english",
    target_ci: Annotated[
        str | None, typer.Option(help="Also stop once every gated CI is within ±PCT (e.g. 2%)")
    ] = None,
    max_time: Annotated[
        str | None, typer.Option(help="Run until the gate decides, within this budget, e.g. 5min")
    ] = None,
    gate_metrics: Annotated[
        str | None, typer.Option(help="Gated metrics, comma-separated (default: tool.voxperf.gate metrics)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the A/B JSON here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown report (PR comment) here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the A/B JSON on stdout")] = False,
    all_rows: Annotated[
        bool, typer.Option("--all", help="Show every metric, not only the gated ones")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table")] = False,
    log_dir: Annotated[Path | None, typer.Option(help="Keep the workers' logs here")] = None,
    request_timeout: Annotated[float, typer.Option(help="Seconds a worker may take per request")] = 900.0,
    github_comment: Annotated[
        int | None,
        typer.Option(help="Upsert the sticky comment on this PR (GITHUB_TOKEN, GITHUB_REPOSITORY)"),
    ] = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Paired A/B of two versions in one job: base and head workers, requests interleaved A B B A.

    Exit 1 when a gated metric is worse than its tolerance (Holm-controlled), 0 otherwise."""
    import shlex
    from dataclasses import replace

    from voxperf.bench.paired import Side, parse_overrides, worktree_side

    if base_cmd is not None and base_ref is not None:
        raise UsageError("give --base-cmd or --base-ref, not both", "e.g. --base-ref origin/main")
    target = parse_percent(target_ci, "--target-ci")
    budget = parse_budget_s(max_time) if max_time is not None else None
    config = bench_config(
        lane=lane,
        pipeline=pipeline,
        variant=variant,
        levels=levels,
        fake_latency=fake_latency,
        fixtures=fixtures,
        stt=stt,
        tts=tts,
        vad=vad,
        rewrite=rewrite,
        iterations=iterations,
        warmup=warmup,
        normalizer=normalizer,
        instrument=instrument,
    )
    config.validate()
    check_output_paths((output, "--output"), (markdown, "--markdown"))

    def command(text: str, option: str) -> tuple[str, ...]:
        parts = tuple(shlex.split(text))
        if not parts:
            raise UsageError(f"{option} is empty", f"give a command, e.g. {option} ../base/.venv/bin/voxperf")
        return parts

    if base_ref is not None:
        base = worktree_side("base", base_ref, repo)
    else:
        base = Side("base", command(base_cmd, "--base-cmd")) if base_cmd else Side("base")
    head = Side("head", command(head_cmd, "--head-cmd")) if head_cmd else Side("head")
    if base_set:
        base = replace(base, overrides=parse_overrides(base_set))
    if head_set:
        head = replace(head, overrides=parse_overrides(head_set))
    paired_run(
        config,
        base,
        head,
        output=output,
        json_out=json_out,
        quiet=quiet,
        markdown=markdown,
        all_rows=all_rows,
        target_ci=target,
        max_time_s=budget,
        gate_metrics=gate_metrics,
        log_dir=log_dir,
        request_timeout_s=request_timeout,
        github_pr=github_comment,
    )
