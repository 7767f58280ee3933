"""Running transcription jobs: one :func:`process_job` for the embedded workers and the Celery task.

A job runs the library's :class:`~voxperf.pipeline.dictation.DictationPipeline`, exactly as ``voxperf
bench`` and the synchronous endpoint do. :func:`process_job` claims the job's record, runs the
pipeline on its upload and records the outcome under the attempt it claimed (see
:mod:`voxperf.service.jobs`); a recorded completion logs the exporter's ``pipeline_timing`` event in
the process that ran it. The embedded queue (:class:`EmbeddedQueue`, worker threads pulling the
oldest queued job) and Celery's task (:mod:`voxperf.service.celery_app`) differ only in how they
learn which job to run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from voxperf import __version__
from voxperf.engines.base import run_cancellable
from voxperf.errors import AudioError, UsageError, VoxperfError
from voxperf.pipeline.dictation import DictationPipeline, DictationResult
from voxperf.service.jobs import Job, JobRecords
from voxperf.trace.export import log_event
from voxperf.trace.metrics import stage_totals_ms

__all__ = ["EmbeddedQueue", "cancellable_run", "log_dictation", "process_job", "worker_id"]

log = logging.getLogger("voxperf.service")
OnDone = Callable[[Job], None]
T = TypeVar("T")


def worker_id() -> str:
    """``host:pid:thread`` of the code running an attempt (recorded, never shown to clients)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def log_dictation(result: DictationResult, session_id: str | None = None) -> None:
    """The finished dictation's ``pipeline_timing`` line (the exporter's event) on the timing log."""
    log_event(result.timing_event(__version__, session_id))


async def cancellable_run(
    run: Callable[[], T], disconnected: Callable[[], Awaitable[bool]], poll_s: float = 0.2
) -> T:
    """Run a request in a worker thread; once ``disconnected()`` says its client left, the request
    is cancelled (it stops at its next :func:`~voxperf.engines.base.check_cancelled`)."""
    cancel = threading.Event()
    if await disconnected():  # it left while waiting for a slot: the pipeline stops after decoding
        cancel.set()
    task = asyncio.ensure_future(run_in_threadpool(run_cancellable, cancel, run))
    while not task.done():
        await asyncio.wait({task}, timeout=poll_s)
        if not task.done() and not cancel.is_set() and await disconnected():
            cancel.set()
    return task.result()


def process_job(
    records: JobRecords,
    pipeline: DictationPipeline,
    job_id: str | None = None,
    *,
    takeover: bool = False,
    on_done: OnDone | None = None,
) -> Job | None:
    """Claim one job (the given one, or the oldest queued), run it, record the outcome.

    ``takeover``: the message was redelivered because its worker died, so a running job is taken
    over. Bad audio fails the job at once; any other error puts it back in the queue until it has
    failed ``MAX_ATTEMPTS`` times. Returns the record as it ended, or None when there was nothing to
    do (already taken, done or cancelled).
    """
    me = worker_id()
    job = records.claim(job_id, me, takeover=takeover) if job_id else records.claim_next(me)
    if job is None:
        return None
    recorded: DictationResult | None = None
    try:
        data = records.audio(job.id)
        if data is None:
            raise AudioError("the job's audio is gone", "submit the job again")
        result = pipeline.run(data, job.level, name="upload", request_id=job.id)
        if records.complete(job, result.text, stage_totals_ms(result.trace)):
            recorded = result
    except (AudioError, UsageError) as exc:
        records.fail(job, exc.message, permanent=True)
    except VoxperfError as exc:
        records.fail(job, exc.message)
    except Exception as exc:  # an engine crash: retried, then failed with its reason
        log.exception("job %s failed", job.id)
        records.fail(job, f"{type(exc).__name__}: {exc}")
    if recorded is not None:  # outside the try: telemetry never fails a finished job
        log_dictation(recorded, session_id=job.id)
    final = records.get(job.id)
    if on_done is not None and final is not None:
        on_done(final)
    return final


class EmbeddedQueue:
    """In-process worker threads pulling jobs from the record; interrupted jobs resume on start."""

    def __init__(
        self,
        records: JobRecords,
        pipeline: DictationPipeline,
        *,
        workers: int = 1,
        on_done: OnDone | None = None,
    ) -> None:
        self.records = records
        self.pipeline = pipeline
        self.workers = workers
        self.on_done = on_done
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> int:
        resumed = self.records.requeue_running()
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
                job = process_job(self.records, self.pipeline, on_done=self.on_done)
            except Exception:  # a database or callback error must not end the worker for good
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
