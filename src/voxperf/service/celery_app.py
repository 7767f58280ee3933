"""The distributed job queue: Celery with Redis as the broker, jobs in :class:`RedisJobStore`.

API servers call :func:`enqueue` after ``store.create``; workers on any machine run
``voxperf worker --queue redis://...`` (:func:`run_worker`). One task, ``voxperf.process_job(job_id)``,
claims the job in the store, runs it with the same :func:`~voxperf.service.worker.transcribe_bytes` as
the embedded queue, and records the outcome; a recorded completion writes the job's ``pipeline_timing``
line on the worker's stderr.

Delivery is at-least-once, execution effectively once:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: the message is acknowledged only after the
  task ran. If a prefork child dies, its message is requeued at once; if a whole worker dies
  (``kill -9``, lost machine), the message stays in the broker's unacked set and another worker
  restores it once the visibility timeout has passed (60 s by default). Either way it comes back
  flagged ``redelivered``.
* A redelivered message (or any message for a job that is already running) goes through
  :meth:`RedisJobStore.reclaim`: it takes the job over (attempts + 1; "worker lost too many times"
  after ``MAX_ATTEMPTS``) only when the previous holder's lease is stale. A worker renews its lease
  every ``VOXPERF_HEARTBEAT_S`` (5 s; stale after 3 beats) while it runs a job, so a duplicate message
  cannot steal a job from a live worker; it is retried later instead, which keeps a message in
  flight in case that worker dies after all.
* While a worker holds messages, a thread in its main process pushes back their visibility deadline,
  so a job that runs longer than the visibility timeout is not redelivered behind its back.
* ``complete`` records only for a running job, so at most one completion is recorded.

Worker settings come from the environment: ``VOXPERF_STT_SPEC`` (default ``faster-whisper``),
``VOXPERF_REWRITE_SPEC`` (``local``), ``VOXPERF_JOB_PREFIX`` (``voxperf``; API servers and workers
must agree), ``VOXPERF_VISIBILITY_TIMEOUT_S`` (60), ``VOXPERF_HEARTBEAT_S`` (5) and
``VOXPERF_MAX_DURATION_S`` (600).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown
from kombu.exceptions import OperationalError

from voxperf.errors import AudioError, StoreRemoteError, UsageError, VoxperfError
from voxperf.service.jobs import Job
from voxperf.service.redis_jobs import RedisJobStore, redact_url
from voxperf.service.timing import configure_timing_log
from voxperf.service.worker import Transcription, stage_ms, transcribe_bytes

__all__ = [
    "QUEUE",
    "TASK_NAME",
    "QueueSettings",
    "VoxperfCelery",
    "WorkerEngines",
    "enqueue",
    "live_workers",
    "main",
    "make_celery",
    "run_claimed_job",
    "run_worker",
    "take_job",
    "worker_engines",
    "worker_id",
]

log = logging.getLogger("voxperf.service.celery")

TASK_NAME = "voxperf.process_job"
QUEUE = "voxperf"  # the broker queue (under the prefix), so other Celery apps on the Redis do not mix in
ENV_STT = "VOXPERF_STT_SPEC"
ENV_REWRITE = "VOXPERF_REWRITE_SPEC"
ENV_PREFIX = "VOXPERF_JOB_PREFIX"
ENV_VISIBILITY = "VOXPERF_VISIBILITY_TIMEOUT_S"
ENV_HEARTBEAT = "VOXPERF_HEARTBEAT_S"
ENV_MAX_DURATION = "VOXPERF_MAX_DURATION_S"
_UNACKED_INDEX = "unacked_index"  # kombu's index of unacknowledged messages (scored by delivery time)


def _broker_prefix(prefix: str) -> str:
    """Where kombu keeps the queue and its unacked bookkeeping for one deployment (or test run)."""
    return f"{prefix}:broker:"


def _env_float(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also rejects NaN
        raise UsageError(f"bad {name}={raw!r}", f"set it to a number of seconds >= {minimum}")
    return value


@dataclass(frozen=True)
class QueueSettings:
    """Timing of redelivery and leases (see the module docstring)."""

    prefix: str = "voxperf"
    visibility_timeout_s: float = 60.0
    heartbeat_s: float = 5.0
    max_duration_s: float = 600.0

    @property
    def lease_s(self) -> float:
        """A job's lease is stale after three missed heartbeats."""
        return 3 * self.heartbeat_s

    @property
    def restore_interval_s(self) -> int:
        """How often each idle worker looks for lost messages (kombu wants whole seconds)."""
        return max(1, min(10, int(self.visibility_timeout_s / 6)))

    @property
    def keep_visible_s(self) -> float:
        """How often a worker pushes back the visibility deadline of the messages it holds."""
        return max(0.25, self.visibility_timeout_s / 4)

    @classmethod
    def from_env(cls, prefix: str | None = None) -> QueueSettings:
        return cls(
            prefix=prefix or os.environ.get(ENV_PREFIX) or "voxperf",
            visibility_timeout_s=_env_float(ENV_VISIBILITY, 60.0, 1.0),
            heartbeat_s=_env_float(ENV_HEARTBEAT, 5.0, 0.05),
            max_duration_s=_env_float(ENV_MAX_DURATION, 600.0, 0.1),
        )


class VoxperfCelery(Celery):
    """A Celery app that knows where its job store is and how its queue is timed."""

    store_url: str
    queue_settings: QueueSettings


def make_celery(url: str, *, prefix: str | None = None) -> VoxperfCelery:
    """The Celery app on a Redis broker at ``url`` (jobs are stored in the same Redis).

    Broker keys live under ``<prefix>:broker:`` so test runs and deployments sharing a Redis are
    isolated; no result backend (the outcome is in the job store).
    """
    settings = QueueSettings.from_env(prefix)
    if not url.startswith(("redis://", "rediss://")):
        raise UsageError(f"bad queue URL {redact_url(url)!r}", "use a Redis URL such as redis://host:6379/0")
    app = VoxperfCelery("voxperf", set_as_current=False)
    app.store_url = url
    app.queue_settings = settings
    app.conf.update(
        broker_url=url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.restore_interval_s,
            "unacked_restore_throttle": 1,  # scan on every interval, not every 10th
            "global_keyprefix": _broker_prefix(settings.prefix),
            "unacked_index_key": _UNACKED_INDEX,
            "socket_connect_timeout": 5,
        },
    )
    app.task(name=TASK_NAME, bind=True, max_retries=None, acks_late=True, ignore_result=True)(
        _process_job_task
    )
    _install_worker_hooks(app)
    return app


def enqueue(app: Celery, job_id: str) -> str:
    """Send ``voxperf.process_job(job_id)``; returns the message id. Call after ``store.create``."""
    try:
        return str(app.send_task(TASK_NAME, args=[job_id], queue=QUEUE).id)
    except OperationalError as exc:
        raise StoreRemoteError(
            f"cannot enqueue job {job_id} on {redact_url(str(app.conf.broker_url))}: {exc}",
            "check that Redis is running and the queue URL is right",
        ) from exc


def worker_id() -> str:
    """``host:pid`` of the process running a job; recorded in the job hash as ``worker``."""
    return f"{socket.gethostname()}:{os.getpid()}"


# -- per-process singletons (each prefork child builds its own) ------------------------------------


@dataclass
class WorkerEngines:
    """The engines a worker process runs jobs with (what ``transcribe_bytes`` needs)."""

    stt: Any
    rewriter: Any


_lock = threading.Lock()
_engines: WorkerEngines | None = None
_stores: dict[tuple[str, str], RedisJobStore] = {}


def worker_engines() -> WorkerEngines:
    """Create and warm up this process's engines once, from ``VOXPERF_STT_SPEC``/``VOXPERF_REWRITE_SPEC``."""
    global _engines
    with _lock:
        if _engines is None:
            from voxperf.engines.registry import create_engine, parse_spec

            stt = create_engine(parse_spec("stt", os.environ.get(ENV_STT) or "faster-whisper"))
            rewriter = create_engine(parse_spec("rewrite", os.environ.get(ENV_REWRITE) or "local"))
            for engine in (stt, rewriter):
                warmup = getattr(engine, "warmup", None)
                if callable(warmup):
                    warmup()
            _engines = WorkerEngines(stt=stt, rewriter=rewriter)
        return _engines


def _store_for(app: VoxperfCelery) -> RedisJobStore:
    key = (app.store_url, app.queue_settings.prefix)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = RedisJobStore(app.store_url, prefix=app.queue_settings.prefix)
        return store


# -- the task ---------------------------------------------------------------------------------------


def take_job(
    store: RedisJobStore, job_id: str, *, worker: str, redelivered: bool, lease_s: float
) -> tuple[str, Job | None]:
    """Decide what one delivery of ``job_id`` does: ``("run", job)`` (ours, running),
    ``("wait", job)`` (a live worker holds it: retry later) or ``("drop", job | None)`` (nothing to do:
    unknown, finished, cancelled, or failed for good by :meth:`RedisJobStore.reclaim`)."""
    current = store.get(job_id)
    if current is None:
        return "drop", None
    if redelivered or current.status == "running":
        job = store.reclaim(job_id, worker=worker, lease_s=lease_s)
    else:
        job = store.claim(job_id, worker=worker)
    if job is not None:
        return ("run" if job.status == "running" else "drop"), job
    current = store.get(job_id)
    if current is not None and current.status == "running":
        return "wait", current
    return "drop", current


def run_claimed_job(
    store: RedisJobStore, engines: Any, job: Job, *, max_duration_s: float = 600.0, worker: str = ""
) -> Job | None:
    """Run an already-claimed job and record the outcome; mirrors :func:`worker.process_job` after
    its claim (bad audio fails at once, other errors requeue until ``MAX_ATTEMPTS``)."""
    recorded: Transcription | None = None
    try:
        data = store.audio(job.id)
        if data is None:
            raise AudioError("the job's audio is gone", "submit the job again")
        result = transcribe_bytes(engines, data, level=job.level, max_duration_s=max_duration_s)
        if store.complete(job.id, result.transcript.text, stage_ms(result.trace), worker=worker):
            recorded = result
    except StoreRemoteError:
        raise  # the store itself is unreachable: recording a failure would fail too
    except (AudioError, UsageError) as exc:
        store.fail(job.id, exc.message, permanent=True, worker=worker)
    except VoxperfError as exc:
        store.fail(job.id, exc.message, worker=worker)
    except Exception as exc:  # an engine crash: retried, then failed with its reason
        log.exception("job %s failed", job.id)
        store.fail(job.id, f"{type(exc).__name__}: {exc}", worker=worker)
    if recorded is not None:  # one pipeline_timing line, on this worker's stderr
        recorded.log_timing(session_id=job.id)
    return store.get(job.id)


class _Lease:
    """Renews this worker's lease on a running job from a daemon thread until the block ends."""

    def __init__(self, store: RedisJobStore, job_id: str, worker: str, interval_s: float) -> None:
        self.store, self.job_id, self.worker, self.interval_s = store, job_id, worker, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"voxperf-lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(self.interval_s + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.store.heartbeat(self.job_id, self.worker):
                    return  # finished, cancelled or taken over: nothing left to hold
            except StoreRemoteError as exc:
                log.warning("cannot renew the lease on job %s: %s", self.job_id, exc)


def _process_job_task(self: Task, job_id: str) -> str | None:
    """``voxperf.process_job``: claim (or reclaim) the job, run it, record the outcome; returns the
    job's final status. Retries (a new message) while another live worker holds the job, and after a
    transient failure put the job back in the queue."""
    app: VoxperfCelery = self.app
    settings = app.queue_settings
    me = worker_id()
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        store = _store_for(app)
        action, job = take_job(store, job_id, worker=me, redelivered=redelivered, lease_s=settings.lease_s)
        if action == "wait":
            log.info("job %s is held by a live worker; checking again in %.1f s", job_id, settings.lease_s)
            raise self.retry(countdown=settings.lease_s)
        if action == "drop" or job is None:
            return job.status if job is not None else None
        log.info("job %s: attempt %d on %s%s", job_id, job.attempts, me, " (redelivered)" * redelivered)
        with _Lease(store, job_id, me, settings.heartbeat_s):
            try:
                engines = worker_engines()
            except VoxperfError as exc:
                final = store.fail(job_id, f"the worker cannot load its engines: {exc}", worker=me)
            else:
                final = run_claimed_job(
                    store, engines, job, max_duration_s=settings.max_duration_s, worker=me
                )
    except StoreRemoteError as exc:
        log.warning("job %s: the job store failed (%s); retrying", job_id, exc)
        raise self.retry(countdown=settings.lease_s, exc=exc) from exc
    if final is not None and final.status == "queued":  # transient failure: run it again, backing off
        raise self.retry(countdown=min(2.0**final.attempts, settings.visibility_timeout_s / 2))
    return final.status if final is not None else None


# -- the worker process ------------------------------------------------------------------------------


def _held_delivery_tags() -> list[str]:
    """Delivery tags of every message this worker process holds (running, reserved or scheduled)."""
    from celery.worker import state

    for _ in range(3):
        try:
            requests = [*list(state.requests.values()), *list(state.scheduled_requests)]
            break
        except RuntimeError:  # a set changed size while we copied it: try again
            continue
    else:
        return []
    tags = []
    for req in requests:
        tag = getattr(getattr(req, "message", None), "delivery_tag", None)
        if tag:
            tags.append(str(tag))
    return tags


class _WorkerBeacon:
    """In a worker's main process: keeps the messages it holds invisible to other workers' restore
    sweeps (``ZADD XX`` of now on kombu's unacked index) and advertises the worker as live."""

    def __init__(self, app: VoxperfCelery, name: str) -> None:
        self.settings = app.queue_settings
        self.client = redis.Redis.from_url(app.store_url, socket_connect_timeout=5, socket_timeout=10)
        self.index_key = _broker_prefix(self.settings.prefix) + _UNACKED_INDEX
        self.live_key = f"{self.settings.prefix}:worker:{name}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="voxperf-beacon", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(redis.exceptions.RedisError):
            self.client.delete(self.live_key)

    def _beat(self) -> None:
        interval = self.settings.keep_visible_s
        try:
            tags = _held_delivery_tags()
            pipe = self.client.pipeline(transaction=False)
            if tags:
                now = time.time()  # the same clock kombu scores the index with
                pipe.zadd(self.index_key, dict.fromkeys(tags, now), xx=True)
            pipe.set(self.live_key, os.getpid(), px=int(3 * interval * 1000))
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("worker beacon: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.keep_visible_s):
            self._beat()


def _install_worker_hooks(app: VoxperfCelery) -> None:
    """Start the beacon when a worker of *this* app is ready; stop it on shutdown."""
    beacons: list[_WorkerBeacon] = []

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        beacon = _WorkerBeacon(app, worker_id())
        beacon.start()
        beacons.append(beacon)
        log.info("voxperf worker %s ready (prefix %s)", worker_id(), app.queue_settings.prefix)

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        while beacons:
            beacons.pop().stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)


def live_workers(url: str, *, prefix: str | None = None) -> list[str]:
    """``host:pid`` of the worker processes that advertised themselves in the last few seconds."""
    settings = QueueSettings.from_env(prefix)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        pattern = f"{settings.prefix}:worker:*"
        return sorted(key.decode().split(":worker:", 1)[1] for key in client.scan_iter(match=pattern))
    except redis.exceptions.RedisError as exc:
        raise StoreRemoteError(
            f"cannot reach Redis at {redact_url(url)}: {exc}", "check the queue URL and that Redis runs"
        ) from exc
    finally:
        client.close()


def run_worker(url: str, *, concurrency: int = 1, loglevel: str = "info") -> None:
    """Run a Celery worker for ``voxperf.process_job`` in this process until it is stopped.

    ``concurrency == 1`` uses the **solo** pool: jobs run in this very process, whose engines are
    loaded and warmed up before it consumes anything (a bad spec or missing model fails here, and
    the first job is not slowed by loading). ``concurrency > 1`` uses the **prefork** pool: N child
    processes, each loading its own engines on its first job. SIGTERM is a warm shutdown (the
    running job finishes); SIGKILL loses nothing (the message is redelivered).
    """
    if concurrency < 1:
        raise UsageError(f"bad concurrency {concurrency}", "use 1 or more worker processes")
    app = make_celery(url)
    _store_for(app)  # fail now, with the URL, if Redis is not there
    configure_timing_log()  # before Celery takes over the root logger and redirects stderr
    if concurrency == 1:
        worker_engines()
    else:
        from voxperf.engines.registry import parse_spec

        parse_spec("stt", os.environ.get(ENV_STT) or "faster-whisper")
        parse_spec("rewrite", os.environ.get(ENV_REWRITE) or "local")
    pool = "solo" if concurrency == 1 else "prefork"
    app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--queues={QUEUE}",
            f"--hostname=voxperf-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m voxperf.service.celery_app worker --queue URL [--concurrency N] [--loglevel L]``."""
    parser = argparse.ArgumentParser(prog="python -m voxperf.service.celery_app")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run a job worker")
    worker.add_argument("--queue", required=True, help="Redis URL, e.g. redis://127.0.0.1:6379/0")
    worker.add_argument("--concurrency", type=int, default=1, help="1: solo pool; N > 1: prefork")
    worker.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    try:
        run_worker(args.queue, concurrency=args.concurrency, loglevel=args.loglevel)
    except VoxperfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    # Run the imported module, not this ``__main__`` copy, so there is one set of singletons.
    from voxperf.service.celery_app import main as _main

    sys.exit(_main())
