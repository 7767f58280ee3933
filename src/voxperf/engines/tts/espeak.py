"""eSpeak NG text to speech through the ``espeak-ng`` binary, one process per sentence.

A formant synthesiser: robotic, but tiny, fast and on every Linux distribution, so it is the
baseline a neural voice is compared against. Each sentence runs ``espeak-ng -v VOICE -s RATE
--stdout`` with the text on standard input (never a shell, and never on the command line, where
a sentence starting with ``-`` would be read as an option) and yields the WAV it prints.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

from voxperf.audio.codec import decode
from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.errors import AudioError, DependencyMissingError, EngineError, UsageError

__all__ = ["EspeakTTS", "split_sentences"]

_BINARY = "espeak-ng"
_MIN_RATE, _MAX_RATE = 80, 450  # words per minute espeak-ng accepts
_VOICE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-/.]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TIMEOUT_S = 60.0


def split_sentences(text: str) -> list[str]:
    """Split at ``.``, ``!`` or ``?`` followed by white space; drop empty pieces."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


class EspeakTTS:
    """eSpeak NG as a :class:`~voxperf.engines.base.TTSEngine` (registry name ``espeak-ng``).

    Options: ``voice`` (an espeak-ng voice, default ``en-us``) and ``rate`` (words per minute,
    80-450, default 175).
    """

    def __init__(self, voice: str = "en-us", rate: str | int = 175) -> None:
        voice = str(voice).strip()
        if not _VOICE_PATTERN.match(voice):
            raise UsageError(f"espeak-ng voice {voice!r} is not a voice name", "e.g. voice=en-us")
        try:
            words_per_minute = int(str(rate).strip())
        except ValueError:
            raise UsageError(
                f"espeak-ng option rate={rate!r} is not a whole number", "e.g. rate=175"
            ) from None
        if not _MIN_RATE <= words_per_minute <= _MAX_RATE:
            raise UsageError(
                f"espeak-ng option rate={words_per_minute} is out of range",
                f"use {_MIN_RATE} to {_MAX_RATE} words per minute",
            )
        binary = shutil.which(_BINARY)
        if binary is None:
            raise DependencyMissingError(
                "the espeak-ng engine needs the espeak-ng program, which is not on PATH",
                "apt-get install espeak-ng (or brew install espeak-ng)",
            )
        self._binary = binary
        self._voice = voice
        self._rate = words_per_minute
        version = self._version()
        # One short synthesis checks the voice exists and tells the output rate (22050 Hz for the
        # standard voices, 16000 Hz for MBROLA ones).
        probe = self._speak("Hello.")
        self.sample_rate: int = probe.sample_rate
        self.info = EngineInfo(
            role="tts",
            name="espeak-ng",
            version=version,
            model=voice,
            model_path=binary,
            model_source="path",
            settings={"voice": voice, "rate_wpm": words_per_minute, "sample_rate": self.sample_rate},
        )

    def stream(self, text: str) -> Iterator[Audio]:
        """Yield one chunk per sentence; each sentence runs only when the previous was consumed."""
        if not isinstance(text, str) or not text.strip():
            raise UsageError("espeak-ng was given no text to speak", "pass a non-empty text")
        return (self._speak(sentence) for sentence in split_sentences(text))

    def warmup(self) -> None:
        """Run the binary once so its data files are in the page cache."""
        self._speak("Warming up.")

    def _version(self) -> str:
        try:
            result = subprocess.run(
                [self._binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineError(f"cannot run {self._binary} --version: {exc}", "reinstall espeak-ng") from exc
        match = re.search(r"text-to-speech:\s*([0-9][^\s]*)", result.stdout)
        return match.group(1) if match else (result.stdout.strip().split("\n")[0] or "unknown")

    def _speak(self, sentence: str) -> Audio:
        command = [self._binary, "-v", self._voice, "-s", str(self._rate), "--stdout", "--stdin"]
        try:
            result = subprocess.run(
                command, input=sentence.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise EngineError(
                f"espeak-ng took longer than {_TIMEOUT_S:g} s for one sentence",
                "split the text into shorter sentences or check the machine's load",
            ) from exc
        except OSError as exc:
            raise EngineError(f"cannot run espeak-ng: {exc}", "reinstall espeak-ng") from exc
        stderr = result.stderr.decode("utf-8", "replace").strip()
        if result.returncode != 0 or "does not exist" in stderr:
            if "voice does not exist" in stderr:
                raise UsageError(
                    f"espeak-ng has no voice {self._voice!r}", "list voices with `espeak-ng --voices`"
                )
            raise EngineError(
                f"espeak-ng exited with {result.returncode}: {stderr or 'no message'}",
                "run the same command by hand to see what is wrong",
            )
        try:
            return decode(result.stdout, name="espeak-ng output")
        except AudioError as exc:
            raise EngineError(
                f"espeak-ng printed no usable audio: {exc.message}", "reinstall espeak-ng"
            ) from exc


PLUGIN = EnginePlugin(
    role="tts",
    name="espeak-ng",
    factory=EspeakTTS,
    summary="eSpeak NG formant synthesis through the espeak-ng program",
    binaries=(_BINARY,),
    options=(
        EngineOption("voice", "str", "en-us", "an espeak-ng voice name"),
        EngineOption("rate", "int", 175, f"words per minute ({_MIN_RATE}-{_MAX_RATE})"),
    ),
)
