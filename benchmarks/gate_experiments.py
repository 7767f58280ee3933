"""The gate's A/A and power experiments: how often does it cry wolf, how often does it catch a change?

Run (each prints a table and writes benchmarks/results/gate-<experiment>.json):

    .venv/bin/python benchmarks/gate_experiments.py codepath      # ~10 min: 100 A/A + 40 A/B
    .venv/bin/python benchmarks/gate_experiments.py instructions  # ~25 min: 10 A/A = 20 worker runs
                                                                  # (other core busy) + 5 A/B
    .venv/bin/python benchmarks/gate_experiments.py provider      # ~60 min: 30 A/A + 20 A/B, each
                                                                  # run until decided, 5 min budget

Every decision is a fresh ``voxperf ab`` (library call ``run_paired``): two new worker processes,
engines loaded, requests interleaved A B B A, decided by the gate on its default headline metrics
with Holm control. A/A runs the same code on both sides; A/B changes one thing by a known amount:

* codepath: the fake STT's latency 60 ms → 66 ms (+10 % stt);
* instructions: ``benchmarks/injected_voxperf.py`` adds pure-Python work to every dictation
  request (about +1 % of its instructions); counted by callgrind, the other core kept busy;
* provider: real faster-whisper tiny.en made 10 % slower by the same shim (it sleeps 10 % of each
  real transcribe call's time after it).

Options: ``--aa N --ab N`` change the trial counts; ``--rounds N`` the rounds per decision.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voxperf.bench.paired import PairedRun, Side, run_paired
from voxperf.bench.runner import BenchConfig

HERE = Path(__file__).resolve().parent
GATED = ("total_ms", "stt_ms", "ttfa_ms", "rtfx", "stt_rtfx", "instructions")
SHIM = (sys.executable, str(HERE / "injected_voxperf.py"))


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@contextlib.contextmanager
def busy_core(enabled: bool) -> Iterator[None]:
    """Keep one core busy with a pure-Python loop (another tenant of a shared CI runner)."""
    if not enabled:
        yield
        return
    stop = multiprocessing.Event()
    proc = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    proc.start()
    try:
        yield
    finally:
        stop.set()
        proc.join(5)


def _summary(run: PairedRun) -> dict[str, Any]:
    return {
        "status": run.decision.status,
        "seconds": round(run.elapsed_s, 2),
        "rounds": run.rounds,
        "stoppedBy": run.stopped_by,
        "rows": [
            {
                "where": r.change.where,
                "metric": r.change.metric,
                "estimate": r.change.estimate,
                "ci": list(r.change.ci),
                "verdict": r.verdict,
                "pHolm": r.p_worse_adjusted,
            }
            for r in run.decision.rows
        ],
        "failures": run.failures,
        "instructions": {
            "/".join(str(g) for g in group if g): metrics["instructions"]
            for group, metrics in run.pairs.items()
            if "instructions" in metrics
        },
        # the raw (base, head) pairs of the gated metrics: any decision rule can be replayed on them
        "pairs": {
            "/".join(str(g) for g in group if g): {m: metrics[m] for m in GATED if m in metrics}
            for group, metrics in run.pairs.items()
        },
    }


def trials(name: str, n: int, config: BenchConfig, base: Side, head: Side, **kw: Any) -> list[dict[str, Any]]:
    out = []
    partial = HERE / "results" / f"partial-{name.split()[0].replace('/', '')}-{os.getpid()}.jsonl"
    partial.parent.mkdir(exist_ok=True)
    for i in range(n):
        run = run_paired(config, base, head, **kw)
        s = _summary(run)
        out.append(s)
        with partial.open("a") as fh:  # kept as it goes: an interrupted experiment loses nothing
            fh.write(json.dumps({"experiment": name, **s}) + "\n")
        print(f"{name} {i + 1}/{n}: {s['status']} in {s['seconds']} s", flush=True)
    partial.unlink(missing_ok=True)
    return out


def report(name: str, aa: list[dict[str, Any]], ab: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    def count(runs: list[dict[str, Any]]) -> dict[str, int]:
        return dict(Counter(r["status"] for r in runs))

    def seconds(runs: list[dict[str, Any]]) -> list[float]:
        return sorted(r["seconds"] for r in runs)

    doc = {
        "experiment": name,
        "machine": {"cores": os.cpu_count(), "load1m_at_end": os.getloadavg()[0]},
        "aa": {"n": len(aa), "statuses": count(aa), "falseFailures": sum(r["status"] == "fail" for r in aa)},
        "ab": {"n": len(ab), "statuses": count(ab), "detected": sum(r["status"] == "fail" for r in ab)},
        "secondsPerDecision": {
            "aaMedian": seconds(aa)[len(aa) // 2] if aa else None,
            "abMedian": seconds(ab)[len(ab) // 2] if ab else None,
            "max": max(seconds(aa) + seconds(ab), default=None),
        },
        **extra,
        "trials": {"aa": aa, "ab": ab},
    }
    out = HERE / "results" / f"gate-{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "trials"}, indent=2))
    print(f"written to {out}")


def codepath(args: argparse.Namespace) -> None:
    config = BenchConfig(
        lanes=("codepath",),
        pipelines=("dictation", "speech"),
        variants=("short",),
        levels=("raw",),
        fake_latency={"stt": 0.060},
        iterations=args.rounds or 10,
        warmup=1,
    )
    aa = trials("A/A", args.aa, config, Side("base"), Side("head"))
    slower = Side("head", overrides={"fake_latency": {"stt": 0.066}})
    ab = trials("A/B +10% stt", args.ab, config, Side("base"), slower)
    report("codepath", aa, ab, {"config": config.to_dict(), "change": "fake stt latency 60 ms -> 66 ms"})


def instructions(args: argparse.Namespace) -> None:
    config = BenchConfig(
        lanes=("codepath",),
        pipelines=("dictation",),
        variants=("short",),
        levels=("raw",),
        fake_latency={"stt": 0.060},
        iterations=1,
        warmup=1,
        instrument="instructions",
    )
    with busy_core(True):
        aa = trials("A/A instructions", args.aa, config, Side("base"), Side("head"))
        os.environ["VOXPERF_INJECT"] = f"pipeline_work={args.work}"
        ab = trials("A/B +work", args.ab, config, Side("base"), Side("head", SHIM))
        os.environ.pop("VOXPERF_INJECT")
    # every A/A decision is two worker processes (base and head): compare the counts of all of them
    counts: dict[str, list[float]] = {}
    for r in aa:
        for group, pairs in r["instructions"].items():
            for base_count, head_count in pairs:
                counts.setdefault(group, []).extend([base_count, head_count])
    spread = {g: (max(v) - min(v)) / min(v) for g, v in counts.items()}
    report(
        "instructions",
        aa,
        ab,
        {
            "config": config.to_dict(),
            "change": f"{args.work} extra loop iterations per dictation request",
            "aaWorkerRuns": {g: len(v) for g, v in counts.items()},
            "aaMaxRelativeDifference": spread,
            "abMeasuredChange": [r["rows"][0]["estimate"] - 1 for r in ab if r["rows"]],
        },
    )


def provider(args: argparse.Namespace) -> None:
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation", "speech"),
        variants=("short",),
        levels=("raw",),
        iterations=args.rounds or 20,
        warmup=1,
    )
    # as `voxperf ab --max-time 5min`: 20 rounds, then looks every 5 until the gate decides
    kw: dict[str, Any] = {"max_time_s": args.budget}
    if args.target:
        kw["target_ci"] = args.target
    aa = trials("A/A provider", args.aa, config, Side("base"), Side("head"), **kw)
    os.environ["VOXPERF_INJECT"] = "stt_slowdown=0.10"
    ab = trials("A/B +10% stt", args.ab, config, Side("base"), Side("head", SHIM), **kw)
    os.environ.pop("VOXPERF_INJECT")
    report(
        "provider", aa, ab, {"config": config.to_dict(), "change": "faster-whisper transcribe +10 % (sleep)"}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", choices=("codepath", "instructions", "provider"))
    parser.add_argument("--aa", type=int, default=None)
    parser.add_argument("--ab", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--work", type=int, default=385, help="instructions: extra loop iterations (385: about +1 %)"
    )
    parser.add_argument("--target", type=float, default=None, help="provider: --target-ci as a fraction")
    parser.add_argument(
        "--budget", type=float, default=300.0, help="provider: seconds per decision (--max-time), default 300"
    )
    args = parser.parse_args()
    defaults = {"codepath": (100, 40), "instructions": (10, 5), "provider": (30, 20)}[args.experiment]
    args.aa = defaults[0] if args.aa is None else args.aa
    args.ab = defaults[1] if args.ab is None else args.ab
    started = time.monotonic()
    {"codepath": codepath, "instructions": instructions, "provider": provider}[args.experiment](args)
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
