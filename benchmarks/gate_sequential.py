"""Looking at the gate every few rounds: what it costs in false failures, what it buys in power.

``voxperf ab --max-time`` keeps adding rounds after ``--iterations`` and looks at the decision every
``LOOK_EVERY`` rounds, stopping as soon as the gate can decide. Repeated looks are a sequential test,
so this simulates it with the gate's own functions (``paired_change`` + ``decide``, Holm over five
gated metrics shaped like the provider lane: dictation total and stt, which move together, and
speech total, TTFA and RTFx) on per-request log ratios drawn from a normal with spread ``sigma``.

    .venv/bin/python benchmarks/gate_sequential.py      # ~3 min; writes results/gate-sequential.json

Rows: true change of dictation's stt and total (1.00 = A/A, 1.05 = exactly at the 5 % tolerance,
1.10 = a real +10 %), one look at 20 rounds vs looks every 5 rounds from 20 to 80.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from voxperf.bench.paired import LOOK_EVERY
from voxperf.report.gate import Tolerance, decide, paired_change

TRIALS = 300
rng = np.random.default_rng(20261202)
tolerance = Tolerance(rel=0.05)


def trial(shift: float, sigma: float, looks: list[int]) -> tuple[str, int]:
    n = max(looks)
    dictation = rng.normal(0, sigma, n)
    speech = rng.normal(0, sigma / 2, n)
    base = 1.0 + np.exp(rng.normal(0, 0.2, n))
    status = "inconclusive"
    for k in looks:
        metrics = [
            ("total_ms", dictation + shift),
            ("stt_ms", 1.05 * dictation + shift),
            ("total_ms", speech),
            ("ttfa_ms", speech),
            ("rtfx", -speech),
        ]
        changes = [
            paired_change(
                base[:k], base[:k] * np.exp(x[:k]), metric=m, tolerance=tolerance, where=("p", str(i), None)
            )
            for i, (m, x) in enumerate(metrics)
        ]
        status = decide(changes).status
        if status in ("pass", "fail"):
            return status, k
    return status, n


def main() -> None:
    rows = []
    schedules = {"one look at 20": [20], f"every {LOOK_EVERY} from 20 to 80": list(range(20, 81, LOOK_EVERY))}
    for sigma in (0.03, 0.08, 0.15):
        for change in (1.00, 1.05, 1.10):
            for name, looks in schedules.items():
                runs = [trial(math.log(change), sigma, looks) for _ in range(TRIALS)]
                row = {
                    "sigma": sigma,
                    "change": change,
                    "looks": name,
                    "fail": sum(r[0] == "fail" for r in runs) / TRIALS,
                    "pass": sum(r[0] == "pass" for r in runs) / TRIALS,
                    "meanRounds": float(np.mean([r[1] for r in runs])),
                }
                rows.append(row)
                print(
                    f"sigma {sigma:.2f}  change {change:.2f}  {name:<22} fail {row['fail']:6.1%}  "
                    f"pass {row['pass']:6.1%}  mean rounds {row['meanRounds']:.0f}",
                    flush=True,
                )
    out = Path(__file__).resolve().parent / "results" / "gate-sequential.json"
    out.write_text(json.dumps({"trials": TRIALS, "rows": rows}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
