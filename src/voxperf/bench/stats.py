"""Statistics of benchmark samples: quantiles, confidence intervals and noise checks.

Every number in a voxperf summary comes from this module. It is pure: numpy only, no I/O, no
global state; the bootstraps are deterministic for a given seed.

Quantiles of one fixture (``quantile``)
    Hyndman & Fan type 7, the linear interpolation that is numpy's default: with ``n`` sorted
    samples the ``q`` quantile sits at 0-based position ``h = (n - 1) * q`` and is interpolated
    between the samples at ``floor(h)`` and ``floor(h) + 1``.

Quantiles across fixtures (``mixture_quantile``)
    Fixture ``g`` has samples and a weight ``w_g`` (its audio duration; callers choose). Its type-7
    empirical CDF ``F_g`` is the inverse of the rule above: piecewise linear through the points
    ``(x_(i), (i - 1) / (n_g - 1))`` of its sorted samples, 0 below the smallest and 1 from the
    largest on; tied samples make it jump, and with a single sample it is a step. The aggregate is
    the quantile of the weighted mixture of the fixtures' distributions::

        F(x) = sum_g w_g F_g(x) / sum_g w_g        Q(q) = inf {x : F(x) >= q}

    interpolated linearly inside F's linear pieces. Consequences, all property-tested:

    * one fixture gives exactly ``np.quantile(samples, q)``;
    * the result depends on each fixture's distribution and weight, not on how many samples it
      has: a fixture measured once at 5.0 and one measured ten times at 5.0 count the same, and
      scaling every weight by one factor changes nothing;
    * per-fixture percentiles are never averaged: the mean of two p99s is not the p99 of anything.

    (Until this version the aggregate repeated each sample ``w_g / n_g`` times and took a type-7
    quantile of the pooled array. That depends on the sample counts: fixtures weighted 40/60 with
    values 0 and 1 gave a p50 of 0.5 with one sample each and 1.0 with ten.)

    ``mixture_mean`` is ``sum_g w_g mean_g / sum_g w_g``. ``effective_n`` is Kish's effective
    sample size ``(sum_g w_g)**2 / sum_g (w_g**2 / n_g)``: ``n`` for one fixture, ``G * n`` for
    ``G`` equally weighted fixtures of ``n`` samples, less when the weights are uneven.

Confidence intervals of quantiles (``quantile_ci``, ``mixture_quantile_ci``): Woodruff
    The CI of a quantile is read off a CI of the CDF, the way survey statistics treats stratified
    samples (Woodruff 1952). With ``pi_g = w_g / sum w`` and the estimate ``x = Q(q)``::

        p_g  = ((n_g - 1) F_g(x) + 1) / (n_g + 1)    for fixtures whose range contains x
        se^2 = sum_g pi_g^2 * n_g p_g (1 - p_g) / (n_g - 1)^2
        CI   = [Q(q - z se), Q(q + z se)]          (levels clipped to [0, 1]; z = 1.96 for 95%)

    ``n p (1 - p) / (n - 1)^2`` is the variance of a type-7 CDF value, which equals
    ``(n * ECDF - 1) / (n - 1)`` at the samples. ``p_g`` is F_g(x) moved to its plotting position:
    ``i / (n + 1)`` at the i-th smallest sample, the expected true CDF value there. A fixture wholly
    on one side of x, or with one sample, adds nothing. The plotting position matters where x is a
    fixture's smallest or largest sample: with the raw ``F_g(x)`` in {0, 1} such a fixture added no
    variance, and an aggregate p50 that falls between two fixtures of equal weight (F is flat at 0.5
    there) got a zero-width interval that never covered. For one fixture the interval is an
    interpolated order-statistic interval whose coverage hardly depends on the distribution. It
    never leaves the range of the data; where one fixture's samples cannot pin the quantile down it
    reaches into the neighbouring fixtures' data: wide rather than wrong. No resampling: cheap,
    deterministic, no seed.

    Measured 95% coverage and median width relative to the true value (benchmarks/
    test_ci_coverage.py; 2000 simulated data sets per row from lognormal (CV 10-40%), gamma,
    bimodal and shifted-exponential populations, truth computed from the populations)::

        aggregate p50, 5 samples per fixture
          7 scenarios (2-4 fixtures, overlapping to far apart)     0.967-1.000   width 0.28-0.92
          2 fixtures, 36 weight/distance/CV configurations         0.988 (worst 0.970)   0.59
          3 / 10 / 20 samples per fixture, 7 scenarios pooled       0.987 / 0.975 / 0.964
        one fixture p50, n = 5 / 10 / 20                           0.933 / 0.969 / 0.946
        one fixture p95 at n = 40, p99 at n = 200                  0.861 / 0.861
        aggregate p95 at n_eff = 40, p99 at n_eff = 200            0.837 / 0.858

    For contrast, on the same data: the stratified percentile bootstrap of ``mixture_quantile``
    covered 0.55-0.92 for the aggregate p50 at 5 samples per fixture (0.16 when the p50 falls
    between two fixtures: its interval cannot leave the resampled data), and the old byte-weighted
    pooled quantile with that bootstrap 0.40-0.90; the p95 CI from 10 samples covered 0.41.

    Limits. With 5 samples the p50 CI of one fixture is ``[min, max]``, which covers
    1 - 2 / 2**5 = 93.75% whatever the distribution: no interval inside the data does better. At
    the tail thresholds below no interval inside the data can reach 95% either: the true p95 exceeds
    the largest of 40 samples with probability 0.95**40 = 12.9%. Two-sided 95% becomes reachable at
    72 samples for p95 and 367 for p99.

Tails need samples (``MIN_SAMPLES_P95``, ``MIN_SAMPLES_P99``)
    p95 is reported only with an effective sample size of at least 40 and p99 with at least
    200. Below that a summary carries ``None`` for the quantile and its CI, with a note such as
    "p95 needs n >= 40 (have 10)": a p95 of 10 samples interpolates between the two largest, and its
    CI covered 41% (p99: 10%) in the simulation.

Changes between runs (``quantile_delta``): stratified bootstrap
    Base and head are each resampled within every fixture (2000 times by default), the mixture
    quantile is recomputed on each resample, and the central 95% of head - base (and of
    head / base - 1) is the CI. A CI that excludes 0 makes a change significant. Each side is
    seeded from its own data, so swapping base and head mirrors the result exactly. Measured with 5
    samples per fixture and no real change, 4.4-6.4% of p50 deltas were significant when the
    fixtures overlap, 9.6-11% when the p50 lies in the tail of the longest fixture, and 16% when it
    lies between two fixtures of equal weight (the CI covered the true change 0.84-0.96).

Corpus ratios (``ratio_of_sums_ci``)
    Corpus WER is sum(edits) / sum(reference words) over utterances, not the mean of per-utterance
    WERs. Its CI is the percentile bootstrap over utterances. It covers 0.80 with 5 utterances,
    0.86 with 10 and 0.93 with 40 (simulated utterances of 1 + Poisson(11) words with
    Beta(1, 9)-distributed error rates): with a handful of utterances it is optimistic.

When is a result noisy? (``noise_notes``)
    * fewer than 3 samples: the spread cannot be judged;
    * the p50 CI is so wide that a change the regression gate cares about could hide in it: its
      width is more than ``rel_threshold * |p50|`` and (when given) more than ``abs_threshold``.
      The thresholds are the gate's warning thresholds for the metric; without them only the
      first rule applies.

    Spread alone makes nothing noisy: a 20 µs stage whose p50 CI is ±5 µs varies by 25%, yet no
    change the gate would report (10% and 5 ms) can hide in it. Each reason becomes a plain-English
    note that gives the measured value and the threshold.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIN_SAMPLES",
    "MIN_SAMPLES_P95",
    "MIN_SAMPLES_P99",
    "QUANTILES",
    "Delta",
    "Groups",
    "Samples",
    "Summary",
    "bootstrap_ci",
    "bootstrap_quantile_cis",
    "effective_n",
    "mixture_mean",
    "mixture_quantile",
    "mixture_quantile_ci",
    "noise_notes",
    "paired_ratio_delta_ci",
    "quantile",
    "quantile_ci",
    "quantile_delta",
    "ratio_of_sums_ci",
    "summarize",
    "summarize_weighted",
]

Samples: TypeAlias = Sequence[float] | np.ndarray
Groups: TypeAlias = Sequence[tuple[Samples, float]]
_Floats: TypeAlias = npt.NDArray[np.float64]
_Ints: TypeAlias = npt.NDArray[np.int64]

QUANTILES: tuple[float, ...] = (0.50, 0.95, 0.99)

MIN_SAMPLES = 3  # below this the spread cannot be judged: noisy
MIN_SAMPLES_P95 = 40  # effective sample size below which p95 is not reported
MIN_SAMPLES_P99 = 200  # effective sample size below which p99 is not reported
_MIN_SAMPLES_FOR: dict[float, int] = {0.95: MIN_SAMPLES_P95, 0.99: MIN_SAMPLES_P99}

# Largest resample matrix built at once (elements); bounds memory for long sample lists.
_CHUNK_ELEMENTS = 1 << 21


# --- validation ------------------------------------------------------------------------------


def _as_samples(samples: Samples, name: str = "samples") -> _Floats:
    """Return samples as a 1-D float64 array, rejecting empty, non-1-D and non-finite input."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: at least one value is needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        kind = "NaN" if math.isnan(arr[first]) else "infinity"
        raise ValueError(
            f"{name} contain {kind} at index {first} ({int(bad.sum())} non-finite value(s)); "
            "only finite numbers can be summarised"
        )
    return arr


def _check_q(q: float) -> float:
    """Return q as a float, or raise ValueError unless 0 <= q <= 1."""
    qf = float(q)
    if not 0.0 <= qf <= 1.0:  # also rejects NaN
        raise ValueError(f"quantile q must be in [0, 1], got {q!r}")
    return qf


def _check_confidence(confidence: float) -> None:
    """Raise ValueError unless 0 < confidence < 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_bootstrap_args(confidence: float, resamples: int) -> None:
    """Raise ValueError unless 0 < confidence < 1 and resamples >= 1."""
    _check_confidence(confidence)
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")


def _parse_groups(groups: Groups) -> list[tuple[_Floats, float]]:
    """Validate (samples, weight) groups and return the positively weighted ones, samples sorted.

    Every group is validated (non-empty finite samples, finite weight >= 0); at least one weight must
    be positive."""
    parsed: list[tuple[_Floats, float]] = []
    for i, group in enumerate(groups):
        samples, weight = group
        arr = _as_samples(samples, name=f"group {i} samples")
        w = float(weight)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"group {i} weight must be finite and >= 0, got {weight!r}")
        parsed.append((arr, w))
    if not parsed:
        raise ValueError("no groups: at least one (samples, weight) group is needed")
    if not any(w > 0 for _, w in parsed):
        raise ValueError("all group weights are zero: at least one group needs a positive weight")
    return [(np.sort(arr), w) for arr, w in parsed if w > 0]


# --- quantiles -------------------------------------------------------------------------------


def _lerp(a: _Floats, b: _Floats, t: _Floats) -> _Floats:
    """Interpolate a + t * (b - a) exactly as numpy's quantile does (bounded, monotone in t)."""
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1.0 - t), out=out, where=t >= 0.5)
    return np.where(t == 0.0, a, out)


def quantile(samples: Samples, q: float) -> float:
    """The q quantile of samples: Hyndman-Fan type 7, numpy's default, so numbers match other tools.

    Raises ValueError on empty or non-finite samples, or q outside [0, 1]."""
    x = _as_samples(samples)
    return float(np.quantile(x, _check_q(q)))


def _type7_cdf(s: _Floats, x: float) -> float:
    """F_g(x): the type-7 empirical CDF of sorted samples s at x (right-continuous; a step for n = 1)."""
    n = s.size
    c = int(np.searchsorted(s, x, side="right"))
    if c == 0:
        return 0.0
    if c == n:
        return 1.0
    return (c - 1 + (x - float(s[c - 1])) / (float(s[c]) - float(s[c - 1]))) / (n - 1)


class _Mixture:
    """The weighted mixture of type-7 CDFs of fixed sorted groups, evaluated on resample *counts*.

    A resample of group g is described by how often it drew each of the group's sorted samples
    (``counts``, shape (rows, n_g)); the original data (counts all 1) is one row. Every value a
    resample can contain is one of the original samples, so F of any row is linear between
    consecutive points of one shared ``grid`` (the sorted distinct samples of all groups). The
    quantile is found by bisection on that grid: per row, O(G log(grid)) work after O(N) set-up.
    Groups are stacked into arrays padded to the largest n, so each step is a few numpy operations.
    """

    def __init__(self, groups: list[tuple[_Floats, float]]) -> None:
        sizes = [s.size for s, _ in groups]
        self.n = np.array(sizes, dtype=np.int64)[:, None]  # (G, 1)
        width = max(sizes)
        self.values = np.stack([np.pad(s, (0, width - s.size), mode="edge") for s, _ in groups])
        raw = np.array([w for _, w in groups], dtype=np.float64)
        # Scale by a power of two (exact) so the largest weight is in [0.5, 1).
        self.weights = np.ldexp(raw, -int(np.frexp(raw.max())[1]))
        total = 0.0
        for w in self.weights:  # summed in the order cdf() below sums, so F == total exactly at the top
            total = total + float(w)
        self.total = total
        self.grid = np.unique(np.concatenate([s for s, _ in groups]))
        # samples of each group <= grid[k] (right) and < grid[k] (left): shape (G, len(grid))
        self.right = np.stack([np.searchsorted(s, self.grid, side="right") for s, _ in groups])
        self.left = np.stack([np.searchsorted(s, self.grid, side="left") for s, _ in groups])

    def quantiles(self, counts: list[_Ints], qs: Sequence[float]) -> _Floats:
        """Mixture quantiles of each row of resample counts: shape (len(qs), rows)."""
        groups, width = self.values.shape
        rows = counts[0].shape[0]
        drawn = np.zeros((groups, rows, width), dtype=np.int64)
        for g, m in enumerate(counts):
            drawn[g, :, : m.shape[1]] = m
        cum = np.zeros((groups, rows, width + 1), dtype=np.int64)
        np.cumsum(drawn, axis=2, out=cum[:, :, 1:])
        pos = np.arange(width)
        present = drawn > 0
        last = np.maximum.accumulate(np.where(present, pos, 0), axis=2)  # last drawn position <= j
        nxt = np.minimum.accumulate(np.where(present, pos, width - 1)[:, :, ::-1], axis=2)[:, :, ::-1]
        gi = np.arange(groups)[:, None]
        ri = np.arange(rows)[None, :]
        n = self.n
        denominator = np.maximum(n - 1, 1)

        def cdf(k: _Ints, left: bool) -> _Floats:
            """Unnormalised F(grid[k]) per row (or its left limit): sum_g w_g F_g."""
            v = self.grid[k]
            j = (self.left if left else self.right)[:, k]  # (G, rows)
            c = cum[gi, ri, j]  # samples of each row's resample <= grid[k] (< for the left limit)
            lo = self.values[gi, last[gi, ri, np.maximum(j - 1, 0)]]  # largest drawn value <= v (< v)
            hi = self.values[gi, nxt[gi, ri, np.minimum(j, n - 1)]]  # smallest drawn value > v (>= v)
            inside = (c >= 1) & (c < n)  # never for a group of one sample: its CDF is a step
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(inside, (v - lo) / (hi - lo), 0.0)
            value = np.where(inside, ((c - 1) + frac) / denominator, np.where(c >= n, 1.0, 0.0))
            total = np.zeros(rows, dtype=np.float64)
            for g in range(groups):
                total = total + self.weights[g] * value[g]
            return total

        out = np.empty((len(qs), rows), dtype=np.float64)
        size = self.grid.size
        for qi, q in enumerate(qs):
            if q == 0.0:  # the smallest value any group drew
                out[qi] = np.min(self.values[gi, nxt[:, :, 0]], axis=0)
                continue
            if q == 1.0:  # the largest
                out[qi] = np.max(self.values[gi, last[gi, ri, n - 1]], axis=0)
                continue
            target = q * self.total
            # Bisection for the first grid index k with F(grid[k]) >= target (F(grid[-1]) == total).
            lo_k = np.full(rows, -1, dtype=np.int64)
            hi_k = np.full(rows, size - 1, dtype=np.int64)
            for _ in range(max(1, math.ceil(math.log2(size + 1)))):
                active = hi_k - lo_k > 1
                if not active.any():
                    break
                mid = (lo_k + hi_k) // 2
                reached = cdf(np.maximum(mid, 0), left=False) >= target
                hi_k = np.where(active & reached, mid, hi_k)
                lo_k = np.where(active & ~reached, mid, lo_k)
            k = hi_k
            prev = np.maximum(k - 1, 0)
            f_prev = cdf(prev, left=False)  # F at the previous grid point; F is linear up to grid[k]
            f_left = cdf(k, left=True)  # F just below grid[k]; F jumps at grid[k] when f_left < target
            inside = (k > 0) & (f_left >= target)
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.clip(np.where(inside, (target - f_prev) / (f_left - f_prev), 1.0), 0.0, 1.0)
            out[qi] = np.where(inside, _lerp(self.grid[prev], self.grid[k], frac), self.grid[k])
        return out


class _Point:
    """Mixture quantiles of the original (not resampled) data of parsed groups; the set-up is shared
    by every level asked for. One group is numpy's type-7 quantile itself."""

    def __init__(self, groups: list[tuple[_Floats, float]]) -> None:
        self.groups = groups
        self.mixture = _Mixture(groups) if len(groups) > 1 else None

    def __call__(self, qs: Sequence[float]) -> list[float]:
        if self.mixture is None:
            return [float(v) for v in np.quantile(self.groups[0][0], qs)]
        ones = [np.ones((1, s.size), dtype=np.int64) for s, _ in self.groups]
        return [float(v) for v in self.mixture.quantiles(ones, qs)[:, 0]]


def mixture_quantile(groups: Groups, q: float) -> float:
    """The q quantile of the weighted mixture of the groups' type-7 CDFs (see the module docstring).

    groups are (samples, weight) pairs, e.g. one per fixture weighted by its audio duration; weight-0
    groups are ignored. One group gives exactly np.quantile(samples, q). Raises ValueError on empty or
    non-finite samples, negative or all-zero weights, or q outside [0, 1]."""
    qf = _check_q(q)
    return _Point(_parse_groups(groups))((qf,))[0]


def _mixture_mean(groups: list[tuple[_Floats, float]]) -> float:
    """sum_g w_g mean_g / sum_g w_g of parsed groups, clipped to the data's range against rounding."""
    total = sum(w for _, w in groups)
    mean = sum(w / total * float(np.mean(s)) for s, w in groups)
    return min(max(mean, min(float(s[0]) for s, _ in groups)), max(float(s[-1]) for s, _ in groups))


def mixture_mean(groups: Groups) -> float:
    """The mean of the weighted mixture: sum_g w_g mean_g / sum_g w_g (weight-0 groups ignored)."""
    return _mixture_mean(_parse_groups(groups))


def _effective_n(groups: list[tuple[_Floats, float]]) -> float:
    """Kish's effective sample size of parsed groups (see effective_n)."""
    total = sum(w for _, w in groups)
    return 1.0 / sum((w / total) ** 2 / s.size for s, w in groups)


def effective_n(groups: Groups) -> float:
    """Kish's effective sample size (sum w)^2 / sum(w_g^2 / n_g): n for one group, G*n for G equal ones."""
    return _effective_n(_parse_groups(groups))


# --- confidence intervals of quantiles (Woodruff) --------------------------------------------


def _z(confidence: float) -> float:
    """The standard normal quantile for a two-sided interval: 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _woodruff_levels(
    groups: list[tuple[_Floats, float]], q: float, x: float, confidence: float
) -> tuple[float, float]:
    """The probability levels (q - z se, q + z se), clipped to [0, 1], of the Woodruff interval of the
    mixture q quantile whose estimate is x (module docstring)."""
    total = sum(w for _, w in groups)
    var = 0.0
    for s, w in groups:
        n = s.size
        if n > 1 and s[0] <= x <= s[-1]:  # fixtures wholly on one side of x contribute nothing
            p = ((n - 1) * _type7_cdf(s, x) + 1.0) / (n + 1)  # plotting position: i / (n + 1) at x_(i)
            var += (w / total) ** 2 * n * p * (1.0 - p) / (n - 1) ** 2
    half = _z(confidence) * math.sqrt(var)
    return max(0.0, q - half), min(1.0, q + half)


def _woodruff(
    point: _Point, qs: Sequence[float], confidence: float
) -> tuple[list[float], list[tuple[float, float]]]:
    """Estimates and Woodruff intervals of the mixture quantiles qs."""
    estimates = point(qs)
    levels = [
        lv
        for q, x in zip(qs, estimates, strict=True)
        for lv in _woodruff_levels(point.groups, q, x, confidence)
    ]
    ends = point(levels)
    cis = [(min(ends[2 * i], x), max(ends[2 * i + 1], x)) for i, x in enumerate(estimates)]
    return estimates, cis


def quantile_ci(samples: Samples, q: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval (lo, hi) of the q quantile of samples: Woodruff, see the module docstring.

    For one sample list this is [Q(q - z se), Q(q + z se)] with se = sqrt(n p(1-p)) / (n - 1) and
    p = ((n - 1) q + 1) / (n + 1): an interpolated order-statistic interval whose coverage hardly
    depends on the distribution."""
    x = _as_samples(samples)
    qf = _check_q(q)
    _check_confidence(confidence)
    return _woodruff(_Point([(np.sort(x), 1.0)]), (qf,), confidence)[1][0]


def mixture_quantile_ci(groups: Groups, q: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval (lo, hi) of mixture_quantile(groups, q): Woodruff, see the module docstring.

    Deterministic (no resampling); stays inside the range of the data; weight-0 groups are ignored."""
    qf = _check_q(q)
    _check_confidence(confidence)
    return _woodruff(_Point(_parse_groups(groups)), (qf,), confidence)[1][0]


# --- bootstrap -------------------------------------------------------------------------------


def _resample_indices(n: int, resamples: int, rng: np.random.Generator) -> Iterator[_Ints]:
    """Yield (rows, n) matrices of indices drawn with replacement, ``resamples`` rows in total."""
    rows = max(1, _CHUNK_ELEMENTS // n)
    done = 0
    while done < resamples:
        m = min(rows, resamples - done)
        yield rng.integers(0, n, size=(m, n))
        done += m


def _percentile_interval(boot: _Floats, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap statistics (percentile method)."""
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, (alpha, 1.0 - alpha))
    return float(lo), float(hi)


def bootstrap_ci(
    samples: Samples,
    stat: Callable[[np.ndarray], float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval (lo, hi) of ``stat(samples)``: how far it could move.

    Deterministic for a given seed; with a single sample every resample is that sample."""
    x = _as_samples(samples)
    _check_bootstrap_args(confidence, resamples)
    if x.size == 1:
        value = float(stat(x))
        return value, value
    boot = np.empty(resamples, dtype=np.float64)
    start = 0
    for idx in _resample_indices(x.size, resamples, np.random.default_rng(seed)):
        resampled = x[idx]
        for row in resampled:
            boot[start] = float(stat(row))
            start += 1
    if not np.isfinite(boot).all():
        raise ValueError("stat returned NaN or infinity on a bootstrap resample")
    return _percentile_interval(boot, confidence)


def bootstrap_quantile_cis(
    samples: Samples,
    qs: Sequence[float] = QUANTILES,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[float, tuple[float, float]]:
    """Percentile-bootstrap CI of each quantile in qs (keys), all from one shared set of resamples.

    Used for paired differences (A/B); summaries use the better-covering quantile_ci instead."""
    x = _as_samples(samples)
    qf = tuple(_check_q(q) for q in qs)
    _check_bootstrap_args(confidence, resamples)
    if x.size == 1:
        return {q: (float(x[0]), float(x[0])) for q in qf}
    boot = np.empty((len(qf), resamples), dtype=np.float64)
    start = 0
    for idx in _resample_indices(x.size, resamples, np.random.default_rng(seed)):
        boot[:, start : start + idx.shape[0]] = np.quantile(x[idx], qf, axis=1)
        start += idx.shape[0]
    return {q: _percentile_interval(boot[j], confidence) for j, q in enumerate(qf)}


def _counts(n: int, rows: int, rng: np.random.Generator) -> _Ints:
    """How often each of n positions is drawn in each of ``rows`` resamples of size n: (rows, n)."""
    idx = rng.integers(0, n, size=(rows, n))
    flat = (idx + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.int64)


def _mixture_boot(
    groups: list[tuple[_Floats, float]], qs: Sequence[float], resamples: int, rng: np.random.Generator
) -> _Floats:
    """Stratified bootstrap distributions (len(qs), resamples) of mixture quantiles: every group is
    resampled within itself, so each resample keeps the fixture mix."""
    boot = np.empty((len(qs), resamples), dtype=np.float64)
    if len(groups) == 1:
        s = groups[0][0]
        start = 0
        for idx in _resample_indices(s.size, resamples, rng):
            boot[:, start : start + idx.shape[0]] = np.quantile(s[idx], qs, axis=1)
            start += idx.shape[0]
        return boot
    mix = _Mixture(groups)
    per_row = len(groups) * (max(s.size for s, _ in groups) + 1)
    rows = max(1, _CHUNK_ELEMENTS // (4 * per_row))
    start = 0
    while start < resamples:
        m = min(rows, resamples - start)
        counts = [_counts(s.size, m, rng) for s, _ in groups]
        boot[:, start : start + m] = mix.quantiles(counts, qs)
        start += m
    return boot


def ratio_of_sums_ci(
    numerators: Samples,
    denominators: Samples,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of sum(numerators) / sum(denominators), resampling items (utterances).

    Corpus WER is sum(edits) / sum(reference words); denominators must be > 0. One item gives
    (value, value). Deterministic for a given seed."""
    num = _as_samples(numerators, "numerators")
    den = _as_samples(denominators, "denominators")
    if num.size != den.size:
        raise ValueError(f"numerators ({num.size}) and denominators ({den.size}) differ in length")
    if (den <= 0).any():
        raise ValueError(f"denominators must be > 0, got {float(den.min())!r}")
    _check_bootstrap_args(confidence, resamples)
    value = float(num.sum() / den.sum())
    if num.size == 1:
        return value, value
    boot = np.empty(resamples, dtype=np.float64)
    start = 0
    for idx in _resample_indices(num.size, resamples, np.random.default_rng(seed)):
        boot[start : start + idx.shape[0]] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
        start += idx.shape[0]
    lo, hi = _percentile_interval(boot, confidence)
    return min(lo, value), max(hi, value)


def paired_ratio_delta_ci(
    base_numerators: Samples,
    head_numerators: Samples,
    denominators: Samples,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """head − base of sum(numerators) / sum(denominators) on the same items, with a paired bootstrap CI.

    The items (utterances) are resampled once and used on both sides, so what the two runs share
    cancels: the corpus-WER change of one engine against another on the same utterances.
    Deterministic for a given seed."""
    b = _as_samples(base_numerators, "base numerators")
    h = _as_samples(head_numerators, "head numerators")
    den = _as_samples(denominators, "denominators")
    if not b.size == h.size == den.size:
        raise ValueError("base numerators, head numerators and denominators must have one value per item")
    if (den <= 0).any():
        raise ValueError(f"denominators must be > 0, got {float(den.min())!r}")
    _check_bootstrap_args(confidence, resamples)
    delta = float((h.sum() - b.sum()) / den.sum())
    if b.size == 1:
        return delta, (delta, delta)
    boot = np.empty(resamples, dtype=np.float64)
    start = 0
    for idx in _resample_indices(b.size, resamples, np.random.default_rng(seed)):
        boot[start : start + idx.shape[0]] = (h[idx].sum(axis=1) - b[idx].sum(axis=1)) / den[idx].sum(axis=1)
        start += idx.shape[0]
    lo, hi = _percentile_interval(boot, confidence)
    return delta, (min(lo, delta), max(hi, delta))


@dataclass(frozen=True, slots=True)
class Delta:
    """head − base of one quantile, with bootstrap CIs of the absolute and relative change."""

    base: float
    head: float
    abs: float
    rel: float | None  # None when base (or a resampled base) is 0 or the ratio overflows
    abs_ci: tuple[float, float]
    rel_ci: tuple[float, float] | None


def _data_seed(groups: list[tuple[_Floats, float]]) -> int:
    """A seed derived from the data itself (order-independent)."""
    return zlib.crc32(np.sort(np.concatenate([arr for arr, _ in groups])).tobytes())


def quantile_delta(
    base: Groups,
    head: Groups,
    q: float = 0.5,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int | None = None,
) -> Delta:
    """Change of the mixture q quantile from base to head, with stratified percentile-bootstrap CIs.

    Base and head are resampled independently (within each fixture), so the CI of the difference
    reflects the noise of both runs; a CI that excludes 0 means the change is significant at
    ``confidence``. Each side's resampling is seeded from its own data (plus ``seed``), so swapping
    base and head mirrors the result exactly. Pass one group per side for a single fixture."""
    qf = _check_q(q)
    _check_bootstrap_args(confidence, resamples)
    b = _parse_groups(base)
    h = _parse_groups(head)
    base_q = _Point(b)((qf,))[0]
    head_q = _Point(h)((qf,))[0]
    extra = seed or 0
    base_boot = _mixture_boot(b, (qf,), resamples, np.random.default_rng([_data_seed(b), extra]))[0]
    head_boot = _mixture_boot(h, (qf,), resamples, np.random.default_rng([_data_seed(h), extra]))[0]
    rel: float | None = None
    rel_ci: tuple[float, float] | None = None
    if base_q != 0 and np.all(base_boot != 0):
        with np.errstate(over="ignore"):
            ratios = head_boot / base_boot - 1.0
        if np.isfinite(ratios).all():
            rel = head_q / base_q - 1.0
            rel_ci = _percentile_interval(ratios, confidence)
    return Delta(
        base_q, head_q, head_q - base_q, rel, _percentile_interval(head_boot - base_boot, confidence), rel_ci
    )


# --- summaries -------------------------------------------------------------------------------


def _qkey(q: float) -> str:
    """Name a quantile the way summaries do: 0.5 -> 'p50', 0.999 -> 'p99.9'."""
    return f"p{round(q * 100, 6):g}"


@dataclass(frozen=True, slots=True)
class Summary:
    """Summary statistics of one metric; ``to_dict`` matches the result schema's SummaryRecord.

    p95 and p99 are None when the effective sample size is below MIN_SAMPLES_P95 / MIN_SAMPLES_P99
    (a note says so); ``ci95`` holds a CI only for the quantiles that are reported."""

    n: int
    unit: str
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p95: float | None
    p99: float | None
    ci95: dict[str, tuple[float, float]]
    noisy: bool
    notes: tuple[str, ...]
    weighted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: CIs as [lo, hi] lists and notes as a list."""
        return {
            "n": self.n,
            "unit": self.unit,
            "mean": self.mean,
            "stdev": self.stdev,
            "min": self.min,
            "max": self.max,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "ci95": {key: [lo, hi] for key, (lo, hi) in self.ci95.items()},
            "noisy": self.noisy,
            "notes": list(self.notes),
            "weighted": self.weighted,
        }


def _fmt(value: float) -> str:
    """Format a number for a note: 4 significant digits."""
    return f"{value:.4g}"


def _check_threshold(value: float | None, name: str) -> float | None:
    """Return a noise threshold as a float (or None), rejecting negative, infinite and NaN values."""
    if value is None:
        return None
    v = float(value)
    if not v >= 0.0 or math.isinf(v):  # also rejects NaN
        raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    return v


def noise_notes(
    samples: Samples,
    ci95: dict[str, tuple[float, float]],
    *,
    p50: float | None = None,
    rel_threshold: float | None,
    abs_threshold: float | None,
) -> tuple[bool, tuple[str, ...]]:
    """(noisy, notes): whether a result is too noisy to trust and why, by the module docstring's rules.

    Noisy with fewer than 3 samples, or when the p50 CI (``ci95["p50"]``) is wider than
    rel_threshold * |p50| and, if given, wider than abs_threshold: a change of the size the regression
    gate reports could hide in it. A threshold that is None does not constrain; both None leaves only
    the sample-count rule. p50 defaults to the samples' (pass the weighted one for a mixture)."""
    x = _as_samples(samples)
    rel_t = _check_threshold(rel_threshold, "rel_threshold")
    abs_t = _check_threshold(abs_threshold, "abs_threshold")
    n = int(x.size)
    noisy = False
    notes: list[str] = []
    if n < MIN_SAMPLES:
        noisy = True
        notes.append(f"only {n} sample(s): spread cannot be judged (needs >= {MIN_SAMPLES})")
    if "p50" in ci95 and (rel_t is not None or abs_t is not None):
        median = float(np.quantile(x, 0.5)) if p50 is None else float(p50)
        lo, hi = (float(v) for v in ci95["p50"])
        width = hi - lo
        limits: list[str] = []
        wide = True
        if rel_t is not None:
            wide = wide and width > rel_t * abs(median)
            limits.append(f"{rel_t:.0%} of p50 ({_fmt(rel_t * abs(median))})")
        if abs_t is not None:
            wide = wide and width > abs_t
            limits.append(_fmt(abs_t))
        if wide:
            noisy = True
            notes.append(
                f"p50 95% CI [{_fmt(lo)}, {_fmt(hi)}] is {_fmt(width)} wide, more than "
                f"{' and '.join(limits)}: a change the gate reports could hide in it"
            )
    return noisy, tuple(notes)


def _spread(x: _Floats, mean: float) -> tuple[float, float, float, float]:
    """(mean, stdev, min, max) with exact values for constant samples; mean clipped to [min, max]."""
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return lo, 0.0, lo, hi
    stdev = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return min(max(mean, lo), hi), stdev, lo, hi


def _fmt_n(n: float) -> str:
    """An (effective) sample size for a note: '10', or '11.2' when it is not whole."""
    return f"{n:.0f}" if abs(n - round(n)) < 1e-6 else f"{n:.1f}"


def _summary(
    groups: list[tuple[_Floats, float]],
    values: _Floats,
    unit: str,
    mean: float,
    *,
    weighted: bool,
    rel_threshold: float | None,
    abs_threshold: float | None,
) -> Summary:
    """Quantiles, CIs, tail gating and the noise verdict, shared by the plain and weighted summaries."""
    mean, stdev, lo, hi = _spread(values, mean)
    n_eff = _effective_n(groups)
    reported = [q for q in QUANTILES if n_eff * (1.0 + 1e-9) >= _MIN_SAMPLES_FOR.get(q, 1)]
    points, cis = _woodruff(_Point(groups), reported, 0.95)
    estimates = dict(zip(reported, points, strict=True))
    ci95 = {_qkey(q): ci for q, ci in zip(reported, cis, strict=True)}
    noisy, notes = noise_notes(
        values, ci95, p50=estimates[0.5], rel_threshold=rel_threshold, abs_threshold=abs_threshold
    )
    tail_notes = tuple(
        f"{_qkey(q)} needs n >= {_MIN_SAMPLES_FOR[q]} (have {_fmt_n(n_eff)})"
        for q in QUANTILES
        if q not in estimates
    )
    return Summary(
        n=int(values.size),
        unit=unit,
        mean=mean,
        stdev=stdev,
        min=lo,
        max=hi,
        p50=estimates[0.5],
        p95=estimates.get(0.95),
        p99=estimates.get(0.99),
        ci95=ci95,
        noisy=noisy,
        notes=notes + tail_notes,
        weighted=weighted,
    )


def summarize(
    samples: Samples,
    unit: str = "ms",
    *,
    rel_threshold: float | None = None,
    abs_threshold: float | None = None,
) -> Summary:
    """Summarise one metric's samples: mean, stdev, p50 (p95, p99 when n allows) with 95% CIs, noise.

    rel_threshold/abs_threshold are the regression gate's thresholds for the metric (see noise_notes).
    CIs are Woodruff intervals (no resampling, no seed). Raises ValueError on empty input or NaN/infinity."""
    x = _as_samples(samples)
    return _summary(
        [(np.sort(x), 1.0)],
        x,
        unit,
        float(np.mean(x)),
        weighted=False,
        rel_threshold=rel_threshold,
        abs_threshold=abs_threshold,
    )


def summarize_weighted(
    groups: Groups,
    unit: str = "ms",
    *,
    rel_threshold: float | None = None,
    abs_threshold: float | None = None,
) -> Summary:
    """Summarise fixtures as one: mixture quantiles and mean (weights e.g. audio durations), Woodruff CIs.

    n/stdev/min/max are of the pooled raw samples of positively weighted groups; p95/p99 are gated on
    effective_n. CIs are Woodruff intervals (no resampling)."""
    parsed = _parse_groups(groups)
    return _summary(
        parsed,
        np.concatenate([s for s, _ in parsed]),
        unit,
        _mixture_mean(parsed),
        weighted=True,
        rel_threshold=rel_threshold,
        abs_threshold=abs_threshold,
    )
