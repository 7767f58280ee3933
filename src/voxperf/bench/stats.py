"""Statistics of benchmark samples: quantiles, bootstrap confidence intervals and noise checks.

Every number in a voxperf summary comes from this module. It is pure: numpy only, no I/O, no
global state; the bootstrap is deterministic for a given seed.

Quantiles
    Hyndman & Fan type 7, the linear interpolation that is numpy's default: with ``n`` sorted
    samples the ``q`` quantile sits at 0-based position ``h = (n - 1) * q`` and is interpolated
    between the samples at ``floor(h)`` and ``floor(h) + 1``.

Weighted quantiles
    The same rule applied to a virtual array in which each sample is repeated ``weight`` times:
    for positive integer weights the result is exactly
    ``np.quantile(np.repeat(samples, weights), q)``. Real weights use the same formula. A
    benchmark over several fixtures gives each sample of fixture ``g`` the weight
    ``fixture_weight / n_g`` (so every fixture counts by, e.g., its audio bytes, however many
    times it ran) and takes quantiles of the pooled samples. Per-fixture percentiles are never
    averaged: the mean of two p99s is not the p99 of anything.

Confidence intervals
    Percentile bootstrap: resample the samples with replacement (2000 times by default),
    recompute the statistic on each resample and report the central 95% of those values. With
    several fixtures the resampling is stratified: each fixture is resampled within itself, so
    every resample keeps the fixture mix.

When is a result noisy? (``noise_notes``)
    * fewer than 3 samples: the spread cannot be judged, so the result is noisy;
    * the standard deviation is more than 10% of the mean (the coefficient of variation;
      pyperf warns at the same 10%): noisy;
    * the 95% CI of p50 is wider than 20% of p50: the median itself is not pinned down: noisy;
    * p95 from fewer than 20 samples, or p99 from fewer than 100, is little more than an order
      statistic next to the maximum. That gets a note, but on its own does not make the result
      noisy: it is a caveat about the tail, not evidence of jitter.

    Each reason becomes a plain-English note that gives the measured value and the threshold.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_CV",
    "MAX_P50_CI_REL_WIDTH",
    "MIN_SAMPLES",
    "MIN_SAMPLES_P95",
    "MIN_SAMPLES_P99",
    "QUANTILES",
    "Delta",
    "Samples",
    "Summary",
    "bootstrap_ci",
    "bootstrap_quantile_cis",
    "noise_notes",
    "pooled_weights",
    "quantile",
    "quantile_delta",
    "summarize",
    "summarize_weighted",
    "weighted_bootstrap_quantile_cis",
    "weighted_quantile",
]

Samples: TypeAlias = Sequence[float] | np.ndarray
Groups: TypeAlias = Sequence[tuple[Samples, float]]
_Floats: TypeAlias = npt.NDArray[np.float64]

QUANTILES: tuple[float, ...] = (0.50, 0.95, 0.99)

MIN_SAMPLES = 3  # below this the spread cannot be judged: noisy
MIN_SAMPLES_P95 = 20  # below this p95 is an order statistic next to the max: caveat
MIN_SAMPLES_P99 = 100  # below this p99 is an order statistic next to the max: caveat
MAX_CV = 0.10  # stdev / mean above this: noisy (pyperf's threshold)
MAX_P50_CI_REL_WIDTH = 0.20  # (p50 CI width) / p50 above this: noisy

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


def _as_weights(weights: Samples, n: int) -> _Floats:
    """Return weights as a 1-D float64 array of length n: finite, >= 0, not all zero."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size != n:
        raise ValueError(
            f"weights must be one-dimensional with one weight per sample ({n}), got shape {w.shape}"
        )
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or infinity")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0, got {float(w.min())!r}")
    if not (w > 0).any():
        raise ValueError("weights are all zero: at least one sample needs a positive weight")
    return w


def _check_q(q: float) -> float:
    """Return q as a float, or raise ValueError unless 0 <= q <= 1."""
    qf = float(q)
    if not 0.0 <= qf <= 1.0:  # also rejects NaN
        raise ValueError(f"quantile q must be in [0, 1], got {q!r}")
    return qf


def _check_bootstrap_args(confidence: float, resamples: int) -> None:
    """Raise ValueError unless 0 < confidence < 1 and resamples >= 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")


def _parse_groups(groups: Groups) -> list[tuple[_Floats, float]]:
    """Validate (samples, fixture_weight) groups: non-empty samples, finite weights >= 0, not all 0."""
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
    return parsed


# --- quantiles -------------------------------------------------------------------------------


def _lerp(a: _Floats, b: _Floats, t: _Floats) -> _Floats:
    """Interpolate a + t * (b - a) exactly as numpy's quantile does (bounded, monotone in t)."""
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1.0 - t), out=out, where=t >= 0.5)
    return np.where(t == 0.0, a, out)


def _weighted_quantile_rows(values: _Floats, weights: _Floats, qs: Sequence[float]) -> _Floats:
    """Weighted type-7 quantiles of every row of ``values`` (shape (rows, n)); result (len(qs), rows).

    ``weights`` is (n,) or (rows, n) and must be > 0 (callers drop zero-weight samples).
    """
    rows, n = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, axis=1)
    w = np.take_along_axis(np.broadcast_to(weights, values.shape), order, axis=1)
    cw = np.cumsum(w, axis=1)
    # Snap cumulative weights that are within rounding error of an integer onto it, so that weights
    # like 1/3 * 3 behave like the integers they stand for (the "cw > k" test is a step function).
    tol = 4.0 * np.finfo(np.float64).eps * n * np.maximum(cw[:, -1:], 1.0)
    nearest = np.rint(cw)
    cw = np.where(np.abs(cw - nearest) <= tol, nearest, cw)
    total = cw[:, -1]
    idx = np.arange(rows)
    out = np.empty((len(qs), rows), dtype=np.float64)
    for j, q in enumerate(qs):
        h = np.maximum((total - 1.0) * q, 0.0)  # 0-based position in the virtual expanded array
        k = np.floor(h)
        # The element at expanded index k is the first sorted sample whose cumulative weight is > k.
        lo = np.minimum((cw <= k[:, None]).sum(axis=1), n - 1)
        hi = np.minimum((cw <= (k + 1.0)[:, None]).sum(axis=1), n - 1)
        out[j] = _lerp(v[idx, lo], v[idx, hi], h - k)
    return out


def quantile(samples: Samples, q: float) -> float:
    """The q quantile of samples: Hyndman-Fan type 7, numpy's default, so numbers match other tools.

    Raises ValueError on empty or non-finite samples, or q outside [0, 1]."""
    x = _as_samples(samples)
    return float(np.quantile(x, _check_q(q)))


def weighted_quantile(samples: Samples, weights: Samples, q: float) -> float:
    """The q quantile with each sample counted ``weight`` times: np.quantile(np.repeat(x, w), q) for ints.

    A weight of 0 drops a sample; like the expansion, results depend on total weight (see pooled_weights)."""
    x = _as_samples(samples)
    w = _as_weights(weights, x.size)
    qf = _check_q(q)
    keep = w > 0
    return float(_weighted_quantile_rows(x[keep][None, :], w[keep], (qf,))[0, 0])


def pooled_weights(groups: Groups, *, normalize: bool = False) -> tuple[_Floats, _Floats]:
    """Flatten (samples, fixture_weight) groups into (values, per-sample weights fixture_weight / n_g).

    normalize=True rescales them to sum to the positively weighted sample count, as summaries do."""
    parsed = _parse_groups(groups)
    values = np.concatenate([arr for arr, _ in parsed])
    weights = np.concatenate([np.full(arr.size, w / arr.size) for arr, w in parsed])
    if normalize:
        n_positive = sum(arr.size for arr, w in parsed if w > 0)
        weights = weights * (n_positive / weights.sum())
    return values, weights


# --- bootstrap -------------------------------------------------------------------------------


def _resample_indices(n: int, resamples: int, rng: np.random.Generator) -> Iterator[npt.NDArray[np.int64]]:
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

    Sharing the resamples makes several quantiles cost one bootstrap; deterministic for a seed."""
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


def weighted_bootstrap_quantile_cis(
    groups: Groups,
    qs: Sequence[float] = QUANTILES,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[float, tuple[float, float]]:
    """Stratified bootstrap CI of each weighted quantile: resample within each fixture, keep the mix.

    Weights are pooled_weights(groups, normalize=True); weight-0 groups are ignored; deterministic."""
    parsed = [(arr, w) for arr, w in _parse_groups(groups) if w > 0]
    qf = tuple(_check_q(q) for q in qs)
    _check_bootstrap_args(confidence, resamples)
    boot = _weighted_quantile_boot(parsed, qf, resamples, np.random.default_rng(seed))
    return {q: _percentile_interval(boot[j], confidence) for j, q in enumerate(qf)}


def _weighted_quantile_boot(
    parsed: list[tuple[_Floats, float]], qs: Sequence[float], resamples: int, rng: np.random.Generator
) -> _Floats:
    """Bootstrap distributions (shape (len(qs), resamples)) of weighted quantiles, resampling within
    each group: the one stratified resampling loop behind CIs and deltas."""
    _, weights = pooled_weights(parsed, normalize=True)
    n = weights.size
    boot = np.empty((len(qs), resamples), dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // n)
    start = 0
    while start < resamples:
        m = min(rows, resamples - start)
        matrix = np.concatenate(
            [arr[rng.integers(0, arr.size, size=(m, arr.size))] for arr, _ in parsed], axis=1
        )
        boot[:, start : start + m] = _weighted_quantile_rows(matrix, weights, qs)
        start += m
    return boot


@dataclass(frozen=True, slots=True)
class Delta:
    """head − base of one quantile, with bootstrap CIs of the absolute and relative change."""

    base: float
    head: float
    abs: float
    rel: float | None  # None when base is 0
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
    """Change of the (byte-weighted) q quantile from base to head, with percentile-bootstrap CIs.

    Base and head are resampled independently (within each fixture), so the CI of the difference
    reflects the noise of both runs; a CI that excludes 0 means the change is significant at
    ``confidence``. Each side's resampling is seeded from its own data (plus ``seed``), so swapping
    base and head mirrors the result exactly. Pass one group per side for a single fixture."""
    qf = _check_q(q)
    _check_bootstrap_args(confidence, resamples)
    b = [(arr, w) for arr, w in _parse_groups(base) if w > 0]
    h = [(arr, w) for arr, w in _parse_groups(head) if w > 0]
    if not b or not h:
        raise ValueError("both sides need at least one group with positive weight")
    bv, bw = pooled_weights(b, normalize=True)
    hv, hw = pooled_weights(h, normalize=True)
    base_q = float(_weighted_quantile_rows(bv[None, :], bw, (qf,))[0, 0])
    head_q = float(_weighted_quantile_rows(hv[None, :], hw, (qf,))[0, 0])
    extra = seed or 0
    base_boot = _weighted_quantile_boot(b, (qf,), resamples, np.random.default_rng([_data_seed(b), extra]))[0]
    head_boot = _weighted_quantile_boot(h, (qf,), resamples, np.random.default_rng([_data_seed(h), extra]))[0]
    rel: float | None = None
    rel_ci: tuple[float, float] | None = None
    if base_q != 0 and np.all(base_boot != 0):
        rel = head_q / base_q - 1.0
        rel_ci = _percentile_interval(head_boot / base_boot - 1.0, confidence)
    return Delta(
        base_q, head_q, head_q - base_q, rel, _percentile_interval(head_boot - base_boot, confidence), rel_ci
    )


# --- summaries -------------------------------------------------------------------------------


def _qkey(q: float) -> str:
    """Name a quantile the way summaries do: 0.5 -> 'p50', 0.999 -> 'p99.9'."""
    return f"p{round(q * 100, 6):g}"


@dataclass(frozen=True, slots=True)
class Summary:
    """Summary statistics of one metric; ``to_dict`` matches the result schema's SummaryRecord."""

    n: int
    unit: str
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
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


def noise_notes(
    samples: Samples,
    ci95: dict[str, tuple[float, float]],
    *,
    p50: float | None = None,
    mean: float | None = None,
) -> tuple[bool, tuple[str, ...]]:
    """(noisy, notes): whether a result is too noisy to trust and why, by the module docstring's rules.

    ci95 maps "p50"/"p95"/"p99" to CIs; p50 and mean default to the samples' (pass weighted ones)."""
    x = _as_samples(samples)
    n = int(x.size)
    noisy = False
    notes: list[str] = []
    if n < MIN_SAMPLES:
        noisy = True
        notes.append(f"only {n} sample(s): spread cannot be judged (needs >= {MIN_SAMPLES})")
    if n < MIN_SAMPLES_P95:
        notes.append(f"p95 from {n} samples is not reliable (needs >= {MIN_SAMPLES_P95})")
    if n < MIN_SAMPLES_P99:
        notes.append(f"p99 from {n} samples is not reliable (needs >= {MIN_SAMPLES_P99})")

    if n > 1 and float(x.min()) != float(x.max()):
        center = float(np.mean(x)) if mean is None else float(mean)
        stdev = float(np.std(x, ddof=1))
        cv = stdev / abs(center) if center != 0.0 else math.inf
        if cv > MAX_CV:
            noisy = True
            if math.isinf(cv):
                notes.append(
                    f"stdev ({_fmt(stdev)}) around a mean of 0: relative spread is unbounded "
                    f"(noisy above {MAX_CV:.0%} of the mean)"
                )
            else:
                notes.append(
                    f"stdev ({_fmt(stdev)}) is {cv:.1%} of the mean ({_fmt(center)}) "
                    f"(noisy above {MAX_CV:.0%})"
                )

    if "p50" in ci95:
        median = float(np.quantile(x, 0.5)) if p50 is None else float(p50)
        lo, hi = ci95["p50"]
        width = float(hi) - float(lo)
        if width > 0.0:
            rel = width / abs(median) if median != 0.0 else math.inf
            if rel > MAX_P50_CI_REL_WIDTH:
                noisy = True
                share = "unbounded relative to a p50 of 0" if math.isinf(rel) else f"{rel:.1%} of p50"
                notes.append(
                    f"p50 95% CI [{_fmt(lo)}, {_fmt(hi)}] is {_fmt(width)} wide, {share} ({_fmt(median)}) "
                    f"(noisy above {MAX_P50_CI_REL_WIDTH:.0%})"
                )
    return noisy, tuple(notes)


def _spread(x: _Floats, mean: float) -> tuple[float, float, float, float]:
    """(mean, stdev, min, max) with exact values for constant samples; mean clipped to [min, max]."""
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return lo, 0.0, lo, hi
    stdev = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return min(max(mean, lo), hi), stdev, lo, hi


def _summary(
    values: _Floats,
    unit: str,
    mean: float,
    stdev: float,
    lo: float,
    hi: float,
    quantiles: tuple[float, float, float],
    ci95: dict[str, tuple[float, float]],
    *,
    weighted: bool,
) -> Summary:
    """Assemble a Summary and judge its noise (shared by the plain and the weighted summaries)."""
    p50, p95, p99 = quantiles
    noisy, notes = noise_notes(values, ci95, p50=p50, mean=mean)
    return Summary(
        n=int(values.size),
        unit=unit,
        mean=mean,
        stdev=stdev,
        min=lo,
        max=hi,
        p50=p50,
        p95=p95,
        p99=p99,
        ci95=ci95,
        noisy=noisy,
        notes=notes,
        weighted=weighted,
    )


def summarize(samples: Samples, unit: str = "ms", *, resamples: int = 2000, seed: int = 0) -> Summary:
    """Summarise one metric's samples: mean, stdev, p50/p95/p99 with bootstrap 95% CIs, noise verdict.

    Raises ValueError on empty input or NaN/infinity."""
    x = _as_samples(samples)
    mean, stdev, lo, hi = _spread(x, float(np.mean(x)))
    p50, p95, p99 = (float(v) for v in np.quantile(x, QUANTILES))
    cis = bootstrap_quantile_cis(x, QUANTILES, resamples=resamples, seed=seed)
    ci95 = {_qkey(q): cis[q] for q in QUANTILES}
    return _summary(x, unit, mean, stdev, lo, hi, (p50, p95, p99), ci95, weighted=False)


def summarize_weighted(groups: Groups, unit: str = "ms", *, resamples: int = 2000, seed: int = 0) -> Summary:
    """Summarise fixtures as one, each weighted by e.g. its bytes: pooled weighted quantiles, never averages.

    stdev/min/max/n are of the pooled raw samples; weight-0 groups are left out; CIs are stratified."""
    positive = [(arr, w) for arr, w in _parse_groups(groups) if w > 0]
    values, weights = pooled_weights(positive, normalize=True)
    mean, stdev, lo, hi = _spread(values, float(np.average(values, weights=weights)))
    p50, p95, p99 = (float(v) for v in _weighted_quantile_rows(values[None, :], weights, QUANTILES)[:, 0])
    cis = weighted_bootstrap_quantile_cis(positive, QUANTILES, resamples=resamples, seed=seed)
    ci95 = {_qkey(q): cis[q] for q in QUANTILES}
    return _summary(values, unit, mean, stdev, lo, hi, (p50, p95, p99), ci95, weighted=True)
