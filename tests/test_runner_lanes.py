"""Lanes in their own worker processes, Ctrl-C keeping finished requests, load and machine records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voxperf.bench.runner import BenchConfig, parse_fake_latency, run_bench
from voxperf.errors import UsageError


def _config(tone_dir: Path, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "fixtures": tone_dir,
        "stt": "fake",
        "tts": "fake",
        "vad": "none",
        "levels": ("raw",),
        "iterations": 3,
        "warmup": 0,
        "resamples": 50,
    }
    base.update(kw)
    return BenchConfig(**base)  # type: ignore[arg-type]


def test_each_lane_runs_in_its_own_worker_process(tone_dir: Path) -> None:
    outcome = run_bench(_config(tone_dir, lanes=("provider", "codepath")))
    lanes = outcome.result.lanes
    assert {name: lane.process for name, lane in lanes.items()} == {
        "provider": "worker",
        "codepath": "worker",
    }
    # every request came back from the workers, with its raw stage times
    for lane in lanes.values():
        assert len(lane.runs) == 3 * (3 + 2)  # 3 iterations × (3 dictation fixtures + 2 with a transcript)
        assert all(r.stagesNs for r in lane.runs)
    # the provider lane's dictation runs become pipeline_timing events (in the parent)
    assert len(outcome.timing_events) == 3 * 3
    assert {e["event"]["name"] for e in outcome.timing_events} == {"pipeline_timing"}


def test_inline_lanes_share_the_process(tone_dir: Path) -> None:
    outcome = run_bench(_config(tone_dir, lanes=("codepath",)), isolate=False)
    assert outcome.result.lanes["codepath"].process == "inline"


@pytest.mark.parametrize("isolate", [True, False])
def test_ctrl_c_keeps_the_finished_requests_and_marks_the_result_incomplete(
    tone_dir: Path, isolate: bool
) -> None:
    calls: list[str] = []

    def progress(description: str, advance: int, total: int | None = None) -> None:
        if total is not None:
            return
        calls.append(description)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while the 4th request is announced

    config = _config(tone_dir, lanes=("codepath", "provider"), iterations=50)
    outcome = run_bench(config, progress=progress, isolate=isolate)
    result = outcome.result
    assert result.incomplete and outcome.incomplete
    assert list(result.lanes) == ["codepath"]  # the next lane never started
    runs = result.lanes["codepath"].runs
    assert 3 <= len(runs) < 50 * 5  # the requests that finished, not the whole plan
    assert any(f.kind == "incomplete" for f in result.lanes["codepath"].flags)
    assert any("interrupted" in w for w in outcome.warnings)


def test_machine_records_load_and_cpu_frequency(tone_dir: Path) -> None:
    result = run_bench(_config(tone_dir, lanes=("codepath",), iterations=1), isolate=False).result
    m = result.machine
    if hasattr(os, "getloadavg"):
        assert m.loadAverage1m is not None and m.loadAverageEnd1m is not None
    # where the kernel exposes no cpufreq (VMs), the governor is None rather than a guess
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    assert (m.cpuGovernor is not None) == governor.exists()


def test_fake_latency_needs_ms_or_s() -> None:
    assert parse_fake_latency("stt=60ms,rewrite=0.1s") == {"stt": pytest.approx(0.06), "rewrite": 0.1}
    with pytest.raises(UsageError, match="no unit"):
        parse_fake_latency("stt=60")
    with pytest.raises(UsageError, match="not accepted"):
        parse_fake_latency("stt=60us")


def test_target_ci_and_time_budget_stop_the_iterations(tone_dir: Path) -> None:
    from voxperf.bench.runner import BenchConfig, run_bench

    base = {
        "lanes": ("codepath",),
        "pipelines": ("dictation",),
        "fixtures": tone_dir,
        "levels": ("raw",),
        "fake_latency": {"stt": 0.05},  # 50 ms: even a loaded machine's overshoot keeps the CI < ±95 %
        "iterations": 3,
        "warmup": 0,
    }
    reached = run_bench(BenchConfig(**base, target_ci=0.95)).result.lanes["codepath"]  # type: ignore[arg-type]
    assert max(r.iteration for r in reached.runs) == 2  # the target was met at the minimum
    assert any(f.kind == "budget" and "target reached after 3" in f.message for f in reached.flags)
    spent = run_bench(BenchConfig(**base, target_ci=1e-9, max_time_s=1e-9)).result.lanes["codepath"]  # type: ignore[arg-type]
    assert any(f.kind == "budget" and "inconclusive within budget" in f.message for f in spent.flags)
    assert max(r.iteration for r in spent.runs) < 2  # stopped before the configured iterations
