"""``voxperf gate`` on the summaries other load tools write, with real files made by those tools.

``tests/data/k6-summary-*.json``: k6 v1.1.0 running ``examples/k6/jobs.js`` (5 jobs/s for 6 s,
20 ms polls) against ``voxperf serve`` whose fake STT takes 50 ms (base, head-same) or 100 ms
(head-slow), ``--summary-export``. ``tests/data/locust-stats-*.csv``: Locust 2.47.0, 5
FastHttpUsers posting to ``/v1/audio/transcriptions`` of the same servers for 8 s, ``--csv``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from voxperf.load.summaries import compare_summaries, parse_drift, read_summary

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("kind", "slow_metric"), [("k6-summary-{}.json", "job_ms.p95"), ("locust-stats-{}.csv", "aggregated.p95")]
)
def test_same_setup_passes_and_a_slower_server_fails_on_its_headline_metric(
    kind: str, slow_metric: str
) -> None:
    base, same, slow = (read_summary(DATA / kind.format(n)) for n in ("base", "head-same", "head-slow"))
    assert base is not None and same is not None and slow is not None
    assert not [r for r in compare_summaries(base, same) if r.gated and r.verdict == "regression"]  # A/A
    failed = {r.metric for r in compare_summaries(base, slow) if r.gated and r.verdict == "regression"}
    assert slow_metric in failed  # A/B: the server was 50 ms slower per job
    loose = compare_summaries(base, slow, parse_drift(f"{slow_metric}=200%"))
    assert next(r for r in loose if r.metric == slow_metric).verdict == "ok"


def test_k6_numbers_are_read_as_k6_wrote_them() -> None:
    k6 = read_summary(DATA / "k6-summary-head-slow.json")
    assert k6 is not None and k6.tool == "k6"
    assert (
        k6.values["job_ms.p95"] == pytest.approx(110.264, abs=1e-3)
        and k6.better["iterations.rate"] == "higher"
    )
    assert k6.values["job_failed.rate"] == 0.0 and k6.better["job_failed.rate"] == "lower"
    locust = read_summary(DATA / "locust-stats-head-slow.csv")
    assert locust is not None and locust.values["aggregated.p95"] == 240.0
    assert read_summary(DATA / "result-v1-provider.json") is None  # a voxperf result is not a summary


def test_the_gate_command_decides_on_summaries_with_exit_codes(tmp_path: Path) -> None:
    fail = run_cli(
        "gate", "--base", str(DATA / "k6-summary-base.json"), str(DATA / "k6-summary-head-slow.json")
    )
    assert fail.returncode == 1 and "FAIL" in fail.stderr and "regression  job_ms.p95" in fail.stderr
    ok = run_cli(
        "gate", "--base", str(DATA / "locust-stats-base.csv"), str(DATA / "locust-stats-head-same.csv")
    )
    assert ok.returncode == 0 and "PASS" in ok.stderr and "no samples, no CI" in ok.stderr
    mixed = run_cli(
        "gate", "--base", str(DATA / "k6-summary-base.json"), str(DATA / "locust-stats-head-same.csv")
    )
    assert mixed.returncode == 2 and "is not a locust summary" in mixed.stderr
    bad = run_cli(
        "gate",
        "--base",
        str(DATA / "k6-summary-base.json"),
        str(DATA / "k6-summary-head-same.json"),
        "--drift",
        "job_ms",
    )
    assert bad.returncode == 2 and "bad drift 'job_ms'" in bad.stderr
