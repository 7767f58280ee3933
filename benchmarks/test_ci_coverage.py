"""How often do voxperf's 95% confidence intervals cover the true value? A simulation, printed as a table.

Run: .venv/bin/python -m pytest benchmarks/test_ci_coverage.py -s -p no:cacheprovider   (a few minutes)

Every row draws TRIALS data sets from known populations (lognormal with CV 10-40%, gamma, bimodal,
shifted exponential; see tests/test_stats.py), computes the interval and checks it against the true
value computed from the populations. "cover" is the share of intervals that contain the truth,
"width" the median interval width relative to the true value. Columns:

* shipped     what voxperf.bench.stats reports now (Woodruff intervals; for deltas and corpus WER
              the bootstrap);
* percentile  the stratified percentile bootstrap of the same estimator (the rejected alternative);
* old         the estimator before this change: every sample of fixture g weighted w_g / n_g,
              renormalised to the sample count, type-7 quantile of that virtual array, stratified
              percentile bootstrap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tests.conftest import (
    SCENARIOS,
    Bimodal,
    Gamma,
    Lognormal,
    Population,
    ShiftedExp,
    true_mixture_quantile,
)

from voxperf.bench import stats

TRIALS = 2000
RESAMPLES = 1000  # bootstrap resamples for the comparison columns
SEED = 20261201

Floats = npt.NDArray[np.float64]
Grouped = list[tuple[Floats, float]]
Interval = tuple[float, float]

SINGLE: list[Population] = [
    Lognormal(100, 0.10),
    Lognormal(100, 0.40),
    Gamma(100, 16),
    Bimodal((55, 3), (80, 5), 0.3),
    ShiftedExp(40, 15),
]
# Latency grows with audio duration and the weights are durations: the aggregate p50 lies in the
# lower tail of the longest fixture (its 15th percentile here), which 5 samples cannot pin down.
SEPARATED: dict[str, tuple[list[Population], list[float]]] = {
    "3 by duration 2s/5s/10s (CV 10/20/40%)": (
        [Lognormal(200, 0.10), Lognormal(500, 0.20), Lognormal(1000, 0.40)],
        [2.0, 5.0, 10.0],
    ),
    "3 by duration 2s/5s/10s (CV 10%)": (
        [Lognormal(200, 0.10), Lognormal(500, 0.10), Lognormal(1000, 0.10)],
        [2.0, 5.0, 10.0],
    ),
}
AGGREGATE = {**SCENARIOS, **SEPARATED}
# GRID: two fixtures, lognormal (mean 100) and gamma (mean 100 * ratio) with CV 10% or 30%, ratio
# 1 / 1.1 / 1.2 / 1.5 / 2 / 3, weights 1:1, 1:2, 1:4 (36 configurations): from overlapping fixtures to a
# p50 that falls in the gap between them.


# --- the old estimator, kept here only for contrast --------------------------------------------


def _old_weighted_quantile_rows(values: Floats, weights: Floats, q: float) -> Floats:
    """Type-7 quantile of each row of values, each sample counted `weight` times (the old rule, copied
    from the previous voxperf.bench.stats._weighted_quantile_rows)."""
    rows, n = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, axis=1)
    cw = np.cumsum(np.take_along_axis(np.broadcast_to(weights, values.shape), order, axis=1), axis=1)
    tol = 4.0 * np.finfo(np.float64).eps * n * np.maximum(cw[:, -1:], 1.0)
    nearest = np.rint(cw)
    cw = np.where(np.abs(cw - nearest) <= tol, nearest, cw)
    h = np.maximum((cw[:, -1] - 1.0) * q, 0.0)
    k = np.floor(h)
    lo = np.minimum((cw <= k[:, None]).sum(axis=1), n - 1)
    hi = np.minimum((cw <= (k + 1.0)[:, None]).sum(axis=1), n - 1)
    idx = np.arange(rows)
    return stats._lerp(v[idx, lo], v[idx, hi], h - k)


def _old_weights(groups: Grouped) -> Floats:
    weights = np.concatenate([np.full(xs.size, w / xs.size) for xs, w in groups])
    return weights * (weights.size / weights.sum())


def old_estimate(groups: Grouped, q: float) -> float:
    values = np.concatenate([xs for xs, _ in groups])[None, :]
    return float(_old_weighted_quantile_rows(values, _old_weights(groups), q)[0])


def old_ci(groups: Grouped, q: float, rng: np.random.Generator) -> Interval:
    matrix = np.concatenate([xs[rng.integers(0, xs.size, (RESAMPLES, xs.size))] for xs, _ in groups], axis=1)
    boot = _old_weighted_quantile_rows(matrix, _old_weights(groups), q)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(lo), float(hi)


def test_old_estimator_is_the_expanded_array_quantile() -> None:
    # The re-implementation above is the old rule: for integer weights, np.quantile of np.repeat.
    xs, w = np.array([3.0, 1.0, 2.0, 7.0]), np.array([2.0, 1.0, 3.0, 1.0])
    for q in (0.1, 0.5, 0.9):
        expected = np.quantile(np.repeat(xs, w.astype(int)), q)
        assert _old_weighted_quantile_rows(xs[None, :], w, q)[0] == expected
    # and it has the defect the issue measured: the 40/60 example depends on the sample count
    assert old_estimate([(np.array([0.0]), 0.4), (np.array([1.0]), 0.6)], 0.5) == 0.5
    assert old_estimate([(np.zeros(10), 0.4), (np.ones(10), 0.6)], 0.5) == 1.0


# --- the methods -------------------------------------------------------------------------------


def shipped_ci(groups: Grouped, q: float, rng: np.random.Generator) -> Interval:
    return stats.mixture_quantile_ci(groups, q)


def percentile_ci(groups: Grouped, q: float, rng: np.random.Generator) -> Interval:
    parsed = [(np.sort(xs), w) for xs, w in groups]
    boot = stats._mixture_boot(parsed, (q,), RESAMPLES, rng)[0]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(lo), float(hi)


Method = Callable[[Grouped, float, np.random.Generator], Interval]


@dataclass
class Tally:
    hits: int = 0
    widths: list[float] = field(default_factory=list)

    def add(self, ci: Interval, truth: float) -> None:
        self.hits += ci[0] <= truth <= ci[1]
        self.widths.append((ci[1] - ci[0]) / abs(truth))

    @property
    def coverage(self) -> float:
        return self.hits / len(self.widths)

    def cell(self) -> str:
        return f"{self.coverage:6.3f} {float(np.median(self.widths)):6.2f}"


def simulate(
    cases: Sequence[tuple[Sequence[Population], Sequence[float], Sequence[int]]],
    q: float,
    methods: dict[str, Method],
    trials: int,
    rng: np.random.Generator,
) -> tuple[dict[str, Tally], dict[str, float]]:
    """Coverage of each method over `trials` data sets per case; also the worst case's coverage."""
    pooled = {name: Tally() for name in methods}
    worst = dict.fromkeys(methods, 1.0)
    for pops, weights, ns in cases:
        truth = true_mixture_quantile(pops, weights, q)
        per_case = {name: Tally() for name in methods}
        for _ in range(trials):
            groups = [(p.sample(rng, n), w) for p, w, n in zip(pops, weights, ns, strict=True)]
            for name, method in methods.items():
                ci = method(groups, q, rng)
                per_case[name].add(ci, truth)
                pooled[name].add(ci, truth)
        for name in methods:
            worst[name] = min(worst[name], per_case[name].coverage)
    return pooled, worst


ROWS: list[str] = []
HEADER = f"{'':58s} {'shipped':>13s}   {'percentile':>13s}   {'old':>13s}   {'worst case':>10s}"
SUB = f"{'':58s} {'cover  width':>13s}   {'cover  width':>13s}   {'cover  width':>13s}   {'shipped':>10s}"


def row(label: str, tallies: dict[str, Tally], worst: dict[str, float] | None = None) -> None:
    cells = [tallies[k].cell() if k in tallies else f"{'-':>13s}" for k in ("shipped", "percentile", "old")]
    w = f"{worst['shipped']:10.3f}" if worst and "shipped" in worst else f"{'':10s}"
    ROWS.append(f"{label:58s} {cells[0]:>13s}   {cells[1]:>13s}   {cells[2]:>13s}   {w}")


def test_ci_coverage_table() -> None:
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    three: dict[str, Method] = {"shipped": shipped_ci, "percentile": percentile_ci, "old": old_ci}

    ROWS.append("Aggregate p50 (mixture median), 5 samples per fixture")
    agg5: dict[str, float] = {}
    for name, (pops, weights) in AGGREGATE.items():
        tallies, _ = simulate([(pops, weights, [5] * len(pops))], 0.5, three, TRIALS, rng)
        agg5[name] = tallies["shipped"].coverage
        row(f"  {name}", tallies)
    cases = [
        ([Lognormal(100, cv), Gamma(100 * ratio, round(cv**-2))], [1.0, w2], [5, 5])
        for ratio in (1.0, 1.1, 1.2, 1.5, 2.0, 3.0)
        for w2 in (1.0, 2.0, 4.0)
        for cv in (0.1, 0.3)
    ]
    tallies, worst = simulate(cases, 0.5, three, 200, rng)
    row(f"  2 fixtures, {len(cases)} configurations x 200 (see GRID)", tallies, worst)
    for n in (3, 10, 20):
        cases = [(p, w, [n] * len(p)) for p, w in AGGREGATE.values()]
        tallies, worst = simulate(cases, 0.5, three, TRIALS // len(cases), rng)
        row(f"  all {len(cases)} scenarios pooled, {n} samples per fixture", tallies, worst)

    ROWS.append("One fixture p50 (5 distributions pooled)")
    two: dict[str, Method] = {"shipped": shipped_ci, "percentile": percentile_ci}
    for n in (5, 10, 20):
        cases = [([p], [1.0], [n]) for p in SINGLE]
        tallies, worst = simulate(cases, 0.5, two, TRIALS // len(cases), rng)
        row(f"  n = {n}", tallies, worst)

    ROWS.append("Tails at the reporting thresholds (4 distributions pooled)")
    tails = SINGLE[1:]
    for q, n in ((0.95, 40), (0.99, 200)):
        cases = [([p], [1.0], [n]) for p in tails]
        tallies, worst = simulate(cases, q, two, TRIALS // len(cases), rng)
        row(f"  one fixture p{q * 100:g}, n = {n}", tallies, worst)
    for q, n in ((0.95, 10), (0.95, 20), (0.99, 10)):
        cases = [([p], [1.0], [n]) for p in tails]
        tallies, worst = simulate(cases, q, {"percentile": percentile_ci}, TRIALS // len(cases), rng)
        row(f"  one fixture p{q * 100:g}, n = {n} (no longer reported)", tallies)
    mix_pops = SCENARIOS["4 mixed 1/1/2/3"][0]
    equal_w = [1.0] * len(mix_pops)
    for q, n in ((0.95, 10), (0.99, 50)):
        n_eff = stats.effective_n([(np.zeros(n), w) for w in equal_w])
        tallies, _ = simulate([(mix_pops, equal_w, [n] * 4)], q, two, TRIALS // 2, rng)
        row(f"  aggregate p{q * 100:g}, 4 equal fixtures x {n} (n_eff {n_eff:.0f})", tallies)

    ROWS.append(
        f"quantile_delta p50, 5 samples per fixture, {TRIALS // 2} base/head pairs per row (cover = the true"
        " change; significant = CI excludes 0, nominal 5% with no change)"
    )
    delta_lines = _delta_rows(rng)
    ROWS.extend(delta_lines)

    ROWS.append("ratio_of_sums_ci (corpus WER, bootstrap over utterances, true WER 10%)")
    ROWS.extend(_ratio_rows(rng))

    print()
    print(f"CI coverage, nominal 95%: {TRIALS} simulated data sets per row, seed {SEED}")
    print(HEADER)
    print(SUB)
    for line in ROWS:
        print(line)
    print(f"({time.perf_counter() - started:.0f} s)")
    for name, coverage in agg5.items():
        assert coverage >= 0.93, f"aggregate p50 CI covers {coverage:.3f} in {name}"


def _delta_rows(rng: np.random.Generator) -> list[str]:
    lines = []
    trials = TRIALS // 2
    for label, slowdown in (("no change", 1.0), ("10% slower", 1.1)):
        for name, (pops, weights) in AGGREGATE.items():
            truth = (slowdown - 1.0) * true_mixture_quantile(pops, weights, 0.5)
            significant = covered = 0
            for _ in range(trials):
                base = [(p.sample(rng, 5), w) for p, w in zip(pops, weights, strict=True)]
                head = [(p.sample(rng, 5) * slowdown, w) for p, w in zip(pops, weights, strict=True)]
                lo, hi = stats.quantile_delta(base, head, 0.5, resamples=1000).abs_ci
                significant += lo > 0 or hi < 0
                covered += lo <= truth <= hi
            cover, sig = covered / trials, significant / trials
            lines.append(f"  {label:10s} {name:44s} {cover:6.3f}          significant {sig:.3f}")
    return lines


def _ratio_rows(rng: np.random.Generator) -> list[str]:
    lines = []
    for items in (5, 10, 40):
        hits = 0
        widths = []
        for _ in range(TRIALS):
            words = 1 + rng.poisson(11, items)
            edits = rng.binomial(words, rng.beta(1.0, 9.0, items))
            lo, hi = stats.ratio_of_sums_ci(edits, words, resamples=1000, seed=int(rng.integers(1 << 31)))
            hits += lo <= 0.1 <= hi
            widths.append((hi - lo) / 0.1)
        lines.append(f"  {items:3d} utterances{'':40s} {hits / TRIALS:6.3f} {float(np.median(widths)):6.2f}")
    return lines
