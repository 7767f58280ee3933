"""``voxperf load``: open- or closed-model load tests of a voice service, on Locust; a thin
command over :mod:`voxperf.load`."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from voxperf.cli._common import app, csv_items, handle_errors, stderr
from voxperf.errors import UsageError


@app.command()
@handle_errors
def load(
    scenario: Annotated[str, typer.Argument(help="transcribe | jobs | speech | get")],
    target: Annotated[str, typer.Option(help="Base URL of the service, e.g. http://127.0.0.1:8000")],
    rate: Annotated[float | None, typer.Option(help="Open model: requests per second offered")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Closed model: this many users, one request at a time each")
    ] = None,
    arrival: Annotated[
        str, typer.Option(help="Open model arrivals: constant | poisson | gamma")
    ] = "constant",
    burstiness: Annotated[float, typer.Option(help="gamma arrivals: 1 = Poisson, < 1 burstier")] = 1.0,
    ramp_to: Annotated[float | None, typer.Option(help="Ramp the rate linearly to this by the end")] = None,
    duration: Annotated[str, typer.Option(help="How long to offer load, e.g. 30s, 2min")] = "10s",
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many requests")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Locust worker processes (1: a single process)")] = 1,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Requests in flight per worker; later ones start late")
    ] = 256,
    drop_when_busy: Annotated[
        bool, typer.Option(help="Drop a request with no free slot at its time (k6's dropped_iterations)")
    ] = False,
    timeout: Annotated[str, typer.Option(help="Per request")] = "60s",
    fixtures: Annotated[
        Path | None, typer.Option(help="Audio + same-stem .txt, or a JSONL manifest (default: built-in)")
    ] = None,
    variant: Annotated[str, typer.Option(help="Built-in fixtures: short,medium,long")] = "short",
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Scenario option key=value (repeatable)")
    ] = None,
    slo: Annotated[str | None, typer.Option(help="SLOs, e.g. ttfa_p95=800ms,latency_p95=5s")] = None,
    late_ms: Annotated[float, typer.Option(help="A request starting later than this is late")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of poisson/gamma arrivals")] = 0,
    allow_remote: Annotated[bool, typer.Option(help="Allow a target that is not loopback")] = False,
    web_ui: Annotated[bool, typer.Option(help="Keep Locust's web UI (not headless)")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the load result JSON here")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON on stdout")] = False,
) -> None:
    """Load-test a voice service: open-model arrivals (or closed-model users) on Locust, every
    request timed from its intended start, reported with CIs, errors by class and late starts."""
    from voxperf.cli.ab import parse_budget_s
    from voxperf.engines.fakes import parse_duration_s
    from voxperf.extras import require_extra
    from voxperf.load.arrivals import PROCESSES
    from voxperf.load.plan import LoadPlan
    from voxperf.load.report import build_report, parse_slos
    from voxperf.load.runner import check_target, plan_fixtures, result_document, run_load
    from voxperf.load.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        raise UsageError(
            f"unknown load scenario {scenario!r}", f"choose one of: {', '.join(sorted(SCENARIOS))}"
        )
    if (rate is None) == (concurrency is None):
        raise UsageError(
            "give exactly one of --rate (open model) or --concurrency (closed model)", "e.g. --rate 5"
        )
    if arrival not in PROCESSES:
        raise UsageError(f"unknown --arrival {arrival!r}", f"use one of {', '.join(PROCESSES)}")
    check_target(target, allow_remote=allow_remote)
    require_extra("load", "voxperf load")
    duration_s = parse_budget_s(duration, "--duration")
    options: dict[str, object] = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad --option {item!r}", "write key=value, e.g. --option poll_interval_s=0.05")
        options[key.strip()] = _typed(value.strip())
    try:
        slos = parse_slos(slo)
        arrivals = None
        if rate is not None:
            from voxperf.load.arrivals import Arrivals

            arrivals = Arrivals(rate, duration_s, arrival, burstiness, ramp_to, seed)
        plan = LoadPlan(
            target=target.rstrip("/"),
            scenario=scenario,
            options=options,
            arrivals=None
            if arrivals is None
            else {
                "rate": rate,
                "duration_s": duration_s,
                "process": arrival,
                "burstiness": burstiness,
                "ramp_to": ramp_to,
                "seed": seed,
            },
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=max_requests,
            generators=workers,
            max_in_flight=max_in_flight,
            drop_when_busy=drop_when_busy,
            timeout_s=parse_duration_s(timeout, units=("ms", "s")),
            fixtures=[] if scenario == "get" else plan_fixtures(fixtures, csv_items(variant, "--variant")),
        )
        SCENARIOS[scenario](plan.options, plan.fixture_refs())  # options and fixtures checked here, once
    except ValueError as exc:
        raise UsageError(str(exc), "see voxperf load --help") from None
    with tempfile.TemporaryDirectory(prefix="voxperf-load-") as tmp:
        workdir = Path(tmp) if output is None else output.with_suffix(".locust")
        run = run_load(plan, workdir, web_ui=web_ui)
        report = build_report(
            run.samples,
            scenario=scenario,
            offered_rate=rate,
            concurrency=concurrency,
            duration_s=duration_s,
            slos=slos,
            late_ms=late_ms,
        )
        doc = result_document(plan, report, run)
    _print_report(report, doc)
    text = json.dumps(doc, indent=2)
    if output is not None:
        output.write_text(text + "\n")
        stderr().print(f"load result written to {output} (Locust's CSV and logs in {workdir})")
    if json_out:
        sys.stdout.write(text + "\n")


def _typed(value: str) -> object:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _print_report(report: object, doc: dict[str, object]) -> None:
    r = doc["report"]
    assert isinstance(r, dict)
    console = stderr()
    offered = (
        f"{r['offered_rate']:g}/s offered" if r["offered_rate"] is not None else f"{r['concurrency']} users"
    )
    console.print(
        f"{r['scenario']}: {offered} for {r['duration_s']:g} s · {r['scheduled']} requests, {r['ok']} ok, "
        f"errors {r['errors'] or 'none'} · late {r['late']} (> {r['late_ms']:g} ms) · "
        f"achieved {r['achieved_rate']:.2f}/s · throughput {r['throughput_rps']:.2f}/s"
        + (f" · audio {r['audio_rtfx']:.2f} s/s" if r["audio_rtfx"] else "")
        + (f" · goodput {r['goodput_rps']:.2f}/s" if r["goodput_rps"] is not None else ""),
        soft_wrap=True,
    )
    for name, s in r["metrics"].items():
        ci = s["ci95"].get("p50")
        p95 = "n too small" if s["p95"] is None else f"{s['p95']:.1f}"
        console.print(
            f"  {name:<12} n {s['n']:>5}  p50 {s['p50']:9.1f} [{ci[0]:.1f}, {ci[1]:.1f}]  p95 {p95:>10}  "
            f"max {s['max']:9.1f} {s['unit']}",
            soft_wrap=True,
        )
    for slo_name, met in r["slo_met"].items():
        console.print(f"  SLO {escape(slo_name)}: {'met' if met else 'MISSED'}", soft_wrap=True)
    for note in r["notes"]:
        console.print(f"  note: {escape(str(note))}", soft_wrap=True)
