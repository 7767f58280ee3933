"""Load: the arrival processes (property tests), SLO parsing and the report's figures from
hand-made samples (every expected value is exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.load.arrivals import Arrivals, share
from voxperf.load.report import SLO, build_report, parse_slos
from voxperf.load.sample import LoadSample

MS = 1_000_000


@given(
    st.floats(0.5, 500),
    st.floats(0.5, 20),
    st.sampled_from(["constant", "poisson", "gamma"]),
    st.integers(0, 99),
)
@settings(max_examples=60, deadline=None)
def test_a_schedule_is_ascending_inside_the_run_and_starts_at_zero(
    rate: float, duration: float, process: str, seed: int
) -> None:
    s = Arrivals(rate, duration, process, burstiness=0.5, seed=seed).schedule()  # type: ignore[arg-type]
    assert len(s) >= 1 and s[0] == 0.0
    assert np.all(np.diff(s) > 0) and s[-1] < duration


@given(st.floats(1, 300), st.floats(1, 20))
def test_a_constant_schedule_has_exactly_rate_times_duration_arrivals_evenly_spaced(
    rate: float, duration: float
) -> None:
    s = Arrivals(rate, duration).schedule()
    assert len(s) == int(np.ceil(rate * duration - 1e-9))
    assert np.allclose(np.diff(s), 1 / rate)


def test_poisson_and_gamma_have_the_rate_and_the_spread_they_promise() -> None:
    """Checked against the distributions' own moments over 20,000 arrivals (independent of the code's)."""
    poisson = np.diff(Arrivals(200, 100, "poisson", seed=1).schedule())
    assert poisson.mean() == pytest.approx(1 / 200, rel=0.02)
    assert poisson.std() / poisson.mean() == pytest.approx(1.0, rel=0.03)  # exponential gaps: CV 1
    for b in (0.25, 4.0):
        gaps = np.diff(Arrivals(200, 100, "gamma", burstiness=b, seed=2).schedule())
        assert gaps.mean() == pytest.approx(1 / 200, rel=0.03)
        assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(b), rel=0.05)
    again = Arrivals(200, 100, "poisson", seed=1).schedule()
    assert np.array_equal(np.diff(again), poisson)  # the seed fixes the schedule


def test_a_ramp_offers_the_integral_of_its_rate_and_speeds_up_as_it_goes() -> None:
    s = Arrivals(10, 20, "constant", ramp_to=30).schedule()
    assert len(s) == pytest.approx((10 + 30) / 2 * 20, abs=1)
    first, last = np.diff(s[:10]).mean(), np.diff(s[-10:]).mean()
    assert first == pytest.approx(1 / 10, rel=0.1) and last == pytest.approx(1 / 30, rel=0.1)
    assert np.sum(s < 10) == pytest.approx(10 * 10 + 20 / 20 / 2 * 100, abs=2)  # ∫0^10 (10 + t) dt = 150


@given(st.integers(1, 8), st.integers(0, 400))
def test_generator_shares_partition_the_schedule(count: int, n: int) -> None:
    whole = np.arange(n, dtype=float)
    parts = [share(whole, i, count) for i in range(count)]
    assert sorted(np.concatenate(parts).tolist()) == whole.tolist()
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_bad_arrivals_and_slos_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="rate must be"):
        Arrivals(0, 10)
    with pytest.raises(ValueError, match="unknown arrival process"):
        Arrivals(1, 10, "uniform")  # type: ignore[arg-type]
    assert parse_slos("ttfa_p95=800ms, job_p95=10s") == [
        SLO("ttfa", "p95", 800.0),
        SLO("job", "p95", 10_000.0),
    ]
    with pytest.raises(ValueError, match="bad SLO 'ttfa<800'"):
        parse_slos("ttfa<800")


def _sample(
    seq: int, intended_ms: float, lag_ms: float, service_ms: float, error: str | None = None
) -> LoadSample:
    actual = int((intended_ms + lag_ms) * MS)
    return LoadSample(
        "transcribe",
        seq,
        seq % 2,
        int(intended_ms * MS),
        actual_ns=actual,
        first_byte_ns=actual + int(service_ms * MS / 2),
        last_byte_ns=actual + int(service_ms * MS),
        status=200 if error is None else 503,
        error=error,
        audio_s=2.0,
    )


def test_the_report_separates_latency_from_intended_start_and_service_time() -> None:
    # 100 requests at 10/s over 10 s; the generator fell behind: lag grows 0, 10, 20 ... ms,
    # while the server answered every request in exactly 50 ms
    samples = [_sample(i, i * 100, i * 10, 50) for i in range(100)]
    samples[7] = _sample(7, 700, 70, 50, error="http_5xx")
    report = build_report(
        samples,
        scenario="transcribe",
        offered_rate=10,
        concurrency=None,
        duration_s=10,
        slos=parse_slos("latency_p50=600ms"),
        late_ms=5,
    )
    assert report.scheduled == 100 and report.ok == 99 and report.errors == {"http_5xx": 1}
    assert report.metrics["service"]["p50"] == pytest.approx(50.0)
    assert report.metrics["service"]["max"] == pytest.approx(50.0)  # flat
    lat = sorted((s.last_byte_ns - s.intended_ns) / MS for s in samples if s.ok)
    assert report.metrics["latency"]["p50"] == pytest.approx(
        float(np.quantile(lat, 0.5))
    )  # grows with the lag
    assert report.late == 99  # every lag above 5 ms (the first is 0)
    assert report.error_rate == pytest.approx(0.01)
    assert report.audio_rtfx == pytest.approx(99 * 2.0 / report.span_s)
    good = sum(1 for v in lat if v <= 600)
    assert report.goodput_rps == pytest.approx(good / report.span_s)
    assert report.slo_met == {"latency_p50<=600ms": report.metrics["latency"]["p50"] <= 600}
    assert report.windows[0]["requests"] == 9 and report.consistency["throughput_min_max"] == pytest.approx(
        9 / 10
    )


def test_slos_on_counts_and_maxima_need_no_unit() -> None:
    (stalls,) = parse_slos("stall_count_max=0")
    assert stalls == SLO("stall_count", "max", 0.0) and str(stalls) == "stall_count_max<=0"
    with pytest.raises(ValueError, match="bad SLO"):
        parse_slos("ttfa_p90=800ms")  # no p90 is computed: refused rather than never met


def test_wer_under_load_is_corpus_wer_of_the_answers() -> None:
    a = _sample(0, 0, 0, 50)
    a.fixture, a.text = "f1", "hello world"
    b = _sample(1, 100, 0, 50)
    b.fixture, b.text = "f2", "the quick brown"  # one of four words wrong
    report = build_report(
        [a, b],
        scenario="transcribe",
        offered_rate=10,
        concurrency=None,
        duration_s=0.2,
        references={"f1": "hello world", "f2": "the quick brown fox"},
    )
    assert report.wer is not None
    assert report.wer["corpusWer"] == pytest.approx(
        1 / 6
    )  # Σ edits ÷ Σ reference words, not a mean of 0 and 1/4
    assert report.wer["utterances"] == 2
