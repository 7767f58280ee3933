"""Helpers that run any :class:`~voxperf.engines.base.VADEngine` over a whole recording.

Used by the pipelines for end-of-speech trimming and for "where does speech start" measurements
(e.g. the first audible sample of synthesised speech). Decisions are per frame, without
smoothing or hangover: a frame is speech when ``vad.speech_prob(frame) >= vad.threshold``
(0.5 when an engine has no ``threshold``).
"""

from __future__ import annotations

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.engines.base import VADEngine
from voxperf.errors import UsageError
from voxperf.extras import load

__all__ = [
    "energy_first_nonsilent_sample",
    "first_speech_sample",
    "speech_frames",
    "trim_silence",
]

DEFAULT_THRESHOLD = 0.5


def _samples_at(audio: Audio, rate: int) -> np.ndarray:
    """The audio's samples at ``rate`` (soxr, imported only when a resample is needed)."""
    samples = np.asarray(audio.samples, dtype=np.float32)
    if audio.sample_rate == rate or len(samples) == 0:
        return samples
    soxr = load("soxr", "bench", "resampling for VAD")

    return np.asarray(soxr.resample(samples, audio.sample_rate, rate), dtype=np.float32)


def speech_frames(vad: VADEngine, audio: Audio) -> np.ndarray:
    """One bool per VAD frame of ``audio`` (resampled to ``vad.sample_rate``): is it speech?

    Calls ``vad.reset()`` first, so each recording is judged on its own. The last partial frame
    is padded with zeros. Frame ``i`` covers samples ``[i * vad.frame_samples, (i + 1) *
    vad.frame_samples)`` at the VAD's rate.
    """
    vad.reset()
    samples = _samples_at(audio, vad.sample_rate)
    size = int(vad.frame_samples)
    count = -(-len(samples) // size)  # ceil
    padded = np.zeros(count * size, dtype=np.float32)
    padded[: len(samples)] = samples
    threshold = float(getattr(vad, "threshold", DEFAULT_THRESHOLD))
    flags = np.zeros(count, dtype=bool)
    for index in range(count):
        flags[index] = vad.speech_prob(padded[index * size : (index + 1) * size]) >= threshold
    return flags


def _to_audio_index(vad: VADEngine, audio: Audio, vad_index: int) -> int:
    """A sample index at the VAD's rate mapped to the audio's own rate, clamped to its length."""
    index = round(vad_index * audio.sample_rate / vad.sample_rate)
    return max(0, min(index, audio.num_samples))


def first_speech_sample(vad: VADEngine, audio: Audio) -> int | None:
    """Index (at the audio's own rate) of the first sample of the first speech frame; None if none."""
    flags = speech_frames(vad, audio)
    if not flags.any():
        return None
    first = int(np.argmax(flags))
    return min(_to_audio_index(vad, audio, first * int(vad.frame_samples)), max(audio.num_samples - 1, 0))


def trim_silence(vad: VADEngine, audio: Audio, *, pad_ms: float = 100) -> Audio:
    """Cut leading and trailing non-speech, keeping ``pad_ms`` of context on each side.

    Returns ``audio`` itself when no frame is speech: trimming never produces empty audio.
    """
    if pad_ms < 0:
        raise UsageError(f"bad pad_ms={pad_ms!r}", "pad_ms must be >= 0 milliseconds")
    flags = speech_frames(vad, audio)
    if not flags.any():
        return audio
    size = int(vad.frame_samples)
    first = int(np.argmax(flags))
    last = len(flags) - 1 - int(np.argmax(flags[::-1]))
    pad = round(pad_ms * audio.sample_rate / 1000)
    start = max(0, _to_audio_index(vad, audio, first * size) - pad)
    end = min(audio.num_samples, _to_audio_index(vad, audio, (last + 1) * size) + pad)
    if start == 0 and end == audio.num_samples:
        return audio
    return Audio(samples=audio.samples[start:end], sample_rate=audio.sample_rate)


def energy_first_nonsilent_sample(audio: Audio, threshold_dbfs: float = -50.0) -> int | None:
    """Index of the first sample whose absolute value exceeds ``threshold_dbfs`` (no VAD); None if none.

    0 dBFS is a full-scale sample (1.0), so the default -50 dBFS is an amplitude of about 0.0032.
    """
    if threshold_dbfs > 0:
        raise UsageError(
            f"bad threshold_dbfs={threshold_dbfs!r}", "threshold_dbfs must be <= 0 (0 = full scale)"
        )
    level = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.flatnonzero(np.abs(audio.samples) > level)
    return int(loud[0]) if loud.size else None
