"""Telemetry ingest throughput into the embedded DuckDB store, the server on ONE core.

    .venv/bin/python benchmarks/telemetry_ingest.py [--events 1000000] [--runs 3] [--threads 4]

What is measured: stored events per second of wall time, end to end through the real service.
For each run a fresh DuckDB file is made in a temp dir and ``voxperf telemetry serve --port P
--store FILE`` is started as a subprocess pinned to CPU 0 (``taskset -c 0``: uvicorn, its thread
pool and DuckDB's threads all inherit that affinity). This script is the load generator, pinned to
CPU 1 (``os.sched_setaffinity``): before the clock starts it builds gzip NDJSON batches of 1,000
realistic events (60 % ``speech_timing`` with provider/cache/outcome and correlated timings, 40 %
``pipeline_timing``; timestamps uniform over the last 7 days; one unique session id per event),
then POSTs them to ``/v1/telemetry`` from 8 threads (``--threads``), each over its own keep-alive
``http.client`` connection, each batch with its own ``X-Voxperf-Batch-Id`` (a 429 is retried with
the same id after ``Retry-After``).

The clock runs from the first request to the last answer. Afterwards the server is stopped
(SIGTERM) and the DuckDB file opened read-only to count the stored rows: events/s = stored rows /
wall time. The server's CPU time over the load (utime + stime of /proc/PID/stat), the CPUs its
threads were allowed on and seen running on (sampled every 0.2 s), and the busy share of each
CPU (/proc/stat) show that it stayed on one core. Median, min and max over ``--runs`` runs.

When the median is below the 100,000 events/s target (or with ``--profile``), where the server's
time goes is measured three ways, all on CPU 0:

* cProfile of the ingest path called in-process (``decode_body`` + ``parse_batch`` +
  ``TelemetryStore.ingest``, ``--profile-batches`` batches into a fresh store), and the same path
  timed per phase and per DuckDB call (cProfile cannot see inside DuckDB's methods: their time
  shows as the own time of the Python function calling them);
* the same app on uvicorn with its work stubbed out (``no-work``: HTTP + ASGI + FastAPI + the
  thread-pool hop only) and with only the store stubbed out (``no-store``), under the same load:
  the server's CPU per event split into HTTP, decode+parse and store;
* ``TelemetryStore.ingest`` CPU per event for batches of 100, 1,000 and 10,000 events (and 1,000
  with DuckDB limited to one thread): how much of the store's cost is per batch.

Writes benchmarks/results/telemetry-ingest.json. Run it alone: it measures the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import http.client
import io
import json
import os
import platform
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

RESULTS = Path(__file__).parent / "results"
VOXPERF = str(Path(sys.executable).parent / "voxperf")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TARGET_EVENTS_PER_S = 100_000
SERVER_CPU, CLIENT_CPU = 0, 1

PROVIDERS = ("piper", "elevenlabs", "openai", "azure")
APP_VERSIONS = ("0.4.0", "0.4.1", "0.5.0")
APP_BUILDS = ("118", "123", "131")
OS_VERSIONS = ("macOS 14.6.1", "macOS 15.3", "macOS 15.4")
LEVELS = ("raw", "clean", "polish")
BAD_KINDS = ("bad_json", "negative_number", "unknown_event", "bad_timestamp", "wrong_schema_version")
BAD_TIMESTAMPS = ("2026-02-19T02:00:00", "2026-02-30T10:00:00Z", "yesterday", "1771466400000")


# -- the events ------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One request body and what the generator knows about it."""

    index: int
    batch_id: str
    body: bytes  # gzip NDJSON
    first_event: int  # global index of its first line's event
    lines: int  # event lines (bad ones included; blank lines not)
    valid: int
    bad: list[tuple[int, str]] = field(default_factory=list)  # (1-based line number, kind)
    blank_line: int | None = None  # 1-based number of an inserted blank line

    @property
    def events(self) -> slice:
        """Its events' global indexes."""
        return slice(self.first_event, self.first_event + self.lines)


@dataclass
class Generated:
    """The whole data set: batches plus, per event, what a query over the store must find."""

    start_ms: int
    end_ms: int
    batches: list[Batch]
    ts_ms: np.ndarray  # int64, every event
    speech: np.ndarray  # bool: a speech_timing event
    ttfa_ms: np.ndarray  # float64, NaN where the event has no ttfa_ms
    valid: np.ndarray  # bool: the line is well-formed (stored)
    tag: str

    @property
    def events(self) -> int:
        return len(self.ts_ms)

    def session_id(self, i: int) -> str:
        return session_id(self.tag, i)


def session_id(tag: str, i: int) -> str:
    return f"{tag}-{i:09d}"


def window_ending_now() -> tuple[int, int]:
    """The last 7 whole hours-aligned days: [this hour - 7 days, this hour)."""
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    return end - 7 * DAY_MS, end


def _iso(ts_ms: np.ndarray) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms").tolist()]


def generate(
    n: int,
    *,
    seed: int,
    start_ms: int,
    span_ms: int = 7 * DAY_MS,
    batch_size: int = 1000,
    bad_fraction: float = 0.0,
    blank_line_batches: float = 0.0,
    gzip_level: int = 6,
    tag: str = "s",
) -> Generated:
    """``n`` realistic events in gzip NDJSON batches; ``bad_fraction`` of the lines malformed (the
    kinds of :data:`BAD_KINDS` in turn, at random lines), a blank line inserted into
    ``blank_line_batches`` of the batches (line numbers must still count it)."""
    rng = np.random.default_rng(seed)
    ts = start_ms + rng.integers(0, span_ms, n, dtype=np.int64)
    speech = rng.random(n) < 0.6
    provider = rng.integers(0, len(PROVIDERS), n)
    hit = rng.random(n) < 0.3
    roll = rng.random(n)
    outcome = np.where(roll < 0.02, 1, np.where(roll < 0.03, 2, 0))  # ok, error, cancelled
    server = np.round(rng.lognormal(np.where(hit, 2.5, 5.0) + 0.15 * provider, 0.45, n), 1)
    network = np.round(rng.lognormal(3.2, 0.6, n), 1)
    first_byte = np.round(server + network, 1)
    first_chunk = np.round(first_byte + rng.lognormal(2.0, 0.5, n), 1)
    ttfa = np.round(first_chunk + rng.lognormal(1.5, 0.7, n), 2)
    audio_s = np.round(rng.uniform(0.8, 12.0, n), 2)
    streaming = np.round(audio_s * 1000 * rng.uniform(0.7, 1.05, n), 1)
    efficiency = np.round(audio_s * 1000 / np.maximum(streaming, 1.0), 4)
    chunks = np.ceil(audio_s * 4).astype(np.int64)
    level = rng.integers(0, len(LEVELS), n)
    stt = rng.lognormal(6.3, 0.4, n).astype(np.int64)
    rewrite = np.where(level == 0, 0, rng.lognormal(6.0, 0.5, n).astype(np.int64))
    encode = rng.integers(5, 40, n)
    paste = rng.integers(20, 90, n)
    original = rng.integers(32_000, 960_000, n)
    version = rng.integers(0, len(APP_VERSIONS), n)
    os_version = rng.integers(0, len(OS_VERSIONS), n)
    has_ttfa = speech & (outcome != 1)  # a failed request never played audio
    ttfa_ms = np.where(has_ttfa, ttfa, np.nan)

    bad_kind = np.full(n, -1)
    n_bad = round(n * bad_fraction)
    if n_bad:
        where = rng.choice(n, n_bad, replace=False)
        bad_kind[where] = np.arange(n_bad) % len(BAD_KINDS)
    iso = _iso(ts)
    cols = {
        k: v.tolist()
        for k, v in {
            "server": server,
            "first_byte": first_byte,
            "first_chunk": first_chunk,
            "ttfa": ttfa,
            "audio_s": audio_s,
            "streaming": streaming,
            "efficiency": efficiency,
            "chunks": chunks,
            "stt": stt,
            "rewrite": rewrite,
            "encode": encode,
            "paste": paste,
            "original": original,
        }.items()
    }
    encoder = msgspec.json.Encoder()
    batches: list[Batch] = []
    blank_rng = np.random.default_rng(seed + 1)
    for b, first in enumerate(range(0, n, batch_size)):
        lines: list[bytes] = []
        bad: list[tuple[int, str]] = []
        last = min(n, first + batch_size)
        for i in range(first, last):
            fields: dict[str, Any]
            if speech[i]:
                fields = {
                    "provider": PROVIDERS[provider[i]],
                    "cache": "hit" if hit[i] else "miss",
                    "outcome": ("ok", "error", "cancelled")[outcome[i]],
                    "first_byte_ms": cols["first_byte"][i],
                    "server_ms": cols["server"][i],
                }
                if has_ttfa[i]:
                    fields |= {
                        "ttfa_ms": cols["ttfa"][i],
                        "first_chunk_ms": cols["first_chunk"][i],
                        "total_ms": round(cols["first_chunk"][i] + cols["streaming"][i], 1),
                        "streaming_ms": cols["streaming"][i],
                        "audio_s": cols["audio_s"][i],
                        "streaming_efficiency": cols["efficiency"][i],
                        "rtfx": round(cols["audio_s"][i] * 1000 / max(cols["server"][i], 1.0), 3),
                        "chunks": cols["chunks"][i],
                    }
            else:
                stage = cols["encode"][i] + cols["stt"][i] + cols["rewrite"][i] + cols["paste"][i]
                fields = {
                    "processing_level": LEVELS[level[i]],
                    "total_ms": stage + 40,
                    "total_stage_ms": stage,
                    "encode_ms": cols["encode"][i],
                    "stt_ms": cols["stt"][i],
                    "rewrite_ms": cols["rewrite"][i],
                    "paste_ms": cols["paste"][i],
                    "original_bytes": cols["original"][i],
                    "encoded_bytes": cols["original"][i] // 4,
                }
            event = {
                "timestamp": iso[i],
                "name": "speech_timing" if speech[i] else "pipeline_timing",
                "sessionID": session_id(tag, i),
                "fields": fields,
            }
            record = {
                "schemaVersion": 1,
                "appVersion": APP_VERSIONS[version[i]],
                "appBuild": APP_BUILDS[version[i]],
                "osVersion": OS_VERSIONS[os_version[i]],
                "event": event,
            }
            kind = bad_kind[i]
            line: bytes
            if kind < 0:
                line = encoder.encode(record)
            else:
                name = BAD_KINDS[kind]
                if name == "negative_number":
                    key = "server_ms" if speech[i] else "stt_ms"
                    fields[key] = -fields[key] - 1
                elif name == "unknown_event":
                    event["name"] = ("keystroke_timing", "speech", "Speech_Timing")[i % 3]
                elif name == "bad_timestamp":
                    event["timestamp"] = BAD_TIMESTAMPS[i % len(BAD_TIMESTAMPS)]
                elif name == "wrong_schema_version":
                    record["schemaVersion"] = (2, 0, "1")[i % 3]
                line = encoder.encode(record)
                if name == "bad_json":
                    line = (line[: len(line) // 2], line[:-1] + b",}", line.replace(b'"', b"'", 4))[i % 3]
            lines.append(line)
            if kind >= 0:
                bad.append((len(lines), BAD_KINDS[kind]))  # provisional: before any blank line
        blank: int | None = None
        if blank_line_batches and blank_rng.random() < blank_line_batches:
            at = int(blank_rng.integers(0, len(lines)))
            lines.insert(at, b"   " if at % 2 else b"")
            bad = [(no + 1 if no > at else no, kind) for no, kind in bad]
            blank = at + 1
        body = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=gzip_level)
        batches.append(
            Batch(b, f"{tag}-batch-{b:06d}", body, first, last - first, last - first - len(bad), bad, blank)
        )
    return Generated(start_ms, start_ms + span_ms, batches, ts, speech, ttfa_ms, bad_kind < 0, tag)


# -- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``voxperf telemetry serve`` as a subprocess (optionally pinned with ``taskset -c``)."""

    def __init__(self, store: Path, port: int, cpu: int | None, log: Path) -> None:
        self.store, self.port, self.cpu, self.log = store, port, cpu, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> float:
        """Start it and wait for /healthz; the seconds that took."""
        started = time.monotonic()
        command = [VOXPERF, "telemetry", "serve", "--port", str(self.port), "--store", str(self.store)]
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOXPERF_TELEMETRY_")}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"the server did not answer /healthz in {timeout_s} s")

    def stop(self) -> int:
        """SIGTERM (uvicorn shuts down and the store is closed); its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """``kill -9``: no shutdown, no checkpoint, the write-ahead log left as it is."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_busy_ticks() -> dict[str, tuple[int, int]]:
    """Per CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts[0].startswith("cpu") and parts[0] != "cpu":
            values = [int(v) for v in parts[1:9]]
            idle = values[3] + values[4]
            out[parts[0]] = (sum(values) - idle, sum(values))
    return out


def cpu_busy_share(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    return {
        cpu: round((after[cpu][0] - before[cpu][0]) / max(1, after[cpu][1] - before[cpu][1]), 3)
        for cpu in after
    }


def busy_cpu_s(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """CPU seconds all processes used between two /proc/stat readings."""
    return sum(after[cpu][0] - before[cpu][0] for cpu in after) / CLK_TCK


class ThreadCpuSampler:
    """Which CPUs a process's threads are allowed on and were last seen running on (sampled)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self.pid, self.every_s = pid, every_s
        self.seen: Counter[int] = Counter()  # samples of a thread that had run since the last one
        self.allowed: set[str] = set()
        self._ticks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                ticks = int(fields[11]) + int(fields[12])
                if ticks != self._ticks.get(task.name):  # ran since the last sample
                    self.seen[int(fields[36])] += 1  # field 39 of stat: the CPU it last ran on
                    self._ticks[task.name] = ticks
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("Cpus_allowed_list:"):
                        self.allowed.add(line.split(":", 1)[1].strip())

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(OSError):
                self._sample()

    def __enter__(self) -> ThreadCpuSampler:
        with contextlib.suppress(OSError):
            self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, Any]:
        return {
            "threadsAllowedOn": sorted(self.allowed),
            "threadRunSamplesByCpu": {str(k): v for k, v in sorted(self.seen.items())},
        }


# -- the sender ------------------------------------------------------------------------------------


@dataclass
class Answer:
    """The answer a batch (or one of its resends) finally got."""

    batch: int
    status: int
    body: dict[str, Any]
    latency_s: float  # of the attempt that got the answer
    answered_at: float  # time.monotonic()
    connection_errors: int = 0
    busy_retries: int = 0


@dataclass
class SendLog:
    answers: list[Answer] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send(
    port: int,
    batches: list[Batch],
    order: list[int],
    *,
    threads: int = 4,
    retry_for_s: float = 120.0,
    on_answer: Callable[[Answer], None] | None = None,
) -> SendLog:
    """POST the batches (by index, in ``order``; an index twice is a resend with the same id) from
    ``threads`` keep-alive connections. A 429 or 5xx is retried after Retry-After, a failed
    connection (no answer) with a new connection and the same batch id, for up to ``retry_for_s``."""
    log = SendLog()
    position = iter(order)
    take = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with take:
                index = next(position, None)
            if index is None:
                break
            batch = batches[index]
            headers = {
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "gzip",
                "X-Voxperf-Batch-Id": batch.batch_id,
            }
            deadline = time.monotonic() + retry_for_s
            errors = busy = 0
            while True:
                sent = time.monotonic()
                try:
                    conn.request("POST", "/v1/telemetry", batch.body, headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    errors += 1
                    with log.lock:
                        log.connection_errors[type(exc).__name__] += 1
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"batch {batch.batch_id}: no answer for {retry_for_s} s") from exc
                    time.sleep(min(0.5, 0.02 * 2 ** min(errors, 5)))
                    continue
                with log.lock:
                    log.statuses[response.status] += 1
                if response.status == 429 or response.status >= 500:
                    busy += 1
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"batch {batch.batch_id}: still {response.status}")
                    time.sleep(min(1.0, float(response.getheader("Retry-After") or 0.02)))
                    continue
                answer = Answer(
                    index,
                    response.status,
                    json.loads(data),
                    time.monotonic() - sent,
                    time.monotonic(),
                    errors,
                    busy,
                )
                with log.lock:
                    log.answers.append(answer)
                if on_answer is not None:
                    on_answer(answer)
                break
        conn.close()

    failures: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                failures.append(exc)

        return run

    pool = [threading.Thread(target=guarded(worker), name=f"sender-{k}") for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise failures[0]
    return log


# -- reporting helpers -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import duckdb
    import fastapi
    import uvicorn

    cpu_model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpuModel": cpu_model,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "msgspec": msgspec.__version__,
        "numpy": np.__version__,
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
        "platform": platform.platform(),
    }


def spread(values: list[float], digits: int = 1) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": round(med, digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "spreadPct": round(100 * (max(values) - min(values)) / med, 1) if med else 0.0,
    }


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "max": round(float(ms.max()), 2),
    }


def count_rows(store: Path) -> tuple[int, int]:
    """(events, batches) in a DuckDB store file, opened read-only once no server holds it."""
    import duckdb

    with duckdb.connect(str(store), read_only=True) as conn:
        events = conn.execute("SELECT count(*) FROM telemetry_events").fetchone()
        batches = conn.execute("SELECT count(*) FROM telemetry_batches").fetchone()
    assert events is not None and batches is not None
    return int(events[0]), int(batches[0])


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


# -- the measurement -------------------------------------------------------------------------------


def batches_per_commit(port: int) -> float | None:
    """The server's group commit: batches stored per transaction, from its /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    found = {
        name: float(value)
        for name, value in (
            line.split()[:2] for line in text.splitlines() if line.startswith("voxperf_telemetry_commit")
        )
    }
    commits = found.get("voxperf_telemetry_commits_total")
    return round(found["voxperf_telemetry_committed_batches_total"] / commits, 2) if commits else None


def one_run(data: Generated, threads: int, number: int) -> dict[str, Any]:
    with workdir("voxperf-telemetry-ingest-") as work:
        store = work / "telemetry.duckdb"
        server = Server(store, free_port(), SERVER_CPU, work / "server.log")
        ready_s = server.start()
        load_before = os.getloadavg()
        cpu_before, busy_before, client_before = proc_cpu_s(server.pid), cpu_busy_ticks(), time.process_time()
        started = time.monotonic()
        with ThreadCpuSampler(server.pid) as sampler:
            log = send(server.port, data.batches, list(range(len(data.batches))), threads=threads)
        wall = time.monotonic() - started
        cpu_after, busy_after, client_after = proc_cpu_s(server.pid), cpu_busy_ticks(), time.process_time()
        load_after = os.getloadavg()
        per_commit = batches_per_commit(server.port)
        exit_code = server.stop()
        stored, stored_batches = count_rows(store)
        accepted = sum(int(a.body.get("accepted", 0)) for a in log.answers)
        run = {
            "run": number,
            "eventsSent": data.events,
            "batches": len(data.batches),
            "storedRows": stored,
            "storedBatches": stored_batches,
            "batchesPerCommit": per_commit,
            "acceptedByAnswers": accepted,
            "wallS": round(wall, 3),
            "eventsPerS": round(stored / wall),
            "serverCpuS": round(cpu_after - cpu_before, 2),
            "serverCpuPerWall": round((cpu_after - cpu_before) / wall, 3),
            "serverCpuUsPerEvent": round((cpu_after - cpu_before) / max(1, stored) * 1e6, 2),
            **sampler.report(),
            "cpuBusyShare": cpu_busy_share(busy_before, busy_after),
            "clientCpuS": round(client_after - client_before, 2),
            "otherProcessesCpuS": round(
                busy_cpu_s(busy_before, busy_after)
                - (cpu_after - cpu_before)
                - (client_after - client_before),
                2,
            ),
            "httpStatuses": {str(k): v for k, v in sorted(log.statuses.items())},
            "connectionErrors": dict(log.connection_errors),
            "batchLatencyMs": quantiles_ms([a.latency_s for a in log.answers]),
            "serverReadyS": round(ready_s, 2),
            "serverExitCode": exit_code,
            "loadavgBefore": [round(x, 2) for x in load_before],
            "loadavgAfter": [round(x, 2) for x in load_after],
            "dbFileMiB": round(store.stat().st_size / 2**20, 1),
        }
    print(
        f"run {number}: {run['eventsPerS']:,} events/s ({stored:,} rows in {wall:.2f} s), server CPU "
        f"{run['serverCpuS']} s = {run['serverCpuPerWall']} of a core, CPUs seen "
        f"{run['threadRunSamplesByCpu']}, statuses {run['httpStatuses']}, other processes' CPU "
        f"{run['otherProcessesCpuS']} s, load {run['loadavgAfter']}, {per_commit} batches per commit",
        flush=True,
    )
    return run


class _TimedCursor:
    """A DuckDB cursor that adds each call's time to ``spent`` under a label (statement kind)."""

    def __init__(self, cursor: Any, spent: dict[str, float]) -> None:
        self._cursor, self._spent = cursor, spent

    def _timed(self, label: str, call: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return call(*args)
        finally:
            self._spent[label] += time.perf_counter() - t

    def execute(self, sql: str, *params: Any) -> _TimedCursor:
        words = sql.split()
        label = " ".join(words[:3] if words[0] in ("INSERT", "SELECT") else words[:1])
        self._timed(f"execute {label}", self._cursor.execute, sql, *params)
        return self

    def fetchall(self) -> Any:
        return self._cursor.fetchall()

    def fetchone(self) -> Any:
        return self._timed("fetchone", self._cursor.fetchone)

    def register(self, name: str, data: Any) -> Any:
        return self._timed("register", self._cursor.register, name, data)

    def unregister(self, name: str) -> Any:
        return self._timed("unregister", self._cursor.unregister, name)

    def close(self) -> None:
        self._timed("cursor close", self._cursor.close)


class _TimedConnection:
    def __init__(self, conn: Any, spent: dict[str, float]) -> None:
        self._conn, self._spent = conn, spent

    def cursor(self) -> _TimedCursor:
        t = time.perf_counter()
        cursor = self._conn.cursor()
        self._spent["cursor open"] += time.perf_counter() - t
        return _TimedCursor(cursor, self._spent)

    def close(self) -> None:
        self._conn.close()


def profile_ingest(data: Generated, batches: int) -> dict[str, Any]:
    """cProfile of the server's ingest path called directly (decode_body + parse_batch +
    TelemetryStore.ingest), on one core, over ``batches`` batches into a fresh store; and the same
    path timed per phase without the profiler."""
    from voxperf.telemetry import ingest as ingest_module
    from voxperf.telemetry.ingest import decode_body, parse_batch
    from voxperf.telemetry.store import TelemetryStore

    pin(SERVER_CPU)
    chosen = data.batches[:batches]
    events = sum(b.lines for b in chosen)
    out: dict[str, Any] = {"batches": len(chosen), "events": events, "cpu": SERVER_CPU}
    with workdir("voxperf-telemetry-profile-") as work:
        store = TelemetryStore(work / "timed.duckdb")
        statements: defaultdict[str, float] = defaultdict(float)
        store._conn = _TimedConnection(store._conn, statements)  # DuckDB calls timed one by one
        phases = dict.fromkeys(
            ("decode_body", "parse_batch.lines", "parse_batch._columns", "store.ingest"), 0.0
        )
        real_columns = ingest_module._columns
        spent = [0.0]

        def timed_columns(by_name: Any, errors: Any) -> Any:
            t = time.perf_counter()
            try:
                return real_columns(by_name, errors)
            finally:
                spent[0] += time.perf_counter() - t

        ingest_module._columns = timed_columns
        try:
            started = time.perf_counter()
            for b in chosen:
                t0 = time.perf_counter()
                raw = decode_body(b.body, "gzip")
                t1 = time.perf_counter()
                parsed = parse_batch(raw)
                t2 = time.perf_counter()
                store.ingest(parsed, batch_id=b.batch_id)
                t3 = time.perf_counter()
                phases["decode_body"] += t1 - t0
                phases["parse_batch.lines"] += t2 - t1
                phases["store.ingest"] += t3 - t2
            total = time.perf_counter() - started
        finally:
            ingest_module._columns = real_columns
        phases["parse_batch.lines"] -= spent[0]
        phases["parse_batch._columns"] = spent[0]
        store.close()
        out["directEventsPerS"] = round(events / total)
        out["phasesUsPerEvent"] = {k: round(v / events * 1e6, 3) for k, v in phases.items()}
        out["phasesShare"] = {k: round(v / total, 3) for k, v in phases.items()}
        statements["store.ingest: Python around the calls"] = phases["store.ingest"] - sum(
            statements.values()
        )
        out["storeIngestUsPerEvent"] = {
            k: round(v / events * 1e6, 3) for k, v in sorted(statements.items(), key=lambda kv: -kv[1])
        }

        store = TelemetryStore(work / "profiled.duckdb")
        profiler = cProfile.Profile()
        profiler.enable()
        for b in chosen:
            store.ingest(parse_batch(decode_body(b.body, "gzip")), batch_id=b.batch_id)
        profiler.disable()
        store.close()
    stats = pstats.Stats(profiler)
    total_tt = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (path, line, func), (_cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = path.split("site-packages/")[-1].split("/src/")[-1]
        rows.append({"function": f"{short}:{line}({func})", "calls": nc, "tottimeS": tt, "cumtimeS": ct})
    rows.sort(key=lambda r: -r["tottimeS"])
    out["profiledTotalS"] = round(total_tt, 3)
    out["topByOwnTime"] = [
        {
            **r,
            "tottimeS": round(r["tottimeS"], 4),
            "cumtimeS": round(r["cumtimeS"], 4),
            "ownShare": round(r["tottimeS"] / total_tt, 3),
        }
        for r in rows[:20]
    ]
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    out["cumulativeText"] = text.getvalue().splitlines()[:60]
    pin(CLIENT_CPU)
    return out


def serve_stub(port: int, mode: str) -> None:
    """The telemetry app on uvicorn (as ``voxperf telemetry serve`` runs it) with a layer stubbed
    out: ``no-work`` answers without decoding or storing (HTTP + ASGI + FastAPI + the thread-pool
    hop only), ``no-store`` decodes and parses but does not store."""
    import uvicorn

    from voxperf.telemetry import server as server_module
    from voxperf.telemetry.ingest import ParsedBatch
    from voxperf.telemetry.store import Receipt, TelemetryStore

    store = TelemetryStore(":memory:")
    if mode == "no-store":

        def no_store(items: Any) -> list[Receipt]:
            return [Receipt(batch.rows, len(batch.errors)) for batch, _, _ in items]

        store.ingest_many = no_store  # type: ignore[method-assign]
    elif mode == "no-work":

        async def no_work(*_: Any) -> tuple[ParsedBatch, Receipt]:
            return ParsedBatch(rows=1000), Receipt(1000, 0)

        server_module._store_batch = no_work
    app = server_module.create_telemetry_app(store=store, background=False, own_store=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def server_layers(data: Generated, batches: int, threads: int) -> dict[str, float]:
    """Server CPU µs per event with the store, or all the work, stubbed out (same load, CPU 0)."""
    out = {}
    for mode in ("no-work", "no-store"):
        port = free_port()
        command = ["taskset", "-c", str(SERVER_CPU), sys.executable, __file__, "--serve-stub", mode, "--port"]
        proc = subprocess.Popen([*command, str(port)])
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the {mode} server did not start")
                time.sleep(0.05)
            chosen = data.batches[:batches]
            before = proc_cpu_s(proc.pid)
            send(port, chosen, list(range(len(chosen))), threads=threads)
            out[mode] = round((proc_cpu_s(proc.pid) - before) / sum(b.lines for b in chosen) * 1e6, 2)
        finally:
            proc.terminate()
            proc.wait()
    return out


def store_by_batch_size(start_ms: int, events: int) -> dict[str, float]:
    """``TelemetryStore.ingest`` CPU µs per event for batches of 100, 1,000 and 10,000 events (and
    1,000 with DuckDB limited to one thread), in-process on CPU 0: how much of it is per batch."""
    from voxperf.telemetry.ingest import decode_body, parse_batch
    from voxperf.telemetry.store import TelemetryStore

    pin(SERVER_CPU)
    out = {}
    for size, threads in ((100, None), (1000, None), (10_000, None), (1000, 1)):
        data = generate(events, seed=13, start_ms=start_ms, batch_size=size)
        parsed = [(b.batch_id, parse_batch(decode_body(b.body, "gzip"))) for b in data.batches]
        with workdir("voxperf-telemetry-sizes-") as work:
            store = TelemetryStore(work / "t.duckdb", threads=threads)
            before = time.process_time()
            for batch_id, batch in parsed:
                store.ingest(batch, batch_id=batch_id)
            spent = time.process_time() - before
            store.close()
        label = f"{size} events/batch" + (f", duckdb threads={threads}" if threads else "")
        out[label] = round(spent / events * 1e6, 2)
    pin(CLIENT_CPU)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--profile-batches", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="profile even when the target is met")
    parser.add_argument("--out", type=Path, default=RESULTS / "telemetry-ingest.json")
    parser.add_argument("--serve-stub", choices=("no-work", "no-store"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.port, args.serve_stub)
        return
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 CPUs: the server on CPU 0, the load generator on CPU 1")
    pin(CLIENT_CPU)
    info = machine()
    start_ms, _ = window_ending_now()
    t = time.monotonic()
    data = generate(args.events, seed=13, start_ms=start_ms, batch_size=args.batch_size)
    raw_bytes = sum(len(gzip.decompress(b.body)) for b in data.batches[:10]) / min(10, len(data.batches))
    gz_bytes = sum(len(b.body) for b in data.batches) / len(data.batches)
    print(
        f"built {len(data.batches)} batches of {args.batch_size} events in {time.monotonic() - t:.1f} s "
        f"(~{raw_bytes / 1000:.0f} kB NDJSON, {gz_bytes / 1000:.0f} kB gzip each)",
        flush=True,
    )
    runs = [one_run(data, args.threads, k + 1) for k in range(args.runs)]
    rates = [float(r["eventsPerS"]) for r in runs]
    summary = spread(rates, 0)
    result: dict[str, Any] = {
        "experiment": (
            "POST /v1/telemetry of gzip NDJSON batches to voxperf telemetry serve (taskset -c 0, fresh "
            "DuckDB file per run) from a load generator on CPU 1; events/s = rows counted in the store "
            "afterwards / wall time from the first request to the last answer"
        ),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": info,
        "config": {
            "events": args.events,
            "batchSize": args.batch_size,
            "threads": args.threads,
            "runs": args.runs,
            "mix": {"speech_timing": round(float(data.speech.mean()), 3)},
            "timestampsSpanDays": 7,
            "ndjsonBytesPerBatch": round(raw_bytes),
            "gzipBytesPerBatch": round(gz_bytes),
            "serverCpu": SERVER_CPU,
            "clientCpu": CLIENT_CPU,
        },
        "eventsPerS": summary,
        "targetEventsPerS": TARGET_EVENTS_PER_S,
        "meetsTarget": summary["median"] >= TARGET_EVENTS_PER_S,
        "allStored": all(r["storedRows"] == r["eventsSent"] for r in runs),
        "runs": runs,
    }
    if not result["meetsTarget"] or args.profile:
        print("profiling the ingest path in-process (cProfile) ...", flush=True)
        prof = profile_ingest(data, min(args.profile_batches, len(data.batches)))
        server_us = statistics.median(float(r["serverCpuUsPerEvent"]) for r in runs)
        direct_us = sum(prof["phasesUsPerEvent"].values())
        prof["serverCpuUsPerEventMedian"] = server_us
        prof["directPathUsPerEvent"] = round(direct_us, 3)
        print("timing the server with its store, then all its work, stubbed out ...", flush=True)
        layers = server_layers(data, min(args.profile_batches, len(data.batches)), args.threads)
        prof["serverCpuUsPerEventStubbed"] = layers
        prof["serverCpuSplitUsPerEvent"] = {
            "http+asgi+fastapi+threadpool (no-work stub)": layers["no-work"],
            "decode_body+parse_batch in the server (no-store stub - no-work stub)": round(
                layers["no-store"] - layers["no-work"], 2
            ),
            "store.ingest in the server (full server - no-store stub)": round(
                server_us - layers["no-store"], 2
            ),
        }
        print("store.ingest by batch size ...", flush=True)
        prof["storeIngestCpuUsPerEventByBatchSize"] = store_by_batch_size(start_ms, 200_000)
        result["profile"] = prof
    result["machine"]["loadavgAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\ningest: {summary['median']:,.0f} events/s median (min {summary['min']:,.0f}, max "
        f"{summary['max']:,.0f}, spread {summary['spreadPct']} %) over {args.runs} runs of {args.events:,} "
        f"events; target {TARGET_EVENTS_PER_S:,}: {'met' if result['meetsTarget'] else 'NOT met'}; "
        f"all stored: {result['allStored']}; load {info['loadavg']} -> {result['machine']['loadavgAtEnd']}"
    )
    if "profile" in result:
        p = result["profile"]
        print(
            f"direct path (one thread, no HTTP) {p['directEventsPerS']:,} events/s; µs/event "
            f"{p['phasesUsPerEvent']}\nstore.ingest µs/event by statement {p['storeIngestUsPerEvent']}\n"
            f"server CPU {p['serverCpuUsPerEventMedian']} µs/event = {p['serverCpuSplitUsPerEvent']}\n"
            f"store.ingest CPU µs/event {p['storeIngestCpuUsPerEventByBatchSize']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
