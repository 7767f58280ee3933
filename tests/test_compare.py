"""compare / gate: verdict properties, attribution, mismatches, and a real injected slowdown."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.bench.schema import BenchResult, dump_result, parse_result
from voxperf.bench.stats import Delta
from voxperf.errors import ExitCode, UsageError
from voxperf.report.compare import (
    DEFAULT_THRESHOLDS,
    Thresholds,
    compare_results,
    thresholds_from_config,
    verdict_for,
)
from voxperf.report.render import COMMENT_MARKER, render_markdown

from .conftest import run_cli, synthetic


def rows(comparison, metric: str = "stt_ms", stat: str = "p50", fixture: str | None = None):
    return [r for r in comparison.rows if r.metric == metric and r.stat == stat and r.fixture == fixture]


stable = st.lists(st.floats(50.0, 51.0), min_size=5, max_size=12)


@settings(max_examples=25, deadline=None)
@given(stable, stable)
def test_result_compared_with_itself_is_unchanged(a: list[float], b: list[float]) -> None:
    result = synthetic({"f1": a, "f2": b})
    comparison = compare_results(result, result, resamples=200)
    assert comparison.rows
    assert {r.verdict for r in comparison.rows} == {"unchanged"}
    assert not comparison.failed


@settings(max_examples=25, deadline=None)
@given(stable, st.floats(0.5, 2.0), st.integers(0, 3))
def test_swapping_base_and_head_flips_the_verdict(a: list[float], factor: float, jitter: int) -> None:
    head_values = [v * factor + 0.01 * ((i + jitter) % 3) for i, v in enumerate(a)]
    base, head = synthetic({"f": a}), synthetic({"f": head_values})
    forward = {(r.metric, r.stat): r.verdict for r in compare_results(base, head, resamples=200).rows}
    backward = {(r.metric, r.stat): r.verdict for r in compare_results(head, base, resamples=200).rows}
    flip = {"regression": "improvement", "improvement": "regression"}
    for key, verdict in forward.items():
        assert backward[key] == flip.get(verdict, verdict)


def test_clear_slowdown_is_an_error_regression() -> None:
    base = synthetic({"f": [100.0, 101.0, 99.5, 100.2, 100.8]})
    head = synthetic({"f": [150.0, 151.0, 149.5, 150.2, 150.8]})
    comparison = compare_results(base, head, resamples=500)
    r = rows(comparison)[0]
    assert (r.verdict, r.severity) == ("regression", "error")
    assert r.delta.rel == pytest.approx(0.5, abs=0.01)
    assert r.delta.abs_ci[0] > 0
    assert comparison.failed
    assert comparison.rows[0].verdict == "regression"  # regressions first


def test_noisy_change_is_inconclusive_not_a_pass() -> None:
    base = synthetic({"f": [100.0, 20.0, 180.0, 60.0, 140.0]})
    head = synthetic({"f": [130.0, 30.0, 230.0, 70.0, 190.0]})
    r = rows(compare_results(base, head, resamples=500))[0]
    assert r.verdict == "inconclusive"


def test_too_few_samples() -> None:
    r = rows(compare_results(synthetic({"f": [1.0, 2.0]}), synthetic({"f": [9.0, 9.5]})))[0]
    assert r.verdict == "inconclusive" and "too few" in r.reason


def test_verdict_rules_directly() -> None:
    thr = Thresholds(rel_warn=0.1, abs_warn=5.0, rel_error=0.2, abs_error=20.0)
    small = Delta(100, 103, 3, 0.03, (2.5, 3.5), (0.025, 0.035))  # significant but below threshold
    assert verdict_for(small, "lower", thr, 10, 10)[0] == "unchanged"
    warn = Delta(100, 115, 15, 0.15, (12, 18), (0.12, 0.18))
    assert verdict_for(warn, "lower", thr, 10, 10)[:2] == ("regression", "warning")
    assert verdict_for(warn, "higher", thr, 10, 10)[:2] == ("improvement", "warning")  # e.g. RTFx went up
    # both bounds must pass: +15 % but only +1.5 ms on a small stage is not a regression
    tiny = Delta(10, 11.5, 1.5, 0.15, (1.2, 1.8), (0.12, 0.18))
    assert verdict_for(tiny, "lower", thr, 10, 10)[0] == "unchanged"


def test_attribution_adds_up_and_names_the_stage() -> None:
    base = synthetic({"f1": [50.0] * 5, "f2": [60.0] * 5})
    head = synthetic({"f1": [80.0] * 5, "f2": [90.0] * 5})
    (a,) = compare_results(base, head, resamples=200).attributions
    assert a.dominant == "stt"
    assert sum(a.stage_deltas_ms.values()) == pytest.approx(a.total_delta_ms)
    assert a.total_delta_ms == pytest.approx(30.0)


def test_mismatches_are_listed_and_the_rest_compared() -> None:
    base = synthetic({"f1": [50.0] * 5, "f2": [60.0] * 5})
    head = synthetic({"f1": [50.0] * 5, "f3": [60.0] * 5})
    c = compare_results(base, head, resamples=200)
    assert any("f2 only in base" in s for s in c.skipped) and any("f3 only in head" in s for s in c.skipped)
    assert rows(c) and all(r.fixture in (None, "f1") for r in c.rows)
    other_audio = synthetic({"f1": [50.0] * 5}, sha="1" * 64)
    c = compare_results(base, other_audio, resamples=200)
    assert not c.rows and any("audio differs" in s for s in c.skipped)
    other_lane = synthetic({"f1": [50.0] * 5}, lane="provider")
    c = compare_results(base, other_lane, resamples=200)
    assert not c.rows and any("only in" in s for s in c.skipped)


def test_thresholds_config() -> None:
    t = thresholds_from_config({"thresholds": {"total_ms": {"rel_error": 0.5, "abs_error": 500}}})
    assert (
        t["total_ms"].rel_error == 0.5 and t["total_ms"].abs_warn == DEFAULT_THRESHOLDS["total_ms"].abs_warn
    )
    # a custom stage's time is a metric like the built-in stages': its thresholds start from theirs
    custom = thresholds_from_config({"thresholds": {"diarize_ms": {"abs_error": 50}}})["diarize_ms"]
    assert custom.abs_error == 50 and custom.rel_warn == DEFAULT_THRESHOLDS["stt_ms"].rel_warn
    for bad in (
        {"thresholds": {"nope": {}}},
        {"thresholds": {"total_ms": {"rel": 1}}},
        {"thresholds": {"total_ms": {"rel_warn": -1}}},
    ):
        with pytest.raises(UsageError):
            thresholds_from_config(bad)


def test_ttfa_alert_limits() -> None:
    data = synthetic({"f": [1500.0] * 5}).model_dump(mode="json")
    for run in data["lanes"]["codepath"]["runs"]:
        run["pipeline"], run["level"] = "speech", None
        run["metrics"] = {"ttfa_ms": 2500.0}
    head = parse_result(data)
    c = compare_results(head, head, resamples=100)
    assert [(a.metric, a.severity) for a in c.alerts] == [("ttfa_ms", "error")]
    assert not c.failed  # a value limit is information; only the gated changes decide
    md = render_markdown(c)
    assert "**Alerts**" in md and "ttfa_ms p50 2,500 ms beyond limit 2,000 ms" in md


def test_markdown_report_leads_with_the_decision() -> None:
    base = synthetic({"f1": [100.0, 101, 99, 100, 100.5], "f2": [50.0, 51, 49, 50, 50.5]})
    head = synthetic({"f1": [150.0, 151, 149, 150, 150.5], "f2": [75.0, 76, 74, 75, 75.5]})
    c = compare_results(base, head, resamples=200)
    assert c.failed and c.decision is not None and c.decision.status == "fail"
    md = render_markdown(c)
    assert md.startswith(COMMENT_MARKER)
    assert md.index("gate: FAIL") < md.index("Where the time went") < md.index("All metrics")
    assert "| regression | stt_ms |" in md and "±5 %" in md
    assert "dominant **stt**" in md and "Per-fixture breakdown" in md


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real codepath-lane runs: stt 60 ms, then 78 ms (a 30 % slowdown), 10 iterations each."""
    import numpy as np
    import soundfile as sf

    d = tmp_path_factory.mktemp("fx")
    t = np.arange(16000) / 16000
    sf.write(d / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    out = []
    for latency in (0.060, 0.078):
        config = BenchConfig(
            lanes=("codepath",),
            pipelines=("dictation",),
            fixtures=d,
            levels=("raw",),
            iterations=10,
            warmup=1,
            fake_latency={"stt": latency},
            resamples=200,
        )
        path = d / f"r{latency}.json"
        result = run_bench(config).result
        for lane in result.lanes.values():  # this machine's other load is not the subject here
            lane.resources.otherCpuS = 0.0  # (comparability has tests of its own)
            lane.resources.runDelayS = 0.0
        dump_result(result, path)
        out.append(path)
    return out[0], out[1]


def test_injected_30_percent_slowdown_is_detected(injected: tuple[Path, Path]) -> None:
    base, head = (parse_result(json.loads(p.read_text())) for p in injected)
    c = compare_results(base, head, resamples=1000)
    stt = rows(c)[0]
    assert stt.verdict == "regression" and stt.severity is not None  # +18 ms: warn or error by load
    assert 0.2 < (stt.delta.rel or 0) < 0.4  # 18 ms more sleep on 60 (a loaded machine overshoots both)
    assert c.attributions[0].dominant == "stt"


def test_gate_cli_exit_codes(injected: tuple[Path, Path], tmp_path: Path) -> None:
    base, head = injected
    ok = run_cli("gate", str(head), "--base", str(head))
    assert ok.returncode == ExitCode.OK, ok.stderr
    strict = tmp_path / "voxperf.toml"
    strict.write_text("[thresholds.stt_ms]\nrel_error = 0.2\nabs_error = 10\n")
    failed = run_cli("gate", str(head), "--base", str(base), cwd=tmp_path)
    assert failed.returncode == ExitCode.GATE_FAILED, failed.stderr
    assert "stt_ms" in failed.stderr and "regression" in failed.stderr and "FAIL" in failed.stderr
    assert max(len(line) for line in failed.stderr.splitlines()) <= 100  # fits 100 columns
    shown = run_cli("compare", str(head), "--base", str(base), "--all", cwd=tmp_path)
    assert shown.returncode == 0 and max(len(line) for line in shown.stderr.splitlines()) <= 100
    assert shown.stderr.index("voxperf gate") < shown.stderr.index("all metrics")  # decision first
    usage = run_cli("gate", str(head))
    assert usage.returncode == ExitCode.USAGE and "--base" in usage.stderr
    md = tmp_path / "r.md"
    shown = run_cli("compare", str(head), "--base", str(base), "--markdown", str(md), "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["rows"] and md.read_text().startswith(COMMENT_MARKER)


def test_metric_missing_for_some_fixtures_is_compared_on_the_rest() -> None:
    """A metric present only for some fixtures (TTFA needs audible audio, RTFx a real engine) must
    not be paired by position."""
    base = synthetic({"a": [50.0] * 5, "b": [60.0] * 5, "c": [70.0] * 5})
    head = synthetic({"a": [50.0] * 5, "b": [60.0] * 5, "c": [70.0] * 5})
    data = {}
    for name, result, values in (("base", base, {"a": 10.0}), ("head", head, {"b": 30.0, "a": 10.0})):
        d = result.model_dump(mode="json")
        for run in d["lanes"]["codepath"]["runs"]:
            if run["fixture"] in values:
                run["metrics"]["stt_rtfx"] = values[run["fixture"]]
        data[name] = parse_result(d)
    c = compare_results(data["base"], data["head"], resamples=100)
    rtfx_rows = [r for r in c.rows if r.metric == "stt_rtfx"]
    assert rtfx_rows and {r.fixture for r in rtfx_rows} == {None}  # only fixture a has it on both sides
    assert all(r.delta.base == r.delta.head == pytest.approx(10.0) for r in rtfx_rows)


def _with_wer(result: BenchResult, edits: dict[str, int], words: int = 20) -> BenchResult:
    """``result`` with a corpus-WER record in its lane: ``edits`` substitutions per utterance."""
    d = result.model_dump(mode="json")
    utterances = [
        {
            "fixture": name,
            "wer": e / words,
            "substitutions": e,
            "deletions": 0,
            "insertions": 0,
            "hits": words - e,
            "referenceWords": words,
            "iterations": 1,
        }
        for name, e in edits.items()
    ]
    total = sum(edits.values())
    d["lanes"]["codepath"]["wer"] = [
        {
            "pipeline": "dictation",
            "level": "raw",
            "normalizer": "whisper-english",
            "corpusWer": total / (words * len(edits)),
            "ci95": [0.0, 1.0],
            "substitutions": total,
            "deletions": 0,
            "insertions": 0,
            "hits": words * len(edits) - total,
            "referenceWords": words * len(edits),
            "utterances": utterances,
        }
    ]
    return parse_result(d)


def test_corpus_wer_compared_on_paired_utterances() -> None:
    names = ["a", "b", "c", "d", "e"]
    plain = synthetic({n: [50.0] * 5 for n in names})
    base = _with_wer(plain, {"a": 1, "b": 0, "c": 2, "d": 0, "e": 1})
    same = compare_results(base, _with_wer(plain, {"a": 1, "b": 0, "c": 2, "d": 0, "e": 1}), resamples=200)
    (row,) = [r for r in same.rows if r.metric == "wer"]
    assert (row.stat, row.verdict, row.delta.abs) == ("corpus", "unchanged", 0.0)
    # two of five utterances now entirely wrong: corpus WER 4 % -> 42 %, an error-level regression
    worse = compare_results(base, _with_wer(plain, {"a": 20, "b": 20, "c": 2, "d": 0, "e": 1}), resamples=200)
    (row,) = [r for r in worse.rows if r.metric == "wer"]
    assert row.delta.head == pytest.approx(43 / 100) and row.delta.base == pytest.approx(4 / 100)
    assert row.verdict == "regression" and row.severity == "error" and worse.failed
    # a different normaliser is not comparable
    d = base.model_dump(mode="json")
    d["lanes"]["codepath"]["wer"][0]["normalizer"] = "basic"
    other = compare_results(parse_result(d), base, resamples=100)
    assert not [r for r in other.rows if r.metric == "wer"] and any("normalisers" in s for s in other.skipped)


def test_touched_files_mapped_and_hostile_commits_refused(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    g = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*g, "init", "-q"], check=True)
    (repo / "src").mkdir()
    (repo / "src" / "stt engine.py").write_text("x = 1\\n")
    subprocess.run([*g, "add", "."], check=True)
    subprocess.run([*g, "commit", "-qm", "a"], check=True)
    c1 = subprocess.run([*g, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (repo / "src" / "stt engine.py").write_text("x = 2\\n")
    (repo / "README.md").write_text("docs\\n")
    subprocess.run([*g, "commit", "-qam", "b"], check=True)
    subprocess.run([*g, "add", "."], check=True)
    subprocess.run([*g, "commit", "-qm", "c"], check=True)
    c2 = subprocess.run([*g, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    base = synthetic({"f": [50.0] * 5}, commit=c1)
    head = synthetic({"f": [80.0] * 5}, commit=c2)
    (a,) = compare_results(base, head, repo=repo, globs={"stt": ["src/stt*"]}, resamples=100).attributions
    assert a.files == {"stt": ["src/stt engine.py"], "unmapped": ["README.md"]}
    hostile = base.model_copy(
        update={"git": base.git.model_copy(update={"commit": f"--output={tmp_path / 'pwned'}"})}
    )
    (a,) = compare_results(hostile, head, repo=repo, resamples=100).attributions
    assert a.files == {} and not (tmp_path / "pwned").exists()


def test_gate_with_nothing_compared_is_not_ok(tmp_path: Path) -> None:
    from voxperf.bench.schema import dump_result

    base, head = tmp_path / "b.json", tmp_path / "h.json"
    dump_result(synthetic({"f": [50.0] * 5}), base)
    dump_result(synthetic({"f": [90.0] * 5}, sha="1" * 64), head)  # other audio: nothing comparable
    proc = run_cli("gate", str(head), "--base", str(base))
    assert proc.returncode == ExitCode.DATA and "NOTHING COMPARED" in proc.stderr
    assert run_cli("gate", str(head), "--base", str(base), "--allow-missing-baseline").returncode == 0
    typo = run_cli("gate", str(head), "--base-commit", "HEAD", "--store", str(tmp_path / "typo-store"))
    assert typo.returncode == ExitCode.USAGE and "no store at" in typo.stderr
    assert not (tmp_path / "typo-store").exists()
    assert run_cli("gate", str(head), "--base", str(base), "--resamples", "0").returncode == ExitCode.USAGE


def test_markdown_escapes_untrusted_text_from_result_files() -> None:
    evil = "a|x</details><img src=x onerror=alert(1)> [click](https://evil.example) @octocat `"
    base = synthetic({evil: [100.0, 101, 99, 100, 100.5], "ok": [50.0] * 5}, commit="<b>x</b>`|" + "0" * 30)
    head = synthetic({evil: [150.0, 151, 149, 150, 150.5], "ok": [50.0] * 5})
    md_text = render_markdown(compare_results(base, head, resamples=100))
    assert "<img" not in md_text and "](https://evil" not in md_text and " @octocat" not in md_text
    assert md_text.count("<details>") == md_text.count("</details>")
    fixture_rows = [line for line in md_text.splitlines() if "img src" in line]  # per-fixture table rows
    assert fixture_rows
    for line in fixture_rows:  # 8 columns: 9 unescaped pipes, whatever the fixture name holds
        assert line.count("|") - line.count("\\|") == 9, line


def test_mermaid_timeline_leaves_out_runs_without_the_metric() -> None:
    from voxperf.report.render import TrendPoint

    r = synthetic({"f": [50.0] * 5})
    k = ("codepath", "dictation", "raw", "total_ms")
    trend = [
        TrendPoint("main", "a" * 40, "t", {k: 10.0}),
        TrendPoint("main", "b" * 40, "t", {}),
        TrendPoint("main", "c" * 40, "t", {k: 12.0}),
    ]
    md_text = render_markdown(compare_results(r, r, resamples=50), trend=trend, mermaid=True)
    assert '  x-axis ["aaaaaaa", "ccccccc"]' in md_text and "  line [10.0, 12.0]" in md_text


def _loaded(result: BenchResult, other_cpu_s: float, wall_s: float = 10.0) -> BenchResult:
    d = result.model_dump(mode="json")
    for lane in d["lanes"].values():
        lane["resources"].update(otherCpuS=other_cpu_s, wallS=wall_s)
    return parse_result(d)


def test_a_run_under_other_load_is_not_comparable_never_a_regression(tmp_path: Path) -> None:
    from voxperf.bench.schema import dump_result
    from voxperf.report.compare import comparability

    quiet = _loaded(synthetic({"f": [50.0, 51, 49, 50, 50.5] * 2}), other_cpu_s=0.5)
    busy = _loaded(synthetic({"f": [90.0, 92, 88, 90, 91] * 2}), other_cpu_s=18.0)  # 1.8 cores busy
    reasons = comparability(quiet, busy)
    assert len(reasons) == 1 and "0.1 core(s) busy during the base run and 1.8 during the head" in reasons[0]
    c = compare_results(quiet, busy, resamples=200)
    assert c.decision is not None and c.decision.status == "not comparable" and not c.failed
    base, head = tmp_path / "b.json", tmp_path / "h.json"
    dump_result(quiet, base)
    dump_result(busy, head)
    proc = run_cli("gate", str(head), "--base", str(base))
    assert proc.returncode == ExitCode.NOT_COMPARABLE and "NOT COMPARABLE" in proc.stderr
    assert "regression" not in proc.stderr


def test_comparability_names_machine_and_engine_differences() -> None:
    from voxperf.report.compare import comparability

    a = synthetic({"f": [50.0] * 5}).model_dump(mode="json")
    a["machine"].update(cpuModel="One CPU", coresLogical=2)
    b = copy.deepcopy(a)
    b["machine"]["cpuModel"] = "Another CPU"
    b["machine"]["coresLogical"] = 64
    engine = {
        "role": "stt",
        "name": "faster-whisper",
        "version": "1.1.0",
        "model": "tiny.en",
        "spec": "faster-whisper",
        "selectionPolicy": "default",
        "loadMs": 1.0,
        "warmupMs": 1.0,
    }
    a["lanes"]["codepath"]["engines"] = [engine]
    b["lanes"]["codepath"]["engines"] = [{**engine, "version": "1.2.0"}]
    reasons = comparability(parse_result(a), parse_result(b))
    assert any("CPU model differs" in r for r in reasons) and any("core count" in r for r in reasons)
    assert any("stt engine differs" in r and "1.2.0" in r for r in reasons)
    assert comparability(parse_result(a), parse_result(a)) == []


def test_split_half_drift_widens_a_stored_comparison() -> None:
    from voxperf.report.compare import split_half_drift

    steady = synthetic({"f": [50.0, 50.5, 49.5, 50.0, 50.2, 49.8, 50.1, 50.0]})
    drifting = synthetic({"f": [50.0, 50.5, 49.5, 50.0, 60.2, 59.8, 60.1, 60.0]})  # 2nd half +20 %
    assert split_half_drift(steady, "codepath", "dictation", "raw", "stt_ms") < 0.01
    drift = split_half_drift(drifting, "codepath", "dictation", "raw", "stt_ms")
    assert drift == pytest.approx(np.log(60.05 / 50.0), rel=0.05)
    head = synthetic({"f": [58.0, 58.5, 57.5, 58.0, 58.2, 57.8, 58.1, 58.0]})  # +16 % vs steady
    assert compare_results(steady, head, resamples=200).failed
    assert not compare_results(drifting, head, resamples=200).failed  # the base itself moved by 20 %


def test_a_saturated_machine_is_seen_by_the_run_delay() -> None:
    """On a machine already full, more load no longer raises the CPU others use, but our requests
    wait longer for a CPU: that wait (schedstat run delay) makes the pair not comparable."""
    from voxperf.report.compare import comparability

    base = synthetic({"f": [50.0, 51, 49, 50, 50.5] * 2}).model_dump(mode="json")
    head = synthetic({"f": [80.0, 82, 78, 80, 81] * 2}).model_dump(mode="json")
    for d, delay in ((base, 0.4), (head, 4.0)):
        d["lanes"]["codepath"]["resources"].update(otherCpuS=17.0, wallS=10.0, runDelayS=delay)
    reasons = comparability(parse_result(base), parse_result(head))
    assert len(reasons) == 1 and "waited for a CPU 4% of the base run and 40% of the head run" in reasons[0]
    c = compare_results(parse_result(base), parse_result(head), resamples=200)
    assert c.decision is not None and c.decision.status == "not comparable"


def test_the_lane_records_its_run_delay(tone_dir: Path) -> None:
    lane = run_bench(
        BenchConfig(
            lanes=("codepath",), pipelines=("dictation",), fixtures=tone_dir, levels=("raw",), iterations=1
        )
    ).result.lanes["codepath"]
    delay = lane.resources.runDelayS
    assert delay is not None and 0 <= delay <= lane.resources.wallS * 8  # at most every thread waited
