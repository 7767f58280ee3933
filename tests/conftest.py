"""Shared test helpers: the real CLI as a subprocess, small audio fixtures on disk, a real
``voxperf serve`` app on loopback (uvicorn in a thread) with fake engines, result documents, git
repositories, the PostgreSQL and RabbitMQ of the machine, Chromium, and the simulated latency
populations of the statistics tests (benchmarks/ uses them too)."""

from __future__ import annotations

import copy
import io
import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from voxperf.bench.schema import SCHEMA_VERSION, BenchResult, parse_result

if TYPE_CHECKING:
    from voxperf.service.app import ServiceEngines, ServiceSettings

VOXPERF = Path(sys.executable).parent / "voxperf"


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``voxperf`` console script (``env``: extra environment variables)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [str(VOXPERF), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env, check=False
    )


def write_tone(path: Path, seconds: float = 1.0, rate: int = 48_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture
def tone_dir(tmp_path: Path) -> Path:
    """A fixture directory: two tones with transcripts and one without."""
    d = tmp_path / "fixtures"
    d.mkdir()
    write_tone(d / "a.wav", 1.0)
    (d / "a.txt").write_text("hello world\n")
    write_tone(d / "b.wav", 0.5, 16_000)
    (d / "b.txt").write_text("second fixture\n")
    write_tone(d / "c.wav", 0.3)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_app(settings: ServiceSettings, engines: ServiceEngines, app: object = None) -> Iterator[str]:
    """Serve the app (or ``create_app(settings, engines)``) on a free loopback port; yields its URL
    (``for url in serve_app(...):`` runs the body once, then the server stops)."""
    import uvicorn

    from voxperf.service.app import create_app

    port = free_port()
    app = app if app is not None else create_app(settings, engines)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def tone() -> bytes:
    """One second of a 220 Hz tone as 16 kHz WAV bytes (an upload)."""
    buf = io.BytesIO()
    t = np.arange(16000) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def fake_engines(latency: str = "0") -> ServiceEngines:
    """The service's engines as codepath fakes, ready (no model loads)."""
    from voxperf.engines.fakes import FakeSTT, FakeTTS
    from voxperf.engines.rewrite.local import LocalRewriter
    from voxperf.service.runtime import ServiceEngines

    return ServiceEngines(
        stt=FakeSTT(latency=latency, text="um hello there"),
        tts=FakeTTS(),
        rewriter=LocalRewriter(),
        ready=True,
    )


# -- result documents for report and store tests ---------------------------------------------------


def minimal_result() -> dict:
    summary = {
        "n": 5,
        "unit": "ms",
        "mean": 10.0,
        "stdev": 1.0,
        "min": 9.0,
        "max": 12.0,
        "p50": 10.0,
        "p95": 11.8,
        "p99": 11.96,
        "ci95": {"p50": [9.0, 11.0], "p95": [10.0, 12.0], "p99": [10.0, 12.0]},
        "noisy": False,
        "notes": ["p99 from 5 samples is not reliable"],
    }
    return {
        "schemaVersion": SCHEMA_VERSION,
        "tool": {"name": "voxperf", "version": "0.1.0"},
        "createdAt": "2026-11-21T00:00:00Z",
        "config": {"iterations": 5},
        "git": {"commit": "a" * 40, "branch": "main", "dirty": False},
        "machine": {
            "hostname": "h",
            "os": "Linux",
            "kernel": "6",
            "arch": "x86_64",
            "cpuModel": None,
            "coresLogical": 2,
            "coresPhysical": 1,
            "ramBytes": 1,
            "python": "3.11.7",
            "pythonImplementation": "CPython",
            "timerResolutionNs": 1.0,
            "loadAverage1m": 0.1,
            "packages": {"voxperf": "0.1.0"},
        },
        "fixtures": [
            {
                "name": "short",
                "durationS": 3.0,
                "sampleRate": 16000,
                "bytes": 96044,
                "sha256": "0" * 64,
                "hasTranscript": True,
                "text": "hello",
            }
        ],
        "lanes": {
            "codepath": {
                "lane": "codepath",
                "label": "codepath lane",
                "engines": [],
                "runs": [
                    {
                        "pipeline": "dictation",
                        "fixture": "short",
                        "level": "raw",
                        "iteration": 0,
                        "warmup": False,
                        "requestId": "r",
                        "stagesNs": {"stt": 10},
                        "totalNs": 12,
                        "totalStageNs": 10,
                        "cpuNs": 5,
                        "metrics": {"stt_ms": 1e-5, "wer": None},
                    }
                ],
                "summaries": [{"pipeline": "dictation", "level": "raw", "metrics": {"stt_ms": summary}}],
                "resources": {
                    "peakRssBytes": 1,
                    "maxRssBytes": 1,
                    "cpuUserS": 0.1,
                    "cpuSystemS": 0.0,
                    "wallS": 1.0,
                    "cpuPercent": 10.0,
                },
            }
        },
    }


def synthetic(
    samples: dict[str, list[float]], *, lane: str = "codepath", commit: str = "a" * 40, sha: str = "0" * 64
) -> BenchResult:
    """A result whose dictation/raw runs have stt_ms = sample and total = stt + 1 ms (+ overhead)."""
    data = minimal_result()
    data["git"]["commit"] = commit
    template = data["lanes"]["codepath"]["runs"][0]
    runs = []
    for fixture, values in samples.items():
        for i, v in enumerate(values):
            run = copy.deepcopy(template)
            run.update(
                fixture=fixture,
                iteration=i,
                requestId=f"{fixture}-{i}",
                metrics={"stt_ms": v, "decode_ms": 1.0, "overhead_ms": 0.01, "total_ms": v + 1.01},
            )
            runs.append(run)
    data["lanes"]["codepath"]["runs"] = runs
    data["lanes"]["codepath"]["summaries"] = []
    data["fixtures"] = [
        {
            "name": f,
            "durationS": 1.0,
            "sampleRate": 16000,
            "bytes": 1000 * (i + 1),
            "sha256": sha,
            "hasTranscript": False,
        }
        for i, f in enumerate(samples)
    ]
    if lane != "codepath":
        data["lanes"] = {lane: {**data["lanes"]["codepath"], "lane": lane}}
    return parse_result(data)


# ---- shared by several test modules and benchmarks/ --------------------------------------------


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class Lognormal:
    """Lognormal latency with the given mean and coefficient of variation."""

    mean: float
    cv: float

    @property
    def _mu_sigma(self) -> tuple[float, float]:
        sigma = math.sqrt(math.log1p(self.cv**2))
        return math.log(self.mean) - sigma**2 / 2, sigma

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(*self._mu_sigma, n)

    def cdf(self, x: float) -> float:
        mu, sigma = self._mu_sigma
        return 0.0 if x <= 0 else normal_cdf((math.log(x) - mu) / sigma)


@dataclass(frozen=True)
class Gamma:
    """Gamma latency with the given mean and an integer shape k (CV = 1 / sqrt(k))."""

    mean: float
    k: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.gamma(self.k, self.mean / self.k, n)

    def cdf(self, x: float) -> float:
        if x <= 0:
            return 0.0
        y = x * self.k / self.mean
        term = total = 1.0
        for i in range(1, self.k):
            term *= y / i
            total += term
        return 1.0 - math.exp(-y) * total


@dataclass(frozen=True)
class Bimodal:
    """A normal mode with a slower second mode (e.g. an occasional cache miss)."""

    fast: tuple[float, float]
    slow: tuple[float, float]
    p_slow: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        slow = rng.random(n) < self.p_slow
        return np.where(slow, rng.normal(*self.slow, n), rng.normal(*self.fast, n))

    def cdf(self, x: float) -> float:
        (m1, s1), (m2, s2) = self.fast, self.slow
        return (1 - self.p_slow) * normal_cdf((x - m1) / s1) + self.p_slow * normal_cdf((x - m2) / s2)


@dataclass(frozen=True)
class ShiftedExp:
    """A floor plus exponential waiting time."""

    floor: float
    mean: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.floor + rng.exponential(self.mean, n)

    def cdf(self, x: float) -> float:
        return 0.0 if x <= self.floor else 1.0 - math.exp(-(x - self.floor) / self.mean)


Population = Lognormal | Gamma | Bimodal | ShiftedExp


def true_mixture_quantile(pops: Sequence[Population], weights: Sequence[float], q: float) -> float:
    """The q quantile of the population mixture, by bisection on its CDF."""
    total = sum(weights)

    def cdf(x: float) -> float:
        return sum(w * p.cdf(x) for p, w in zip(pops, weights, strict=True)) / total

    lo, hi = -1e3, 1.0
    while cdf(hi) < q:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if cdf(mid) >= q else (mid, hi)
    return hi


# Fixtures with different weights (audio durations) and different latency distributions. In
# "short+medium" latency grows with duration, so the aggregate p50 lies in the longer fixture's
# lower half; in "2 equal, apart" it lies in the gap between two fixtures of equal weight.
SCENARIOS: dict[str, tuple[list[Population], list[float]]] = {
    "2 fixtures 40/60": ([Lognormal(100, 0.10), Gamma(110, 16)], [0.4, 0.6]),
    "short+medium 3s/10s": ([Gamma(300, 16), Lognormal(1000, 0.15)], [3.0, 10.0]),
    "4 mixed 1/1/2/3": (
        [Lognormal(50, 0.40), Gamma(60, 16), Bimodal((55, 3), (80, 5), 0.3), ShiftedExp(40, 15)],
        [1.0, 1.0, 2.0, 3.0],
    ),
    "3 equal": ([Lognormal(100, 0.20), Gamma(100, 16), ShiftedExp(80, 20)], [1.0, 1.0, 1.0]),
    "2 equal, apart": ([Lognormal(100, 0.10), Gamma(200, 16)], [1.0, 1.0]),
}


def start_serve(
    job_dir: Path, port: int, workers: int, stt: str = "fake:latency=0.6s", log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``voxperf serve`` on fake engines, stderr piped (read it after the process ended), or into
    ``log`` for a server that answers many requests (a full pipe would stop it)."""
    voxperf = str(Path(sys.executable).parent / "voxperf")
    proc = subprocess.Popen(
        [
            voxperf,
            "serve",
            "--port",
            str(port),
            "--stt",
            stt,
            "--tts",
            "fake",
            "--workers",
            str(workers),
            "--job-dir",
            str(job_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if log is None else log.open("wb"),
        env={**os.environ, "NO_COLOR": "1"},
    )
    wait_until_up(proc, f"http://127.0.0.1:{port}/readyz")
    return proc


def wait_until_up(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers 200; if the server exits or never answers, kill it and fail
    with what it printed on stderr."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]


def make_result(
    commit: str | None = None, *, created: str = "2026-11-21T00:00:00Z", stt: float = 10.0
) -> BenchResult:
    data = minimal_result()
    data["createdAt"] = created
    data["git"]["commit"] = commit
    provider = copy.deepcopy(data["lanes"]["codepath"])
    provider["lane"] = "provider"
    provider["label"] = "provider lane"
    provider["runs"][0]["metrics"]["stt_ms"] = stt
    data["lanes"]["provider"] = provider
    return parse_result(data)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit(repo: Path, msg: str) -> str:
    git(repo, "commit", "--allow-empty", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD")


BROKER = os.environ.get("VOXPERF_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_up() -> bool:
    host_port = BROKER.split("@")[-1].split("/")[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 5672)), timeout=2):
            return True
    except OSError:
        return False


PG_URL = os.environ.get("VOXPERF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_schema() -> str | None:
    """A fresh schema on the test PostgreSQL, or None (with the reason printed) when there is none."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            name = f"vx_{uuid.uuid4().hex[:12]}"
            conn.execute(f"CREATE SCHEMA {name}")
            return name
    except Exception as exc:  # no server, no database, no permission: the PostgreSQL cases skip
        print(f"PostgreSQL at {PG_URL} unavailable: {exc}")
        return None


def drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def pg_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


# the dictation app's documented example line, as it documents it
TELEMETRY_EXAMPLE: dict[str, Any] = {
    "schemaVersion": 1,
    "appVersion": "0.4.0",
    "appBuild": "123",
    "osVersion": "macOS ...",
    "event": {
        "timestamp": "2026-02-19T02:00:00Z",
        "name": "pipeline_timing",
        "sessionID": "uuid",
        "fields": {
            "processing_level": "clean",
            "total_ms": 1234,
            "total_stage_ms": 1180,
            "encode_ms": 20,
            "stt_ms": 680,
            "rewrite_ms": 430,
            "paste_ms": 50,
            "original_bytes": 160000,
            "encoded_bytes": 42000,
        },
    },
}


def telemetry_line(
    name: str,
    ts_ms: int,
    *,
    app_version: str = "1.0.0",
    session: str | None = None,
    **fields: Any,
) -> str:
    """One NDJSON telemetry line of event ``name`` at ``ts_ms`` (epoch ms) with ``fields``."""
    stamp = (
        datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return json.dumps(
        {
            "schemaVersion": 1,
            "appVersion": app_version,
            "appBuild": "7",
            "osVersion": "Linux",
            "event": {
                "timestamp": stamp,
                "name": name,
                "sessionID": session or str(uuid.uuid4()),
                "fields": fields,
            },
        }
    )


def livekit_export(
    cumulative: dict[str, list[int]],
    *,
    bounds_s: Sequence[float],
    start_ns: int,
    t_ms: int,
    version: str = "1.2.0",
) -> dict[str, Any]:
    """An OTLP/HTTP JSON metrics export as LiveKit Agents' OpenTelemetry SDK sends it: cumulative
    explicit-bucket histograms in seconds (metric name -> bucket counts), plus a metric the
    service does not map (one rejected data point)."""
    # each bucket's observations at its middle (the open top one at its lower bound)
    mids = [(a + b) / 2 for a, b in itertools.pairwise([0.0, *bounds_s])] + [bounds_s[-1]]
    metrics: list[dict[str, Any]] = [
        {
            "name": name,
            "description": "LiveKit Agents turn latency",
            "unit": "s",
            "histogram": {
                "aggregationTemporality": 2,
                "dataPoints": [
                    {
                        "startTimeUnixNano": str(start_ns),
                        "timeUnixNano": str(t_ms * 1_000_000),
                        "count": str(sum(counts)),
                        "sum": sum(c * m for c, m in zip(counts, mids, strict=True)),
                        "bucketCounts": [str(c) for c in counts],
                        "explicitBounds": list(bounds_s),
                    }
                ],
            },
        }
        for name, counts in cumulative.items()
    ]
    metrics.append({"name": "lk.agents.session.count", "sum": {"dataPoints": [{"asInt": "3"}]}})
    resource = [
        {"key": "service.name", "value": {"stringValue": "voice-agent"}},
        {"key": "service.version", "value": {"stringValue": version}},
    ]
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": resource},
                "scopeMetrics": [{"scope": {"name": "livekit-agents"}, "metrics": metrics}],
            }
        ]
    }
