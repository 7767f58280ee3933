"""The dictation pipeline: decode → resample → VAD → encode → STT → rewrite → paste.

One call of :meth:`DictationPipeline.run` is one request: a :class:`~voxperf.trace.core.Trace`
starts before decoding (request start) and finishes after the text reached the sink. Each stage is
a span named from :class:`~voxperf.trace.stages.Stage`. ``encode`` is upload-style (what a cloud
STT would receive: original vs encoded bytes, as the dictation audit records); local engines are
given the PCM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxperf.audio.codec import DEFAULT_MAX_DURATION_S, decode, encode, resample
from voxperf.engines.base import Rewriter, Segment, STTEngine, VADEngine, check_cancelled
from voxperf.engines.registry import EngineSource, resolve_engine
from voxperf.errors import AudioError, UsageError
from voxperf.pipeline.sinks import NullSink, TextSink
from voxperf.trace.core import Clock, Trace, default_clock
from voxperf.trace.export import pipeline_timing_event
from voxperf.trace.stages import Stage

__all__ = ["ENCODE_FORMATS", "DictationPipeline", "DictationResult"]

ENCODE_FORMATS = ("flac", "opus", "wav", "none")


@dataclass(slots=True)
class DictationResult:
    """One dictation request: its trace and what it produced (text stays out of telemetry)."""

    trace: Trace
    level: str
    transcript: str  # STT output before rewrite
    text: str  # delivered text
    audio_s: float  # duration of the audio given to STT (after VAD trim)
    input_audio_s: float  # duration of the decoded input
    original_bytes: int  # 16-bit PCM bytes of the audio given to STT
    encoded_bytes: int  # bytes after encode (0 when encode is "none")
    language: str | None = None  # as the STT engine reported it
    segments: tuple[Segment, ...] = ()  # the STT engine's timed segments (of the transcript, not the text)

    def timing_event(self, app_version: str, session_id: str | None = None) -> dict[str, Any]:
        """This request's ``pipeline_timing`` event (the exporter's; timings and sizes, no text)."""
        return pipeline_timing_event(
            self.trace,
            processing_level=self.level,
            original_bytes=self.original_bytes,
            encoded_bytes=self.encoded_bytes,
            app_version=app_version,
            session_id=session_id,
        )

    def subtitles(self, kind: str) -> str:
        """The timed segments as SubRip (``"srt"``) or WebVTT (``"vtt"``) subtitles."""
        if kind not in ("srt", "vtt"):
            raise UsageError(f"unknown subtitle format {kind!r}", "use srt or vtt")

        def stamp(s: float) -> str:
            ms = round(s * 1000)
            sep = "," if kind == "srt" else "."
            return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"

        lines = [] if kind == "srt" else ["WEBVTT", ""]
        for i, seg in enumerate(self.segments, start=1):
            lines += [str(i)] if kind == "srt" else []
            lines += [f"{stamp(seg.start_s)} --> {stamp(seg.end_s)}", seg.text, ""]
        return "\n".join(lines)


class DictationPipeline:
    """Audio bytes in, delivered text out, every stage traced."""

    def __init__(
        self,
        stt: STTEngine | EngineSource,
        rewriter: Rewriter | EngineSource,
        *,
        vad: VADEngine | EngineSource | None = None,
        sink: TextSink | None = None,
        encode_format: str = "flac",
        clock: Clock = default_clock,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
        min_duration_s: float = 0.0,
    ) -> None:
        if encode_format not in ENCODE_FORMATS:
            from voxperf.errors import UsageError

            raise UsageError(
                f"unknown encode format {encode_format!r}", f"use one of {', '.join(ENCODE_FORMATS)}"
            )
        self.stt: STTEngine = resolve_engine("stt", stt)[0]  # an engine, a factory or a spec
        self.rewriter: Rewriter = resolve_engine("rewrite", rewriter)[0]
        self.vad: VADEngine | None = None if vad is None else resolve_engine("vad", vad)[0]
        self.sink: TextSink = sink if sink is not None else NullSink()
        self.encode_format = encode_format
        self.clock = clock
        self.max_duration_s = max_duration_s  # longer input is refused (AudioError) while decoding
        self.min_duration_s = min_duration_s  # shorter input is refused: nothing to transcribe

    def run(
        self,
        data: bytes,
        level: str,
        *,
        name: str | None = None,
        request_id: str | None = None,
        start_ns: int | None = None,
    ) -> DictationResult:
        """Run one request on encoded audio bytes (as a file or upload would hold them).

        The trace starts now, or at ``start_ns`` when the request began earlier (a server passes
        the time the request arrived, so reading the upload counts as overhead, not as nothing).
        Run under :func:`~voxperf.engines.base.run_cancellable`, it stops between stages (and
        inside engines that check) once cancelled.
        """
        trace = Trace(
            request_id, clock=self.clock, start_ns=start_ns, attrs={"pipeline": "dictation", "level": level}
        )
        with trace.activate():  # engines and user code reach it through voxperf.trace.core.span
            with trace.span(Stage.DECODE):
                audio = decode(data, name=name, max_duration_s=self.max_duration_s)
            if audio.duration_s < self.min_duration_s:
                raise AudioError(
                    f"the audio is {audio.duration_s * 1000:.0f} ms long, too short to transcribe",
                    f"send at least {self.min_duration_s * 1000:.0f} ms of audio",
                )
            check_cancelled()
            with trace.span(Stage.RESAMPLE):
                speech = resample(audio, self.stt.sample_rate)
            if self.vad is not None:
                from voxperf.engines.vad.util import trim_silence

                with trace.span(Stage.VAD):
                    speech = trim_silence(self.vad, speech)
            encoded_bytes = 0
            if self.encode_format != "none":
                with trace.span(Stage.ENCODE):
                    encoded_bytes = len(encode(speech, self.encode_format))
            check_cancelled()
            with trace.span(Stage.STT):
                transcript = self.stt.transcribe(speech)
            with trace.span(Stage.REWRITE):
                text = self.rewriter.rewrite(transcript.text, level)
            with trace.span(Stage.PASTE):
                self.sink.deliver(text)
            trace.finish()
        return DictationResult(
            trace=trace,
            level=level,
            transcript=transcript.text,
            text=text,
            audio_s=speech.duration_s,
            input_audio_s=audio.duration_s,
            original_bytes=speech.num_samples * 2,
            encoded_bytes=encoded_bytes,
            language=transcript.language,
            segments=tuple(transcript.segments),
        )
