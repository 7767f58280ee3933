"""Shared test helpers: the real CLI as a subprocess, small audio fixtures on disk, and a real
``voxperf serve`` app on loopback (uvicorn in a thread) with fake engines."""

from __future__ import annotations

import copy
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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
