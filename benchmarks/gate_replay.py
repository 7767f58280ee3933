"""Replay the gate's decisions on the raw pairs an experiment saved, under two decision rules.

Run: .venv/bin/python benchmarks/gate_replay.py benchmarks/results/gate-provider.json

For every A/A and A/B trial of a ``gate_experiments.py`` result it rebuilds the gated changes from
the saved (base, head) pairs and decides them twice: with the shipped rule (Hodges-Lehmann estimate,
Wilcoxon signed-rank test, Holm) and with the exact sign test on the median (the rule it replaced),
so both are judged on the same measurements (WER rows are exact under both and are left out).
Prints false failures (A/A) and detections (A/B).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from voxperf.report.gate import GateConfig, decide, holm, paired_change


def _binom_sf(k: int, n: int) -> float:
    return math.fsum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2.0**n


def sign_test_fails(trial: dict[str, Any], gate: GateConfig) -> bool:
    """The replaced rule: exact sign test of "median log ratio beyond the tolerance", Holm."""
    pvalues = []
    for metrics in trial["pairs"].values():
        for metric, pairs in metrics.items():
            if metric not in gate.metrics or metric == "instructions" or len(pairs) < 3:
                continue
            a, b = np.array(pairs, float).T
            sign = -1.0 if metric in ("rtfx", "stt_rtfx") else 1.0
            c = math.log1p(gate.tolerance_for(metric).rel or 0.0)
            beyond = int(np.count_nonzero(sign * (np.log(b) - np.log(a)) > c))
            pvalues.append(_binom_sf(beyond, len(pairs)))
    return bool(pvalues) and min(holm(pvalues)) <= gate.alpha


def shipped_fails(trial: dict[str, Any], gate: GateConfig) -> bool:
    changes = []
    for group, metrics in trial["pairs"].items():
        lane, pipeline, *level = group.split("/")
        for metric, pairs in metrics.items():
            if metric not in gate.metrics or len(pairs) < 3:
                continue
            a, b = np.array(pairs, float).T
            where = (lane, pipeline, level[0] if level else None)
            changes.append(
                paired_change(a, b, metric=metric, tolerance=gate.tolerance_for(metric), where=where)
            )
    return decide(changes, alpha=gate.alpha).failed


def main() -> None:
    doc = json.loads(Path(sys.argv[1]).read_text())
    gate = GateConfig()
    for kind in ("aa", "ab"):
        trials = [t for t in doc["trials"][kind] if t.get("pairs")]
        shipped = sum(shipped_fails(t, gate) for t in trials)
        sign = sum(sign_test_fails(t, gate) for t in trials)
        label = "false failures" if kind == "aa" else "detected"
        print(f"{kind}: {len(trials)} trials; {label}: Wilcoxon+HL {shipped}, sign test {sign}")


if __name__ == "__main__":
    main()
