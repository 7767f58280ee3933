"""The deterministic instrument: instructions per request under callgrind (codepath lane)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.errors import UsageError

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")


def _counts(tone_dir: Path, encode: str) -> dict[tuple[str, int], float]:
    config = BenchConfig(
        lanes=("codepath",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        levels=("raw",),
        iterations=2,
        warmup=1,
        encode=encode,
        instrument="instructions",
    )
    lane = run_bench(config).result.lanes["codepath"]
    assert lane.instrument == "instructions" and "callgrind" in lane.label
    # under valgrind the wall times are not figures: only instruction counts are summarised
    assert {m for g in lane.summaries for m in g.metrics} == {"instructions"}
    runs = [r for r in lane.runs if not r.warmup]
    assert all((r.metrics.get("instructions") or 0) > 1e6 for r in runs)  # a request is millions
    return {(r.fixture, r.iteration): float(r.metrics["instructions"] or 0) for r in runs}


@needs_valgrind
@pytest.mark.slow
def test_instruction_counts_repeat_and_see_extra_work(tone_dir: Path) -> None:
    plain = _counts(tone_dir, "none")
    again = _counts(tone_dir, "none")
    flac = _counts(tone_dir, "flac")
    for key, count in plain.items():
        assert abs(again[key] / count - 1) < 0.001  # the same work counts the same, whatever the load
        assert flac[key] > count * 1.02  # FLAC-encoding the audio is more work, and it shows


def test_instruction_counts_are_for_the_codepath_lane_only() -> None:
    with pytest.raises(UsageError, match="codepath lane only"):
        BenchConfig(lanes=("provider", "codepath"), instrument="instructions").validate()
    with pytest.raises(UsageError, match="instrument"):
        BenchConfig(instrument="cycles").validate()


@needs_valgrind
@pytest.mark.slow
def test_paired_instruction_counts_decide_in_one_round(tone_dir: Path, tmp_path: Path) -> None:
    """voxperf ab --instrument instructions: both workers under callgrind; same code repeats its
    counts, so one round decides; a heavier pipeline on the head (FLAC encode instead of none:
    more instructions per request) fails the gate."""
    from voxperf.bench.paired import Side, run_paired

    config = BenchConfig(
        lanes=("codepath",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        levels=("raw",),
        iterations=1,
        warmup=0,
        encode="none",
        instrument="instructions",
    )
    run = run_paired(config, Side("base"), Side("head", overrides={"encode": "flac"}), log_dir=tmp_path)
    (row,) = run.decision.rows
    assert row.change.metric == "instructions" and row.change.n == 3  # one pair per fixture
    assert row.verdict == "regression" and run.decision.failed and row.change.estimate > 1.005
    assert run.rounds == {"codepath": 1}
    assert set(next(iter(run.pairs.values()))) == {"instructions"}  # no wall times under valgrind
