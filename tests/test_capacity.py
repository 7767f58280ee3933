"""Capacity search against a known threshold (a stand-in for runs: exact, instant)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voxperf.load.capacity import Judgement, search_capacity


def _threshold(limit: float, calls: list[float]):  # type: ignore[no-untyped-def]
    def run_point(load: float) -> list[Judgement]:
        calls.append(load)
        ok = load <= limit
        return [Judgement(ok, saturated=load > 2 * limit, reasons=() if ok else ("missed latency_p95",))]

    return run_point


@given(st.floats(0.5, 500), st.floats(0.2, 4))
def test_the_bracket_holds_the_true_capacity_within_tolerance(limit: float, start: float) -> None:
    calls: list[float] = []
    result = search_capacity(_threshold(limit, calls), start=start, maximum=10_000, tolerance=0.05)
    best, worst = result.bracket
    if start > limit:
        assert best is None and worst == start and result.capacity is None
        return
    assert best is not None and worst is not None
    assert best <= limit < worst and (worst - best) / best <= 0.05 + 1e-9
    assert result.capacity == best and len(result.points) == len(calls) <= 20


@given(st.integers(1, 64), st.integers(1, 4))
def test_integer_loads_end_one_stream_apart(limit: int, start: int) -> None:
    calls: list[float] = []
    result = search_capacity(_threshold(limit, calls), start=start, maximum=1000, integer=True)
    if start > limit:
        assert result.capacity is None
        return
    assert result.bracket == (limit, limit + 1)
    assert all(float(c).is_integer() for c in calls)


def test_growth_stops_at_saturation_and_a_passing_maximum_ends_the_search() -> None:
    calls: list[float] = []
    result = search_capacity(_threshold(10, calls), start=1, maximum=1000, growth=32)
    assert result.stopped == "saturated" and result.points[1]["saturated"]  # 32 > 2 × 10
    calls.clear()
    assert search_capacity(_threshold(10, calls), start=2, maximum=8).stopped == "maximum passed"
    assert calls == [2, 4, 8]
