"""The regression gate's decision: a few headline metrics, one family-wise error rate.

Every other row of a comparison is information; the gate decides only on the headline metrics of
each lane, pipeline and level (by default total p50, stt p50, TTFA p50, RTFx of synthesis,
corpus WER and, when measured, instructions per request). For each one it tests, one-sided, "head
is worse than base by more than the tolerance" (5 % for times by default, 0.5 % for instruction
counts, 1 point for WER) and controls the family-wise error rate across all of them with Holm's
step-down procedure (exact changes, which have no sampling error, are decided outside it). So:

* a change is a **regression** (the gate fails) only when the data show it is beyond the tolerance,
  with at most ``alpha`` (5 %) chance of any false failure in the whole family when nothing changed;
  a +20 % change whose CI excludes +10 % therefore always fails;
* **unchanged** means the 95 % CI lies inside ±tolerance (shown, not assumed);
* anything else is **inconclusive** (too noisy to tell): never a silent pass, never a failure.

Changes are relative (head/base, on the log scale) for times, rates and counts, and differences
for WER. The estimates come from two places: paired per-request ratios of an A/B run
(:func:`paired_change`: Hodges-Lehmann estimate, Wilcoxon signed-rank test over pairs) or two
independent stored runs (:func:`independent_change`, whose CI is widened by a between-run variance
component, because each run's own CI describes only its own noise).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from voxperf.bench.catalog import METRIC_BETTER, better_of, is_known_metric, unit_of
from voxperf.errors import UsageError

__all__ = [
    "DEFAULT_GATE_METRICS",
    "DETERMINISTIC",
    "Change",
    "GateConfig",
    "GateDecision",
    "GateRow",
    "Tolerance",
    "decide",
    "gate_config_from",
    "holm",
    "independent_change",
    "paired_change",
    "paired_difference",
]

Kind = Literal["ratio", "difference"]
RowVerdict = Literal["regression", "improvement", "unchanged", "inconclusive"]
Status = Literal["pass", "fail", "inconclusive", "not comparable", "nothing compared"]

# stt_rtfx is not gated by default: it is stt_ms's own measurement inverted (input seconds ÷ stt
# time), and testing one measurement twice only costs the family power
DEFAULT_GATE_METRICS = ("total_ms", "stt_ms", "ttfa_ms", "rtfx", "wer", "instructions", "latency_ms")
Z95 = 1.959963984540054  # standard normal 97.5 % quantile


def norm_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class Tolerance:
    """The change the gate accepts: relative (fraction, for ratios) or absolute (for differences)."""

    rel: float | None = 0.05
    abs: float | None = None


DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "instructions": Tolerance(rel=0.005),  # counts repeat within 0.01 %: half a percent is a finding
    "wer": Tolerance(rel=None, abs=0.01),  # one percentage point of corpus WER
}


@dataclass(frozen=True, slots=True)
class GateConfig:
    """What the gate decides on and how strictly (``[tool.voxperf.gate]``)."""

    metrics: tuple[str, ...] = DEFAULT_GATE_METRICS
    tolerance: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    default_tolerance: Tolerance = Tolerance()
    alpha: float = 0.05
    between_run: float = 0.03  # stored baselines: SD of the log ratio between two runs, at least

    def tolerance_for(self, metric: str) -> Tolerance:
        return self.tolerance.get(metric, self.default_tolerance)


def gate_config_from(table: dict[str, Any], metrics: str | None = None) -> GateConfig:
    """``[tool.voxperf.gate]`` (metrics, tolerance, alpha, between_run; per-metric tolerances in
    ``[tool.voxperf.gate.tolerances]``) plus an optional ``--gate-metrics`` list."""
    if not isinstance(table, dict):
        raise UsageError("[tool.voxperf.gate] must be a table", "e.g. [tool.voxperf.gate] tolerance = 0.05")
    allowed = {"metrics", "tolerance", "alpha", "between_run", "tolerances"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(
            f"unknown key(s) in [tool.voxperf.gate]: {', '.join(unknown)}",
            f"allowed: {', '.join(sorted(allowed))}",
        )
    config = GateConfig()
    names: Any = metrics.split(",") if metrics is not None else table.get("metrics", config.metrics)
    if not isinstance(names, list | tuple) or not all(isinstance(m, str) for m in names):
        raise UsageError("gate metrics must be a list of metric names", 'e.g. metrics = ["total_ms"]')
    chosen = tuple(m.strip() for m in names if m.strip())
    bad = [m for m in chosen if not is_known_metric(m)]
    if bad or not chosen:
        raise UsageError(
            f"unknown gate metric(s): {', '.join(bad) or '(none given)'}",
            f"choose from {', '.join(METRIC_BETTER)}, or <span name>_ms (e.g. diarize_ms)",
        )
    config = replace(config, metrics=chosen)
    for key in ("tolerance", "alpha", "between_run"):
        if key in table:
            value = table[key]
            limit = 1.0 if key == "alpha" else 10.0
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < limit:
                raise UsageError(
                    f"[tool.voxperf.gate] {key} must be a number in [0, {limit:g})", "fix the config"
                )
    if "tolerance" in table:
        config = replace(config, default_tolerance=Tolerance(rel=float(table["tolerance"])))
    if "alpha" in table:
        config = replace(config, alpha=float(table["alpha"]))
    if "between_run" in table:
        config = replace(config, between_run=float(table["between_run"]))
    per = table.get("tolerances", {})
    if not isinstance(per, dict):
        raise UsageError("[tool.voxperf.gate.tolerances] must be a table", "e.g. stt_ms = 0.03")
    tolerances = dict(config.tolerance)
    for metric, value in per.items():
        if not is_known_metric(metric) or not isinstance(value, int | float) or isinstance(value, bool):
            raise UsageError(
                f"bad [tool.voxperf.gate.tolerances] entry {metric} = {value!r}",
                "give metric = fraction (absolute for wer), e.g. stt_ms = 0.03",
            )
        wer = metric == "wer"
        tolerances[metric] = Tolerance(rel=None, abs=float(value)) if wer else Tolerance(float(value))
    return replace(config, tolerance=tolerances)


@dataclass(frozen=True, slots=True)
class Change:
    """One headline metric's change from base to head, with its CI and one-sided p-values.

    ``estimate`` is head/base (kind "ratio") or head − base ("difference"). ``p_worse`` tests
    "head is no worse than base by more than the tolerance"; ``p_better`` the mirror image."""

    lane: str
    pipeline: str
    level: str | None
    metric: str
    kind: Kind
    n: int
    base: float
    head: float
    estimate: float
    ci: tuple[float, float]
    p_worse: float
    p_better: float
    tolerance: float
    method: str
    exact: bool = False  # p-values are 0 or 1: no sampling error (deterministic counts, exact WER)

    @property
    def unit(self) -> str:
        return unit_of(self.metric) or "ratio"

    @property
    def where(self) -> str:
        return f"{self.lane}/{self.pipeline}/{self.level or '-'}"

    @property
    def half_width(self) -> float:
        """Half the CI's width: relative (ratio) or in the metric's unit (difference)."""
        lo, hi = self.ci
        if self.kind == "ratio":
            return (math.log(hi) - math.log(lo)) / 2 if lo > 0 and hi > 0 else math.inf
        return (hi - lo) / 2

    def change_text(self) -> str:
        """The change as people read it: "+12.3 % [+9.8, +14.9]" or "+1.2 pt [+0.4, +2.0]"."""
        lo, hi = self.ci
        if self.kind == "ratio":
            return f"{(self.estimate - 1) * 100:+.1f} % [{(lo - 1) * 100:+.1f}, {(hi - 1) * 100:+.1f}]"
        if lo == hi:
            return f"{self.estimate * 100:+.2f} pt (exact)"
        return f"{self.estimate * 100:+.2f} pt [{lo * 100:+.2f}, {hi * 100:+.2f}]"

    def tolerance_text(self) -> str:
        return f"±{self.tolerance * 100:.3g} %" if self.kind == "ratio" else f"±{self.tolerance * 100:.3g} pt"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "pipeline": self.pipeline,
            "level": self.level,
            "metric": self.metric,
            "unit": self.unit,
            "kind": self.kind,
            "n": self.n,
            "base": self.base,
            "head": self.head,
            "estimate": self.estimate,
            "ci": list(self.ci),
            "pWorse": self.p_worse,
            "pBetter": self.p_better,
            "tolerance": self.tolerance,
            "method": self.method,
            "exact": self.exact,
        }


@dataclass(frozen=True, slots=True)
class GateRow:
    """A change with its verdict after family-wise control (Holm-adjusted p-values)."""

    change: Change
    verdict: RowVerdict
    p_worse_adjusted: float
    p_better_adjusted: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.change.to_dict(),
            "verdict": self.verdict,
            "pWorseHolm": self.p_worse_adjusted,
            "pBetterHolm": self.p_better_adjusted,
        }


@dataclass
class GateDecision:
    """The gate's answer: pass, fail, inconclusive, not comparable or nothing compared, with why."""

    status: Status
    rows: list[GateRow]
    reasons: list[str]
    alpha: float = 0.05

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def headline(self) -> str:
        """One line that answers the question."""
        n_reg = sum(r.verdict == "regression" for r in self.rows)
        n_inc = sum(r.verdict == "inconclusive" for r in self.rows)
        if self.status == "fail":
            return f"FAIL: {n_reg} regression(s) beyond tolerance among {len(self.rows)} gated metric(s)"
        if self.status == "pass":
            return f"PASS: {len(self.rows)} gated metric(s), none worse beyond tolerance"
        if self.status == "inconclusive":
            return (
                f"INCONCLUSIVE: {n_inc} of {len(self.rows)} gated metric(s) too noisy to decide; "
                "no regression shown"
            )
        if self.status == "not comparable":
            return "NOT COMPARABLE: " + "; ".join(self.reasons)
        return "NOTHING COMPARED: " + ("; ".join(self.reasons) or "no gated metric on both sides")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "failed": self.failed,
            "alpha": self.alpha,
            "familyControl": "holm",
            "reasons": self.reasons,
            "rows": [r.to_dict() for r in self.rows],
        }


# ------------------------------------------------------------------------------------ statistics


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control, any dependence)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted


def _seed(*arrays: np.ndarray) -> int:
    return zlib.crc32(b"".join(np.ascontiguousarray(a, dtype=float).tobytes() for a in arrays))


def _bootstrap_p(boot: np.ndarray, boundary: float) -> float:
    """Percentile-bootstrap p-value of H0: θ ≤ boundary (θ's bootstrap distribution ``boot``)."""
    return float((1 + np.count_nonzero(boot <= boundary)) / (boot.size + 1))


EXACT_MAX_N = 60  # signed-rank null distribution computed exactly up to here, normal beyond


def _signed_rank_null(n: int) -> np.ndarray:
    """P(T+ = t), t = 0 … n(n+1)/2, for Wilcoxon's signed-rank statistic under H0 (exact)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k]
    return counts / 2.0**n


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1 … n, ties given their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1, dtype=float)
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if uniq.size < values.size:
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks


def signed_rank_p(d: np.ndarray) -> float:
    """One-sided p-value of Wilcoxon's signed-rank test of H0: d is centred at or below 0.

    Exact null distribution up to 60 non-zero differences without ties; beyond that (or with ties)
    the normal approximation with tie and continuity corrections. Zeros are dropped (Wilcoxon)."""
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return 1.0
    ranks = _ranks(np.abs(d))
    t_plus = float(ranks[d > 0].sum())
    ties = np.unique(np.abs(d)).size < n
    if n <= EXACT_MAX_N and not ties:
        null = _signed_rank_null(n)
        return float(min(1.0, null[round(t_plus) :].sum()))
    mean = n * (n + 1) / 4
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(counts**3 - counts)) / 48
    if var <= 0:
        return 1.0
    return norm_sf((t_plus - mean - 0.5) / math.sqrt(var))


def hodges_lehmann(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """The Hodges-Lehmann location estimate (median of the Walsh averages) and its distribution-free
    CI: the order statistics of the Walsh averages at the signed-rank test's critical values."""
    n = int(x.size)
    i, j = np.triu_indices(n)
    walsh = np.sort((x[i] + x[j]) / 2)
    m = walsh.size
    tail = (1 - confidence) / 2
    if n <= EXACT_MAX_N:
        cdf = np.cumsum(_signed_rank_null(n))
        c = int(np.searchsorted(cdf, tail, side="right"))  # P(T+ <= c - 1) <= tail
    else:
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        c = math.floor(n * (n + 1) / 4 - Z95 * sd)
    c = max(c, 1)
    return float(np.median(walsh)), float(walsh[c - 1]), float(walsh[m - c])


# Metrics whose per-request values repeat exactly for the same code and input (no noise model).
DETERMINISTIC = frozenset({"instructions"})


def paired_change(
    base: Sequence[float],
    head: Sequence[float],
    *,
    metric: str,
    tolerance: Tolerance,
    where: tuple[str, str, str | None],
) -> Change:
    """The change of paired per-request ratios head/base: Hodges-Lehmann estimate, Wilcoxon test.

    Pairs are taken together, so what both requests of a pair shared (the load at that moment, the
    fixture) cancels. On the log ratios, the Hodges-Lehmann estimate (median of the Walsh averages)
    and its CI, and the one-sided signed-rank test of "no worse than the tolerance", are
    distribution-free given a symmetric spread around the change, which an A B B A schedule gives
    an A/A comparison by construction; a request that met a burst of load moves them by one rank.
    Measured alternatives: a percentile bootstrap of the median failed 10 % of simulated A/A
    decisions with 10 pairs and five gated metrics (5 % nominal); the exact sign test held its level
    but caught a real +10 % stt change in only about 60-85 % of 20-pair provider decisions.
    Deterministic counts (instructions) are exact: the change is beyond the tolerance when every
    pair's is.
    """
    a = np.asarray(base, float)
    b = np.asarray(head, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired_change needs two equally long, non-empty sequences")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError(f"{metric}: ratios need positive values on both sides")
    logs = np.sort(np.log(b) - np.log(a))
    n = int(logs.size)
    point = float(np.median(logs))
    exact = False
    tol = tolerance.rel if tolerance.rel is not None else 0.0
    c = math.log1p(tol)
    sign = 1.0 if better_of(metric) == "lower" else -1.0
    if metric in DETERMINISTIC or bool(np.all(logs == logs[0])):
        lo, hi = float(logs[0]), float(logs[-1])
        p_worse = 0.0 if bool(np.all(sign * logs > c)) else 1.0
        p_better = 0.0 if bool(np.all(-sign * logs > c)) else 1.0
        method = f"deterministic: range of {n} paired ratios"
        exact = True
    else:
        point, lo, hi = hodges_lehmann(logs)
        p_worse = signed_rank_p(sign * logs - c)
        p_better = signed_rank_p(-sign * logs - c)
        method = f"Hodges-Lehmann of {n} paired log ratios, Wilcoxon signed-rank test"
    return Change(
        *where,
        metric=metric,
        kind="ratio",
        n=n,
        base=float(np.median(a)),
        head=float(np.median(b)),
        estimate=math.exp(point),
        ci=(math.exp(lo), math.exp(hi)),
        p_worse=p_worse,
        p_better=p_better,
        tolerance=tol,
        method=method,
        exact=exact,
    )


def paired_difference(
    base_edits: Sequence[float],
    head_edits: Sequence[float],
    words: Sequence[float],
    *,
    tolerance: Tolerance,
    where: tuple[str, str, str | None],
    exact: bool,
    resamples: int = 4000,
) -> Change:
    """Corpus WER head − base on the same utterances: exact when transcripts are deterministic on
    both sides, else a paired bootstrap over utterances."""
    e_a, e_b, w = (np.asarray(x, float) for x in (base_edits, head_edits, words))
    if not (e_a.shape == e_b.shape == w.shape) or w.size == 0 or w.sum() <= 0:
        raise ValueError("paired_difference needs equally long sequences with reference words")
    a, b = float(e_a.sum() / w.sum()), float(e_b.sum() / w.sum())
    diff = b - a
    tol = tolerance.abs if tolerance.abs is not None else 0.0
    if exact:
        lo = hi = diff
        p_worse = 0.0 if diff > tol else 1.0
        p_better = 0.0 if -diff > tol else 1.0
        method = f"transcripts deterministic on both sides: exact on {w.size} utterances"
    else:
        rng = np.random.default_rng(_seed(e_a, e_b, w))
        idx = rng.integers(0, w.size, size=(resamples, w.size))
        ws = w[idx].sum(axis=1)
        boot = (e_b[idx].sum(axis=1) - e_a[idx].sum(axis=1)) / ws
        lo, hi = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        p_worse, p_better = _bootstrap_p(boot, tol), _bootstrap_p(-boot, tol)
        method = f"paired bootstrap over {w.size} utterances"
    return Change(
        *where,
        metric="wer",
        kind="difference",
        n=int(w.sum()),
        base=a,
        head=b,
        estimate=diff,
        ci=(lo, hi),
        p_worse=p_worse,
        p_better=p_better,
        tolerance=tol,
        method=method,
        exact=exact,
    )


def independent_change(
    *,
    metric: str,
    base: float,
    head: float,
    rel_ci: tuple[float, float],
    n: int,
    tolerance: Tolerance,
    where: tuple[str, str, str | None],
    between_run: float,
) -> Change:
    """A change between two independent runs (a stored baseline), from the within-run CI of the
    relative change (``rel_ci``) widened by a between-run component: on the log scale
    se² = se_within² + between_run², normal approximation."""
    if base <= 0 or head <= 0:
        raise ValueError(f"{metric}: ratios need positive values")
    lo_r, hi_r = 1.0 + rel_ci[0], 1.0 + rel_ci[1]
    se_w = (math.log(hi_r) - math.log(lo_r)) / (2 * Z95) if lo_r > 0 and hi_r > 0 else math.inf
    se = math.hypot(se_w, between_run)
    point = math.log(head / base)
    tol = tolerance.rel if tolerance.rel is not None else 0.0
    c = math.log1p(tol)
    sign = 1.0 if better_of(metric) == "lower" else -1.0
    if se == 0:
        p_worse = 0.0 if sign * point > c else 1.0
        p_better = 0.0 if -sign * point > c else 1.0
    else:
        p_worse = float(norm_sf((sign * point - c) / se))
        p_better = float(norm_sf((-sign * point - c) / se))
    return Change(
        *where,
        metric=metric,
        kind="ratio",
        n=n,
        base=base,
        head=head,
        estimate=head / base,
        ci=(math.exp(point - Z95 * se), math.exp(point + Z95 * se)),
        p_worse=p_worse,
        p_better=p_better,
        tolerance=tol,
        method=f"two runs: within-run CIs widened by a between-run SD of {between_run * 100:.3g} %",
    )


def _inside(change: Change) -> bool:
    """Is the whole 95 % CI within ±tolerance (the change shown to be small)?"""
    lo, hi = change.ci
    if change.kind == "ratio":
        bound = 1.0 + change.tolerance
        return 1.0 / bound <= lo and hi <= bound
    return -change.tolerance <= lo and hi <= change.tolerance


def decide(
    changes: Sequence[Change], *, alpha: float = 0.05, not_comparable: Sequence[str] = ()
) -> GateDecision:
    """The verdict of a family of headline changes, Holm-controlled at ``alpha`` (exact ones aside)."""
    if not_comparable:
        rows = [GateRow(c, "inconclusive", 1.0, 1.0) for c in changes]
        return GateDecision("not comparable", rows, list(not_comparable), alpha)
    if not changes:
        return GateDecision("nothing compared", [], [], alpha)
    # exact changes (deterministic counts, exact WER) have no sampling error: they are decided as
    # they are and do not enlarge the family that Holm controls
    noisy = [i for i, c in enumerate(changes) if not c.exact]
    worse = [c.p_worse for c in changes]
    better = [c.p_better for c in changes]
    for i, pw, pb in zip(
        noisy, holm([worse[i] for i in noisy]), holm([better[i] for i in noisy]), strict=True
    ):
        worse[i], better[i] = pw, pb
    rows = []
    for c, pw, pb in zip(changes, worse, better, strict=True):
        verdict: RowVerdict
        if pw <= alpha:
            verdict = "regression"
        elif pb <= alpha:
            verdict = "improvement"
        elif _inside(c):
            verdict = "unchanged"
        else:
            verdict = "inconclusive"
        rows.append(GateRow(c, verdict, pw, pb))
    if any(r.verdict == "regression" for r in rows):
        status: Status = "fail"
    elif any(r.verdict == "inconclusive" for r in rows):
        status = "inconclusive"
    else:
        status = "pass"
    return GateDecision(status, rows, [], alpha)
