"""The deterministic instrument: instructions per request, counted by valgrind's callgrind.

Wall time moves 2-3x with the load of a shared machine; the number of instructions a request
executes does not. With ``--instrument instructions`` a lane's worker process runs under callgrind
with ``--dump-before=getppid``: callgrind writes its counters to a new file (``cg.out.1``,
``cg.out.2``, ...) every time ``getppid()`` is called, and resets them. The worker calls
``os.getppid()`` right before and right after each request, so every second dump holds exactly one
request's instructions: the same counts callgrind would report for that stretch of the run, with
the start-up and the work between requests in the other dumps. Numeric libraries run
single-threaded and hashing is seeded (``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
PYTHONHASHSEED=0``), without which two identical runs differed by about 1 %. The worker also
collects garbage before each request and sends no progress messages: a queue's feeder thread
running inside a request made counts move by up to 2 %. With both, two runs of the same code
differed by at most 0.006 % per request, with the other core busy.

Under callgrind the process runs tens of times slower: its wall-clock numbers are not figures, and
a lane measured this way reports only instruction counts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
from collections.abc import Iterator
from multiprocessing import spawn
from pathlib import Path

from voxperf.errors import DependencyMissingError, UsageError

__all__ = [
    "DUMP_NAME",
    "INSTRUMENTS",
    "callgrind_command",
    "check_lanes",
    "dumped_count",
    "dumped_counts",
    "mark",
    "require_callgrind",
    "spawn_under_callgrind",
]

INSTRUMENTS = ("wall", "instructions")
DUMP_NAME = "cg.out"
_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
_SUMMARY = re.compile(rb"^summary:\s*(\d+)", re.MULTILINE)


def require_callgrind() -> str:
    """The path of ``valgrind``, or a usage error that says how to get it."""
    path = shutil.which("valgrind")
    if path is None:
        raise DependencyMissingError(
            "--instrument instructions needs valgrind (callgrind counts the instructions)",
            "install it (Debian: apt-get install valgrind) or use --instrument wall",
        )
    return path


def check_lanes(lanes: tuple[str, ...]) -> None:
    """Instruction counts describe voxperf's own code: the codepath lane only."""
    if lanes != ("codepath",):
        raise UsageError(
            "--instrument instructions counts the codepath lane only",
            "add --lane codepath (real engines' counts are not comparable across machines)",
        )


def mark() -> None:
    """A dump point for callgrind (``--dump-before=getppid``); a cheap system call otherwise."""
    os.getppid()


def dumped_count(path: Path) -> int:
    """Instructions in one callgrind dump file (its ``summary:`` line)."""
    match = _SUMMARY.search(path.read_bytes())
    if match is None:
        raise ValueError(f"{path} has no callgrind summary line")
    return int(match.group(1))


def callgrind_command(out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The valgrind prefix and environment that count a process's requests into ``out_dir``."""
    valgrind = require_callgrind()
    argv = [
        valgrind,
        "--tool=callgrind",
        "--dump-before=getppid",
        f"--log-file={out_dir / 'valgrind.log'}",
        f"--callgrind-out-file={out_dir / DUMP_NAME}",
    ]
    return argv, dict(_ENV)


def dumped_counts(out_dir: Path, requests: int) -> list[int]:
    """Instructions of each of ``requests`` marked requests, in order, from the dump files.

    Dump 1 is start-up; then each request is one dump (between its two marks) followed by the
    stretch up to the next request's first mark."""
    return [dumped_count(out_dir / f"{DUMP_NAME}.{2 * k + 2}") for k in range(requests)]


@contextlib.contextmanager
def spawn_under_callgrind(out_dir: Path) -> Iterator[None]:
    """Make ``multiprocessing``'s spawn start children under callgrind, dumping into ``out_dir``.

    A small executable script stands in for the Python interpreter: it sets the deterministic
    environment and execs valgrind with the real interpreter and the arguments spawn passes."""
    valgrind = require_callgrind()
    script = out_dir / "python-under-callgrind"
    exports = "".join(f"export {k}={v}\n" for k, v in _ENV.items())
    script.write_text(
        "#!/bin/sh\n"
        f"{exports}"
        f'exec "{valgrind}" --tool=callgrind --dump-before=getppid --log-file="{out_dir / "valgrind.log"}" '
        f'--callgrind-out-file="{out_dir / DUMP_NAME}" "{os.path.realpath(sys.executable)}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    previous = spawn.get_executable()
    spawn.set_executable(str(script))
    try:
        yield
    finally:
        spawn.set_executable(previous)
