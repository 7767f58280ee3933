"""Paired A/B in one job: the bench-worker protocol, the orchestrator, the CLI and its exit codes."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from voxperf.bench.paired import Side, parse_overrides, run_paired, worktree_side
from voxperf.bench.runner import BenchConfig
from voxperf.bench.worker import PROTOCOL, config_from_wire, config_to_wire, serve_worker
from voxperf.errors import UsageError, WorkerError

from .conftest import run_cli


def _config(tone_dir: Path, **kw: object) -> BenchConfig:
    base = {
        "lanes": ("provider",),
        "pipelines": ("dictation",),
        "fixtures": tone_dir,
        "levels": ("raw",),
        "stt": "fake:latency=5ms",
        "vad": "none",
        "iterations": 4,
        "warmup": 1,
    }
    base.update(kw)
    return BenchConfig(**base)  # type: ignore[arg-type]


def test_parse_overrides(tmp_path: Path) -> None:
    assert parse_overrides("stt=faster-whisper:compute_type=float32;vad=webrtc") == {
        "stt": "faster-whisper:compute_type=float32",
        "vad": "webrtc",
    }
    assert parse_overrides("fake_latency=stt=66ms") == {"fake_latency": {"stt": 0.066}}
    toml = tmp_path / "b.toml"
    toml.write_text('stt = "pocketsphinx"\nencode = "opus"\n')
    assert parse_overrides(str(toml)) == {"stt": "pocketsphinx", "encode": "opus"}
    for bad in ("", "gpu=1", "stt", "iterations=3"):
        with pytest.raises(UsageError):
            parse_overrides(bad)


def test_config_travels_over_the_wire_unchanged(tone_dir: Path) -> None:
    config = _config(tone_dir, fake_latency={"stt": 0.06}, levels=("raw", "clean"))
    back = config_from_wire(json.loads(json.dumps(config_to_wire(config))))
    scheduled_by_the_orchestrator = {"iterations", "warmup"}
    assert {k: v for k, v in back.to_dict().items() if k not in scheduled_by_the_orchestrator} == {
        k: v for k, v in config.to_dict().items() if k not in scheduled_by_the_orchestrator
    }
    assert config_from_wire({"lanes": ["codepath"], "from_a_newer_version": 1}).lanes == ("codepath",)


def _talk(messages: list[dict[str, object] | str]) -> list[dict[str, object]]:
    lines = "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)
    out = io.StringIO()
    assert serve_worker(io.StringIO(lines), out) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_worker_protocol_in_process(tone_dir: Path) -> None:
    config = _config(tone_dir)
    replies = _talk(
        [
            {"type": "hello", "protocols": [PROTOCOL]},
            "this is not json",
            {"type": "dance"},
            {"type": "setup", "lane": "provider", "config": config_to_wire(config)},
            {"type": "run", "id": 1, "pipeline": "dictation", "fixture": "a", "level": "raw"},
            {"type": "run", "id": 2, "pipeline": "dictation", "fixture": "nope", "level": "raw"},
            {"type": "bye"},
            {"type": "run", "id": 3, "pipeline": "dictation", "fixture": "a", "level": "raw"},
        ]
    )
    hello, bad_json, unknown, ready, result, missing, bye = replies  # nothing after bye
    assert hello["protocol"] == PROTOCOL and PROTOCOL in hello["protocols"]
    assert bad_json["type"] == "error" and "bad message" in bad_json["message"]
    assert unknown["type"] == "error" and "dance" in unknown["message"]
    assert ready["type"] == "ready" and {f["name"] for f in ready["fixtures"]} == {"a", "b", "c"}
    assert result["type"] == "result" and result["id"] == 1 and result["metrics"]["stt_ms"] >= 5.0
    assert missing["type"] == "error" and missing["id"] == 2 and "nope" in missing["message"]
    assert bye["type"] == "bye"


def test_worker_answers_no_protocol_it_does_not_speak() -> None:
    (hello,) = _talk([{"type": "hello", "protocols": [99]}])
    assert hello["protocol"] is None and hello["protocols"] == [PROTOCOL]


def test_a_slower_head_fails_the_gate_with_paired_ratios(tone_dir: Path, tmp_path: Path) -> None:
    run = run_paired(
        _config(tone_dir),
        Side("base"),
        Side("head", overrides={"stt": "fake:latency=10ms"}),
        log_dir=tmp_path / "logs",
    )
    assert run.decision.status == "fail"
    stt = next(r for r in run.decision.rows if r.change.metric == "stt_ms")
    assert stt.verdict == "regression" and stt.change.n == 4 * 3  # rounds x fixtures, warm-up excluded
    assert 1.4 < stt.change.estimate < 2.3  # 10 ms / 5 ms of sleep; a loaded machine overshoots both
    assert run.rounds == {"provider": 4} and run.stopped_by == "iterations"
    # where the time went: the stt stage carries the total's change
    deltas = run.attribution["provider/dictation/raw"]
    assert deltas["stt"] == pytest.approx(deltas["total"], abs=1.5) and deltas["stt"] > 3
    doc = run.to_dict()
    assert doc["kind"] == "voxperf-ab" and doc["protocol"] == PROTOCOL
    assert len(doc["pairs"]["provider/dictation/raw"]["stt_ms"]) == 12


def test_same_code_on_both_sides_does_not_fail(tone_dir: Path, tmp_path: Path) -> None:
    run = run_paired(_config(tone_dir, stt="fake:latency=20ms"), Side("base"), Side("head"))
    assert run.decision.status in ("pass", "inconclusive")
    stt = next(r for r in run.decision.rows if r.change.metric == "stt_ms")
    assert stt.change.ci[0] <= 1.0 <= stt.change.ci[1] or stt.verdict == "unchanged"


def test_wer_is_a_paired_difference(tone_dir: Path) -> None:
    run = run_paired(
        _config(tone_dir, stt="fake:text=hello world", iterations=3, warmup=0),
        Side("base"),
        Side("head", overrides={"stt": "fake:text=totally different words here"}),
    )
    wer = next(r for r in run.decision.rows if r.change.metric == "wer")
    assert wer.change.kind == "difference" and wer.change.ci[0] == wer.change.ci[1]  # deterministic
    assert wer.change.estimate > 0 and wer.verdict == "regression"


def test_a_budget_runs_until_the_gate_decides(tone_dir: Path) -> None:
    config = _config(tone_dir, iterations=3, stt="fake:latency=5ms")
    slower = Side("head", overrides={"stt": "fake:latency=15ms"})
    run = run_paired(config, Side("base"), slower, max_time_s=600)
    assert run.stopped_by == "decided" and run.rounds["provider"] == 3 and run.decision.status == "fail"
    run = run_paired(config, Side("base"), Side("head"), target_ci=0.5)
    assert run.stopped_by in ("decided", "target") and run.rounds["provider"] == 3


def test_the_decision_is_looked_at_every_few_rounds(tone_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voxperf.bench.paired as paired

    looks: list[int] = []
    real_decide = paired.decide

    def undecided_twice(changes: list[Any], **kw: Any) -> Any:
        # the stand-in decides at the third look whatever the timings were (the fakes' latencies
        # on a loaded machine must not decide what this test is about: when the looks happen)
        looks.append(changes[0].n)
        decision = real_decide(changes, **kw)
        return replace(decision, status="pass" if len(looks) > 2 else "inconclusive")

    monkeypatch.setattr(paired, "decide", undecided_twice)
    run = run_paired(_config(tone_dir, iterations=2), Side("base"), Side("head"), max_time_s=600)
    step = paired.LOOK_EVERY
    assert run.stopped_by == "decided" and run.rounds["provider"] == 2 + 2 * step
    assert looks[:3] == [3 * 2, 3 * (2 + step), 3 * (2 + 2 * step)]  # 3 fixtures a round


def test_inconclusive_runs_look_every_few_rounds_until_the_budget(tone_dir: Path) -> None:
    # a minimum of rounds that no budget reaches: the run ends when the budget is spent
    config = _config(tone_dir, iterations=10**6, stt="fake:latency=5ms")
    ticks = iter(range(10**6))  # an injected clock: every call is one "second" later
    run = run_paired(
        config, Side("base"), Side("head"), target_ci=1e-9, max_time_s=40, clock=lambda: float(next(ticks))
    )
    assert run.stopped_by == "budget" and run.rounds["provider"] >= 1
    ticks = iter(range(10**6))
    both = replace(config, lanes=("provider", "codepath"))
    run = run_paired(
        both, Side("base"), Side("head"), target_ci=1e-9, max_time_s=14, clock=lambda: float(next(ticks))
    )
    assert run.stopped_by == "budget" and min(run.rounds.values()) >= 3  # the budget is shared by lanes


def test_a_missing_or_broken_worker_is_a_one_line_error(tone_dir: Path) -> None:
    with pytest.raises(WorkerError, match="cannot start the base worker"):
        run_paired(_config(tone_dir), Side("base", ("/nonexistent/voxperf",)), Side("head"))
    with pytest.raises(WorkerError, match="base worker exited"):
        run_paired(_config(tone_dir), Side("base", (sys.executable, "-c", "pass")), Side("head"))


def test_a_worker_speaking_another_protocol_is_refused(tone_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "future_worker.py"
    script.write_text(
        "import sys, json\n"
        "for line in sys.stdin:\n"
        "    print(json.dumps({'type': 'hello', 'protocol': None, 'protocols': [7]}), flush=True)\n"
    )
    with pytest.raises(WorkerError, match=r"protocol\(s\) \[7\]"):
        run_paired(_config(tone_dir), Side("base", (sys.executable, str(script))), Side("head"))


def test_worktree_side_checks_out_the_base(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    (repo / "src" / "voxperf").mkdir(parents=True)
    (repo / "src" / "voxperf" / "__init__.py").write_text("")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    side = worktree_side("base", "HEAD", repo)
    src = Path(side.env["PYTHONPATH"])
    assert (
        src / "voxperf" / "__init__.py"
    ).is_file() and src.parent.parent == repo / ".voxperf" / "worktrees"
    with pytest.raises(UsageError, match="not a commit"):
        worktree_side("base", "no-such-ref", repo)


def test_ab_cli_exit_codes_and_report(tone_dir: Path, tmp_path: Path) -> None:
    common = ["--lane", "provider", "--pipeline", "dictation", "--fixtures", str(tone_dir)]
    common += ["--stt", "fake:latency=3ms", "--vad", "none", "--iterations", "4", "--warmup", "0"]
    out, md = tmp_path / "ab.json", tmp_path / "ab.md"
    slower = run_cli(
        "ab", *common, "--head-set", "stt=fake:latency=8ms", "-o", str(out), "--markdown", str(md)
    )
    assert slower.returncode == 1, slower.stderr
    assert "FAIL" in slower.stderr and "stt_ms" in slower.stderr
    assert max(len(line) for line in slower.stderr.splitlines()) <= 100  # fits 100 columns
    report = md.read_text()
    assert report.index("gate") < report.index("Where the time went") < report.index("All metrics")
    assert json.loads(out.read_text())["decision"]["status"] == "fail"
    same = run_cli("ab", *common)
    assert same.returncode == 0, same.stderr
    bad = run_cli("ab", "--target-ci", "150%")
    assert bad.returncode == 2 and "--target-ci" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("ab", "--max-time", "soon")
    assert bad.returncode == 2 and "--max-time" in bad.stderr


def test_bench_vs_runs_a_paired_ab(tone_dir: Path, tmp_path: Path) -> None:
    (tone_dir / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 10)
    out = tmp_path / "ab.json"
    proc = run_cli(
        "bench",
        *("--pipeline", "dictation", "--fixtures", str(tone_dir), "--levels", "raw", "--stt", "fake"),
        *(
            "--vad",
            "none",
            "--iterations",
            "3",
            "--warmup",
            "0",
            "--vs",
            "stt=fake:latency=1ms",
            "-o",
            str(out),
        ),
    )
    assert proc.returncode == 4 and "broken" in proc.stderr and "Traceback" not in proc.stderr
    doc = json.loads(out.read_text())
    assert [f["fixture"] for f in doc["failures"]] == ["broken"]
    assert len(doc["pairs"]["provider/dictation/raw"]["stt_ms"]) == 3 * 3  # a, b, c still paired
    bad = run_cli("bench", "--vs", "gpu=fast")
    assert bad.returncode == 2 and "overrides" in bad.stderr


def test_a_worker_dying_mid_run_keeps_the_pairs_measured(tone_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "dies_after_four.py"
    script.write_text(
        "import os, sys\n"
        "from voxperf.bench import worker\n"
        "run, calls = worker._Session.run, []\n"
        "def dying(self, msg):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 4:\n"
        "        os._exit(9)\n"
        "    return run(self, msg)\n"
        "worker._Session.run = dying\n"
        "sys.exit(worker.serve_worker())\n"
    )
    run = run_paired(
        _config(tone_dir, warmup=0, iterations=5), Side("base"), Side("head", (sys.executable, str(script)))
    )
    assert run.stopped_by == "worker failed" and "exited (code 9)" in run.failures[-1]["message"]
    assert len(run.pairs[("provider", "dictation", "raw")]["stt_ms"]) == 4  # what finished is kept
