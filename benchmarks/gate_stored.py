"""Stored baselines under changing load: does `voxperf gate` say "regression" when nothing changed?

Run: .venv/bin/python benchmarks/gate_stored.py [--repeats 5]     (~5 min on 2 cores, machine idle)

Each repeat benches the codepath lane (stt 60 ms, 10 iterations) four times and gates three heads
against the first run (the stored base):

* ``quiet``: the same code, same load                     -> must not fail (pass or inconclusive);
* ``busy``: the same code with both cores kept busy       -> must not fail: "not comparable" (exit 6)
  or a widened CI;
* ``slower``: stt 60 -> 78 ms (+30 %), same load as base  -> must fail (exit 1).

Writes benchmarks/results/gate-stored.json and prints the exit codes per case.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VOXPERF = Path(sys.executable).with_name("voxperf")


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def bench(out: Path, stt_ms: int, busy: int = 0) -> None:
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    try:
        subprocess.run(
            [
                *(str(VOXPERF), "bench", "--lane", "codepath", "--variant", "short", "--levels", "raw"),
                *("--fake-latency", f"stt={stt_ms}ms", "--iterations", "10", "--quiet", "-o", str(out)),
            ],
            check=True,
        )
    finally:
        stop.set()
        for p in spinners:
            p.join(5)


def gate(head: Path, base: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [str(VOXPERF), "gate", str(head), "--base", str(base)], capture_output=True, text=True, check=False
    )
    return proc.returncode, proc.stderr.splitlines()[0] if proc.stderr else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = HERE / "results" / "gate-stored-runs"
    work.mkdir(parents=True, exist_ok=True)
    cases: dict[str, list[dict[str, Any]]] = {"quiet": [], "busy": [], "slower": []}
    for i in range(args.repeats):
        base = work / f"base-{i}.json"
        bench(base, 60)
        for case, stt, busy in (("quiet", 60, 0), ("busy", 60, 2), ("slower", 78, 0)):
            head = work / f"{case}-{i}.json"
            bench(head, stt, busy)
            code, line = gate(head, base)
            cases[case].append({"exit": code, "verdict": line})
            print(f"repeat {i + 1}: {case}: exit {code}: {line}", flush=True)
    summary = {case: dict(Counter(r["exit"] for r in runs)) for case, runs in cases.items()}
    out = HERE / "results" / "gate-stored.json"
    out.write_text(json.dumps({"exitCodes": summary, "cases": cases}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
