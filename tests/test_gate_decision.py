"""The gate's decision: Holm control, paired and independent changes, verdict rules, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.errors import UsageError
from voxperf.report.gate import (
    Change,
    GateConfig,
    Tolerance,
    decide,
    gate_config_from,
    holm,
    independent_change,
    paired_change,
    paired_difference,
)

WHERE = ("codepath", "dictation", "raw")
TOL = Tolerance(rel=0.05)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_adjusted_pvalues_are_valid_and_monotone(ps: list[float]) -> None:
    adj = holm(ps)
    assert all(p <= a <= 1.0 for p, a in zip(ps, adj, strict=True))
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert all(adj[order[k]] <= adj[order[k + 1]] for k in range(len(ps) - 1))
    assert min(adj) == pytest.approx(min(1.0, len(ps) * min(ps)))


@settings(max_examples=60)
@given(st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=2, max_size=6), st.floats(0.01, 0.1))
def test_holm_rejects_exactly_the_step_down_set(ps: list[float], alpha: float) -> None:
    """Reference: walk the sorted p-values, reject while p_(k) <= alpha / (m - k)."""
    m = len(ps)
    rejected = set()
    for k, i in enumerate(sorted(range(m), key=lambda i: ps[i])):
        if ps[i] > alpha / (m - k):
            break
        rejected.add(i)
    assert {i for i, a in enumerate(holm(ps)) if a <= alpha} == rejected


def test_paired_change_finds_a_ten_percent_slowdown_and_its_ci_covers_it() -> None:
    rng = np.random.default_rng(1)
    load = rng.lognormal(0, 0.3, 60)  # shared by both requests of a pair: cancels in the ratio
    base = 100 * load * rng.lognormal(0, 0.02, 60)
    head = 110 * load * rng.lognormal(0, 0.02, 60)
    c = paired_change(base, head, metric="stt_ms", tolerance=TOL, where=WHERE)
    assert c.ci[0] < 1.10 < c.ci[1] and c.ci[0] > 1.05
    assert c.p_worse < 0.01 and c.p_better > 0.99
    assert decide([c]).status == "fail"


def test_direction_follows_the_metric() -> None:
    """RTFx is higher-better: a lower head RTFx is the regression."""
    base = np.full(20, 10.0) * np.linspace(0.99, 1.01, 20)
    c = paired_change(base, base * 0.8, metric="stt_rtfx", tolerance=TOL, where=WHERE)
    assert c.p_worse < 0.01 and decide([c]).rows[0].verdict == "regression"
    c = paired_change(base, base * 1.25, metric="stt_rtfx", tolerance=TOL, where=WHERE)
    assert decide([c]).rows[0].verdict == "improvement" and decide([c]).status == "pass"


def test_identical_ratios_are_exact_not_estimated() -> None:
    base = np.array([30e6, 31e6, 29e6])
    c = paired_change(base, base * 1.01, metric="instructions", tolerance=Tolerance(0.005), where=WHERE)
    assert c.method.startswith("deterministic") and c.p_worse == 0.0
    assert decide([c]).status == "fail"
    c = paired_change(base, base * 1.001, metric="instructions", tolerance=Tolerance(0.005), where=WHERE)
    assert c.p_worse == 1.0 and decide([c]).status == "pass"


def test_a_twenty_percent_change_whose_ci_excludes_ten_percent_fails() -> None:
    rng = np.random.default_rng(7)
    base = rng.lognormal(5, 0.2, 40)
    head = base * 1.2 * rng.lognormal(0, 0.05, 40)
    c = paired_change(base, head, metric="total_ms", tolerance=TOL, where=WHERE)
    assert c.ci[0] > 1.10
    many = [c] + [
        paired_change(base, base * rng.lognormal(0, 0.01, 40), metric=m, tolerance=TOL, where=WHERE)
        for m in ("stt_ms", "ttfa_ms", "rtfx", "stt_rtfx")
    ]
    assert decide(many).status == "fail"


def test_noise_wider_than_the_tolerance_is_inconclusive_not_a_failure() -> None:
    rng = np.random.default_rng(3)
    base = rng.lognormal(5, 0.4, 6)
    head = base * rng.lognormal(0, 0.3, 6)
    d = decide([paired_change(base, head, metric="total_ms", tolerance=TOL, where=WHERE)])
    assert d.status == "inconclusive" and not d.failed
    assert "INCONCLUSIVE" in d.headline()


def test_unchanged_needs_the_whole_ci_inside_the_tolerance() -> None:
    base = np.linspace(99, 101, 30)
    c = paired_change(base, base * 1.01, metric="total_ms", tolerance=TOL, where=WHERE)
    d = decide([c])
    assert d.rows[0].verdict == "unchanged" and d.status == "pass"


def test_aa_false_failure_rate_stays_below_alpha_with_five_metrics() -> None:
    """Simulated A/A: five gated metrics per decision, noisy pairs; the family-wise rate of false
    failures must stay under alpha (Holm) even with a tolerance of 0."""
    rng = np.random.default_rng(11)
    fails = 0
    trials = 300
    zero = Tolerance(rel=0.0)
    for _ in range(trials):
        changes = []
        for m in ("total_ms", "stt_ms", "ttfa_ms", "rtfx", "stt_rtfx"):
            base = rng.lognormal(4, 0.3, 25)
            head = base * rng.lognormal(0, 0.08, 25)
            changes.append(paired_change(base, head, metric=m, tolerance=zero, where=WHERE))
        fails += decide(changes).failed
    assert fails / trials <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / trials)


def test_paired_wer_difference_exact_and_bootstrapped() -> None:
    exact = paired_difference(
        [0, 1, 0], [2, 3, 1], [10, 10, 10], tolerance=Tolerance(None, 0.01), where=WHERE, exact=True
    )
    assert exact.estimate == pytest.approx(6 / 30 - 1 / 30) and exact.ci[0] == exact.ci[1]
    assert exact.p_worse == 0.0 and "exact" in exact.change_text()
    boot = paired_difference(
        [1, 2, 0, 1] * 5,
        [1, 2, 1, 1] * 5,
        [10] * 20,
        tolerance=Tolerance(None, 0.01),
        where=WHERE,
        exact=False,
    )
    assert boot.ci[0] <= boot.estimate <= boot.ci[1] and boot.kind == "difference"


def test_independent_change_is_widened_by_the_between_run_component() -> None:
    kw = {
        "metric": "total_ms",
        "base": 100.0,
        "head": 120.0,
        "rel_ci": (0.18, 0.22),
        "n": 50,
        "tolerance": TOL,
    }
    tight = independent_change(**kw, where=WHERE, between_run=0.0)  # type: ignore[arg-type]
    wide = independent_change(**kw, where=WHERE, between_run=0.10)  # type: ignore[arg-type]
    assert tight.ci[1] - tight.ci[0] < wide.ci[1] - wide.ci[0]
    assert tight.p_worse < 1e-6 and wide.p_worse > tight.p_worse
    assert decide([tight]).failed and not decide([wide]).failed


def test_not_comparable_is_never_a_regression() -> None:
    c = paired_change([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], metric="total_ms", tolerance=TOL, where=WHERE)
    d = decide([c], not_comparable=["cpu model differs"])
    assert d.status == "not comparable" and not d.failed
    assert all(r.verdict != "regression" for r in d.rows) and "cpu model" in d.headline()


def test_bad_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError):
        paired_change([1.0, 2.0], [1.0], metric="total_ms", tolerance=TOL, where=WHERE)
    with pytest.raises(ValueError):
        paired_change([0.0, 2.0], [1.0, 1.0], metric="total_ms", tolerance=TOL, where=WHERE)


def test_gate_config_from_project_table() -> None:
    config = gate_config_from(
        {"metrics": ["total_ms", "wer"], "tolerance": 0.03, "alpha": 0.01, "tolerances": {"wer": 0.02}}
    )
    assert config.metrics == ("total_ms", "wer") and config.alpha == 0.01
    assert config.tolerance_for("total_ms").rel == 0.03 and config.tolerance_for("wer").abs == 0.02
    assert gate_config_from({}, "stt_ms").metrics == ("stt_ms",)
    assert GateConfig().tolerance_for("instructions").rel == 0.005
    for bad in ({"metrics": ["nope"]}, {"alpha": 2}, {"colour": 1}, {"tolerances": {"wer": "x"}}):
        with pytest.raises(UsageError):
            gate_config_from(bad)


def test_change_text_names_units() -> None:
    c = Change(*WHERE, "total_ms", "ratio", 10, 100.0, 112.0, 1.12, (1.1, 1.14), 0.0, 1.0, 0.05, "m")
    assert c.change_text() == "+12.0 % [+10.0, +14.0]" and c.tolerance_text() == "±5 %"
    assert c.half_width == pytest.approx((math.log(1.14) - math.log(1.1)) / 2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0).filter(lambda x: abs(x) > 1e-6), min_size=1, max_size=9, unique_by=abs))
def test_signed_rank_p_matches_brute_force_enumeration(values: list[float]) -> None:
    """Without ties, the exact p-value is the share of the 2^n sign assignments with T+ >= the observed."""
    import itertools

    from voxperf.report.gate import signed_rank_p

    d = np.array(values)
    n = d.size
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    totals = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product([0, 1], repeat=n)
    ]
    assert signed_rank_p(d) == pytest.approx(np.mean(np.array(totals) >= observed))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=80), st.floats(-2.0, 2.0))
def test_hodges_lehmann_is_shift_equivariant_and_inside_its_ci(values: list[float], shift: float) -> None:
    from voxperf.report.gate import hodges_lehmann

    x = np.array(values)
    point, lo, hi = hodges_lehmann(x)
    assert lo <= point <= hi and x.min() <= lo and hi <= x.max()
    moved = hodges_lehmann(x + shift)
    assert moved == pytest.approx((point + shift, lo + shift, hi + shift), abs=1e-9)


def test_signed_rank_large_n_uses_the_normal_approximation() -> None:
    from voxperf.report.gate import signed_rank_p

    rng = np.random.default_rng(2)
    null = [signed_rank_p(rng.normal(0, 1, 200)) for _ in range(400)]
    assert 0.02 <= float(np.mean(np.array(null) <= 0.05)) <= 0.09  # about alpha
    assert signed_rank_p(rng.normal(0.5, 1, 200)) < 1e-6 and signed_rank_p(np.zeros(5)) == 1.0


def test_exact_changes_do_not_enlarge_the_holm_family() -> None:
    rng = np.random.default_rng(4)
    base = rng.lognormal(4, 0.2, 12)
    noisy = paired_change(
        base, base * 1.12 * rng.lognormal(0, 0.02, 12), metric="stt_ms", tolerance=TOL, where=WHERE
    )
    exact_wer = paired_difference(
        [1, 1], [1, 1], [10, 10], tolerance=Tolerance(None, 0.01), where=WHERE, exact=True
    )
    counts = paired_change([3e7], [3e7], metric="instructions", tolerance=Tolerance(0.005), where=WHERE)
    d = decide([noisy, exact_wer, counts])
    assert d.rows[0].p_worse_adjusted == pytest.approx(noisy.p_worse)  # a family of one
    assert [r.verdict for r in d.rows] == ["regression", "unchanged", "unchanged"]
