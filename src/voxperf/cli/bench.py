"""``voxperf bench``, ``ab``, ``from-otel``, ``engines``, ``schema`` and ``fixtures``: thin commands
over :mod:`voxperf.bench`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from voxperf.cli._common import (
    app,
    bench_config,
    check_output_paths,
    csv_items,
    fixtures_app,
    handle_errors,
    print_json,
    stderr,
)
from voxperf.errors import PartialFailure, UsageError


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
    from voxperf.cli.ab import parse_budget_s, parse_percent, run_ab_command

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
        encode=encode,
        paste=paste,
        audio_sink=audio_sink,
        cache_dir=cache_dir,
        keep_traces=trace is not None,
        normalizer=normalizer,
        keep_text=not no_text,
        instrument=instrument,
        target_ci=parse_percent(target_ci, "--target-ci"),
        max_time_s=parse_budget_s(max_time) if max_time is not None else None,
    )
    config.validate()
    check_output_paths((output, "--output"), (trace, "--trace"), (events, "--events"))
    if vs is not None:
        run_ab_command(config, vs, output=output, json_out=json_out, quiet=quiet)
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
    for part in csv_items(rename or "", "--map") if rename else []:
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
        render_result(result, stderr())
    output = output or default_result_path(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    dump_result(result, output)
    stderr().print(f"{len(traces)} traced request(s): result written to {output}")


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

    console = stderr()
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

    variants = csv_items(variant, "--variant")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise UsageError(f"unknown --variant {', '.join(bad)}", f"choose from {', '.join(VARIANTS)}")
    engine = create_engine(parse_spec("tts", tts))
    made = [make_fixture(v, engine, cache_dir or default_cache_dir()) for v in variants]
    if json_out:
        sys.stdout.write(json.dumps([f.to_dict() for f in made], indent=2) + "\n")
        return
    console = stderr()
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
        print_json(found)
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
        stderr().print(f"[yellow]plugin problem:[/] {escape(problem)}", soft_wrap=True)


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
