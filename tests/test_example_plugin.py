"""A third-party engine package (``examples/voxperf-example-engine``), built and installed the way a
user would, registers its STT through the ``voxperf.engines`` entry point; ``voxperf bench --stt
example-engine`` runs it and its custom ``punctuate`` stage reaches compare and gate.

The package is installed into a temporary directory seen only by the subprocesses of this test
(``PYTHONPATH``), so the rest of the suite keeps the engines it expects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.engines, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "voxperf-example-engine"


@pytest.fixture(scope="module")
def example_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("example-engine")
    pip_target = ("--target", str(target), str(EXAMPLE))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", *pip_target],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {"PYTHONPATH": str(target)}


def test_the_example_engine_is_listed_with_its_options(example_env: dict[str, str]) -> None:
    out = run_cli("engines", "example-engine", env=example_env)
    assert out.returncode == 0, out.stderr
    assert "stt      example-engine  ready  [from voxperf-example-engine]" in out.stdout
    assert "punctuate" in out.stdout and "bool" in out.stdout
    bad = run_cli("bench", "--stt", "example-engine:punctuation=yes", env=example_env)
    assert bad.returncode == 2
    assert "unknown option 'punctuation' for stt engine 'example-engine'" in bad.stderr
    assert "valid options: punctuate" in bad.stderr
    without = run_cli("engines", "example-engine")  # not installed in this process's environment
    assert without.returncode == 2 and "no engine named 'example-engine'" in without.stderr


def _bench(path: Path, env: dict[str, str], cwd: Path) -> dict[str, object]:
    out = run_cli(
        *("bench", "--lane", "provider", "--pipeline", "dictation", "--stt", "example-engine"),
        *("--vad", "none", "--levels", "raw", "--variant", "short", "--iterations", "3", "--warmup", "1"),
        *("--quiet", "--output", str(path)),
        env=env,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(path.read_text())
    return result


def test_bench_runs_the_plugin_engine_and_its_stage_is_compared_and_gated(
    example_env: dict[str, str], tmp_path: Path
) -> None:
    base = _bench(tmp_path / "base.json", example_env, tmp_path)
    _bench(tmp_path / "head.json", example_env, tmp_path)
    lane = base["lanes"]["provider"]  # type: ignore[index]
    (engine,) = [e for e in lane["engines"] if e["role"] == "stt"]
    assert engine["name"] == "example-engine" and engine["spec"] == "example-engine"
    assert not engine["isFake"] and engine["settings"]["punctuate"] is True
    for run in lane["runs"]:
        metrics = run["metrics"]
        # the sub-spans nest in stt: their sum cannot exceed it
        assert metrics["stt.punctuate_ms"] > 0 and metrics["stt.decode_ms"] > 0
        assert metrics["stt.punctuate_ms"] + metrics["stt.decode_ms"] <= metrics["stt_ms"]
    compare = run_cli("compare", "--base", str(tmp_path / "base.json"), str(tmp_path / "head.json"), "--all")
    assert compare.returncode == 0, compare.stderr
    assert "stt.punctuate_ms p50" in compare.stdout + compare.stderr
    gate = run_cli(
        *("gate", "--base", str(tmp_path / "base.json"), str(tmp_path / "head.json")),
        *("--gate-metrics", "stt.punctuate_ms,total_ms"),
    )
    assert gate.returncode in (0, 1, 3), gate.stderr  # a verdict, whichever it is
    assert "stt.punctuate_ms" in gate.stdout + gate.stderr
