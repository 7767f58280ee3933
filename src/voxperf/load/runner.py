"""Run a load plan on Locust: a local master and N workers (separate processes), or one process.

``voxperf load`` writes the plan, starts ``locust -f voxperf/load/locustfile.py`` as master
(``--master --expect-workers N``) and N workers (``--worker``), headless and bounded by
``--run-time``; the master also writes Locust's own CSV. Raw samples come back in the plan's
samples file and go through :func:`voxperf.load.report.build_report`. While it runs, the target's
RSS and CPU are sampled when it is a local process (found by its listening port).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from voxperf.errors import UsageError, WorkerError
from voxperf.load.plan import PLAN_ENV, LoadPlan
from voxperf.load.sample import LoadSample

__all__ = ["LoadRun", "check_target", "run_load"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_target(url: str, *, allow_remote: bool) -> tuple[str, int]:
    """(host, port) of a target URL; anything but loopback needs ``allow_remote`` (load tests are
    attacks on whoever did not ask for them)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad target URL {url!r}", "give a base URL, e.g. http://127.0.0.1:8000")
    host = parts.hostname
    if host not in LOOPBACK and not allow_remote:
        raise UsageError(
            f"refusing to load-test {host}: only loopback targets run without consent",
            "pass --allow-remote if you own that service and mean to load it",
        )
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_pid(port: int) -> int | None:
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.AccessDenied, OSError):
        return None
    return None


@dataclass
class _Sampler:
    """RSS and CPU of the target process (and its children) every ``every_s`` while the run lasts."""

    pid: int
    every_s: float = 0.5
    rss: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        import psutil

        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.wait(self.every_s):
            try:
                procs = [proc, *proc.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs)
                cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
            except psutil.Error:
                return
            self.rss.append(rss)
            self.cpu_s.append(cpu)
            self.times.append(time.monotonic())

    def __enter__(self) -> _Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="voxperf-target-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def summary(self) -> dict[str, Any]:
        if len(self.times) < 2:
            return {"pid": self.pid, "samples": len(self.times)}
        wall = self.times[-1] - self.times[0]
        return {
            "pid": self.pid,
            "samples": len(self.times),
            "peakRssBytes": max(self.rss),
            "cpuPercent": (self.cpu_s[-1] - self.cpu_s[0]) / wall * 100 if wall > 0 else None,
        }


@dataclass
class LoadRun:
    """The raw outcome of a run: samples, the target's resources, Locust's CSV and logs."""

    samples: list[LoadSample]
    target: dict[str, Any]
    workdir: Path
    exit_codes: dict[str, int | None]


def run_load(
    plan: LoadPlan,
    workdir: Path,
    *,
    web_ui: bool = False,
    target_pid: int | None = None,
    remote_workers: int = 0,
    master_bind: tuple[str, int] | None = None,
) -> LoadRun:
    """Run ``plan`` on Locust: one process, or a master with local workers and ``remote_workers``
    more joining from other machines (``voxperf load-worker``) at ``master_bind``. The plan's
    ``generators`` counts them all: the schedule is split over every worker."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan.samples_path = str(workdir / "samples.ndjson")
    Path(plan.samples_path).write_text("")
    plan_path = workdir / "plan.json"
    plan.dump(plan_path)
    env = {**os.environ, PLAN_ENV: str(plan_path), "PYTHONUNBUFFERED": "1"}
    user = "OpenModelUser" if plan.arrivals is not None else "ClosedModelUser"
    users = plan.generators if plan.arrivals is not None else int(plan.concurrency or 1)
    # open model: the schedule ends the run (its generators report done), --run-time only bounds it;
    # closed model: users stop at the duration, their requests in flight get --stop-timeout
    run_time = (
        int(plan.duration_s + plan.timeout_s + 10)
        if plan.arrivals is not None
        else math.ceil(plan.duration_s)
    )
    base = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        plan.target,
        "--loglevel",
        "WARNING",
    ]
    # the web UI stays up while the run goes on and closes 10 s after it (runs always end by themselves)
    head = ["--autostart", "--autoquit", "10"] if web_ui else ["--headless"]
    master_cmd = [
        *base,
        *head,
        "-u",
        str(users),
        "-r",
        str(max(users, 1) * 10),
        "--run-time",
        f"{run_time}s",
        "--csv",
        str(workdir / "locust"),
        "--stop-timeout",
        str(int(plan.timeout_s)),
        user,
    ]
    host, port = urlsplit(plan.target).hostname or "", urlsplit(plan.target).port or 80
    pid = target_pid if target_pid is not None else (_listening_pid(port) if host in LOOPBACK else None)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        local_workers = plan.generators - remote_workers
        if plan.generators > 1 or remote_workers:
            bind_host, master_port = master_bind or ("127.0.0.1", _free_port())
            master_cmd[len(base) :] = [
                *head,
                "--master",
                "--master-bind-host",
                bind_host,
                "--master-bind-port",
                str(master_port),
                "--expect-workers",
                str(plan.generators),
                *master_cmd[len(base) + len(head) :],
            ]
        with _Sampler(pid) if pid else _nothing() as sampler:
            log = (workdir / "master.log").open("wb")
            logs.append(log)
            procs["master"] = subprocess.Popen(master_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            for i in range(local_workers if (plan.generators > 1 or remote_workers) else 0):
                log = (workdir / f"worker-{i}.log").open("wb")
                logs.append(log)
                procs[f"worker-{i}"] = subprocess.Popen(
                    [
                        *base,
                        "--worker",
                        "--master-host",
                        "127.0.0.1",
                        "--master-port",
                        str(master_port),
                        user,
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                procs["master"].wait(timeout=run_time + plan.timeout_s + 60)
            except subprocess.TimeoutExpired:
                raise WorkerError(
                    f"the Locust master did not finish within {run_time + plan.timeout_s + 60:.0f} s",
                    f"see {workdir / 'master.log'}",
                ) from None
            resources = sampler.summary() if sampler is not None else {}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for log in logs:
            log.close()
    samples = [
        LoadSample.from_dict(json.loads(line))
        for line in Path(plan.samples_path).read_text().splitlines()
        if line
    ]
    if not samples and procs["master"].returncode not in (0, None):
        tail = (workdir / "master.log").read_text(errors="replace")[-800:]
        raise WorkerError(
            f"Locust exited with {procs['master'].returncode} and measured nothing: {tail}", f"see {workdir}"
        )
    return LoadRun(
        samples=sorted(samples, key=lambda s: s.seq),
        target=resources,
        workdir=workdir,
        exit_codes={name: p.returncode for name, p in procs.items()},
    )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


LOAD_SCHEMA_VERSION = 1


def plan_fixtures(source: Path | None, variants: tuple[str, ...] = ("short",)) -> list[dict[str, Any]]:
    """The fixtures a plan carries (audio bytes and transcripts): a directory or manifest of your
    own, or voxperf's built-in speech fixtures (synthesised once with Piper, then cached)."""
    import base64

    from voxperf.audio.fixtures import default_cache_dir, load_fixtures, make_fixture

    if source is not None:
        fixtures, _ = load_fixtures(source)
    else:
        from voxperf.engines.registry import create_engine, parse_spec

        tts = create_engine(parse_spec("tts", "piper"))
        fixtures = [make_fixture(v, tts, default_cache_dir()) for v in variants]
    return [
        {
            "name": f.name,
            "audio": base64.b64encode(f.path.read_bytes()).decode(),
            "filename": f.path.name,
            "duration_s": f.duration_s or None,
            "text": f.text,
        }
        for f in fixtures
    ]


def result_document(plan: LoadPlan, report: Any, run: LoadRun) -> dict[str, Any]:
    """The versioned JSON of a load run: the plan (without audio), the report, the target's
    resources, and per-generator counts (the split of the schedule)."""
    from voxperf import __version__
    from voxperf.bench.environment import git_info, machine_info
    from voxperf.bench.schema import utc_timestamp

    per_generator: dict[str, int] = {}
    for s in run.samples:
        per_generator[str(s.generator)] = per_generator.get(str(s.generator), 0) + 1
    plan_doc = {k: v for k, v in plan.__dict__.items() if k not in ("fixtures", "samples_path")}
    plan_doc["fixtures"] = [{k: v for k, v in f.items() if k != "audio"} for f in plan.fixtures]
    return {
        "kind": "voxperf-load",
        "schemaVersion": LOAD_SCHEMA_VERSION,
        "tool": {"name": "voxperf", "version": __version__},
        "createdAt": utc_timestamp(),
        "plan": plan_doc,
        "report": report.to_dict(),
        "target": run.target,
        "generators": per_generator,
        "locustCsv": str(run.workdir / "locust_stats.csv"),
        "git": git_info(None),
        "machine": machine_info(),
    }


def with_load(
    plan: LoadPlan, *, rate: float | None = None, concurrency: int | None = None, min_requests: int = 0
) -> LoadPlan:
    """The same plan at another offered load: an arrival rate (open model; lengthened so it offers
    at least ``min_requests``) or a user count."""
    from dataclasses import replace

    if rate is not None:
        assert plan.arrivals is not None, "an open-model plan is needed to change its rate"
        duration = max(plan.duration_s, min_requests / rate)
        return replace(
            plan, duration_s=duration, arrivals={**plan.arrivals, "rate": rate, "duration_s": duration}
        )
    return replace(plan, concurrency=concurrency)


def measure(
    plan: LoadPlan,
    workdir: Path,
    *,
    slos: Any = (),
    late_ms: float = 5.0,
    web_ui: bool = False,
    remote_workers: int = 0,
    master_bind: tuple[str, int] | None = None,
) -> tuple[Any, LoadRun]:
    """Run a plan and build its report."""
    from voxperf.load.report import build_report

    run = run_load(plan, workdir, web_ui=web_ui, remote_workers=remote_workers, master_bind=master_bind)
    report = build_report(
        run.samples,
        scenario=plan.scenario,
        offered_rate=None if plan.arrivals is None else float(plan.arrivals["rate"]),
        concurrency=plan.concurrency,
        duration_s=plan.duration_s,
        slos=slos,
        late_ms=late_ms,
        references={f["name"]: f["text"] for f in plan.fixtures if f.get("text")},
    )
    return report, run


def scaling_rows(reports: list[Any]) -> list[dict[str, Any]]:
    """The concurrency scaling curve: throughput and latency per user count, and the scaling
    factor = throughput(c) ÷ (c × throughput(first) ÷ first) (1.0 = perfectly linear)."""
    if not reports:
        return []
    base = reports[0]
    per_user = base.throughput_rps / max(base.concurrency or 1, 1)
    rows = []
    for r in reports:
        c = r.concurrency or 1
        lat = r.metrics.get("latency", {})
        rows.append(
            {
                "concurrency": c,
                "throughputRps": r.throughput_rps,
                "latencyP50Ms": lat.get("p50"),
                "latencyP95Ms": lat.get("p95"),
                "errorRate": r.error_rate,
                "scalingFactor": (r.throughput_rps / (c * per_user)) if per_user > 0 else None,
            }
        )
    return rows


def bench_result(plan: LoadPlan, report: Any, run: LoadRun) -> Any:
    """A load run as a versioned voxperf result (pipeline ``load``, one record per request), so
    ``voxperf store``, ``compare`` and ``gate`` treat it like bench output, with CIs from its
    samples. The run's figures (throughput, errors, late starts, SLOs) travel in ``config.load``."""
    from voxperf import __version__
    from voxperf.bench.environment import git_info, machine_info
    from voxperf.bench.runner import summarize_records
    from voxperf.bench.schema import (
        BenchResult,
        FixtureRecord,
        GitInfo,
        LaneResult,
        MachineInfo,
        Resources,
        RunRecord,
        ToolInfo,
        utc_timestamp,
    )

    records = []
    for s in run.samples:
        if not s.ok or s.actual_ns is None or s.last_byte_ns is None:
            continue
        metrics: dict[str, float | None] = {
            "latency_ms": (s.last_byte_ns - s.intended_ns) / 1e6,
            "service_ms": (s.last_byte_ns - s.actual_ns) / 1e6,
            "lag_ms": (s.actual_ns - s.intended_ns) / 1e6,
            "ttfb_ms": None if s.first_byte_ns is None else (s.first_byte_ns - s.intended_ns) / 1e6,
        }
        metrics.update({k: v for k, v in s.metrics.items() if k.endswith(("_ms", "_count"))})
        records.append(
            RunRecord(
                pipeline="load",
                fixture=s.fixture or plan.scenario,
                level=plan.scenario,
                iteration=s.seq,
                warmup=False,
                requestId=f"{s.generator}-{s.seq}",
                stagesNs={},
                totalNs=s.last_byte_ns - s.intended_ns,
                totalStageNs=0,
                cpuNs=None,
                metrics=metrics,
            )
        )
    names = sorted({r.fixture for r in records})
    durations = {f["name"]: f.get("duration_s") for f in plan.fixtures}
    weights = {n: float(durations.get(n) or 1.0) for n in names}
    target = run.target
    wall = report.span_s
    lane = LaneResult(
        lane="provider",
        label=f"load: {plan.scenario} against {plan.target}, {_offered(plan)}, from the intended start",
        engines=[],
        runs=records,
        summaries=summarize_records(records, weights) if records else [],
        resources=Resources(
            peakRssBytes=int(target.get("peakRssBytes") or 0),
            maxRssBytes=int(target.get("peakRssBytes") or 0),
            cpuUserS=0.0,
            cpuSystemS=0.0,
            wallS=wall,
            cpuPercent=float(target.get("cpuPercent") or 0.0),
            measured="peakRssBytes" in target,  # the target's process, when it is local
        ),
    )
    config = {k: v for k, v in plan.__dict__.items() if k not in ("fixtures", "samples_path")}
    config["load"] = {k: v for k, v in report.to_dict().items() if k not in ("metrics", "windows")}
    return BenchResult(
        tool=ToolInfo(version=__version__),
        createdAt=utc_timestamp(),
        config=config,
        git=GitInfo(**git_info(None)),
        machine=MachineInfo(**machine_info()),
        fixtures=[
            FixtureRecord(
                name=n,
                variant="load",
                durationS=weights[n],
                sampleRate=0,
                bytes=0,
                sha256=next((_sha(f) for f in plan.fixtures if f["name"] == n), _sha({"name": n})),
                hasTranscript=False,
            )
            for n in names
        ],
        lanes={"provider": lane},
    )


def _offered(plan: LoadPlan) -> str:
    if plan.arrivals is not None:
        return f"{plan.arrivals['process']} arrivals at {plan.arrivals['rate']:g}/s"
    return f"{plan.concurrency} users"


def _sha(fixture: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(
        str(fixture.get("audio") or fixture.get("text") or fixture["name"]).encode()
    ).hexdigest()


def join_master(master: str, plan_path: Path, workdir: Path) -> int:
    """Run one Locust worker of a remote master's load (its plan file copied here); returns the
    worker's exit code once the master ends the run."""
    host, _, port = master.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"bad master address {master!r}", "give HOST:PORT, e.g. 10.0.0.5:5557")
    plan = LoadPlan.load(plan_path)
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / "plan.json"
    plan.samples_path = str(workdir / "samples.ndjson")  # unused by a worker: samples go to the master
    plan.dump(local)
    user = "OpenModelUser" if plan.arrivals is not None else "ClosedModelUser"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", host]
    cmd += ["--master-port", port, user]
    return subprocess.call(cmd, env={**os.environ, PLAN_ENV: str(local)})
