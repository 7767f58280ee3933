"""``pip install voxperf`` (no extras) in a fresh virtual environment: Trace, compare, gate and
the store work without any engine, FastAPI, Celery or audio package, and reaching for a missing
part is a one-line error naming the extra to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
OPTIONAL = ("faster_whisper", "piper", "pocketsphinx", "fastapi", "celery", "soundfile", "av", "jiwer")


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("core-venv")
    src = root / "src"  # a copy without the checkout's build artefacts or its .venv
    skip = shutil.ignore_patterns(
        ".venv", ".git", ".*_cache", ".hypothesis", ".benchmarks", "*.egg-info", "build"
    )
    shutil.copytree(ROOT, src, ignore=skip)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return venv


def _run(_venv: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=cwd, check=False)


def test_core_has_no_engine_server_or_audio_package(core_venv: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {OPTIONAL!r} if u.find_spec(m)])"
    out = _run(core_venv, str(core_venv / "bin" / "python"), "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_trace_compare_gate_and_store_run_on_the_core(core_venv: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import voxperf
        from voxperf import GateConfig, Trace, compare_results, load_result, open_store

        now = [0]
        trace = Trace(clock=lambda: now[0])
        with trace.activate():
            with voxperf.span("stt"):
                now[0] += 5_000_000
                with voxperf.span("diarize"):
                    now[0] += 2_000_000
        trace.finish()
        from voxperf.trace.metrics import stage_totals_ns
        assert stage_totals_ns(trace) == {{"stt": 7_000_000, "stt.diarize": 2_000_000}}

        result = load_result({str(DATA / "result-v1-provider.json")!r})
        comparison = compare_results(result, result, resamples=200, gate=GateConfig())
        assert comparison.rows and all(r.verdict != "regression" for r in comparison.rows)
        assert comparison.decision.status in ("pass", "inconclusive"), comparison.decision.status

        store = open_store({str(tmp_path / "store")!r}, create=True)
        assert store.ls() == []
        loaded = [m for m in ("faster_whisper", "fastapi", "celery", "soundfile") if m in sys.modules]
        assert loaded == [], loaded
        print("core ok")
        """
    )
    out = _run(core_venv, str(core_venv / "bin" / "python"), "-c", script, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "core ok"


def test_cli_compare_and_gate_work_and_missing_extras_are_named(core_venv: Path, tmp_path: Path) -> None:
    voxperf = str(core_venv / "bin" / "voxperf")
    result = str(DATA / "result-v1-provider.json")
    compare = _run(core_venv, voxperf, "compare", "--base", result, result, cwd=tmp_path)
    assert compare.returncode == 0, compare.stderr
    gate = _run(core_venv, voxperf, "gate", "--base", result, result, cwd=tmp_path)
    assert gate.returncode in (0, 3), gate.stderr  # pass, or inconclusive on these few samples
    assert "voxperf gate:" in gate.stdout + gate.stderr
    serve = _run(core_venv, voxperf, "serve", cwd=tmp_path)
    assert serve.returncode == 2
    assert serve.stderr.splitlines() == [
        "error: the voice service (voxperf serve) needs fastapi, which is not installed",
        "hint: pip install 'voxperf[serve]'",
    ]
    bench = _run(core_venv, voxperf, "bench", "--lane", "codepath", "--fixtures", str(tmp_path), cwd=tmp_path)
    assert bench.returncode == 2 and "Traceback" not in bench.stderr
    engines = _run(core_venv, voxperf, "engines", cwd=tmp_path)
    assert "faster-whisper  missing faster_whisper (pip install 'voxperf[whisper]')" in engines.stdout
