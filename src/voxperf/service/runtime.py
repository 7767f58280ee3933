"""The engines a server or worker runs, typed by their Protocols, and the library pipelines on them.

Engines load per capability: ``stt_spec="none"`` serves no transcription (and loads no STT model),
``tts_spec="none"`` no speech (no voice in memory), so a transcription-only server is as light as
its STT engine. The pipelines are the library's own (:class:`DictationPipeline`,
:class:`SpeechPipeline`): a request through the service is measured exactly as ``voxperf bench``
measures it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from voxperf.audio.pcm import Audio
from voxperf.engines.base import Rewriter, STTEngine, TTSEngine
from voxperf.errors import DependencyMissingError
from voxperf.pipeline.dictation import DictationPipeline
from voxperf.pipeline.sinks import AudioSink
from voxperf.pipeline.speech import SpeechPipeline
from voxperf.service.settings import ServiceSettings

__all__ = ["MIN_DURATION_S", "ServiceEngines", "SharedTTS"]

log = logging.getLogger("voxperf.service")

MIN_DURATION_S = 0.1  # shorter uploads hold nothing to transcribe


@dataclass
class ServiceEngines:
    """Engines loaded once at start-up and warmed up (``/readyz`` is 200 once they are)."""

    stt: STTEngine | None = None
    tts: TTSEngine | None = None
    rewriter: Rewriter | None = None
    ready: bool = False

    warm: bool = False

    def load(self, settings: ServiceSettings, *, warm: bool = True) -> None:
        """Create the engines the settings ask for ("none" skips a capability) and, unless told
        not to, warm them (a first call pays one-off costs: 0.4-0.5 s for tiny.en here)."""
        from voxperf.engines.registry import create_engine, parse_spec

        if self.rewriter is None:
            self.rewriter = create_engine(parse_spec("rewrite", settings.rewrite_spec))
        if self.stt is None and settings.stt_spec != "none":
            spec = parse_spec("stt", settings.stt_spec)
            if spec.name == "faster-whisper" and settings.workers > 1 and "num_workers" not in spec.options:
                # one model, one CTranslate2 worker per job worker: jobs run in parallel, weights load once
                spec.options["num_workers"] = str(settings.workers)
            self.stt = create_engine(spec)
        if self.tts is None and settings.tts_spec != "none":
            tts = create_engine(parse_spec("tts", settings.tts_spec))
            self.tts = SharedTTS(tts, settings.tts_slots or os.cpu_count() or 1)
        self.ready = True
        if warm:
            self.warm_up()

    def warm_up(self) -> None:
        """Run each engine once so that no client request pays its first-call costs."""
        for engine in (self.stt, self.tts):
            if engine is not None:
                try:
                    engine.warmup()
                except Exception:  # the request that meets the same failure reports it
                    log.exception("warming up %s failed", engine.info.name)
        self.warm = True

    def dictation(self, settings: ServiceSettings) -> DictationPipeline:
        """The dictation pipeline as the service runs it: PCM to the engine (no upload encode, no
        VAD trim), the text delivered to no clipboard."""
        if self.stt is None or self.rewriter is None:
            raise DependencyMissingError(
                "this server does not transcribe (started with stt_spec none)",
                "start voxperf serve with --stt faster-whisper",
            )
        return DictationPipeline(
            self.stt,
            self.rewriter,
            encode_format="none",
            max_duration_s=settings.max_duration_s,
            min_duration_s=MIN_DURATION_S,
        )

    def require_tts(self) -> TTSEngine:
        if self.tts is None:
            raise DependencyMissingError(
                "this server does not synthesise speech (started with tts_spec none)",
                "start voxperf serve with --tts piper",
            )
        return self.tts

    def speech(self, sink: AudioSink) -> SpeechPipeline:
        """The speech pipeline into ``sink`` (the HTTP response, for the service)."""
        return SpeechPipeline(self.require_tts(), sink=sink)


class SharedTTS:
    """A TTS engine shared by concurrent streams, at most ``slots`` syntheses running at once.

    Each chunk is synthesised holding a slot, so streams take turns chunk by chunk: on a CPU the
    engine is no faster with more runs than cores, and each run in flight holds its activations
    (Piper: about 140 MiB for a 120-character unit)."""

    def __init__(self, engine: TTSEngine, slots: int) -> None:
        self.engine = engine
        self.info = engine.info
        self.sample_rate = engine.sample_rate
        self._slots = threading.Semaphore(max(1, slots))

    def stream(self, text: str) -> Iterator[Audio]:
        chunks = iter(self.engine.stream(text))
        while True:
            with self._slots:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def warmup(self) -> None:
        self.engine.warmup()
