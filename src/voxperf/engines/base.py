"""The engine Protocols: each extension point is one small method, with a fake beside it.

Real engines live one module per engine under ``stt/``, ``tts/``, ``vad/`` and ``rewrite/``; the
codepath lane's fakes (``fakes.py``) implement the same Protocols. Every engine exposes an
:class:`EngineInfo` (recorded in result files) and ``is_fake`` (the plausibility guard flags any
provider-lane number that came from a fake).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.errors import Cancelled

__all__ = [
    "LEVELS",
    "EngineInfo",
    "Rewriter",
    "STTEngine",
    "Segment",
    "TTSEngine",
    "Transcript",
    "VADEngine",
    "check_cancelled",
    "run_cancellable",
]

Role = Literal["stt", "tts", "vad", "rewrite"]
LEVELS: tuple[str, ...] = ("raw", "clean", "polish")  # the dictation app's processing levels
T = TypeVar("T")

_cancel: ContextVar[threading.Event | None] = ContextVar("voxperf_cancel", default=None)


def run_cancellable(cancel: threading.Event, run: Callable[[], T]) -> T:
    """Run ``run`` (a request) in this thread so that :func:`check_cancelled` inside it raises
    :class:`~voxperf.errors.Cancelled` once ``cancel`` is set (e.g. by a server whose client left)."""
    token = _cancel.set(cancel)
    try:
        return run()
    finally:
        _cancel.reset(token)


def check_cancelled() -> None:
    """Stop the running request if it was cancelled: pipelines call this between stages and
    engines between units of work (faster-whisper between 30 s windows); free when nobody cancels."""
    cancel = _cancel.get()
    if cancel is not None and cancel.is_set():
        raise Cancelled("the request was cancelled", "nothing to do: its client went away")


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What ran: recorded in every result file so numbers can be traced to an engine and model."""

    role: Role
    name: str  # registry name, e.g. "faster-whisper"
    version: str  # package or binary version
    model: str | None = None  # model name, e.g. "tiny.en"
    model_path: str | None = None  # resolved local path of the weights
    model_source: str | None = None  # "path" | "bundled:<package>" | "hf-cache" | None
    settings: dict[str, Any] = field(default_factory=dict)  # compute type, threads, beam size ...
    is_fake: bool = False
    weights: tuple[
        str, ...
    ] = ()  # files or directories of the model (default: model_path), hashed in results

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.name,
            "version": self.version,
            "model": self.model,
            "modelPath": self.model_path,
            "modelSource": self.model_source,
            "settings": dict(self.settings),
            "isFake": self.is_fake,
        }


@dataclass(frozen=True, slots=True)
class Segment:
    """A timed piece of a transcript (seconds from the start of the audio)."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """The text an STT engine produced for one utterance, with timed segments when it has them."""

    text: str
    language: str | None = None
    segments: tuple[Segment, ...] = ()


@runtime_checkable
class STTEngine(Protocol):
    """Speech to text: ``transcribe`` must do all the work before it returns (no lazy results)."""

    info: EngineInfo
    sample_rate: int  # the rate ``transcribe`` expects; the pipeline resamples to it

    def transcribe(self, audio: Audio) -> Transcript: ...

    def warmup(self) -> None: ...


@runtime_checkable
class TTSEngine(Protocol):
    """Text to speech, streamed: ``stream`` yields audio chunks as they are synthesised."""

    info: EngineInfo
    sample_rate: int

    def stream(self, text: str) -> Iterator[Audio]: ...

    def warmup(self) -> None: ...


@runtime_checkable
class VADEngine(Protocol):
    """Voice activity: a fixed frame size and the speech probability of one frame."""

    info: EngineInfo
    sample_rate: int  # frames must be at this rate
    frame_samples: int  # frames must have exactly this many samples

    def speech_prob(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


@runtime_checkable
class Rewriter(Protocol):
    """Transcript post-processing for a processing level (raw, clean, polish, as the dictation app has)."""

    info: EngineInfo

    def rewrite(self, text: str, level: str) -> str: ...
