"""The one schedule shared by bench, A/B and the paired gate (property tests)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voxperf.bench.schedule import round_jobs, rounds

names = st.lists(st.text("abcdef", min_size=1, max_size=3), unique=True, max_size=5)


@given(names, st.lists(st.booleans(), min_size=5, max_size=5), st.sampled_from([("raw",), ("raw", "clean")]))
def test_a_round_is_every_fixture_and_level_then_the_transcribed_fixtures_spoken(
    fixture_names: list[str], texts: list[bool], levels: tuple[str, ...]
) -> None:
    fixtures = list(zip(fixture_names, texts, strict=False))
    jobs = round_jobs(("dictation", "speech"), levels, fixtures)
    dictation = [j for j in jobs if j[0] == "dictation"]
    speech = [j for j in jobs if j[0] == "speech"]
    assert dictation == [("dictation", n, lvl) for n, _ in fixtures for lvl in levels]
    assert speech == [("speech", n, None) for n, t in fixtures if t]
    assert jobs == dictation + speech
    assert round_jobs(("speech",), levels, fixtures) == speech


@given(st.integers(0, 4), st.integers(1, 6))
def test_warm_up_rounds_come_first_then_exactly_the_iterations(warmup: int, iterations: int) -> None:
    got = list(rounds(warmup=warmup, iterations=iterations))
    assert [r.warm for r in got] == [True] * warmup + [False] * iterations
    assert [r.index for r in got] == list(range(warmup + iterations))
    assert [r.measured for r in got if not r.warm] == list(range(iterations))
    assert got[-1].phase == f"iteration {iterations}/{iterations}"


@given(st.integers(0, 3), st.integers(0, 20))
def test_a_stopping_rule_decides_each_measured_round_and_is_never_asked_in_warm_up(
    warmup: int, stop: int
) -> None:
    asked: list[int] = []

    def more(measured: int) -> bool:
        asked.append(measured)
        return measured < stop

    got = list(rounds(warmup=warmup, iterations=5, more=more))
    assert sum(not r.warm for r in got) == stop
    assert asked == list(range(stop + 1))  # once before each measured round, and once to stop
