"""The codepath lane's fakes: deterministic, flagged as fake, and they really take their latency."""

from __future__ import annotations

import inspect
from typing import TypeVar

import numpy as np
import pytest

from voxperf.audio.pcm import Audio
from voxperf.engines.base import Rewriter, STTEngine, TTSEngine, VADEngine
from voxperf.engines.fakes import FakeRewriter, FakeSTT, FakeTTS, FakeVAD, parse_duration_s, split_sentences
from voxperf.engines.registry import create_engine, parse_spec
from voxperf.engines.rewrite.local import clean_text
from voxperf.engines.vad.util import first_speech_sample, speech_frames, trim_silence
from voxperf.errors import UsageError

T = TypeVar("T")


def _noise(seconds: float, rate: int = 16000, seed: int = 1) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((rng.standard_normal(round(seconds * rate)) * 0.1).astype(np.float32), rate)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The fakes' sleeps, recorded instead of slept: latency is checked without a wall clock."""
    import voxperf.engines.fakes as fakes

    calls: list[float] = []
    monkeypatch.setattr(fakes, "_sleep", calls.append)
    return calls


# --- parse_duration_s -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60ms", 0.06),
        ("0.06s", 0.06),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("0", 0.0),
        (" 15 MS ", 0.015),
        ("1e-3s", 0.001),
        (0.06, 0.06),
        (0, 0.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["", "fast", "-5ms", "5min", "ms", "1.5 s s", "2", "60", "1e-3", -0.1, float("inf"), True]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration_s(bad)  # type: ignore[arg-type]
    assert caught.value.hint and "ms" in caught.value.hint


def test_a_duration_without_a_unit_names_both_readings() -> None:
    with pytest.raises(UsageError, match="no unit") as caught:
        parse_duration_s("60")
    assert caught.value.hint == "write it with a unit, e.g. 60ms or 60s"


def test_allowed_units_can_be_restricted() -> None:
    assert parse_duration_s("60ms", units=("ms", "s")) == pytest.approx(0.06)
    with pytest.raises(UsageError, match="not accepted"):
        parse_duration_s("250us", units=("ms", "s"))


# --- FakeSTT --------------------------------------------------------------------------------------


def test_fake_stt_is_deterministic_and_scales_with_duration() -> None:
    stt = FakeSTT()
    assert isinstance(stt, STTEngine)
    assert stt.info.is_fake and stt.info.name == "fake" and stt.info.role == "stt"
    four_s = _noise(4.0)
    first = stt.transcribe(four_s)
    assert stt.transcribe(four_s) == first
    assert FakeSTT().transcribe(_noise(4.0, seed=99)) == first  # depends on the length, not randomness
    assert len(first.text.split()) == 10  # 2.5 words per second
    assert len(stt.transcribe(_noise(8.0)).text.split()) == 20
    assert stt.transcribe(Audio(np.zeros(0, dtype=np.float32), 16000)).text == ""
    assert FakeSTT(text="hello there").transcribe(four_s).text == "hello there"


def test_fake_stt_sleeps_its_latency_and_checks_rate(slept: list[float]) -> None:
    stt = FakeSTT(latency="50ms")
    stt.transcribe(_noise(1.0))
    assert slept == [pytest.approx(0.05)]
    assert stt.info.settings["latency_s"] == pytest.approx(0.05)
    with pytest.raises(UsageError, match="16000 Hz"):
        stt.transcribe(_noise(1.0, rate=22050))


# --- FakeTTS --------------------------------------------------------------------------------------

TEXT = "Hello there. How are you today? I am fine!"


def test_fake_tts_one_chunk_per_sentence_with_leading_silence() -> None:
    tts = FakeTTS()
    assert isinstance(tts, TTSEngine)
    assert tts.info.is_fake and tts.sample_rate == 22050
    assert inspect.isgenerator(tts.stream(TEXT))  # streamed, not synthesised up front
    chunks = list(tts.stream(TEXT))
    assert len(chunks) == len(split_sentences(TEXT)) == 3
    assert all(chunk.sample_rate == 22050 for chunk in chunks)
    lead = round(0.05 * 22050)
    assert not chunks[0].samples[:lead].any()  # 50 ms of digital silence first ...
    assert np.abs(chunks[0].samples[lead : lead + 2205]).max() > 0.01  # ... then voice
    assert np.abs(chunks[1].samples[:2205]).max() > 0.01  # later chunks start voiced
    # Longer sentences give longer audio (~60 ms per character).
    assert chunks[1].duration_s > chunks[2].duration_s
    assert chunks[1].duration_s == pytest.approx(0.06 * len("How are you today?"), abs=0.01)
    assert max(float(np.abs(c.samples).max()) for c in chunks) <= 1.0


def test_fake_tts_is_deterministic() -> None:
    first = [c.samples for c in FakeTTS().stream(TEXT)]
    second = [c.samples for c in FakeTTS().stream(TEXT)]
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert list(FakeTTS().stream("   ")) == []


def test_fake_tts_latency_first_and_later_chunks(slept: list[float]) -> None:
    tts = FakeTTS(latency="40ms", chunk_latency="20ms", sample_rate="16000")
    stream = tts.stream(TEXT)
    first = next(stream)
    assert slept == [pytest.approx(0.04)]  # before the first chunk
    next(stream)
    assert slept == [pytest.approx(0.04), pytest.approx(0.02)]  # then per chunk
    assert first.sample_rate == 16000
    assert FakeTTS(latency="30ms").chunk_latency_s == pytest.approx(0.03)  # defaults to latency


def test_fake_tts_rejects_bad_rate() -> None:
    for bad in ("fast", "100"):
        with pytest.raises(UsageError, match="sample_rate"):
            FakeTTS(sample_rate=bad)


# --- FakeVAD --------------------------------------------------------------------------------------


def test_fake_vad_energy_rule() -> None:
    vad = FakeVAD()
    assert isinstance(vad, VADEngine)
    assert (vad.sample_rate, vad.frame_samples, vad.threshold) == (16000, 512, 0.5)
    assert vad.speech_prob(np.zeros(512, dtype=np.float32)) == 0.0
    assert vad.speech_prob(np.full(512, 0.005, dtype=np.float32)) == 0.0  # RMS 0.005
    assert vad.speech_prob(np.full(512, 0.02, dtype=np.float32)) == 1.0  # RMS 0.02
    with pytest.raises(UsageError, match="512"):
        vad.speech_prob(np.zeros(100, dtype=np.float32))


def test_fake_vad_with_fake_tts_through_the_helpers() -> None:
    chunks = list(FakeTTS().stream("Hello there."))
    audio = Audio(np.concatenate([np.zeros(22050, dtype=np.float32), chunks[0].samples]), 22050)
    vad = FakeVAD()
    onset = first_speech_sample(vad, audio)
    assert onset is not None
    assert abs(onset / 22050 - 1.05) <= 0.04  # 1 s of silence + the 50 ms lead, within a frame
    flags = speech_frames(vad, audio)
    assert not flags[:31].any()  # frames 0-30 lie inside the second of silence
    assert flags[34:54].all()  # the voiced signal (1.05-1.77 s) never drops below the RMS rule
    trimmed = trim_silence(vad, audio, pad_ms=0)
    assert trimmed.duration_s < audio.duration_s - 0.95


def test_fake_vad_latency_per_frame(slept: list[float]) -> None:
    vad = FakeVAD(latency="10ms")
    vad.speech_prob(np.zeros(512, dtype=np.float32))
    vad.speech_prob(np.zeros(512, dtype=np.float32))
    assert slept == [pytest.approx(0.01)] * 2


# --- FakeRewriter ---------------------------------------------------------------------------------


def test_fake_rewriter_sleeps_only_when_it_rewrites(slept: list[float]) -> None:
    rewriter = FakeRewriter(latency="100ms")
    rewriter.rewrite("um the plan", "raw")
    assert slept == []
    rewriter.rewrite("um the plan", "clean")
    rewriter.rewrite("um the plan", "polish")
    assert slept == [0.1, 0.1]


def test_fake_rewriter_levels_and_latency(slept: list[float]) -> None:
    rewriter = FakeRewriter(latency="30ms")
    assert isinstance(rewriter, Rewriter)
    assert rewriter.info.is_fake
    text = "um so the the plan"
    assert rewriter.rewrite(text, "raw") == text
    cleaned = rewriter.rewrite(text, "clean")
    assert cleaned == clean_text(text) == "So the plan."
    polished = rewriter.rewrite(text, "polish")
    assert slept == [pytest.approx(0.03)] * 2
    assert polished == rewriter.rewrite(text, "polish") == "So the plan."
    with pytest.raises(UsageError, match="level"):
        rewriter.rewrite(text, "shiny")


# --- registry -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "spec", "protocol"),
    [
        ("stt", "fake:latency=5ms", STTEngine),
        ("tts", "fake:latency=5ms,sample_rate=16000,chunk_latency=1ms", TTSEngine),
        ("vad", "fake", VADEngine),
        ("rewrite", "fake:latency=0.005s", Rewriter),
    ],
)
def test_fakes_from_registry(role: str, spec: str, protocol: type) -> None:
    engine = create_engine(parse_spec(role, spec))
    assert isinstance(engine, protocol)
    assert engine.info.is_fake and engine.info.name == "fake" and engine.info.role == role
    assert engine.info.to_dict()["isFake"] is True


def test_bad_fake_option_from_registry() -> None:
    with pytest.raises(UsageError, match="duration"):
        create_engine(parse_spec("stt", "fake:latency=soon"))
