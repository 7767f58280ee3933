"""Run a load plan on Locust: a local master and N workers (separate processes), or one process.

``voxperf load`` writes the plan, starts ``locust -f voxperf/load/locustfile.py`` as master
(``--master --expect-workers N``) and N workers (``--worker``), headless and bounded by
``--run-time``; the master also writes Locust's own CSV. Raw samples come back in the plan's
samples file and go through :func:`voxperf.load.report.build_report`. While it runs, the target's
RSS and CPU are sampled when it is a local process (found by its listening port).
"""

from __future__ import annotations

import json
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
    plan: LoadPlan, workdir: Path, *, web_ui: bool = False, target_pid: int | None = None
) -> LoadRun:
    """Run ``plan`` on Locust (master + ``plan.generators`` workers, or one process when 1)."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan.samples_path = str(workdir / "samples.ndjson")
    Path(plan.samples_path).write_text("")
    plan_path = workdir / "plan.json"
    plan.dump(plan_path)
    env = {**os.environ, PLAN_ENV: str(plan_path), "PYTHONUNBUFFERED": "1"}
    user = "OpenModelUser" if plan.arrivals is not None else "ClosedModelUser"
    users = plan.generators if plan.arrivals is not None else int(plan.concurrency or 1)
    run_time = int(plan.duration_s + plan.timeout_s + 10)  # bounded whatever the target does
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
    head = [] if web_ui else ["--headless"]
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
        if plan.generators > 1:
            master_port = _free_port()
            master_cmd[len(base) :] = [
                *head,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
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
            for i in range(plan.generators if plan.generators > 1 else 0):
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
                procs["master"].wait(timeout=run_time + 60)
            except subprocess.TimeoutExpired:
                raise WorkerError(
                    f"the Locust master did not finish within {run_time + 60} s",
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
    from datetime import UTC, datetime

    from voxperf import __version__
    from voxperf.bench.environment import git_info, machine_info

    per_generator: dict[str, int] = {}
    for s in run.samples:
        per_generator[str(s.generator)] = per_generator.get(str(s.generator), 0) + 1
    plan_doc = {k: v for k, v in plan.__dict__.items() if k not in ("fixtures", "samples_path")}
    plan_doc["fixtures"] = [{k: v for k, v in f.items() if k != "audio"} for f in plan.fixtures]
    return {
        "kind": "voxperf-load",
        "schemaVersion": LOAD_SCHEMA_VERSION,
        "tool": {"name": "voxperf", "version": __version__},
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
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
    plan: LoadPlan, workdir: Path, *, slos: Any = (), late_ms: float = 5.0, web_ui: bool = False
) -> tuple[Any, LoadRun]:
    """Run a plan and build its report."""
    from voxperf.load.report import build_report

    run = run_load(plan, workdir, web_ui=web_ui)
    report = build_report(
        run.samples,
        scenario=plan.scenario,
        offered_rate=None if plan.arrivals is None else float(plan.arrivals["rate"]),
        concurrency=plan.concurrency,
        duration_s=plan.duration_s,
        slos=slos,
        late_ms=late_ms,
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
