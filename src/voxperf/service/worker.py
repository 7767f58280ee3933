"""Running transcriptions: one function for the synchronous endpoint and for every job worker.

:func:`transcribe_bytes` is the traced request path (decode → resample → stt → rewrite). The
:func:`process_job` step claims one job, runs it and records the outcome, and is what both the
embedded worker threads (:class:`EmbeddedQueue`) and the Celery task call, so behaviour is the same
whichever queue runs it: a job whose completion is recorded logs one ``pipeline_timing`` line
(:func:`~voxperf.service.timing.log_pipeline_timing`) in the process that ran it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxperf.audio.codec import decode, resample
from voxperf.engines.base import Transcript
from voxperf.errors import AudioError, UsageError, VoxperfError
from voxperf.service.jobs import Job, JobStore
from voxperf.service.timing import log_pipeline_timing
from voxperf.trace.core import Trace
from voxperf.trace.metrics import NS_PER_MS
from voxperf.trace.stages import ServerEvent, Stage

__all__ = ["MIN_DURATION_S", "EmbeddedQueue", "Transcription", "process_job", "transcribe_bytes"]

log = logging.getLogger("voxperf.service")
MIN_DURATION_S = 0.1


@dataclass(slots=True)
class Transcription:
    """One traced transcription of uploaded bytes (the text stays out of telemetry)."""

    transcript: Transcript
    trace: Trace  # request start (``start_ns``) → transcript ready
    level: str
    input_audio_s: float  # duration of the decoded upload
    original_bytes: int  # 16-bit PCM bytes given to STT (the pipeline_timing event's ``original_bytes``)
    encoded_bytes: int = 0  # the service hands STT the PCM; nothing is re-encoded

    def log_timing(self, session_id: str | None = None) -> None:
        """Log this finished dictation's ``pipeline_timing`` line (the exporter's event)."""
        log_pipeline_timing(
            self.trace,
            processing_level=self.level,
            original_bytes=self.original_bytes,
            encoded_bytes=self.encoded_bytes,
            session_id=session_id,
        )


def transcribe_bytes(
    engines: Any,
    data: bytes,
    *,
    level: str = "raw",
    max_duration_s: float = 600.0,
    start_ns: int | None = None,
) -> Transcription:
    """Decode, resample, transcribe (and rewrite unless raw) uploaded bytes, traced from ``start_ns``."""
    trace = Trace(start_ns=start_ns)
    trace.event(ServerEvent.REQUEST_RECEIVED, t_ns=trace.start_ns)
    with trace.span(Stage.DECODE):
        audio = decode(data, name="upload", max_duration_s=max_duration_s)
    if audio.duration_s < MIN_DURATION_S:
        raise AudioError(
            f"the audio is {audio.duration_s * 1000:.0f} ms long, too short to transcribe",
            f"send at least {MIN_DURATION_S * 1000:.0f} ms of audio",
        )
    with trace.span(Stage.RESAMPLE):
        speech = resample(audio, engines.stt.sample_rate)
    with trace.span(Stage.STT):
        transcript = engines.stt.transcribe(speech)
    if level != "raw":
        with trace.span(Stage.REWRITE):
            transcript = Transcript(
                engines.rewriter.rewrite(transcript.text, level), transcript.language, transcript.segments
            )
    trace.finish()
    return Transcription(transcript, trace, level, audio.duration_s, speech.num_samples * 2)


def stage_ms(trace: Trace) -> dict[str, float]:
    out: dict[str, float] = {}
    for span in trace.spans:
        out[span.name] = out.get(span.name, 0.0) + (span.end_ns - span.start_ns) / NS_PER_MS
    return out


def process_job(
    store: JobStore,
    engines: Any,
    job_id: str | None = None,
    *,
    max_duration_s: float = 600.0,
    on_done: Callable[[Job, Trace | None], None] | None = None,
) -> Job | None:
    """Claim one job (the given one or the oldest queued), run it, record the outcome.

    A completion is recorded only if the job is still running (a cancelled job's result is
    dropped, a duplicate delivery is a no-op). Bad audio fails the job at once; any other error
    puts it back in the queue until it has failed ``MAX_ATTEMPTS`` times.
    """
    job = store.claim(job_id)
    if job is None:
        return None
    trace: Trace | None = None
    recorded: Transcription | None = None
    try:
        data = store.audio(job.id)
        if data is None:
            raise AudioError("the job's audio is gone", "submit the job again")
        result = transcribe_bytes(engines, data, level=job.level, max_duration_s=max_duration_s)
        trace = result.trace
        if store.complete(job.id, result.transcript.text, stage_ms(trace)):
            recorded = result
    except (AudioError, UsageError) as exc:
        store.fail(job.id, exc.message, permanent=True)
    except VoxperfError as exc:
        store.fail(job.id, exc.message)
    except Exception as exc:  # an engine crash: retried, then failed with its reason
        log.exception("job %s failed", job.id)
        store.fail(job.id, f"{type(exc).__name__}: {exc}")
    if recorded is not None:  # outside the try: telemetry never fails a finished job
        recorded.log_timing(session_id=job.id)
    final = store.get(job.id)
    if on_done is not None and final is not None:
        on_done(final, trace)
    return final


class EmbeddedQueue:
    """In-process worker threads pulling jobs from the store; interrupted jobs resume on start."""

    def __init__(
        self,
        store: JobStore,
        engines: Any,
        *,
        workers: int = 1,
        max_duration_s: float = 600.0,
        on_done: Callable[[Job, Trace | None], None] | None = None,
    ) -> None:
        self.store = store
        self.engines = engines
        self.workers = workers
        self.max_duration_s = max_duration_s
        self.on_done = on_done
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> int:
        resumed = self.store.requeue_running()
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"voxperf-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._wake.set()
        return resumed

    def notify(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = process_job(
                    self.store, self.engines, max_duration_s=self.max_duration_s, on_done=self.on_done
                )
            except Exception:  # a store or callback error must not end the worker for good
                log.exception("job worker error; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain: no new job is claimed; running ones finish (bounded) or are resumed next start."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout_s)
