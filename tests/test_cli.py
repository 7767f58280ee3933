"""The real ``voxperf`` CLI: bad input gets one clear line and a documented exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxperf.bench.schema import SCHEMA_VERSION, load_result
from voxperf.errors import ExitCode

from .conftest import run_cli


def assert_clean_error(proc, code: ExitCode, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "hint:" in proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def test_version_and_engines() -> None:
    assert run_cli("version").stdout.strip() == "0.1.0"
    out = run_cli("engines").stdout
    assert "faster-whisper" in out and "piper" in out and "silero" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--stt", "whisperx"], "unknown stt engine 'whisperx'"),
        (["--iterations", "0"], "--iterations"),
        (["--lane", "fast"], "--lane"),
        (["--levels", "raw,shiny"], "shiny"),
        (["--fake-latency", "stt=soon"], "soon"),
        (["--fake-latency", "gpu=1ms"], "gpu"),
        (["--variant", "huge"], "huge"),
        (["--encode", "mp9"], "mp9"),
        (["--levels", "polish", "--lane", "provider"], "polish"),
        (["--stt", "faster-whisper:model"], "malformed option"),
    ],
)
def test_bad_options_exit_2(args: list[str], needle: str) -> None:
    assert_clean_error(run_cli("bench", *args), ExitCode.USAGE, needle)


def test_typer_type_error_is_usage() -> None:
    proc = run_cli("bench", "--iterations", "many")
    assert proc.returncode == ExitCode.USAGE
    assert "Traceback" not in proc.stderr


def test_empty_fixture_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_cli("bench", "--lane", "codepath", "--fixtures", str(tmp_path / "empty"))
    assert_clean_error(proc, ExitCode.USAGE, "empty")


def test_missing_fixture_source(tmp_path: Path) -> None:
    proc = run_cli("bench", "--lane", "codepath", "--fixtures", str(tmp_path / "nope"))
    assert_clean_error(proc, ExitCode.USAGE)


def test_missing_model_exit_3(tone_dir: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "bench",
        "--lane",
        "provider",
        "--pipeline",
        "dictation",
        "--fixtures",
        str(tone_dir),
        "--stt",
        "faster-whisper:model=large-v9",
        "-o",
        str(tmp_path / "r.json"),
    )
    assert_clean_error(proc, ExitCode.PROVIDER, "large-v9")


def test_codepath_run_writes_labelled_result(tone_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    trace = tmp_path / "t.json"
    proc = run_cli(
        "bench",
        "--lane",
        "codepath",
        "--fixtures",
        str(tone_dir),
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--fake-latency",
        "stt=5ms",
        "-o",
        str(out),
        "--trace",
        str(trace),
    )
    assert proc.returncode == 0, proc.stderr
    assert "no transcript for c.wav" in proc.stderr
    assert "CODEPATH LANE" in proc.stderr
    result = load_result(out)
    lane = result.lanes["codepath"]
    assert "codepath" in lane.label and any(f.kind == "codepath" for f in lane.flags)
    assert all(e.isFake for e in lane.engines)
    assert lane.fakeLatencyMs == {"stt": 5.0}
    measured = [r for r in lane.runs if not r.warmup and r.pipeline == "dictation"]
    assert len(measured) == 3 * 3 * 2  # iterations x fixtures x levels
    assert all(r.stagesNs["stt"] >= 5_000_000 for r in measured)
    # WER and RTFx describe engines: never reported for fakes
    assert all(r.metrics.get("wer") is None and r.metrics.get("stt_rtfx") is None for r in lane.runs)
    # speech runs only for fixtures with a transcript
    assert {r.fixture for r in lane.runs if r.pipeline == "speech"} == {"a", "b"}
    agg = next(
        g for g in lane.summaries if g.pipeline == "dictation" and g.level == "raw" and g.fixture is None
    )
    assert agg.metrics["stt_ms"].weighted
    chrome = json.loads(trace.read_text())
    assert any(e.get("name") == "stt" for e in chrome["traceEvents"])


def test_corrupt_fixture_keeps_other_results(tone_dir: Path, tmp_path: Path) -> None:
    (tone_dir / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 10)
    (tone_dir / "broken.txt").write_text("never heard")
    out = tmp_path / "r.json"
    proc = run_cli(
        "bench",
        "--lane",
        "codepath",
        "--pipeline",
        "dictation",
        "--fixtures",
        str(tone_dir),
        "--iterations",
        "2",
        "--warmup",
        "0",
        "-o",
        str(out),
    )
    assert proc.returncode == ExitCode.DATA, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "broken.wav" in proc.stderr
    result = load_result(out)
    lane = result.lanes["codepath"]
    assert [f.fixture for f in lane.failures] == ["broken"]
    assert lane.failures[0].error == "AudioError"
    assert {r.fixture for r in lane.runs} == {"a", "b", "c"}


def test_json_on_stdout(tone_dir: Path) -> None:
    proc = run_cli(
        "bench",
        "--lane",
        "codepath",
        "--pipeline",
        "speech",
        "--fixtures",
        str(tone_dir),
        "--iterations",
        "1",
        "--warmup",
        "0",
        "--json",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schemaVersion"] == SCHEMA_VERSION
    assert list(data["lanes"]) == ["codepath"]


def test_schema_command_matches_published(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    assert run_cli("schema", "-o", str(out)).returncode == 0
    schemas = Path(__file__).resolve().parents[1] / "src" / "voxperf" / "schema"
    published = schemas / f"result-v{SCHEMA_VERSION}.schema.json"
    assert json.loads(out.read_text()) == json.loads(published.read_text())


def test_api_keys_in_specs_never_reach_results_or_messages(tone_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    spec = "openai:base_url=http://127.0.0.1:9,model=m,api_key=sk-SECRET123"
    proc = run_cli(
        "bench",
        "--lane",
        "codepath",
        "--fixtures",
        str(tone_dir),
        "--levels",
        "raw",
        "--iterations",
        "1",
        "--warmup",
        "0",
        "-q",
        "--rewrite",
        spec,
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "sk-SECRET123" not in out.read_text() and "api_key=***" in out.read_text()
    bad = run_cli("bench", "--rewrite", "openai:base_url=http://x,api_key=sk-SECRET9,model")
    assert bad.returncode == 2 and "sk-SECRET9" not in bad.stderr


def test_path_mistakes_are_usage_errors_not_tracebacks(tone_dir: Path, tmp_path: Path) -> None:
    from voxperf.bench.schema import dump_result

    from .conftest import synthetic

    base = tmp_path / "base.json"
    dump_result(synthetic({"f": [50.0] * 5}), base)
    cases = [
        ("compare", str(base), "--base", str(base), "--markdown", str(tmp_path)),  # a directory
        ("compare", str(base), "--base", str(base), "--markdown", str(tmp_path / "no" / "x.md")),
        ("schema", "-o", str(tmp_path / "no" / "s.json")),
        ("bench", "--lane", "codepath", "--fixtures", str(tone_dir), "-o", str(tmp_path)),
        ("compare", str(tmp_path / "x[/y].json"), "--base", str(base)),  # Rich markup in a path
        ("serve", "--port", "99999"),
    ]
    for args in cases:
        proc = run_cli(*args)
        assert proc.returncode == ExitCode.USAGE, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, args
    assert "x[/y].json" in run_cli("compare", str(tmp_path / "x[/y].json"), "--base", str(base)).stderr


def test_attribution_config_is_validated(tmp_path: Path) -> None:
    from voxperf.bench.schema import dump_result

    from .conftest import synthetic

    base = tmp_path / "base.json"
    dump_result(synthetic({"f": [50.0] * 5}), base)
    (tmp_path / "voxperf.toml").write_text('attribution = "src/**"\n')
    proc = run_cli("compare", str(base), "--base", str(base), cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE and "attribution" in proc.stderr
