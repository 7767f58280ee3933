"""``voxperf load``: open- or closed-model load tests of a voice service, on Locust; a thin
command over :mod:`voxperf.load`."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from voxperf.cli._common import app, csv_items, handle_errors, stderr
from voxperf.errors import UsageError

if TYPE_CHECKING:
    from voxperf.load.capacity import Judgement
    from voxperf.load.plan import LoadPlan
    from voxperf.load.report import SLO, LoadReport


@app.command()
@handle_errors
def load(
    scenario: Annotated[str, typer.Argument(help="transcribe | jobs | speech | get")],
    target: Annotated[str, typer.Option(help="Base URL of the service, e.g. http://127.0.0.1:8000")],
    rate: Annotated[float | None, typer.Option(help="Open model: requests per second offered")] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(help="Closed model: users, one request at a time each; 1,2,4,8 = a scaling curve"),
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
    remote_workers: Annotated[
        int, typer.Option(min=0, help="Workers joining from other machines (voxperf load-worker)")
    ] = 0,
    master_bind: Annotated[
        str, typer.Option(help="With --remote-workers: HOST:PORT the Locust master listens on")
    ] = "0.0.0.0:5557",
    result: Annotated[
        Path | None,
        typer.Option(help="Also write a voxperf result (pipeline load) for store, compare and gate"),
    ] = None,
    find_capacity: Annotated[
        bool, typer.Option(help="Search the highest --rate (or --concurrency) meeting every --slo")
    ] = False,
    max_load: Annotated[
        float, typer.Option(help="Capacity search: highest rate or concurrency to try")
    ] = 1000.0,
    runs_per_point: Annotated[int, typer.Option(min=1, help="Capacity search: runs at each point")] = 1,
    tolerance: Annotated[
        float, typer.Option(help="Capacity search: stop when the bracket is this close")
    ] = 0.1,
    min_requests: Annotated[
        int, typer.Option(help="Capacity search: lengthen low-rate points to this many requests (p95: 40)")
    ] = 40,
) -> None:
    """Load-test a voice service: open-model arrivals (or closed-model users) on Locust, every
    request timed from its intended start, reported with CIs, errors by class and late starts."""
    from voxperf.cli.ab import parse_budget_s
    from voxperf.engines.fakes import parse_duration_s
    from voxperf.extras import require_extra
    from voxperf.load.arrivals import PROCESSES
    from voxperf.load.plan import LoadPlan
    from voxperf.load.report import parse_slos
    from voxperf.load.runner import (
        check_target,
        measure,
        plan_fixtures,
        result_document,
        scaling_rows,
        with_load,
    )
    from voxperf.load.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        raise UsageError(
            f"unknown load scenario {scenario!r}", f"choose one of: {', '.join(sorted(SCENARIOS))}"
        )
    if (rate is None) == (concurrency is None):
        raise UsageError(
            "give exactly one of --rate (open model) or --concurrency (closed model)", "e.g. --rate 5"
        )
    levels: list[int] = []
    if concurrency is not None:
        try:
            levels = [int(c) for c in csv_items(concurrency, "--concurrency")]
        except ValueError:
            raise UsageError(f"bad --concurrency {concurrency!r}", "give users, e.g. 4 or 1,2,4,8") from None
        if any(c < 1 for c in levels):
            raise UsageError("--concurrency must be at least 1", "e.g. --concurrency 1,2,4,8")
    if result is not None and (find_capacity or len(levels) > 1):
        raise UsageError(
            "--result writes the result of one run", "drop --find-capacity or give one --concurrency"
        )
    if find_capacity and not slo:
        raise UsageError("--find-capacity needs at least one --slo", "e.g. --slo latency_p95=5s")
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
            concurrency=levels[0] if levels else None,
            duration_s=duration_s,
            max_requests=max_requests,
            generators=workers + remote_workers,
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
        if find_capacity:
            doc = _capacity(plan, workdir, slos, late_ms, max_load, runs_per_point, tolerance, min_requests)
        elif len(levels) > 1:
            reports = []
            for c in levels:
                report, run = measure(
                    with_load(plan, concurrency=c), workdir / f"c{c}", slos=slos, late_ms=late_ms
                )
                reports.append(report)
                _print_report(report)
            doc = result_document(plan, reports[-1], run)
            doc["mode"] = "scaling"
            doc["runs"] = [r.to_dict() for r in reports]
            doc["scaling"] = scaling_rows(reports)
        else:
            bind = None
            if remote_workers:
                host, _, port_text = master_bind.rpartition(":")
                if not port_text.isdigit():
                    raise UsageError(
                        f"bad --master-bind {master_bind!r}", "give HOST:PORT, e.g. 0.0.0.0:5557"
                    )
                bind = (host, int(port_text))
                stderr().print(
                    f"waiting for {remote_workers} remote worker(s): on each, copy {workdir / 'plan.json'} "
                    f"and run `voxperf load-worker --join THIS_HOST:{port_text} --plan plan.json`",
                    soft_wrap=True,
                )
            report, run = measure(
                plan,
                workdir,
                slos=slos,
                late_ms=late_ms,
                web_ui=web_ui,
                remote_workers=remote_workers,
                master_bind=bind,
            )
            doc = result_document(plan, report, run)
            if result is not None:
                from voxperf.bench.schema import dump_result
                from voxperf.load.runner import bench_result

                dump_result(bench_result(plan, report, run), result)
    text = json.dumps(doc, indent=2)
    if output is not None:  # results first: a closed terminal or pipe cannot lose them
        output.write_text(text + "\n")
    if json_out:
        sys.stdout.write(text + "\n")
    console = stderr()
    if "report" in doc and "mode" not in doc:
        _print_report_dict(doc["report"])
    rows: Any = doc.get("scaling", [])
    for row in rows:
        console.print(
            f"  scaling: {row['concurrency']:>3} users  {row['throughputRps']:8.2f}/s  "
            f"p50 {row['latencyP50Ms'] or 0:8.1f} ms  factor {row['scalingFactor'] or 0:.2f}",
            soft_wrap=True,
        )
    if "capacity" in doc:
        cap: Any = doc["capacity"]
        points, stopped = len(cap["points"]), cap["stopped"]
        console.print(f"capacity: {cap['capacity']} (bracket {cap['bracket']}, {points} points, {stopped})")
    if output is not None:
        console.print(f"load result written to {output} (Locust's CSV and logs in {workdir})")


def _capacity(
    plan: LoadPlan,
    workdir: Path,
    slos: list[SLO],
    late_ms: float,
    maximum: float,
    runs: int,
    tolerance: float,
    min_requests: int,
) -> dict[str, object]:
    """Capacity search over the plan's rate (open model) or user count (closed model)."""
    from voxperf.load.capacity import judge, search_capacity
    from voxperf.load.runner import measure, with_load

    open_model = plan.arrivals is not None
    reports: list[dict[str, object]] = []

    def run_point(load: float) -> list[Judgement]:
        out = []
        for i in range(runs):
            at = (
                with_load(plan, rate=load, min_requests=min_requests)
                if open_model
                else with_load(plan, concurrency=int(load))
            )
            report, _ = measure(at, workdir / f"{load:g}-{i}", slos=slos, late_ms=late_ms)
            _print_report(report)
            judgement = judge(report)
            reports.append({"load": load, "run": i, "passed": judgement.passed, "report": report.to_dict()})
            out.append(judgement)
        return out

    start = float(plan.arrivals["rate"]) if plan.arrivals is not None else float(plan.concurrency or 1)
    result = search_capacity(
        run_point, start=start, maximum=max(maximum, start), tolerance=tolerance, integer=not open_model
    )
    plan_doc = {k: v for k, v in plan.__dict__.items() if k not in ("fixtures", "samples_path")}
    return {
        "kind": "voxperf-load",
        "schemaVersion": 1,
        "mode": "capacity",
        "plan": plan_doc,
        "slos": [str(s) for s in slos],
        "capacity": result.to_dict(),
        "runs": reports,
    }


def _typed(value: str) -> object:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _print_report(report: LoadReport) -> None:
    _print_report_dict(report.to_dict())


def _print_report_dict(r: Any) -> None:
    console = stderr()
    offered = (
        f"{r['offered_rate']:g}/s offered" if r["offered_rate"] is not None else f"{r['concurrency']} users"
    )
    console.print(
        f"{r['scenario']}: {offered} for {r['duration_s']:g} s · {r['scheduled']} requests, {r['ok']} ok, "
        f"errors {r['errors'] or 'none'} · late {r['late']} (> {r['late_ms']:g} ms) · "
        f"achieved {r['achieved_rate']:.2f}/s · throughput {r['throughput_rps']:.2f}/s"
        + (f" · audio {r['audio_rtfx']:.2f} s/s" if r["audio_rtfx"] else "")
        + (f" · goodput {r['goodput_rps']:.2f}/s" if r["goodput_rps"] is not None else "")
        + (f" · WER {r['wer']['corpusWer']:.1%} of {r['wer']['utterances']}" if r.get("wer") else ""),
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


@app.command("load-worker")
@handle_errors
def load_worker(
    join: Annotated[str, typer.Option(help="The Locust master of a voxperf load run, HOST:PORT")],
    plan: Annotated[Path, typer.Option(help="That run's plan.json (printed by the master)")],
) -> None:
    """Join a `voxperf load --remote-workers N` run from another machine as one of its workers."""
    from voxperf.extras import require_extra
    from voxperf.load.runner import join_master

    require_extra("load", "voxperf load-worker")
    if not plan.is_file():
        raise UsageError(f"no plan file at {plan}", "copy the plan.json the master printed")
    with tempfile.TemporaryDirectory(prefix="voxperf-load-worker-") as tmp:
        code = join_master(join, plan, Path(tmp))
    if code != 0:
        raise typer.Exit(code)
