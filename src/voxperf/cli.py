"""The ``voxperf`` command: one Typer app whose subcommands stay thin and call the library.

Progress and tables go to stderr, machine output (``--json``) to stdout. Errors are one line
(``error: ...`` plus ``hint: ...``) with an exit code from :class:`voxperf.errors.ExitCode`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from voxperf import __version__
from voxperf.errors import ExitCode, PartialFailure, UsageError, VoxperfError, WorkerError

app = typer.Typer(
    name="voxperf",
    help="How fast is your speech pipeline, really? Benchmarks real STT/TTS engines and voice pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
fixtures_app = typer.Typer(help="Make and inspect speech fixtures.", no_args_is_help=True)
app.add_typer(fixtures_app, name="fixtures")
store_app = typer.Typer(
    help="The append-only result store, keyed by commit, lane and PR (local directory or git+URL).",
    no_args_is_help=True,
)
app.add_typer(store_app, name="store")

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store location: a directory or git+URL (default: config, .voxperf/store)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout")]
BaseOpt = Annotated[Path | None, typer.Option("--base", help="Base result file")]
BaseCommitOpt = Annotated[
    str | None, typer.Option("--base-commit", help="Base commit: its stored baseline (or nearest ancestor's)")
]
RepoOpt = Annotated[Path, typer.Option(help="The project's git repository")]

F = TypeVar("F", bound=Callable[..., Any])


def _stderr(max_width: int | None = None) -> Console:
    """The console for messages and tables; ``max_width`` caps it (decision reports fit 100 columns)."""
    # markup off: paths, fixture names and messages are user text; styled lines opt in (escaped)
    console = Console(
        stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, markup=False
    )
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, 100)  # logs and pipes: do not wrap the tables at 80
    if max_width is not None:
        console.width = min(console.width, max_width)
    return console


def _fail(exc: VoxperfError) -> typer.Exit:
    console = _stderr()
    # messages carry user text (paths, fixture names): never read it as Rich markup
    console.print(f"[bold red]error:[/bold red] {escape(exc.message)}", markup=True, soft_wrap=True)
    if exc.hint:
        console.print(f"[dim]hint:[/dim] {escape(exc.hint)}", markup=True, soft_wrap=True)
    return typer.Exit(int(exc.exit_code))


def handle_errors(fn: F) -> F:
    """Turn voxperf errors into a one-line message and their exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VoxperfError as exc:
            raise _fail(exc) from None
        except OSError as exc:  # an output path that is a directory, unwritable, on a full disk ...
            where = f" {exc.filename}" if exc.filename else ""
            raise _fail(UsageError(f"cannot use{where}: {exc.strerror or exc}", "check the path")) from None
        except KeyboardInterrupt:
            _stderr().print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def check_output_paths(*paths: tuple[Path | None, str]) -> None:
    """Before a long run: every output path can be written (its folder exists, it is not a folder)."""
    for path, what in paths:
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(
                f"{what} {path} is a directory", f"give a file name, e.g. {path / 'result.json'}"
            )
        if not path.parent.is_dir():
            raise UsageError(
                f"{what} directory {path.parent} does not exist", "create it or choose another path"
            )


def _csv(value: str, option: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise UsageError(f"{option} is empty", f"give a comma-separated list, e.g. {option} a,b")
    return items


@app.command()
@handle_errors
def bench(
    lane: Annotated[str, typer.Option(help="provider | codepath | both")] = "both",
    pipeline: Annotated[str, typer.Option(help="dictation,speech (comma-separated)")] = "dictation,speech",
    fixtures: Annotated[
        Path | None, typer.Option(help="Directory of audio + same-stem .txt, or a JSONL manifest")
    ] = None,
    variant: Annotated[str, typer.Option(help="Built-in fixtures: short,medium,long")] = "short,medium",
    levels: Annotated[str, typer.Option(help="Processing levels: raw,clean,polish")] = "raw,clean",
    stt: Annotated[
        str, typer.Option(help="STT engine spec, e.g. faster-whisper:model=tiny.en,threads=2")
    ] = "faster-whisper",
    tts: Annotated[str, typer.Option(help="TTS engine spec, e.g. piper:voice=en_US-joe-medium")] = "piper",
    vad: Annotated[
        str, typer.Option(help="VAD engine spec (silero, webrtc:aggressiveness=2) or none")
    ] = "silero",
    rewrite: Annotated[
        str, typer.Option(help="Rewrite engine: local, or openai:base_url=...,model=...")
    ] = "local",
    iterations: Annotated[int, typer.Option(help="Measured iterations per fixture and level")] = 5,
    warmup: Annotated[int, typer.Option(help="Warm-up iterations (run, recorded, excluded from stats)")] = 1,
    fake_latency: Annotated[
        str, typer.Option(help="Codepath lane simulated latency, e.g. stt=60ms,rewrite=100ms")
    ] = "",
    encode: Annotated[str, typer.Option(help="Upload-style encode: flac | opus | wav | none")] = "flac",
    paste: Annotated[
        str, typer.Option(help="Text sink: null | file:PATH | clipboard | 'cmd:xdotool type --'")
    ] = "null",
    audio_sink: Annotated[
        str, typer.Option(help="Audio sink for speech: null | wav:PATH | realtime (a real-time player)")
    ] = "null",
    normalizer: Annotated[
        str, typer.Option(help="WER text normaliser: whisper-english | basic | none")
    ] = "whisper-english",
    instrument: Annotated[
        str,
        typer.Option(help="wall (time) | instructions (callgrind counts per request; codepath lane)"),
    ] = "wall",
    no_text: Annotated[
        bool,
        typer.Option("--no-text", help="Keep transcripts and hypotheses out of the result (private data)"),
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result JSON here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the full result JSON on stdout")] = False,
    trace: Annotated[Path | None, typer.Option(help="Write a Chrome trace (open in Perfetto)")] = None,
    events: Annotated[Path | None, typer.Option(help="Write pipeline_timing NDJSON events")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Fixture cache (default ~/.cache/voxperf/fixtures)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table")] = False,
    store: Annotated[
        bool,
        typer.Option("--store", help="Also put the result into the configured store (clean commit only)"),
    ] = False,
    store_location: Annotated[
        str | None, typer.Option("--store-location", help="Store to use with --store")
    ] = None,
    pr: Annotated[
        int | None, typer.Option(help="With --store: file the result under this pull request")
    ] = None,
    allow_dirty: Annotated[
        bool, typer.Option(help="With --store: accept a working tree with changes")
    ] = False,
    vs: Annotated[
        str | None,
        typer.Option(help='A/B: configuration B as "stt=SPEC;vad=SPEC" or a TOML file (paired ratios)'),
    ] = None,
    target_ci: Annotated[
        str | None,
        typer.Option(help="Keep iterating (after --iterations) until every gated p50 CI is within ±PCT"),
    ] = None,
    max_time: Annotated[
        str | None, typer.Option(help="Time budget per lane, e.g. 5min (stops even before --iterations)")
    ] = None,
) -> None:
    """Run speech engines and pipelines on fixtures and report per-stage latency, TTFA, RTFx, WER."""
    from voxperf.bench.runner import BenchConfig, parse_fake_latency

    lanes = ("provider", "codepath") if lane == "both" else _csv(lane, "--lane")
    config = BenchConfig(
        lanes=lanes,
        pipelines=_csv(pipeline, "--pipeline"),
        fixtures=fixtures,
        variants=_csv(variant, "--variant"),
        levels=_csv(levels, "--levels"),
        stt=stt,
        tts=tts,
        vad=vad,
        rewrite=rewrite,
        iterations=iterations,
        warmup=warmup,
        fake_latency=parse_fake_latency(fake_latency),
        encode=encode,
        paste=paste,
        audio_sink=audio_sink,
        cache_dir=cache_dir,
        keep_traces=trace is not None,
        normalizer=normalizer,
        keep_text=not no_text,
        instrument=instrument,
        target_ci=_percent(target_ci, "--target-ci"),
        max_time_s=_budget_s(max_time) if max_time is not None else None,
    )
    config.validate()
    check_output_paths((output, "--output"), (trace, "--trace"), (events, "--events"))
    if vs is not None:
        _run_ab_command(config, vs, output=output, json_out=json_out, quiet=quiet)
        return
    store_to = None
    if store:
        from voxperf.store.config import open_store
        from voxperf.store.config import store_location as resolve_location

        store_to = open_store(resolve_location(store_location))
    _run_bench_command(
        config,
        output=output,
        json_out=json_out,
        trace=trace,
        events=events,
        quiet=quiet,
        store=store_to,
        pr=pr,
        allow_dirty=allow_dirty,
    )


def _run_ab_command(config: Any, vs: str, *, output: Path | None, json_out: bool, quiet: bool) -> None:
    """bench --vs: A (this configuration) and B (with the overrides) as a paired run in two workers."""
    from dataclasses import replace

    from voxperf.bench.paired import Side, parse_overrides

    overrides = parse_overrides(vs)
    config = replace(
        config, lanes=tuple(lane for lane in config.lanes if lane == "provider") or ("provider",)
    )
    _paired(
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


def _paired(
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
    console = _stderr(max_width=100)
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


def _percent(text: str | None, option: str) -> float | None:
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


def _budget_s(text: str) -> float:
    """ "300s", "5min", "1.5h" -> seconds."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(s|sec|m|min|h)\s*", text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"bad --max-time {text!r}", "give a positive duration with a unit: 300s, 5min, 1h")
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
    from voxperf.bench.runner import BenchConfig, parse_fake_latency

    if base_cmd is not None and base_ref is not None:
        raise UsageError("give --base-cmd or --base-ref, not both", "e.g. --base-ref origin/main")
    target = _percent(target_ci, "--target-ci")
    budget = _budget_s(max_time) if max_time is not None else None
    lanes = ("provider", "codepath") if lane == "both" else _csv(lane, "--lane")
    config = BenchConfig(
        lanes=lanes,
        pipelines=_csv(pipeline, "--pipeline"),
        fixtures=fixtures,
        variants=_csv(variant, "--variant"),
        levels=_csv(levels, "--levels"),
        stt=stt,
        tts=tts,
        vad=vad,
        rewrite=rewrite,
        iterations=iterations,
        warmup=warmup,
        fake_latency=parse_fake_latency(fake_latency),
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
    _paired(
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


@app.command("from-otel")
@handle_errors
def from_otel(
    files: Annotated[
        list[Path], typer.Argument(help="OTLP/JSON trace exports (the Collector's file exporter)")
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result JSON here")] = None,
    rename: Annotated[
        str | None, typer.Option("--map", help="Span renames, e.g. llm_node=llm,tts_node=tts (=: drop)")
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="First requests per group kept as warm-up")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table")] = False,
) -> None:
    """Turn OpenTelemetry traces of your application into a voxperf result (compare, gate, report).

    One trace = one request; its spans become stages (<name>_ms, nested ones <stage>.<name>_ms);
    requests are grouped by the root span's voxperf.fixture attribute, else its name."""
    from voxperf.bench.ingest import result_from_traces
    from voxperf.bench.schema import default_result_path, dump_result
    from voxperf.bench.table import render_result
    from voxperf.trace.otel import traces_from_otlp_json

    names: dict[str, str | None] = {}
    for part in _csv(rename or "", "--map") if rename else []:
        old, sep, new = part.partition("=")
        if not sep or not old.strip():
            raise UsageError(
                f"bad --map entry {part!r}", "write otel_name=voxperf_name (empty to drop the span)"
            )
        names[old.strip()] = new.strip() or None
    traces = []
    for path in files:
        try:
            traces += traces_from_otlp_json(path.read_bytes(), names=names or None)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}", "check the path") from exc
        except ValueError as exc:
            raise UsageError(f"{path}: {exc}", "pass an OTLP/JSON trace export (resourceSpans)") from exc
    result = result_from_traces(traces, source=", ".join(str(f) for f in files), warmup=warmup)
    if not quiet:
        render_result(result, _stderr())
    output = output or default_result_path(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    dump_result(result, output)
    _stderr().print(f"{len(traces)} traced request(s): result written to {output}")


@app.command("bench-worker", hidden=True)
def bench_worker() -> None:
    """A paired-run worker: JSON lines over stdio (started by voxperf ab, not by people)."""
    from voxperf.bench.worker import serve_worker

    raise typer.Exit(serve_worker())


def _run_bench_command(
    config: Any,
    *,
    output: Path | None,
    json_out: bool,
    trace: Path | None,
    events: Path | None,
    quiet: bool,
    store: Any = None,
    pr: int | None = None,
    allow_dirty: bool = False,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from voxperf.bench.runner import run_bench
    from voxperf.bench.schema import default_result_path, dump_result
    from voxperf.bench.table import render_result
    from voxperf.trace.export import chrome_trace, write_ndjson

    console = _stderr()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
        auto_refresh=False,  # no 10 Hz refresh thread competing with the requests being timed
    )
    with progress:
        task = progress.add_task("preparing fixtures and engines", total=None)

        def on_progress(description: str, advance: int, total: int | None = None) -> None:
            if total is not None:
                progress.update(task, total=total)
            progress.update(task, description=description, advance=advance)
            progress.refresh()  # between requests

        outcome = run_bench(config, progress=on_progress)
    result = outcome.result
    for w in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", markup=True, soft_wrap=True)
    if not quiet:
        render_result(result, console)
    # results first: whatever else fails, measured numbers are not lost
    if output is None and not json_out:
        output = default_result_path(result)
        output.parent.mkdir(parents=True, exist_ok=True)
    text = dump_result(result, output)
    if output is not None:
        what = "INCOMPLETE result (interrupted)" if outcome.incomplete else "result"
        console.print(f"{what} written to {output}")
    if json_out:
        sys.stdout.write(text + "\n")
    if trace is not None:
        trace.write_text(json.dumps(chrome_trace(outcome.traces)))
        console.print(f"Chrome trace written to {trace} (open in https://ui.perfetto.dev)")
    if events is not None:
        with events.open("w", encoding="utf-8") as fh:
            n = write_ndjson(outcome.timing_events, fh)
        console.print(f"{n} pipeline_timing events written to {events}")
    if outcome.incomplete:
        raise typer.Exit(130)  # interrupted: what finished is written above, nothing is stored
    if store is not None:
        if result.git.commit is None:
            raise UsageError(
                "--store needs a git checkout: the result records no commit", "run inside the repository"
            )
        for put in store.put(result, pr=pr, allow_dirty=allow_dirty):
            console.print(f"store: {put.status} {put.key.relpath}")
    failures = outcome.failures
    if failures:
        names = sorted({f"{f.pipeline}/{f.fixture}" for f in failures})
        raise PartialFailure(
            f"{len(names)} fixture run(s) failed ({', '.join(names)}); results of the others were written",
            failures[0].hint or failures[0].message,
        )


@fixtures_app.command("make")
@handle_errors
def fixtures_make(
    variant: Annotated[str, typer.Option(help="short | medium | long (comma-separated)")] = "short,medium",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where fixtures are written (cached by content hash)")
    ] = None,
    tts: Annotated[str, typer.Option(help="TTS engine spec used to synthesise")] = "piper",
    json_out: Annotated[bool, typer.Option("--json", help="Print fixture records as JSON")] = False,
) -> None:
    """Synthesise speech fixtures (audio + transcript) from built-in texts with Piper."""
    from voxperf.audio.fixtures import default_cache_dir, make_fixture
    from voxperf.audio.texts import VARIANTS
    from voxperf.engines.registry import create_engine, parse_spec

    variants = _csv(variant, "--variant")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise UsageError(f"unknown --variant {', '.join(bad)}", f"choose from {', '.join(VARIANTS)}")
    engine = create_engine(parse_spec("tts", tts))
    made = [make_fixture(v, engine, cache_dir or default_cache_dir()) for v in variants]
    if json_out:
        sys.stdout.write(json.dumps([f.to_dict() for f in made], indent=2) + "\n")
        return
    console = _stderr()
    for f in made:
        console.print(
            f"{f.variant:<7} {f.duration_s:6.2f} s  {f.bytes:>8} B  sha256 {f.sha256[:12]}  {f.path}",
            soft_wrap=True,
        )


@app.command()
@handle_errors
def engines(
    name: Annotated[
        str | None, typer.Argument(help="Show one engine's options (e.g. faster-whisper)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print engines as JSON")] = False,
) -> None:
    """List the engines installed (built-in and plugins), whether they can run here, and their options."""
    from voxperf.engines.registry import describe_engines, plugin_problems

    found = describe_engines()
    if name is not None:
        found = [e for e in found if e["name"] == name.strip().lower()]
        if not found:
            names = sorted({e["name"] for e in describe_engines()})
            raise UsageError(f"no engine named {name!r}", f"choose one of: {', '.join(names)}")
    if json_out:
        _print_json(found)
        return
    for e in found:
        state = "ready" if e["available"] else f"missing {e['missing']} ({e['install']})"
        origin = "" if e["distribution"] in (None, "voxperf") else f"  [from {e['distribution']}]"
        typer.echo(f"{e['role']:<8} {e['name']:<15} {state}{origin}")
        if name is None:
            continue
        typer.echo(f"         {e['summary']}")
        for o in e["options"]:
            choices = f" (one of: {', '.join(o['choices'])})" if o["choices"] else ""
            typer.echo(
                f"         {o['name']:<15} {o['type']:<9} default {o['default']!s:<16} {o['help']}{choices}"
            )
    if name is None:
        typer.echo("options of one engine: voxperf engines NAME")
    for problem in plugin_problems():
        _stderr().print(f"[yellow]plugin problem:[/] {escape(problem)}", soft_wrap=True)


@app.command()
@handle_errors
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON Schema here")] = None,
) -> None:
    """Print the JSON Schema of the bench result file (current version)."""
    from voxperf.bench.schema import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _open(location: str | None, *, create: bool = False) -> Any:
    """The configured store; only commands that write may create it."""
    from voxperf.store.config import open_store, store_location

    return open_store(store_location(location), create=create)


def _commit_arg(rev: str, repo: Path) -> str:
    import re

    from voxperf.store.store import resolve_commit

    return rev if re.fullmatch(r"[0-9a-f]{40}", rev) else resolve_commit(repo, rev)


@store_app.command("put")
@handle_errors
def store_put(
    file: Annotated[Path, typer.Argument(help="A result file from voxperf bench (.json or .json.gz)")],
    pr: Annotated[int | None, typer.Option(help="File it under this pull request")] = None,
    commit: Annotated[
        str | None, typer.Option(help="Override the commit recorded in the result (40-hex)")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Store a result (one file per lane); identical content is a no-op, different content is refused."""
    from voxperf.bench.schema import load_result

    outcomes = _open(store, create=True).put(load_result(file), pr=pr, commit=commit)
    if json_out:
        _print_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            typer.echo(f"{o.status:<9} {o.key.relpath}")


@store_app.command("get")
@handle_errors
def store_get(
    commit: Annotated[str, typer.Argument(help="Commit (full SHA, or any revision of --repo)")],
    lane: Annotated[str, typer.Option(help="provider | codepath")] = "provider",
    pr: Annotated[int | None, typer.Option(help="The pull request the run belongs to")] = None,
    repo: Annotated[Path, typer.Option(help="Repository to resolve short revisions in")] = Path("."),
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a stored result (JSON on stdout)."""
    from voxperf.bench.schema import dump_result
    from voxperf.errors import StoreError
    from voxperf.store.keys import StoreKey

    key = StoreKey(_commit_arg(commit, repo), lane, pr)
    result = _open(store).get(key)
    if result is None:
        raise StoreError(f"no result stored for {key}", "see `voxperf store ls` for what is stored")
    sys.stdout.write(dump_result(result) + "\n")
    del json_out  # the result is JSON either way


@store_app.command("ls")
@handle_errors
def store_ls(
    pr: Annotated[
        int | None, typer.Option(help="All runs of this pull request instead of the main line")
    ] = None,
    lane: Annotated[str | None, typer.Option(help="Only this lane")] = None,
    limit: Annotated[int, typer.Option(help="Latest N main-line runs")] = 16,
    repo: Annotated[
        Path | None, typer.Option(help="Order by commit order in this repository (default: by run time)")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List stored runs, oldest first: the latest main-line runs, or every run of a PR."""
    rows = _open(store).ls(pr=pr, lane=lane, limit=limit, repo=repo)
    if json_out:
        _print_json([r.to_dict() for r in rows])
        return
    for r in rows:
        where = "main" if r.pr is None else f"pr/{r.pr}"
        typer.echo(f"{r.created_at}  {where:<8} {r.commit[:12]}  {r.lane:<9} {r.branch or '-'}")


@store_app.command("baseline")
@handle_errors
def store_baseline(
    base: Annotated[str, typer.Option(help="The PR's base commit (any revision of --repo)")],
    lane: Annotated[str, typer.Option(help="provider | codepath")] = "provider",
    depth: Annotated[int, typer.Option(help="How many ancestors to search")] = 400,
    repo: Annotated[Path, typer.Option(help="The project's git repository")] = Path("."),
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find the baseline for a base commit: exact, nearest persisted ancestor, or missing."""
    answer = _open(store).baseline(base, repo, lane=lane, depth=depth)
    if json_out:
        _print_json(answer.to_dict())
        return
    if answer.key is None:
        typer.echo(
            f"missing: no {lane} result at {answer.base[:12]} or its {answer.searched} nearest ancestors"
        )
    else:
        typer.echo(
            f"{answer.mode}: {answer.key.relpath} ({answer.distance} commit(s) from {answer.base[:12]})"
        )


@store_app.command("backfill")
@handle_errors
def store_backfill(
    directory: Annotated[
        Path, typer.Argument(help="Directory of result files (e.g. downloaded CI artifacts)")
    ],
    pr: Annotated[int | None, typer.Option(help="PR for files whose path does not say")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import result files: identical ones are skipped, conflicting ones refused; both reported."""
    from voxperf.errors import StoreConflictError

    report = _open(store, create=True).backfill(directory, pr=pr)
    if json_out:
        _print_json(report.to_dict())
    else:
        typer.echo(
            f"{len(report.written)} written, {len(report.identical)} identical (skipped), "
            f"{len(report.conflicts)} conflicting (refused), {len(report.errors)} unreadable"
        )
        for c in report.conflicts:
            typer.echo(f"conflict: {c}", err=True)
        for f, m in report.errors:
            typer.echo(f"unreadable: {f}: {m}", err=True)
    if report.conflicts:
        raise StoreConflictError(
            f"{len(report.conflicts)} file(s) conflict with stored results", "see the list above"
        )
    if report.errors:
        raise PartialFailure(f"{len(report.errors)} file(s) could not be read", "see the list above")


@store_app.command("verify")
@handle_errors
def store_verify(
    rebuild: Annotated[bool, typer.Option(help="Rebuild the index from the files first")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check every stored file parses, has a known schema version and matches the index."""
    opened = _open(store)
    if rebuild:
        opened.rebuild_index()
    report = opened.verify()
    if json_out:
        _print_json(report.to_dict())
    else:
        typer.echo(f"{report.checked} file(s) checked, {len(report.problems)} problem(s)")
        for path, problem in report.problems:
            typer.echo(f"{path}: {problem}", err=True)
    if not report.ok:
        raise PartialFailure(f"the store has {len(report.problems)} problem(s)", "see the list above")


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
        render_terminal(comparison, _stderr(max_width=100), all_rows=all_rows)


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
) -> None:
    """Decide on the headline metrics: exit 1 on a regression, 6 when not comparable, 4 when nothing
    was compared, else 0 (pass, or inconclusive: too noisy to tell)."""
    from voxperf.report.sources import load_comparison
    from voxperf.report.verdict import decision_terminal

    comparison, _, _, _ = load_comparison(
        head, base, base_commit, store, repo, 0, None, resamples, gate_metrics=gate_metrics
    )
    console = _stderr(max_width=100)
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
        _stderr().print(f"PR comment {result.action} (id {result.comment_id}){deleted}")


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    stt: Annotated[str | None, typer.Option(help="STT engine spec, or none (VOXPERF_STT_SPEC)")] = None,
    tts: Annotated[str | None, typer.Option(help="TTS engine spec, or none (VOXPERF_TTS_SPEC)")] = None,
    workers: Annotated[int | None, typer.Option(help="Embedded job worker threads (VOXPERF_WORKERS)")] = None,
    job_dir: Annotated[
        str | None, typer.Option(help="Embedded job records directory (VOXPERF_JOB_DIR)")
    ] = None,
    jobs_db: Annotated[
        str | None, typer.Option(help="postgresql://...: job records shared with workers (VOXPERF_JOBS_DB)")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(help="amqp://...: jobs go to Celery workers, voxperf worker (VOXPERF_BROKER_URL)"),
    ] = None,
    hash_key: Annotated[
        str | None, typer.Option(help="Print the tenant:sha256:HEX form of an API key and exit")
    ] = None,
) -> None:
    """Run the reference voice service (OpenAI-compatible audio endpoints, job API) on uvicorn.

    Settings: flag > VOXPERF_<NAME> > [tool.voxperf.serve] in pyproject.toml > default."""
    if hash_key is not None:
        from voxperf.service.security import hash_key as digest

        typer.echo(f"TENANT:sha256:{digest(hash_key)}")
        return
    import threading

    from voxperf.engines.alloc import fix_malloc_thresholds
    from voxperf.service.runtime import ServiceEngines
    from voxperf.service.settings import ServiceSettings

    settings = ServiceSettings.load(
        {
            "stt_spec": stt,
            "tts_spec": tts,
            "workers": workers,
            "job_dir": job_dir,
            "jobs_db": jobs_db,
            "broker_url": broker,
        }
    )
    fix_malloc_thresholds()  # before any engine allocates: see voxperf.engines.alloc
    engines = ServiceEngines()
    failed: list[BaseException] = []

    def load() -> None:  # models load (mostly outside the GIL) while the web stack is imported
        try:
            engines.load(settings, warm=False)  # warmed up once the server listens
        except BaseException as exc:
            failed.append(exc)

    loader = threading.Thread(target=load, name="voxperf-load-engines", daemon=True)
    loader.start()
    import uvicorn

    from voxperf.service.app import create_app
    from voxperf.service.jobs import JobRecords

    JobRecords(settings.records_target).close()  # a bad database fails here, in one line
    loader.join()
    if failed:  # an unknown engine or a missing model too
        raise failed[0]
    uvicorn.run(create_app(settings, engines), host=host, port=port, log_level="info")


@app.command()
@handle_errors
def worker(
    broker: Annotated[str | None, typer.Option(help="amqp://..., as voxperf serve --broker")] = None,
    jobs_db: Annotated[str | None, typer.Option(help="postgresql://..., as voxperf serve --jobs-db")] = None,
    stt: Annotated[str | None, typer.Option(help="STT engine spec (VOXPERF_STT_SPEC)")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once, threads sharing one model (VOXPERF_WORKERS)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """Run a Celery worker for voxperf serve's job queue (the same settings as the server)."""
    from voxperf.service.settings import ServiceSettings

    settings = ServiceSettings.load(
        {
            "broker_url": broker,
            "jobs_db": jobs_db,
            "stt_spec": stt,
            "workers": concurrency,
            "tts_spec": "none",
        }
    )
    if not settings.broker_url:
        raise UsageError("voxperf worker needs a broker", "give --broker amqp://guest:guest@HOST:5672//")
    if settings.workers < 1:
        raise UsageError(f"--concurrency must be >= 1, got {settings.workers}", "e.g. --concurrency 2")
    from voxperf.engines.alloc import fix_malloc_thresholds
    from voxperf.service.celery_app import run_worker

    fix_malloc_thresholds()
    run_worker(settings, loglevel=loglevel)


@app.command()
def version() -> None:
    """Print voxperf's version."""
    typer.echo(__version__)


INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in voxperf, never confused with a failed gate (1)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VoxperfError as exc:  # pragma: no cover - commands handle their own
        _stderr().print(f"error: {exc.message}", markup=False)
        sys.exit(int(exc.exit_code))
    except Exception:  # pragma: no cover - a bug: show it, with an exit code of its own
        import traceback

        traceback.print_exc()
        _stderr().print(
            "voxperf hit an internal error (exit 70); please report it with the traceback above", markup=False
        )
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["ExitCode", "app", "main"]
