"""Deterministic fakes of the engine Protocols, for the codepath lane and for tests.

Each fake does the same thing for the same input every time, reports ``info.is_fake=True`` (so a
provider-lane number can never silently come from a fake) and simulates a provider's latency
with :func:`time.sleep`, which releases the GIL the way a real network call or native engine does.
Latency options are durations: ``"60ms"``, ``"0.06s"``, ``"250us"``, ``"0"`` or seconds as a number.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator

import numpy as np

import voxperf
from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo, Role, Transcript
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.engines.rewrite.local import clean_text, normalize_level
from voxperf.errors import UsageError

__all__ = ["FakeRewriter", "FakeSTT", "FakeTTS", "FakeVAD", "parse_duration_s", "split_sentences"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*(us|µs|ms|s)?\s*$", re.IGNORECASE)
_UNIT_S = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0}

# Words of the fake transcript, cycled; 2.5 words per second of audio (a normal speaking rate).
_WORDS = (
    *("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "bold"),
    *("wizards", "quietly", "pack", "twelve", "boxes", "of", "fresh", "lemons", "for", "the", "morning"),
    "market",
)
FAKE_WORDS_PER_S = 2.5

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_TTS_S_PER_CHAR = 0.06  # synthetic speech length per character of text
_TTS_MIN_S = 0.2
_TTS_LEAD_SILENCE_S = 0.05  # leading silence of the first chunk, like a real voice's onset
_TTS_F0_HZ = 150.0


def parse_duration_s(text: str | float | int, *, units: tuple[str, ...] = ("us", "ms", "s")) -> float:
    """Seconds in a duration: "60ms", "1.5s", "250us" (units as allowed by ``units``), or 0.

    A number without a unit is a usage error (is "60" 60 ms or 60 s?), except 0; a Python number
    passed by code is seconds. Negative, empty or garbage values are usage errors.
    """
    allowed = ", ".join(f'"1{u}"' for u in units)
    if isinstance(text, bool):
        raise UsageError(f"bad duration {text!r}", f"write a duration with a unit: {allowed}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise UsageError(f"bad duration {text!r}", f"write a duration with a unit: {allowed}")
        number, exponent, unit = match.groups()
        value = float(number) * (10.0 ** int(exponent) if exponent else 1.0)
        if unit is None and value != 0:
            raise UsageError(
                f"duration {text!r} has no unit", f"write it with a unit, e.g. {number}ms or {number}s"
            )
        if unit is not None and unit.lower().replace("µ", "u") not in units:
            raise UsageError(f"unit {unit!r} is not accepted here in {text!r}", f"use {allowed}")
        value *= _UNIT_S[unit.lower() if unit else None]
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"bad duration {text!r}: must be a finite value >= 0", 'e.g. latency="60ms" or "0"')
    return value


def split_sentences(text: str) -> list[str]:
    """Split text after ``.``, ``!``, ``?`` or ``…`` followed by whitespace; drop empty parts."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def _fake_info(role: Role, settings: dict[str, object]) -> EngineInfo:
    return EngineInfo(
        role=role,
        name="fake",
        version=voxperf.__version__,
        model=None,
        settings=settings,
        is_fake=True,
    )


class FakeSTT:
    """STT fake: returns ``text`` if given, else 2.5 words per second of audio from a fixed word list.

    Sleeps ``latency`` per call. Like the real engines it only accepts 16 kHz audio (the pipeline
    resamples to ``sample_rate``), so the codepath lane exercises the same resampling path.
    """

    sample_rate = 16000

    def __init__(self, latency: str | float = "0", text: str | None = None) -> None:
        self.latency_s = parse_duration_s(latency)
        self.text = text
        self.info = _fake_info("stt", {"latency_s": self.latency_s, "fixed_text": text is not None})

    def transcribe(self, audio: Audio) -> Transcript:
        if audio.sample_rate != self.sample_rate:
            raise UsageError(
                f"fake STT needs {self.sample_rate} Hz audio, got {audio.sample_rate} Hz",
                "resample to the engine's sample_rate before transcribe (the pipeline does this)",
            )
        _sleep(self.latency_s)
        if self.text is not None:
            return Transcript(text=self.text, language="en")
        count = round(audio.duration_s * FAKE_WORDS_PER_S)
        start = audio.num_samples % len(_WORDS)
        words = [_WORDS[(start + i) % len(_WORDS)] for i in range(count)]
        return Transcript(text=" ".join(words), language="en")

    def warmup(self) -> None:
        """Nothing to load; a fake has no cold start."""


def _voiced(duration_s: float, sample_rate: int) -> np.ndarray:
    """A deterministic voiced-sounding signal: a 150 Hz harmonic tone with syllable-like envelope."""
    n = max(1, round(duration_s * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    tone = sum(np.sin(2 * np.pi * _TTS_F0_HZ * k * t) / k for k in range(1, 6))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t - np.pi / 2)  # ~4 syllables per second
    fade_n = min(n // 2, round(0.01 * sample_rate))
    edge = np.ones(n)
    if fade_n > 0:
        ramp = np.linspace(0.0, 1.0, fade_n, endpoint=False)
        edge[:fade_n] = ramp
        edge[n - fade_n :] = ramp[::-1]
    signal = 0.25 * tone * syllables * edge
    return signal.astype(np.float32)


class FakeTTS:
    """TTS fake: one chunk per sentence of synthetic voiced audio (~60 ms per character).

    Sleeps ``latency`` before the first chunk and ``chunk_latency`` (default: ``latency``) before
    each later one; the first chunk starts with 50 ms of silence. The sleeps happen while the
    stream is iterated, as with a real streaming engine.
    """

    def __init__(
        self,
        latency: str | float = "0",
        sample_rate: str | int = "22050",
        chunk_latency: str | float | None = None,
    ) -> None:
        self.latency_s = parse_duration_s(latency)
        self.chunk_latency_s = self.latency_s if chunk_latency is None else parse_duration_s(chunk_latency)
        try:
            rate = int(str(sample_rate).strip())
        except ValueError:
            rate = 0
        if rate < 8000 or rate > 192000:
            raise UsageError(
                f"bad sample_rate {sample_rate!r} for fake TTS",
                "use an integer rate in Hz between 8000 and 192000, e.g. sample_rate=22050",
            )
        self.sample_rate = rate
        self.info = _fake_info(
            "tts",
            {"latency_s": self.latency_s, "chunk_latency_s": self.chunk_latency_s, "sample_rate": rate},
        )

    def stream(self, text: str) -> Iterator[Audio]:
        for index, sentence in enumerate(split_sentences(text)):
            _sleep(self.latency_s if index == 0 else self.chunk_latency_s)
            duration_s = max(_TTS_MIN_S, _TTS_S_PER_CHAR * len(sentence))
            samples = _voiced(duration_s, self.sample_rate)
            if index == 0:
                lead = np.zeros(round(_TTS_LEAD_SILENCE_S * self.sample_rate), dtype=np.float32)
                samples = np.concatenate([lead, samples])
            yield Audio(samples=samples, sample_rate=self.sample_rate)

    def warmup(self) -> None:
        """Nothing to load; a fake has no cold start."""


class FakeVAD:
    """VAD fake: a 512-sample frame at 16 kHz is speech (1.0) when its RMS exceeds 0.01, else 0.0."""

    sample_rate = 16000
    frame_samples = 512
    rms_threshold = 0.01

    def __init__(self, latency: str | float = "0") -> None:
        self.latency_s = parse_duration_s(latency)
        self.threshold = 0.5
        self.info = _fake_info("vad", {"latency_s": self.latency_s, "rms_threshold": self.rms_threshold})

    def speech_prob(self, frame: np.ndarray) -> float:
        if len(frame) != self.frame_samples:
            raise UsageError(
                f"fake VAD frames must have {self.frame_samples} samples, got {len(frame)}",
                "split audio into frames of vad.frame_samples (voxperf.engines.vad.util does this)",
            )
        _sleep(self.latency_s)
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
        return 1.0 if rms > self.rms_threshold else 0.0

    def reset(self) -> None:
        """Stateless: nothing to reset."""


class FakeRewriter:
    """Rewriter fake: raw is identity (no rewrite, no latency); clean and polish sleep ``latency``
    (standing in for a rewrite provider's round trip, as the dictation audit's codepath lane does with
    ``rewrite=100ms``) and return :func:`clean_text`."""

    def __init__(self, latency: str | float = "0") -> None:
        self.latency_s = parse_duration_s(latency)
        self.info = _fake_info("rewrite", {"latency_s": self.latency_s})

    def rewrite(self, text: str, level: str) -> str:
        name = normalize_level(level)
        if name == "raw":
            return text
        _sleep(self.latency_s)
        return clean_text(text)


_LATENCY = EngineOption("latency", "duration", "0", "simulated latency per call, e.g. 60ms")
PLUGINS = [
    EnginePlugin(
        role="stt",
        name="fake",
        factory=FakeSTT,
        summary="deterministic stand-in (codepath lane)",
        is_fake=True,
        options=(
            _LATENCY,
            EngineOption("text", "str", None, "fixed transcript (default: words by duration)"),
        ),
    ),
    EnginePlugin(
        role="tts",
        name="fake",
        factory=FakeTTS,
        summary="deterministic stand-in (codepath lane)",
        is_fake=True,
        options=(
            _LATENCY,
            EngineOption("sample_rate", "int", "22050", "output sample rate in Hz"),
            EngineOption("chunk_latency", "duration", None, "latency of each later chunk (default: latency)"),
        ),
    ),
    EnginePlugin(
        role="vad",
        name="fake",
        factory=FakeVAD,
        summary="energy threshold stand-in",
        is_fake=True,
        options=(_LATENCY,),
    ),
    EnginePlugin(
        role="rewrite",
        name="fake",
        factory=FakeRewriter,
        summary="deterministic stand-in (codepath lane)",
        is_fake=True,
        options=(_LATENCY,),
    ),
]
