"""Real VAD engines (Silero, WebRTC) and the frame helpers on real Piper speech."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxperf.audio.pcm import Audio
from voxperf.engines.base import VADEngine
from voxperf.engines.registry import create_engine, parse_spec
from voxperf.engines.vad.util import (
    energy_first_nonsilent_sample,
    first_speech_sample,
    speech_frames,
    trim_silence,
)
from voxperf.errors import UsageError

pytestmark = pytest.mark.engines

ONSET_TOLERANCE_S = 0.06


@pytest.fixture(scope="module")
def speech() -> Audio:
    """Real Piper speech at 22.05 kHz (so the helpers' resampling to 16 kHz is exercised).

    voxperf's Piper engine is deterministic (no sampling noise), so every run tests the same audio."""
    from voxperf.engines.tts.piper import PiperTTS

    tts = PiperTTS()
    chunks = list(tts.stream("The quick brown fox jumps over the lazy dog."))
    return Audio(samples=np.concatenate([c.samples for c in chunks]), sample_rate=tts.sample_rate)


@pytest.fixture(scope="module")
def silero() -> Any:
    from voxperf.engines.vad.silero import SileroVAD

    return SileroVAD()


@pytest.fixture(scope="module")
def webrtc() -> Any:
    from voxperf.engines.vad.webrtc import WebRTCVAD

    return WebRTCVAD()


@pytest.fixture(params=["silero", "webrtc"])
def vad(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def _silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def _padded(speech: Audio, before_s: float, after_s: float) -> Audio:
    rate = speech.sample_rate
    return Audio(np.concatenate([_silence(before_s, rate), speech.samples, _silence(after_s, rate)]), rate)


def _speech_span(speech: Audio) -> tuple[int, int]:
    """First and one-past-last sample above -50 dBFS: where the voice really is."""
    loud = np.flatnonzero(np.abs(speech.samples) > 10 ** (-50 / 20))
    return int(loud[0]), int(loud[-1]) + 1


def test_engines_satisfy_protocol(vad: Any) -> None:
    assert isinstance(vad, VADEngine)
    assert vad.threshold == 0.5
    assert vad.info.role == "vad" and not vad.info.is_fake


def test_speech_is_detected_and_silence_is_not(vad: Any, speech: Audio) -> None:
    flags = speech_frames(vad, speech)
    expected = -(-round(speech.duration_s * vad.sample_rate) // vad.frame_samples)
    assert flags.dtype == bool
    assert abs(len(flags) - expected) <= 1
    assert flags.mean() > 0.6  # a read sentence is mostly voiced
    assert not speech_frames(vad, Audio(_silence(2.0, 16000), 16000)).any()
    assert not speech_frames(vad, Audio(_silence(1.0, 22050), 22050)).any()


def test_trim_silence_removes_added_silence(vad: Any, speech: Audio) -> None:
    padded = _padded(speech, 1.0, 1.0)
    trimmed = trim_silence(vad, padded, pad_ms=100)
    start, end = _speech_span(speech)
    span_s = (end - start) / speech.sample_rate
    frame_s = vad.frame_samples / vad.sample_rate
    assert trimmed.sample_rate == padded.sample_rate
    assert trimmed.duration_s < padded.duration_s - 1.5  # most of the 2 s of silence is gone
    # At most the voiced span, 100 ms of context each side, a frame of rounding each side and the
    # VAD's hangover after the last word (measured: Silero ~60 ms, WebRTC ~120 ms) ...
    assert trimmed.duration_s <= span_s + 0.2 + 2 * frame_s + 0.15
    # ... and not shorter than the voiced span minus a quiet tail the VAD may call non-speech.
    assert trimmed.duration_s >= span_s - 0.15
    # The kept context before the first word is the 100 ms pad (give or take a frame).
    onset = energy_first_nonsilent_sample(trimmed)
    assert onset is not None
    assert abs(onset / trimmed.sample_rate - 0.1) <= frame_s + 0.01


def test_trim_silence_keeps_audio_without_speech(vad: Any) -> None:
    silent = Audio(_silence(1.0, 16000), 16000)
    assert trim_silence(vad, silent) is silent
    empty = Audio(np.zeros(0, dtype=np.float32), 16000)
    assert trim_silence(vad, empty) is empty
    with pytest.raises(UsageError, match="pad_ms"):
        trim_silence(vad, silent, pad_ms=-1)


@pytest.mark.parametrize("prefix_s", [0.75, 1.3])
def test_first_speech_sample_finds_the_onset(vad: Any, speech: Audio, prefix_s: float) -> None:
    padded = _padded(speech, prefix_s, 0.5)
    true_onset = round(prefix_s * speech.sample_rate) + _speech_span(speech)[0]
    found = first_speech_sample(vad, padded)
    assert found is not None
    assert abs(found - true_onset) / speech.sample_rate <= ONSET_TOLERANCE_S


def test_first_speech_sample_none_without_speech(vad: Any) -> None:
    assert first_speech_sample(vad, Audio(_silence(1.0, 16000), 16000)) is None


@pytest.mark.parametrize("prefix_s", [0.75, 1.3])
def test_energy_first_nonsilent_sample(speech: Audio, prefix_s: float) -> None:
    padded = _padded(speech, prefix_s, 0.5)
    true_onset = round(prefix_s * speech.sample_rate) + _speech_span(speech)[0]
    found = energy_first_nonsilent_sample(padded)
    assert found is not None
    assert abs(found - true_onset) / speech.sample_rate <= ONSET_TOLERANCE_S


def test_energy_first_nonsilent_sample_threshold() -> None:
    samples = np.zeros(1000, dtype=np.float32)
    samples[300] = 0.001  # -60 dBFS: below the default -50 dBFS
    samples[700] = 0.01  # -40 dBFS
    audio = Audio(samples, 16000)
    assert energy_first_nonsilent_sample(audio) == 700
    assert energy_first_nonsilent_sample(audio, threshold_dbfs=-70.0) == 300
    assert energy_first_nonsilent_sample(Audio(np.zeros(100, dtype=np.float32), 16000)) is None
    with pytest.raises(UsageError, match="threshold_dbfs"):
        energy_first_nonsilent_sample(audio, threshold_dbfs=3.0)


def test_silero_accepts_read_only_and_strided_frames(silero: Any, speech: Audio) -> None:
    import soxr

    samples = soxr.resample(speech.samples, speech.sample_rate, 16000).astype(np.float32)
    assert silero.frame_samples == 512
    block = samples[8000 : 8000 + 2 * 512]
    strided = block[::2]  # not contiguous
    read_only = np.array(block[:512])
    read_only.flags.writeable = False
    silero.reset()
    expected = silero.speech_prob(np.ascontiguousarray(strided))
    silero.reset()
    assert silero.speech_prob(strided) == pytest.approx(expected)
    silero.reset()
    assert 0.0 <= silero.speech_prob(read_only) <= 1.0
    assert read_only.flags.writeable is False  # the caller's array is left alone
    with pytest.raises(UsageError, match="512"):
        silero.speech_prob(np.zeros(480, dtype=np.float32))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to count threads")
def test_silero_creates_no_threads(speech: Audio) -> None:
    # no thread pool: nothing can spin after a frame and steal a core from the next stage (STT)
    from voxperf.engines.vad.silero import SileroVAD

    before = {t.name for t in Path("/proc/self/task").iterdir()}
    vad = SileroVAD()
    speech_frames(vad, speech)
    after = {t.name for t in Path("/proc/self/task").iterdir()}
    assert after <= before


def test_silero_threshold_option() -> None:
    from voxperf.engines.vad.silero import SileroVAD

    assert SileroVAD(threshold="0.3").threshold == pytest.approx(0.3)
    for bad in ("1.5", "0", "high"):
        with pytest.raises(UsageError, match="threshold"):
            SileroVAD(threshold=bad)


def test_webrtc_options() -> None:
    from voxperf.engines.vad.webrtc import WebRTCVAD

    vad = WebRTCVAD(aggressiveness="3", frame_ms="10", sample_rate="8000")
    assert (vad.aggressiveness, vad.frame_samples, vad.sample_rate) == (3, 80, 8000)
    assert vad.speech_prob(np.zeros(80, dtype=np.float32)) == 0.0
    with pytest.raises(UsageError, match="80"):
        vad.speech_prob(np.zeros(160, dtype=np.float32))
    for option, value in (("aggressiveness", "4"), ("frame_ms", "25"), ("sample_rate", "22050")):
        with pytest.raises(UsageError, match=option) as caught:
            WebRTCVAD(**{option: value})
        assert caught.value.hint and "one of" in caught.value.hint


def test_webrtc_at_48k_on_speech(speech: Audio) -> None:
    import soxr

    from voxperf.engines.vad.webrtc import WebRTCVAD

    audio48 = Audio(soxr.resample(speech.samples, speech.sample_rate, 48000).astype(np.float32), 48000)
    vad = WebRTCVAD(sample_rate="48000", frame_ms="20")
    assert speech_frames(vad, audio48).mean() > 0.6


def test_vads_from_registry_specs() -> None:
    silero = create_engine(parse_spec("vad", "silero:threshold=0.4"))
    webrtc = create_engine(parse_spec("vad", "webrtc:aggressiveness=1,frame_ms=20"))
    assert silero.threshold == pytest.approx(0.4)
    assert (webrtc.aggressiveness, webrtc.frame_samples) == (1, 320)
