"""bench --vs: interleaved A/B with paired ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxperf.bench.ab import parse_vs, run_ab
from voxperf.bench.runner import BenchConfig
from voxperf.errors import UsageError

from .conftest import run_cli


def test_parse_vs(tmp_path: Path) -> None:
    assert parse_vs("stt=faster-whisper:compute_type=float32;vad=webrtc") == {
        "stt": "faster-whisper:compute_type=float32",
        "vad": "webrtc",
    }
    toml = tmp_path / "b.toml"
    toml.write_text('stt = "pocketsphinx"\nencode = "opus"\n')
    assert parse_vs(str(toml)) == {"stt": "pocketsphinx", "encode": "opus"}
    for bad in ("", "gpu=1", "stt", "iterations=3"):
        with pytest.raises(UsageError):
            parse_vs(bad)


def test_ab_detects_a_slower_b_with_paired_ratios(tone_dir: Path) -> None:
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        levels=("raw",),
        stt="fake:latency=5ms",
        vad="none",
        iterations=4,
        warmup=1,
    )
    rows, meta = run_ab(config, {"stt": "fake:latency=10ms"})
    stt = next(r for r in rows if r.metric == "stt_ms")
    assert stt.pairs == 4 * 3  # iterations x fixtures, warm-up excluded
    assert stt.ratio_p50 == pytest.approx(2.0, rel=0.15)
    assert stt.ratio_ci[0] > 1.0 and stt.verdict == "B worse"
    assert meta["b"]["stt"] == "fake:latency=10ms" and meta["a"]["stt"] == "fake:latency=5ms"


def _ab_cli(tone_dir: Path, out: Path, vs: str):  # type: ignore[no-untyped-def]
    """bench --vs on the tone fixtures with fake engines, 3 iterations, no warm-up."""
    return run_cli(
        "bench",
        "--pipeline",
        "dictation",
        "--fixtures",
        str(tone_dir),
        "--levels",
        "raw",
        "--stt",
        "fake",
        "--vad",
        "none",
        "--iterations",
        "3",
        "--warmup",
        "0",
        "--vs",
        vs,
        "-o",
        str(out),
    )


def test_ab_cli(tone_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    proc = _ab_cli(tone_dir, out, "stt=fake:latency=2ms")
    assert proc.returncode == 0, proc.stderr
    assert '"kind": "voxperf-ab"' in out.read_text()
    bad = run_cli("bench", "--vs", "gpu=fast")
    assert bad.returncode == 2 and "--vs" in bad.stderr


def test_zero_valued_metrics_use_the_paired_difference(tone_dir: Path) -> None:
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        levels=("raw",),
        stt="fake:text=hello world",
        vad="none",
        iterations=4,
        warmup=0,
    )
    rows, _ = run_ab(config, {"stt": "fake:text=totally different words here"})
    wer = next(r for r in rows if r.metric == "wer")  # A's WER is 0 on fixture a: no ratio exists
    assert wer.kind == "difference" and wer.ratio_p50 > 0 and wer.verdict == "B worse"


def test_a_bad_fixture_is_skipped_on_both_sides(tone_dir: Path, tmp_path: Path) -> None:
    (tone_dir / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 10)
    out = tmp_path / "ab.json"
    proc = _ab_cli(tone_dir, out, "stt=fake:latency=1ms")
    assert proc.returncode == 4 and "broken" in proc.stderr and "Traceback" not in proc.stderr
    import json

    doc = json.loads(out.read_text())
    assert [f["fixture"] for f in doc["failures"]] == ["broken"]
    assert next(r for r in doc["rows"] if r["metric"] == "stt_ms")["pairs"] == 3 * 3  # a, b, c still paired
