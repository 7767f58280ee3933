"""Property and example tests of voxperf.bench.stats (quantiles, bootstrap CIs, summaries)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.bench.stats import (
    QUANTILES,
    Summary,
    bootstrap_ci,
    bootstrap_quantile_cis,
    noise_notes,
    pooled_weights,
    quantile,
    summarize,
    summarize_weighted,
    weighted_bootstrap_quantile_cis,
    weighted_quantile,
)

FAST = settings(max_examples=60, deadline=None)
SLOW = settings(max_examples=20, deadline=None)  # examples that run a bootstrap

finite = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False
)
positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=30)
qs = st.floats(min_value=0.0, max_value=1.0)
# (value, integer weight) pairs; few distinct values so ties are common.
int_pairs = st.lists(
    st.tuples(finite | st.integers(-5, 5).map(float), st.integers(1, 5)), min_size=1, max_size=20
)
groups = st.lists(st.tuples(st.lists(finite, min_size=1, max_size=8), positive), min_size=1, max_size=4)


def _unzip(pairs: list[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    x, w = zip(*pairs, strict=True)
    return np.array(x, dtype=float), np.array(w, dtype=int)


# --- quantile --------------------------------------------------------------------------------


@FAST
@given(samples, qs)
def test_quantile_equals_numpy_type7(xs: list[float], q: float) -> None:
    assert quantile(xs, q) == float(np.quantile(np.array(xs), q))


@FAST
@given(samples, qs, qs)
def test_quantile_is_monotone_in_q(xs: list[float], q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    assert quantile(xs, lo) <= quantile(xs, hi)


@FAST
@given(samples, qs)
def test_quantile_is_within_min_max(xs: list[float], q: float) -> None:
    assert min(xs) <= quantile(xs, q) <= max(xs)


@FAST
@given(st.data(), samples, qs)
def test_quantile_is_permutation_invariant(data: st.DataObject, xs: list[float], q: float) -> None:
    shuffled = data.draw(st.permutations(xs))
    assert quantile(shuffled, q) == quantile(xs, q)


def test_quantile_known_values() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([10.0, 0.0], 0.25) == 2.5
    assert quantile([7.0], 0.99) == 7.0


@pytest.mark.parametrize(
    ("xs", "q", "match"),
    [
        ([], 0.5, "empty"),
        ([1.0, 2.0], -0.01, r"\[0, 1\]"),
        ([1.0, 2.0], 1.01, r"\[0, 1\]"),
        ([1.0, 2.0], math.nan, r"\[0, 1\]"),
        ([1.0, math.nan], 0.5, "NaN"),
        ([1.0, math.inf], 0.5, "infinity"),
    ],
)
def test_quantile_rejects_bad_input(xs: list[float], q: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        quantile(xs, q)


# --- weighted_quantile -----------------------------------------------------------------------


@FAST
@given(int_pairs, qs)
def test_weighted_quantile_matches_brute_force_expansion(pairs: list[tuple[float, int]], q: float) -> None:
    x, w = _unzip(pairs)
    expected = float(np.quantile(np.repeat(x, w), q))
    assert weighted_quantile(x, w, q) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@FAST
@given(samples, qs)
def test_weighted_quantile_with_unit_weights_equals_quantile(xs: list[float], q: float) -> None:
    assert weighted_quantile(xs, [1.0] * len(xs), q) == pytest.approx(quantile(xs, q), rel=1e-12, abs=1e-12)


@FAST
@given(int_pairs, st.integers(2, 6), st.sampled_from([0.0, 0.5, 1.0]))
def test_weighted_quantile_integer_scaling_keeps_min_median_max(
    pairs: list[tuple[float, int]], c: int, q: float
) -> None:
    # Scaling integer weights by c is the same as repeating every sample c times more. For type 7 that
    # keeps the min, median and max; other quantiles may move (see the next test).
    x, w = _unzip(pairs)
    assert weighted_quantile(x, w * c, q) == pytest.approx(weighted_quantile(x, w, q), rel=1e-12, abs=1e-12)


def test_weighted_quantile_depends_on_total_weight_like_the_expansion() -> None:
    # np.quantile([0, 1], 0.25) == 0.25 but np.quantile([0, 0, 1, 1], 0.25) == 0.0: type 7 over the
    # expansion is not invariant to scaling the weights, and neither is weighted_quantile.
    assert weighted_quantile([0.0, 1.0], [1, 1], 0.25) == 0.25
    assert weighted_quantile([0.0, 1.0], [2, 2], 0.25) == 0.0
    # Normalised pooled weights remove that dependence (summaries use them).
    for scale in (1.0, 2.0, 1000.0):
        values, weights = pooled_weights([([0.0, 1.0], scale)], normalize=True)
        assert weighted_quantile(values, weights, 0.25) == 0.25


@FAST
@given(int_pairs, qs, qs)
def test_weighted_quantile_is_monotone_in_q(pairs: list[tuple[float, int]], q1: float, q2: float) -> None:
    x, w = _unzip(pairs)
    lo, hi = sorted((q1, q2))
    assert weighted_quantile(x, w, lo) <= weighted_quantile(x, w, hi)


@FAST
@given(int_pairs, qs)
def test_weighted_quantile_is_within_min_max(pairs: list[tuple[float, int]], q: float) -> None:
    x, w = _unzip(pairs)
    assert x.min() <= weighted_quantile(x, w, q) <= x.max()


@FAST
@given(st.data(), int_pairs, qs)
def test_weighted_quantile_is_permutation_invariant(
    data: st.DataObject, pairs: list[tuple[float, int]], q: float
) -> None:
    shuffled = data.draw(st.permutations(pairs))
    assert weighted_quantile(*_unzip(shuffled), q) == weighted_quantile(*_unzip(pairs), q)


@FAST
@given(int_pairs, st.lists(finite, min_size=1, max_size=5), qs)
def test_weighted_quantile_ignores_zero_weights(
    pairs: list[tuple[float, int]], extra: list[float], q: float
) -> None:
    x, w = _unzip(pairs)
    with_zeros = weighted_quantile(np.concatenate([extra, x]), np.concatenate([[0] * len(extra), w]), q)
    assert with_zeros == weighted_quantile(x, w, q)


@FAST
@given(st.lists(st.tuples(st.lists(finite, min_size=1, max_size=8), positive), min_size=1, max_size=4), qs)
def test_weights_proportional_to_sample_counts_give_the_pooled_quantile(
    raw_groups: list[tuple[list[float], float]], q: float
) -> None:
    # Real-valued weights: fixture weight = n_g * r makes every sample weigh the same.
    r = raw_groups[0][1]
    proportional = [(xs, len(xs) * r) for xs, _ in raw_groups]
    values, weights = pooled_weights(proportional, normalize=True)
    pooled = np.concatenate([xs for xs, _ in raw_groups])
    assert weighted_quantile(values, weights, q) == pytest.approx(np.quantile(pooled, q), rel=1e-9, abs=1e-6)


def test_weighted_quantile_real_weights_interpolate_on_the_virtual_array() -> None:
    # W = 2.5, q = 1: h = 1.5 -> halfway between the elements at virtual positions 1 and 2.
    # Position 1 is the first sample whose cumulative weight (1.5) is > 1, position 2 (cw 2.5 > 2) the last.
    assert weighted_quantile([0.0, 10.0, 20.0], [1.0, 0.5, 1.0], 1.0) == 15.0
    # q = 0.5: h = 0.75 -> between position 0 (value 0) and position 1 (value 10).
    assert weighted_quantile([0.0, 10.0, 20.0], [1.0, 0.5, 1.0], 0.5) == 7.5


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0, -1.0], ">= 0"),
        ([0.0, 0.0], "all zero"),
        ([1.0], "one weight per sample"),
        ([1.0, math.nan], "NaN"),
    ],
)
def test_weighted_quantile_rejects_bad_weights(weights: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        weighted_quantile([1.0, 2.0], weights, 0.5)


# --- pooled_weights --------------------------------------------------------------------------


def test_pooled_weights_spread_each_fixture_weight_over_its_samples() -> None:
    values, weights = pooled_weights([([1.0, 2.0], 10.0), ([3.0, 4.0, 5.0, 6.0], 2.0), ([7.0], 0.0)])
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert weights.tolist() == [5.0, 5.0, 0.5, 0.5, 0.5, 0.5, 0.0]
    _, normalised = pooled_weights(
        [([1.0, 2.0], 10.0), ([3.0, 4.0, 5.0, 6.0], 2.0), ([7.0], 0.0)], normalize=True
    )
    assert normalised.sum() == pytest.approx(6.0)  # the 6 positively weighted samples
    assert normalised[:2].sum() / normalised[2:6].sum() == pytest.approx(5.0)  # ratio 10 : 2 kept


@pytest.mark.parametrize(
    ("bad_groups", "match"),
    [
        ([], "no groups"),
        ([([1.0], 0.0), ([2.0], 0.0)], "all group weights are zero"),
        ([([1.0], -1.0)], ">= 0"),
        ([([1.0], math.inf)], "finite"),
        ([([], 1.0)], "group 0 samples is empty"),
        ([([1.0], 1.0), ([1.0, math.nan], 1.0)], "group 1 samples contain NaN"),
    ],
)
def test_pooled_weights_rejects_bad_groups(bad_groups: list[tuple[list[float], float]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pooled_weights(bad_groups)


# --- bootstrap -------------------------------------------------------------------------------


@SLOW
@given(st.lists(finite, min_size=2, max_size=30), st.integers(0, 2**32 - 1))
def test_bootstrap_ci_is_ordered_bounded_and_deterministic(xs: list[float], seed: int) -> None:
    ci = bootstrap_ci(xs, np.median, resamples=200, seed=seed)
    lo, hi = ci
    assert lo <= hi
    assert min(xs) <= lo and hi <= max(xs)
    assert bootstrap_ci(xs, np.median, resamples=200, seed=seed) == ci


@SLOW
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.mean, np.median]))
def test_bootstrap_ci_contains_the_point_estimate_for_well_behaved_data(seed: int, stat: object) -> None:
    x = np.random.default_rng(seed).normal(100.0, 5.0, size=50)
    lo, hi = bootstrap_ci(x, stat, resamples=300, seed=seed)  # type: ignore[arg-type]
    assert lo <= stat(x) <= hi  # type: ignore[operator]
    assert hi - lo < 10.0  # about 4 standard errors of the mean/median, not the whole range


@pytest.mark.parametrize("confidence", [0.95, 0.80])
def test_bootstrap_ci_is_the_percentile_bootstrap_of_default_rng(confidence: float) -> None:
    # The definition, spelled out: resample rows drawn by np.random.default_rng(seed), statistic per
    # row, then the central `confidence` share of those statistics.
    x = np.random.default_rng(11).lognormal(3.0, 0.5, size=60)
    idx = np.random.default_rng(5).integers(0, x.size, size=(500, x.size))
    boot = np.array([np.median(x[row]) for row in idx])
    alpha = (1.0 - confidence) / 2.0
    expected = tuple(np.quantile(boot, [alpha, 1.0 - alpha]))
    assert bootstrap_ci(x, np.median, confidence=confidence, resamples=500, seed=5) == expected
    cis = bootstrap_quantile_cis(x, (0.5,), confidence=confidence, resamples=500, seed=5)
    assert cis[0.5] == pytest.approx(expected, rel=1e-12)


def test_bootstrap_ci_seed_matters_and_confidence_widens() -> None:
    x = np.random.default_rng(7).normal(100.0, 5.0, size=40)
    assert bootstrap_ci(x, np.mean, seed=0) != bootstrap_ci(x, np.mean, seed=1)
    lo90, hi90 = bootstrap_ci(x, np.mean, confidence=0.90)
    lo99, hi99 = bootstrap_ci(x, np.mean, confidence=0.99)
    assert lo99 < lo90 and hi90 < hi99


def test_bootstrap_ci_single_sample_and_bad_arguments() -> None:
    assert bootstrap_ci([4.5], np.mean) == (4.5, 4.5)
    assert bootstrap_quantile_cis([4.5]) == {q: (4.5, 4.5) for q in QUANTILES}
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], np.mean, confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0, 2.0], np.mean, resamples=0)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([], np.mean)


@SLOW
@given(st.lists(finite, min_size=2, max_size=30), st.integers(0, 1000))
def test_bootstrap_quantile_cis_share_resamples_with_bootstrap_ci(xs: list[float], seed: int) -> None:
    cis = bootstrap_quantile_cis(xs, resamples=150, seed=seed)
    assert set(cis) == set(QUANTILES)
    for q, (lo, hi) in cis.items():
        assert min(xs) <= lo <= hi <= max(xs)
        expected = bootstrap_ci(xs, lambda a, q=q: float(np.quantile(a, q)), resamples=150, seed=seed)
        assert (lo, hi) == pytest.approx(expected, rel=1e-12, abs=1e-9)


@SLOW
@given(groups, st.integers(0, 1000))
def test_weighted_bootstrap_is_ordered_bounded_and_deterministic(
    raw_groups: list[tuple[list[float], float]], seed: int
) -> None:
    cis = weighted_bootstrap_quantile_cis(raw_groups, resamples=150, seed=seed)
    everything = [x for xs, _ in raw_groups for x in xs]
    for lo, hi in cis.values():
        assert min(everything) <= lo <= hi <= max(everything)
    assert weighted_bootstrap_quantile_cis(raw_groups, resamples=150, seed=seed) == cis


@SLOW
@given(st.lists(finite, min_size=2, max_size=30), positive, st.integers(0, 1000))
def test_weighted_bootstrap_of_one_fixture_is_the_plain_bootstrap(
    xs: list[float], w: float, seed: int
) -> None:
    weighted = weighted_bootstrap_quantile_cis([(xs, w)], resamples=150, seed=seed)
    plain = bootstrap_quantile_cis(xs, resamples=150, seed=seed)
    for q in QUANTILES:
        assert weighted[q] == pytest.approx(plain[q], rel=1e-9, abs=1e-6)


def test_weighted_bootstrap_resamples_within_fixtures() -> None:
    # One sample per fixture: resampling within fixtures can only ever redraw the same data, so the CI
    # collapses onto the point estimate (pooled resampling across fixtures would spread it out).
    fixtures = [([1.0], 1.0), ([5.0], 2.0), ([9.0], 3.0)]
    values, weights = pooled_weights(fixtures, normalize=True)
    for q, (lo, hi) in weighted_bootstrap_quantile_cis(fixtures).items():
        assert lo == hi == pytest.approx(weighted_quantile(values, weights, q))


# --- summarize -------------------------------------------------------------------------------


def _assert_consistent(s: Summary) -> None:
    assert s.min <= s.p50 <= s.p95 <= s.p99 <= s.max
    assert s.min <= s.mean <= s.max
    assert s.stdev >= 0.0
    assert set(s.ci95) == {"p50", "p95", "p99"}
    for lo, hi in s.ci95.values():
        assert s.min <= lo <= hi <= s.max
    assert s.noisy or s.n >= 3


@SLOW
@given(samples)
def test_summarize_fields_are_consistent(xs: list[float]) -> None:
    s = summarize(xs, "ms", resamples=100)
    _assert_consistent(s)
    assert s.n == len(xs)
    assert s.unit == "ms"
    assert not s.weighted
    assert s.p50 == quantile(xs, 0.5)
    assert s.p99 == quantile(xs, 0.99)
    assert s.mean == pytest.approx(float(np.mean(xs)), rel=1e-9, abs=1e-6)
    assert s.stdev == (pytest.approx(float(np.std(xs, ddof=1)), rel=1e-9, abs=1e-9) if len(xs) > 1 else 0.0)


@SLOW
@given(finite, st.integers(3, 40))
def test_summarize_constant_samples_are_not_noisy(c: float, n: int) -> None:
    s = summarize([c] * n, resamples=100)
    assert not s.noisy
    assert s.stdev == 0.0
    assert s.mean == s.min == s.max == s.p50 == s.p99 == c
    assert s.ci95 == {"p50": (c, c), "p95": (c, c), "p99": (c, c)}
    assert all("p95 from" in note or "p99 from" in note for note in s.notes)  # only the tail caveats


def test_summarize_large_spread_is_noisy_with_a_note() -> None:
    s = summarize([10.0, 11.0, 9.0, 30.0, 10.5, 9.5] * 20)
    assert s.noisy
    assert any("stdev" in note and "of the mean" in note and "10%" in note for note in s.notes)


def test_summarize_stdev_threshold_is_ten_percent_of_the_mean() -> None:
    z = np.random.default_rng(3).normal(size=200)
    z = (z - z.mean()) / z.std(ddof=1)  # mean 0, sample stdev exactly 1
    calm = summarize(100.0 + 9.0 * z)
    jittery = summarize(100.0 + 11.0 * z)
    assert calm.notes == () and not calm.noisy
    assert jittery.noisy
    assert jittery.notes == ("stdev (11) is 11.0% of the mean (100) (noisy above 10%)",)


def test_summarize_small_samples_get_notes() -> None:
    s = summarize([100.0, 101.0, 99.0, 100.5, 99.5])
    assert "p99 from 5 samples is not reliable (needs >= 100)" in s.notes
    assert "p95 from 5 samples is not reliable (needs >= 20)" in s.notes
    assert not s.noisy  # a tail caveat alone is not noise
    two = summarize([100.0, 100.1])
    assert two.noisy
    assert any("needs >= 3" in note for note in two.notes)


def test_noise_notes_flags_a_wide_p50_ci() -> None:
    x = np.linspace(99.0, 101.0, 150)
    noisy, notes = noise_notes(x, {"p50": (60.0, 140.0)})
    assert noisy
    assert notes == ("p50 95% CI [60, 140] is 80 wide, 80.0% of p50 (100) (noisy above 20%)",)
    assert noise_notes(x, {"p50": (95.0, 105.0)}) == (False, ())


@pytest.mark.parametrize(("xs", "match"), [([], "empty"), ([1.0, math.nan, 2.0], "NaN at index 1")])
def test_summarize_rejects_bad_samples(xs: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        summarize(xs)


def test_summary_to_dict_is_json_ready_and_matches_the_schema() -> None:
    from voxperf.bench.schema import SummaryRecord

    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0], unit="x", resamples=200)
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["ci95"]["p50"] == list(s.ci95["p50"])
    assert d["notes"] == list(s.notes)
    record = SummaryRecord.model_validate(d)
    assert record.p95 == s.p95 and record.unit == "x" and record.weighted is False


# --- summarize_weighted ----------------------------------------------------------------------


@SLOW
@given(groups, st.lists(finite, min_size=1, max_size=8))
def test_summarize_weighted_ignores_zero_weight_fixtures(
    raw_groups: list[tuple[list[float], float]], ignored: list[float]
) -> None:
    base = summarize_weighted(raw_groups, resamples=100)
    with_zero = summarize_weighted([(ignored, 0.0), *raw_groups], resamples=100)
    assert with_zero == base
    _assert_consistent(base)
    assert base.weighted and base.n == sum(len(xs) for xs, _ in raw_groups)


@SLOW
@given(st.lists(finite, min_size=1, max_size=30), positive)
def test_summarize_weighted_of_one_fixture_equals_summarize(xs: list[float], w: float) -> None:
    weighted = summarize_weighted([(xs, w)], resamples=100)
    plain = summarize(xs, resamples=100)
    for field in ("mean", "p50", "p95", "p99", "min", "max", "stdev"):
        assert getattr(weighted, field) == pytest.approx(getattr(plain, field), rel=1e-9, abs=1e-6)


@SLOW
@given(groups, st.sampled_from([0.001, 3.0, 1e6]))
def test_summarize_weighted_depends_only_on_weight_ratios(
    raw_groups: list[tuple[list[float], float]], scale: float
) -> None:
    base = summarize_weighted(raw_groups, resamples=100)
    scaled = summarize_weighted([(xs, w * scale) for xs, w in raw_groups], resamples=100)
    for field in ("mean", "p50", "p95", "p99"):
        assert getattr(scaled, field) == pytest.approx(getattr(base, field), rel=1e-9, abs=1e-6)


def test_summarize_weighted_follows_the_heavier_fixture() -> None:
    small = list(np.linspace(10.0, 12.0, 10))
    big = list(np.linspace(100.0, 120.0, 10))
    heavy_small = summarize_weighted([(small, 9.0), (big, 1.0)])
    heavy_big = summarize_weighted([(small, 1.0), (big, 9.0)])
    assert 10.0 <= heavy_small.p50 <= 12.0
    assert 100.0 <= heavy_big.p50 <= 120.0
    assert heavy_small.mean == pytest.approx(0.9 * 11.0 + 0.1 * 110.0)


def test_summarize_weighted_never_averages_per_fixture_percentiles() -> None:
    a, b = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]
    s = summarize_weighted([(a, 1.0), (b, 1.0)])
    average_of_p50s = (quantile(a, 0.5) + quantile(b, 0.5)) / 2  # 11.0
    assert s.p50 == 6.5  # the p50 of the pooled [1, 2, 3, 10, 20, 30]
    assert s.p50 != average_of_p50s
    assert s.p99 == pytest.approx(quantile(a + b, 0.99))


def test_summarize_weighted_rejects_bad_groups() -> None:
    with pytest.raises(ValueError, match="all group weights are zero"):
        summarize_weighted([([1.0, 2.0], 0.0)])
    with pytest.raises(ValueError, match="NaN"):
        summarize_weighted([([1.0, math.nan], 1.0)])
    with pytest.raises(ValueError, match="no groups"):
        summarize_weighted([])
