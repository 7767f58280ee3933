"""Where pipeline output goes: text sinks for dictation's ``paste``, audio sinks for speech.

Sink specs on the command line: ``null``, ``file:PATH``, ``clipboard``, ``cmd:COMMAND ARGS`` for
text (the text is appended as the last argument, e.g. ``cmd:xdotool type --``); ``null``,
``wav:PATH`` and ``realtime`` (a player that plays every chunk in real time as it arrives and counts
its own underruns) for audio.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.errors import DependencyMissingError, EngineError, UsageError
from voxperf.trace.core import Clock, default_clock

__all__ = [
    "AudioSink",
    "ClipboardSink",
    "CommandSink",
    "FileSink",
    "NullAudioSink",
    "NullSink",
    "RealtimeAudioSink",
    "TextSink",
    "WavFileSink",
    "parse_audio_sink",
    "parse_text_sink",
]


@runtime_checkable
class TextSink(Protocol):
    """Delivers the final text of a dictation (the ``paste`` stage)."""

    name: str

    def deliver(self, text: str) -> None: ...


@runtime_checkable
class AudioSink(Protocol):
    """Receives synthesised audio chunks as they stream (the client side of the request flow)."""

    name: str

    def write(self, chunk: Audio) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Accepts text and keeps only its length: measures pipeline cost without a side effect."""

    name = "null"

    def __init__(self) -> None:
        self.delivered_chars = 0

    def deliver(self, text: str) -> None:
        self.delivered_chars += len(text)


class FileSink:
    """Appends each delivered text as one line to a file."""

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise UsageError(f"paste file directory {self.path.parent} does not exist", "create it first")

    def deliver(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")


class CommandSink:
    """Runs a command with the text as its last argument (``xdotool type --``, ``wtype``...)."""

    name = "cmd"

    def __init__(self, argv: list[str], timeout_s: float = 10.0) -> None:
        if not argv:
            raise UsageError("empty paste command", "write e.g. --paste 'cmd:xdotool type --'")
        if shutil.which(argv[0]) is None:
            raise DependencyMissingError(f"paste command {argv[0]!r} is not on PATH", f"install {argv[0]}")
        self.argv = argv
        self.timeout_s = timeout_s

    def deliver(self, text: str) -> None:
        proc = subprocess.run([*self.argv, text], capture_output=True, timeout=self.timeout_s, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[:200]
            raise EngineError(
                f"paste command {self.argv[0]} exited {proc.returncode}: {err}",
                "check the command works on its own",
            )


class ClipboardSink(CommandSink):
    """Copies the text to the clipboard with wl-copy, xclip or pbcopy (text on stdin)."""

    name = "clipboard"

    _TOOLS = (
        ["wl-copy"],
        ["xclip", "-selection", "clipboard"],
        ["xsel", "--clipboard", "--input"],
        ["pbcopy"],
    )

    def __init__(self) -> None:
        for argv in self._TOOLS:
            if shutil.which(argv[0]):
                self.argv = list(argv)
                self.timeout_s = 10.0
                return
        raise DependencyMissingError(
            "no clipboard tool found (wl-copy, xclip, xsel or pbcopy)", "install one, or use --paste null"
        )

    def deliver(self, text: str) -> None:
        proc = subprocess.run(self.argv, input=text.encode(), capture_output=True, timeout=10, check=False)
        if proc.returncode != 0:
            raise EngineError(f"{self.argv[0]} exited {proc.returncode}", "is a display/clipboard available?")


class NullAudioSink:
    """Accepts chunks and counts samples, like a player with an infinite buffer."""

    name = "null"

    def __init__(self) -> None:
        self.samples = 0

    def write(self, chunk: Audio) -> None:
        self.samples += chunk.num_samples

    def close(self) -> None:
        return None


class WavFileSink:
    """Writes the streamed audio to a 16-bit WAV file (rate fixed by the first chunk)."""

    name = "wav"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._wav: wave.Wave_write | None = None

    def write(self, chunk: Audio) -> None:
        if self._wav is None:
            self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in close()
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(chunk.sample_rate)
        pcm = (np.clip(chunk.samples, -1.0, 1.0) * 32767.0).astype("<i2")
        self._wav.writeframes(pcm.tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


@dataclass(slots=True)
class Underruns:
    """What a real-time player saw during one request: how often and how long it ran dry."""

    stalls: int = 0
    stall_ns: int = 0


class RealtimeAudioSink:
    """A player that starts on the first chunk and plays in real time, counting its own underruns.

    It keeps the time its buffer runs dry (``drained_at``): a chunk written after that moment
    starts a stall that lasted until the write. It never blocks (an unbounded device buffer), so
    it does not change the delivery times it observes. The pipeline's playout metric computes the
    same thing offline from the trace; this sink is the online, independent account of it.
    """

    name = "realtime"

    def __init__(self, *, clock: Clock = default_clock) -> None:
        self.clock = clock
        self.requests: list[Underruns] = []  # one entry per closed request
        self._current: Underruns | None = None
        self._drained_at = 0

    def write(self, chunk: Audio) -> None:
        now = self.clock()
        duration = chunk.num_samples * 1_000_000_000 // chunk.sample_rate
        if self._current is None:  # the first chunk starts playback
            self._current = Underruns()
            self._drained_at = now
        elif now > self._drained_at:
            self._current.stalls += 1
            self._current.stall_ns += now - self._drained_at
            self._drained_at = now
        self._drained_at += duration

    def close(self) -> None:
        self.requests.append(self._current or Underruns())
        self._current = None


def parse_text_sink(spec: str) -> TextSink:
    """``null`` | ``file:PATH`` | ``clipboard`` | ``cmd:COMMAND ARGS``."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "null":
        return NullSink()
    if kind == "file" and arg:
        return FileSink(arg)
    if kind == "clipboard":
        return ClipboardSink()
    if kind == "cmd" and arg:
        return CommandSink(shlex.split(arg))
    raise UsageError(f"unknown paste sink {spec!r}", "use null, file:PATH, clipboard or 'cmd:COMMAND ARGS'")


def parse_audio_sink(spec: str) -> AudioSink:
    """``null`` | ``wav:PATH`` | ``realtime``."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "null":
        return NullAudioSink()
    if kind == "wav" and arg:
        return WavFileSink(arg)
    if kind == "realtime" and not arg:
        return RealtimeAudioSink()
    raise UsageError(f"unknown audio sink {spec!r}", "use null, wav:PATH or realtime")
