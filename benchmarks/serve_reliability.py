"""Reliability of ``voxperf serve``'s job queue, measured on real processes (fake STT, real queues).

    .venv/bin/python benchmarks/serve_reliability.py embedded   # 5 rounds x 30 jobs, kill -9 the server
    .venv/bin/python benchmarks/serve_reliability.py scaleout   # 40 jobs, 2 Celery workers, 10 kill -9s
    .venv/bin/python benchmarks/serve_reliability.py overload   # 1,000 submissions at concurrency 16

Each writes ``benchmarks/results/serve-<name>.json``. "Done exactly once" is checked on the record
(status ``done``) and on the processes' own ``pipeline_timing`` lines (one per job, whoever ran it).
``scaleout`` needs RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import soundfile as sf

HERE = Path(__file__).resolve().parent
VOXPERF = str(Path(sys.executable).parent / "voxperf")
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
PG = "postgresql://postgres@127.0.0.1:5432/test"


def wav(seconds: float = 1.0) -> bytes:
    import io

    t = np.arange(int(16000 * seconds)) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [VOXPERF, "serve", "--port", str(port), "--tts", "none", *args], stdout=out, stderr=out, env=env
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start; see {log}")


def once_each(ids: list[str], logs: list[Path]) -> dict[str, int]:
    text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
    return {i: text.count(f'"sessionID":"{i}"') for i in ids}


def write(name: str, doc: dict[str, Any]) -> None:
    out = HERE / "results" / f"serve-{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "rounds"}, indent=2))
    print(f"written to {out}")


def embedded(_args: argparse.Namespace) -> None:
    """Jobs accepted by an embedded server survive its kill -9 and complete once after a restart."""
    rounds = []
    env = {**os.environ, "NO_COLOR": "1"}
    for r in range(5):
        work = Path(tempfile.mkdtemp(prefix="vx-embedded-"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        flags = ("--stt", "fake:latency=0.15s", "--workers", "2", "--job-dir", str(work))
        logs = [work / "first.log", work / "second.log"]
        proc = serve(port, logs[0], env, *flags)
        accepted: list[str] = []
        refused = 0
        for i in range(30):
            if i == 15:
                proc.send_signal(signal.SIGKILL)  # mid-way: some done, some running, some queued
                proc.wait(10)
                proc = serve(port, logs[1], env, *flags)
            r_ = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", wav())}, timeout=30)
            if r_.status_code == 202:
                accepted.append(r_.json()["id"])
            else:
                refused += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = [httpx.get(f"{url}/v1/jobs/{i}").json()["status"] for i in accepted]
            if all(s in ("done", "failed", "cancelled") for s in statuses):
                break
            time.sleep(0.2)
        jobs = [httpx.get(f"{url}/v1/jobs/{i}").json() for i in accepted]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        counts = once_each(accepted, logs)
        rounds.append(
            {
                "accepted": len(accepted),
                "refused": refused,
                "done": sum(j["status"] == "done" for j in jobs),
                "rerunAfterKill": sum(j["attempts"] > 1 for j in jobs),
                "completionLines": {
                    "one": sum(c == 1 for c in counts.values()),
                    "other": [c for c in counts.values() if c != 1],
                },
            }
        )
        print(f"round {r + 1}: {rounds[-1]}", flush=True)
    write(
        "embedded",
        {
            "experiment": "embedded queue: 5 rounds of 30 jobs, kill -9 of the server after 15 submissions, "
            "restart",
            "accepted": sum(r["accepted"] for r in rounds),
            "done": sum(r["done"] for r in rounds),
            "doneExactlyOnce": sum(r["completionLines"]["one"] for r in rounds),
            "rounds": rounds,
        },
    )


def _schema() -> str:
    import psycopg

    name = f"vx_rel_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{PG}?options=-csearch_path%3D{name}"


def scaleout(_args: argparse.Namespace) -> None:
    """40 jobs on two Celery workers; a running job's worker is killed 10 times (and restarted)."""
    work = Path(tempfile.mkdtemp(prefix="vx-scaleout-"))
    db = _schema()
    queue = f"voxperf.bench.{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "VOXPERF_JOBS_DB": db,
        "VOXPERF_BROKER_URL": BROKER,
        "VOXPERF_BROKER_QUEUE": queue,
        "VOXPERF_TENANT_MAX_JOBS": "100",  # all 40 jobs queued at once
        "NO_COLOR": "1",
    }

    def worker(n: int) -> subprocess.Popen[bytes]:
        with (work / f"worker{n}.log").open("ab") as out:
            return subprocess.Popen(
                [
                    VOXPERF,
                    "worker",
                    "--stt",
                    "fake:latency=1.0s",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "warning",
                ],
                stdout=out,
                stderr=out,
                env=env,
            )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve(port, work / "server.log", env, "--stt", "fake")
    workers = {w.pid: w for w in (worker(0), worker(1))}
    started = len(workers)
    from voxperf.service.jobs import JobRecords

    records = JobRecords(db)
    try:
        _scaleout_run(url, records, workers, worker, work, started)
    finally:
        for w in workers.values():
            w.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def _scaleout_run(
    url: str, records: Any, workers: dict[int, Any], worker: Any, work: Path, started: int
) -> None:
    ids = [httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", wav())}).json()["id"] for _ in range(40)]
    kills: list[dict[str, Any]] = []
    while len(kills) < 10:
        running = [j for j in (records.get(i) for i in ids) if j is not None and j.status == "running"]
        # a job whose worker died MAX_ATTEMPTS times fails on purpose (a poison pill must not loop),
        # so each kill hits a job that was not hit before
        hit = {k["job"] for k in kills}
        victim = next(
            (j for j in running if j.id not in hit and j.worker and int(j.worker.split(":")[1]) in workers),
            None,
        )
        if victim is None:
            if all(records.get(i).status == "done" for i in ids):  # type: ignore[union-attr]
                break
            time.sleep(0.05)
            continue
        pid = int(victim.worker.split(":")[1])  # type: ignore[union-attr]
        workers.pop(pid).send_signal(signal.SIGKILL)
        kills.append({"job": victim.id, "attempt": victim.attempts, "at": time.time()})
        replacement = worker(started)
        started += 1
        workers[replacement.pid] = replacement
        time.sleep(1.5)  # let the replacement start before the next kill
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not all(records.get(i).status == "done" for i in ids):  # type: ignore[union-attr]
        time.sleep(0.2)
    jobs = {i: records.get(i) for i in ids}
    for w in workers.values():
        w.send_signal(signal.SIGTERM)
    for w in workers.values():
        w.wait(30)
    counts = once_each(ids, list(work.glob("worker*.log")))
    recovered = [
        jobs[k["job"]].completed_at - k["at"]  # type: ignore[union-attr,operator]
        for k in kills
        if jobs[k["job"]] is not None and jobs[k["job"]].status == "done"  # type: ignore[union-attr]
    ]
    write(
        "scaleout",
        {
            "experiment": "40 jobs, 2 Celery workers (RabbitMQ, PostgreSQL records), kill -9 of the worker "
            "running a job, 10 times, each restarted",
            "kills": len(kills),
            "jobs": len(ids),
            "done": sum(j is not None and j.status == "done" for j in jobs.values()),
            "lost": sum(j is None or j.status != "done" for j in jobs.values()),
            "completionLines": {
                "one": sum(c == 1 for c in counts.values()),
                "other": [c for c in counts.values() if c != 1],
            },
            "notDone": [
                {"status": j.status, "attempts": j.attempts, "error": j.error}
                for j in jobs.values()
                if j and j.status != "done"
            ],
            "killToDoneS": {
                "max": max(recovered, default=None),
                "median": float(np.median(recovered)) if recovered else None,
            },
            "rounds": kills,
        },
    )


def _probe_health(port: int, stop: Any, out: Any) -> None:
    """GET /healthz over a fresh raw socket every 50 ms until ``stop``; the latencies in ms."""
    times = []
    while not stop.is_set():
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    out.put(times)


def overload(args: argparse.Namespace) -> None:
    """1,000 submissions at concurrency 16 against the default bounds; /healthz timed throughout."""
    work = Path(tempfile.mkdtemp(prefix="vx-overload-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve(
        port,
        work / "server.log",
        {**os.environ},
        "--stt",
        "fake:latency=0.2s",
        "--workers",
        "1",
        "--job-dir",
        str(work),
    )
    proc = psutil.Process(server.pid)
    long_audio = wav(560.0)  # 560 s: the audio-seconds bound refuses most of them
    short_audio = wav(1.0)

    async def run() -> dict[str, Any]:
        statuses: dict[int, int] = {}
        retry_after: list[str] = []
        health_ms: list[float] = []
        peak_rss = proc.memory_info().rss
        stop = asyncio.Event()

        async with httpx.AsyncClient(timeout=60) as client:

            async def probe() -> None:
                nonlocal peak_rss
                while not stop.is_set():
                    peak_rss = max(peak_rss, proc.memory_info().rss)
                    await asyncio.sleep(0.05)

            async def submit(body: bytes) -> None:
                r = await client.post(f"{url}/v1/jobs", files={"file": ("a.wav", body)})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 429:
                    retry_after.append(r.headers.get("retry-after", ""))

            probe_task = asyncio.create_task(probe())
            # /healthz is timed by another process with raw sockets: this process's event loop is
            # busy encoding uploads, and would delay its own probes
            prober_stop = multiprocessing.Event()
            prober_out: Any = multiprocessing.Queue()
            prober = multiprocessing.Process(target=_probe_health, args=(port, prober_stop, prober_out))
            prober.start()
            sem = asyncio.Semaphore(16)

            async def bounded(body: bytes) -> None:
                async with sem:
                    await submit(body)

            t0 = time.perf_counter()
            await asyncio.gather(*(bounded(short_audio) for _ in range(args.submissions)))
            short_s = time.perf_counter() - t0
            long_statuses_before = dict(statuses)
            await asyncio.gather(*(bounded(long_audio) for _ in range(30)))
            stop.set()
            await probe_task
            prober_stop.set()
            health_ms.extend(prober_out.get(timeout=30))
            prober.join(10)
        long_statuses = {k: v - long_statuses_before.get(k, 0) for k, v in statuses.items()}
        return {
            "shortSubmissions": {str(k): v for k, v in long_statuses_before.items()},
            "shortSeconds": round(short_s, 2),
            "longSubmissions560s": {str(k): v for k, v in long_statuses.items()},
            "retryAfterAll": all(v.isdigit() for v in retry_after) and bool(retry_after),
            "healthzMs": {
                "n": len(health_ms),
                "median": round(float(np.median(health_ms)), 2),
                "p99": round(float(np.percentile(health_ms, 99)), 2),
                "max": round(max(health_ms), 2),
            },
            "peakRssMiB": round(peak_rss / 2**20, 1),
        }

    result = asyncio.run(run())
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    write(
        "overload",
        {
            "experiment": f"{args.submissions} job submissions (1 s audio) at concurrency 16, then 30 of "
            "560 s; "
            "defaults: 64 jobs, 3,600 audio s queued, 16 per tenant",
            **result,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", choices=("embedded", "scaleout", "overload"))
    parser.add_argument("--submissions", type=int, default=1000)
    args = parser.parse_args()
    {"embedded": embedded, "scaleout": scaleout, "overload": overload}[args.experiment](args)


if __name__ == "__main__":
    main()
