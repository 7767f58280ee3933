"""A/A and A/B experiments for telemetry alerts: how often does an alert cry wolf, how often and
how fast does it catch a real slowdown?

Real parts: events go through the ingest validation into a DuckDB store, and the alert engine
(the default thresholds: TTFA p95 > 1 s warning, > 2 s error; 4 of 6 five-minute windows;
10 % hysteresis; at least 20 events a window) decides after every window on an injected clock.

* **A/A steady**: TTFA lognormal with p95 = 800 ms (the plan's target), for ``--windows`` windows.
* **A/A near**: the same with p95 = 950 ms, 5 % under the warning level: what naive alerting
  (one window over the threshold raises it) does there is shown beside.
* **A/B**: the p95 steps to 1,300 ms for one hour (12 windows), ``--injections`` times at random
  moments of steady traffic; caught = the alert reaches warning during the slowdown or within
  two windows after; delay = windows from the step to the alert; and it must clear afterwards.

Writes ``benchmarks/results/telemetry-alerts.json``. Run: ``.venv/bin/python benchmarks/telemetry_alerts.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from voxperf.telemetry.alerts import AlertEngine, Threshold, level_of
from voxperf.telemetry.ingest import parse_batch
from voxperf.telemetry.store import TelemetryStore

WINDOW_MS = 300_000
T0 = 1_796_083_200_000
SIGMA = 0.45  # per-request spread of TTFA (lognormal sigma)
Z95 = 1.6448536269514722
TTFA = Threshold("ttfa_ms", "p95", 1000.0, 2000.0)


def mu_for_p95(p95_ms: float) -> float:
    return math.log(p95_ms) - Z95 * SIGMA


def line(ts_ms: int, ttfa: float, session: str) -> str:
    stamp = (
        datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return json.dumps(
        {
            "schemaVersion": 1,
            "appVersion": "1.0.0",
            "event": {
                "timestamp": stamp,
                "name": "speech_timing",
                "sessionID": session,
                "fields": {"ttfa_ms": round(ttfa, 3), "cache": "miss", "outcome": "ok"},
            },
        }
    )


def run(p95_per_window: list[float], events: int, seed: int) -> tuple[list[str], list[str]]:
    """Each window's alert level (the engine) and a naive one-window level, for a p95 schedule."""
    rng = np.random.default_rng(seed)
    clock = [T0 / 1000]
    store = TelemetryStore(":memory:", clock=lambda: clock[0])
    engine = AlertEngine(store, (TTFA,), clock=lambda: clock[0])
    levels, naive = [], []
    for w, p95 in enumerate(p95_per_window):
        start = T0 + w * WINDOW_MS
        values = rng.lognormal(mu_for_p95(p95), SIGMA, events)
        stamps = start + rng.integers(0, WINDOW_MS, events)
        body = "\n".join(
            line(int(t), float(v), f"{seed}-{w}-{i}")
            for i, (t, v) in enumerate(zip(stamps, values, strict=True))
        )
        store.ingest(parse_batch(body.encode()), batch_id=f"{seed}-{w}")
        clock[0] = (start + WINDOW_MS) / 1000
        (state,) = engine.evaluate()
        levels.append(state.level)
        naive.append(level_of(TTFA, float(np.percentile(values, 95)), events) or "ok")
    store.close()
    return levels, naive


def raises(levels: list[str]) -> int:
    return sum(1 for a, b in zip(["ok", *levels], levels, strict=False) if a == "ok" and b != "ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2016, help="A/A windows (2016 = one week)")
    parser.add_argument("--injections", type=int, default=100)
    parser.add_argument("--events", type=int, default=50, help="events per window")
    args = parser.parse_args()
    t_start = time.perf_counter()
    out: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "loadavg": os.getloadavg(), "python": platform.python_version()},
        "events_per_window": args.events,
        "sigma": SIGMA,
    }
    for name, p95 in (("aa_steady", 800.0), ("aa_near", 950.0)):
        levels, naive = run([p95] * args.windows, args.events, seed=1 if name == "aa_steady" else 2)
        out[name] = {
            "p95_ms": p95,
            "windows": args.windows,
            "alerts_raised": raises(levels),
            "windows_not_ok": sum(1 for x in levels if x != "ok"),
            "naive_alerts_raised": raises(naive),
            "naive_windows_not_ok": sum(1 for x in naive if x != "ok"),
        }
        print(name, out[name])
    caught, delays, cleared, false_before = 0, [], 0, 0
    for k in range(args.injections):
        rng = np.random.default_rng(1000 + k)
        lead = int(rng.integers(12, 36))
        schedule = [800.0] * lead + [1300.0] * 12 + [800.0] * 12
        levels, _ = run(schedule, args.events, seed=1000 + k)
        false_before += raises(levels[:lead])
        during = levels[lead : lead + 14]
        hit = next((i for i, x in enumerate(during) if x != "ok"), None)
        if hit is not None:
            caught += 1
            delays.append(hit + 1)
        cleared += levels[-1] == "ok"
    out["ab_step_1300ms_for_1h"] = {
        "injections": args.injections,
        "caught": caught,
        "delay_windows_median": float(np.median(delays)) if delays else None,
        "delay_windows_range": [min(delays), max(delays)] if delays else None,
        "cleared_within_1h_after": cleared,
        "false_raises_before_the_step": false_before,
    }
    print("ab", out["ab_step_1300ms_for_1h"])
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    path = Path(__file__).parent / "results" / "telemetry-alerts.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
