"""``voxperf load`` end to end: Locust master and workers as separate processes against a real
``voxperf serve`` (fake engines: what is measured here is the load generator and the definitions,
not an engine), through the real CLI."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VOXPERF, free_port, run_cli, start_serve

# never import locust here: it monkey-patches the whole process for gevent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust is not installed ([load])"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """voxperf serve with a fake STT of exactly 50 ms and a fake TTS, 4 transcription slots."""
    port = free_port()
    jobs = tmp_path_factory.mktemp("jobs")
    proc = start_serve(jobs, port, workers=4, stt="fake:latency=50ms", log=jobs / "serve.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _load(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    proc = run_cli("load", *args, "-o", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["kind"] == "voxperf-load" and doc["schemaVersion"] == 1
    return doc


def test_two_workers_split_the_schedule_and_offer_exactly_the_same_load_as_one(
    server: str, tone_dir: Path, tmp_path: Path
) -> None:
    common = (
        "transcribe",
        "--target",
        server,
        "--rate",
        "20",
        "--duration",
        "2s",
        "--fixtures",
        str(tone_dir),
    )
    one = _load(tmp_path, "one", *common, "--workers", "1")
    two = _load(tmp_path, "two", *common, "--workers", "2")
    for doc in (one, two):
        r = doc["report"]
        assert r["scheduled"] == 40 and r["ok"] == 40 and r["errors"] == {}
        assert r["achieved_rate"] == pytest.approx(20, rel=0.05)
        assert r["metrics"]["service"]["p50"] >= 50  # the fake STT's 50 ms are inside
    assert one["generators"] == {"0": 40}
    assert two["generators"] == {"0": 20, "1": 20}  # every other arrival each: the rate is exact
    csv = Path(two["locustCsv"])
    assert csv.is_file() and "transcribe" in csv.read_text()  # Locust's own statistics saw them


def test_coordinated_omission_is_shown_not_hidden(server: str, tone_dir: Path, tmp_path: Path) -> None:
    """One slot for 10 requests/s of 50+ ms each: the generator falls behind. Latency from the
    intended start grows and late starts are counted while the service time stays flat."""
    doc = _load(
        tmp_path,
        "co",
        "transcribe",
        "--target",
        server,
        "--rate",
        "40",
        "--duration",
        "2s",
        "--fixtures",
        str(tone_dir),
        "--max-in-flight",
        "1",
    )
    r = doc["report"]
    assert r["late"] > r["scheduled"] / 2
    service, latency, lag = (r["metrics"][k] for k in ("service", "latency", "lag"))
    assert latency["p50"] > 3 * service["p50"]
    assert lag["max"] > 500  # the last requests started far behind their time
    assert service["max"] < 10 * service["p50"]  # the server itself was not slower
    assert r["achieved_rate"] < 0.8 * 40  # the starts fell behind the offered rate


def test_dropping_when_busy_counts_the_requests_that_never_started(
    server: str, tone_dir: Path, tmp_path: Path
) -> None:
    doc = _load(
        tmp_path,
        "drop",
        "transcribe",
        "--target",
        server,
        "--rate",
        "40",
        "--duration",
        "1s",
        "--fixtures",
        str(tone_dir),
        "--max-in-flight",
        "1",
        "--drop-when-busy",
    )
    r = doc["report"]
    assert r["errors"].get("dropped", 0) > 0 and r["started"] + r["errors"]["dropped"] == r["scheduled"]
    assert r["started"] < r["scheduled"]


def test_speech_and_jobs_scenarios_report_their_own_metrics(
    server: str, tone_dir: Path, tmp_path: Path
) -> None:
    speech = _load(
        tmp_path,
        "speech",
        "speech",
        "--target",
        server,
        "--rate",
        "5",
        "--duration",
        "1s",
        "--fixtures",
        str(tone_dir),
        "--slo",
        "ttfa_p50=2s",
    )
    r = speech["report"]
    assert r["ok"] == 5, r["errors"]
    assert r["metrics"]["ttfa"]["p50"] > 0 and r["metrics"]["stall_count"]["max"] == 0
    assert r["slo_met"] == {"ttfa_p50<=2000ms": True} and r["goodput_rps"] > 0
    jobs = _load(
        tmp_path,
        "jobs",
        "jobs",
        "--target",
        server,
        "--rate",
        "5",
        "--duration",
        "1s",
        "--fixtures",
        str(tone_dir),
        "--option",
        "poll_interval_s=0.05",
    )
    r = jobs["report"]
    assert r["ok"] == 5 and r["metrics"]["job"]["p50"] >= 50
    assert any("poll" in n for n in r["notes"])


def test_bad_load_input_is_a_one_line_error(tmp_path: Path) -> None:
    remote = run_cli("load", "get", "--target", "http://example.com", "--rate", "1")
    assert (
        remote.returncode == 2
        and "only loopback targets" in remote.stderr
        and "--allow-remote" in remote.stderr
    )
    both = run_cli("load", "get", "--target", "http://127.0.0.1:9", "--rate", "1", "--concurrency", "2")
    assert both.returncode == 2 and "exactly one of --rate" in both.stderr
    unknown = run_cli("load", "dance", "--target", "http://127.0.0.1:9", "--rate", "1")
    assert unknown.returncode == 2 and "unknown load scenario 'dance'" in unknown.stderr
    slo = run_cli("load", "get", "--target", "http://127.0.0.1:9", "--rate", "1", "--slo", "p95<1")
    assert slo.returncode == 2 and "bad SLO" in slo.stderr


def test_a_scaling_curve_and_a_capacity_search_on_a_server_of_known_capacity(
    server: str, tone_dir: Path, tmp_path: Path
) -> None:
    """The server transcribes 4 at a time in 50 ms each (at most ~80 requests/s, less overheads)."""
    curve = _load(
        tmp_path,
        "scaling",
        "transcribe",
        "--target",
        server,
        "--concurrency",
        "1,2,4",
        "--duration",
        "2s",
        "--fixtures",
        str(tone_dir),
    )
    rows = curve["scaling"]
    assert [r["concurrency"] for r in rows] == [1, 2, 4] and rows[0]["scalingFactor"] == pytest.approx(1.0)
    assert rows[1]["throughputRps"] > 1.5 * rows[0]["throughputRps"]  # 4 slots: 2 users nearly double it
    assert all(r["errorRate"] == 0 for r in rows)
    cap = _load(
        tmp_path,
        "capacity",
        "transcribe",
        *("--target", server, "--rate", "10", "--duration", "2s", "--fixtures", str(tone_dir)),
        *("--find-capacity", "--slo", "latency_p50=150ms", "--max-load", "640", "--tolerance", "0.3"),
        *("--timeout", "5s", "--min-requests", "20"),
    )
    best, worst = cap["capacity"]["bracket"]
    assert best is not None and best >= 20  # 20 requests/s of 50 ms on 4 slots: nowhere near full
    assert worst is None or worst > best
    assert cap["capacity"]["capacity"] == best and len(cap["runs"]) == len(cap["capacity"]["points"])
    failing = [p for p in cap["capacity"]["points"] if not p["passed"]]
    assert all(p["reasons"] for p in failing)  # every failed point says why


def test_load_results_go_through_compare_and_gate_with_their_samples(
    server: str, tone_dir: Path, tmp_path: Path
) -> None:
    """A/A on the same server passes the gate; A/B against a server 60 ms slower per request fails."""
    port = free_port()
    slow_jobs = tmp_path / "slow"
    slow_jobs.mkdir()
    slow = start_serve(slow_jobs, port, workers=4, stt="fake:latency=110ms", log=slow_jobs / "serve.log")
    try:
        args = ("transcribe", "--rate", "20", "--duration", "3s", "--fixtures", str(tone_dir))
        for name, url in (("base", server), ("same", server), ("slow", f"http://127.0.0.1:{port}")):
            _load(tmp_path, name, *args, "--target", url, "--result", str(tmp_path / f"{name}.result.json"))
    finally:
        slow.terminate()
        slow.wait(timeout=20)
    base, same, slower = (str(tmp_path / f"{n}.result.json") for n in ("base", "same", "slow"))
    stored = run_cli("store", "put", base, "--store", str(tmp_path / "store"), "--commit", "a" * 40)
    assert stored.returncode == 0, stored.stderr
    aa = run_cli("gate", "--base", base, same, "--gate-metrics", "latency_ms")
    assert aa.returncode in (0, 3), aa.stderr + aa.stdout  # pass, or inconclusive: never a false failure
    ab = run_cli("gate", "--base", base, slower, "--gate-metrics", "latency_ms")
    assert ab.returncode == 1, ab.stderr + ab.stdout
    assert "latency_ms" in ab.stdout + ab.stderr


def test_a_worker_on_another_machine_joins_the_master_and_takes_its_share(
    server: str, tmp_path: Path
) -> None:
    """A master with one local worker and one remote (here: another process started by hand with
    `voxperf load-worker`, as on another machine): the schedule is split over both."""
    import subprocess
    import time

    port = free_port()
    out = tmp_path / "joined.json"
    master = subprocess.Popen(
        [
            *(str(VOXPERF), "load", "get", "--target", server, "--rate", "20", "--duration", "2s"),
            *(
                "--workers",
                "1",
                "--remote-workers",
                "1",
                "--master-bind",
                f"127.0.0.1:{port}",
                "-o",
                str(out),
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    plan = out.with_suffix(".locust") / "plan.json"
    deadline = time.monotonic() + 60
    while not plan.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = run_cli("load-worker", "--join", f"127.0.0.1:{port}", "--plan", str(plan), timeout=120)
    _, err = master.communicate(timeout=120)
    assert master.returncode == 0, err.decode()
    assert worker.returncode == 0, worker.stderr
    doc = json.loads(out.read_text())
    assert doc["report"]["scheduled"] == 40 and doc["report"]["ok"] == 40
    assert sorted(doc["generators"].values()) == [20, 20]
