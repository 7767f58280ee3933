"""Lanes that do not disturb each other: the codepath lane's peak RSS alone vs after the provider lane.

Before schema v2 both lanes ran in one process: the codepath lane's RSS and CPU included the
provider lane's loaded models and thread pools (502 MiB after the provider lane vs 182 MiB alone).
Each lane now has its own worker process. This prints the codepath lane's kernel high-water mark
(getrusage of the process that ran it) alone, after the provider lane, and in the old inline mode,
plus its p50 overhead in each case.

Run: make benchmarks ARGS="-k lane_isolation -s"
"""

from __future__ import annotations

import pytest

from voxperf.bench.runner import BenchConfig, run_bench

MIB = 2**20


def _codepath(isolate: bool, lanes: tuple[str, ...]) -> tuple[float, float, str]:
    config = BenchConfig(
        lanes=lanes, variants=("short",), levels=("raw",), iterations=5, warmup=1, resamples=200
    )
    lane = run_bench(config, isolate=isolate).result.lanes["codepath"]
    agg = next(g for g in lane.summaries if g.pipeline == "dictation" and g.fixture is None)
    return lane.resources.maxRssBytes / MIB, agg.metrics["overhead_ms"].p50 * 1000, lane.process


@pytest.mark.engines
def test_codepath_lane_rss_alone_vs_after_provider_lane() -> None:
    alone = _codepath(True, ("codepath",))
    after = _codepath(True, ("provider", "codepath"))
    inline = _codepath(False, ("provider", "codepath"))
    print()
    for name, (rss, overhead, process) in (
        ("codepath alone (worker)", alone),
        ("codepath after provider (worker)", after),
        ("codepath after provider (inline, as before v2)", inline),
    ):
        print(f"{name:<48} max RSS {rss:6.0f} MiB   dictation overhead p50 {overhead:6.1f} µs   [{process}]")
    # the worker's high-water mark does not carry the provider lane's models
    assert after[0] < inline[0]
