"""Scale-out jobs on Celery: RabbitMQ carries the messages, the job record holds the truth.

API servers (``voxperf serve --broker amqp://... --jobs-db postgresql://...``) write the job record
and send ``voxperf.process_job(job_id)`` (task id = job id); workers on any machine (``voxperf
worker`` with the same two URLs) run it with the same :func:`~voxperf.service.worker.process_job` as
the embedded queue. Celery is used as designed, nothing of kombu is touched:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged after its task ran.
  When a worker dies (``kill -9``, lost machine) RabbitMQ sees its connection close and redelivers
  its unacknowledged messages to another worker at once, flagged ``redelivered``; heartbeats
  (``broker_heartbeat``) find a silent peer whose connection did not close. A worker runs tasks in
  a thread pool, so its connection keeps answering heartbeats while a long job runs.
* A redelivered message takes the job over in the record (attempts + 1, "lost too many times" after
  ``MAX_ATTEMPTS``); any other message for a job that is not queued does nothing. Outcomes are
  recorded under the attempt that ran, so a job runs to a recorded completion once.
* Cancel marks the record cancelled and revokes the task (``control.revoke``): a queued message is
  dropped by the workers, a running attempt's outcome is not recorded.
* A server re-sends the messages of queued jobs when it starts (a server killed between writing a
  record and sending its message loses no job; a duplicate message is a no-op).

RabbitMQ acknowledges within its ``consumer_timeout`` (30 min by default); jobs are bounded far below
that by the duration limit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from voxperf.extras import require_extra

require_extra("scale", "scale-out on a broker (voxperf serve --broker, voxperf worker)")

from celery import Celery, Task  # noqa: E402
from kombu.exceptions import OperationalError  # noqa: E402

from voxperf.errors import ServiceUnavailableError  # noqa: E402
from voxperf.service.jobs import JobRecords  # noqa: E402
from voxperf.service.runtime import ServiceEngines  # noqa: E402
from voxperf.service.settings import ServiceSettings  # noqa: E402
from voxperf.service.worker import process_job  # noqa: E402
from voxperf.trace.export import configure_timing_log  # noqa: E402

__all__ = ["QUEUE", "TASK_NAME", "enqueue", "make_celery", "redact_url", "revoke", "run_worker"]

log = logging.getLogger("voxperf.service.celery")

TASK_NAME = "voxperf.process_job"
QUEUE = "voxperf.jobs"


def redact_url(url: str) -> str:
    """A broker or database URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def make_celery(broker_url: str, queue: str = QUEUE) -> Celery:
    """The Celery app on RabbitMQ at ``broker_url`` (no result backend: outcomes are in the record);
    jobs travel on ``queue``."""
    app = Celery("voxperf", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        broker_heartbeat=10,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )
    app.task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True)(_process_job_task)
    return app


def enqueue(app: Celery, job_id: str) -> None:
    """Send the job's message (task id = job id). Call after the record was written."""
    try:
        app.send_task(TASK_NAME, args=[job_id], task_id=job_id, queue=app.conf.task_default_queue)
    except (OperationalError, OSError) as exc:
        raise ServiceUnavailableError(
            f"cannot reach the job queue at {redact_url(str(app.conf.broker_url))}: {exc}",
            "check that RabbitMQ is running and the broker URL is right",
        ) from exc


def revoke(app: Celery, job_id: str) -> None:
    """Tell the workers to drop the job's message if it has not started (best effort)."""
    try:
        app.control.revoke(job_id)
    except (OperationalError, OSError):
        log.warning("could not revoke job %s: the broker is unreachable; the record is cancelled", job_id)


class _Runtime:
    """What a worker process needs, made once: the settings, the job records and the pipeline."""

    lock = threading.Lock()
    made: tuple[JobRecords, Any] | None = None

    @classmethod
    def get(cls, settings: ServiceSettings | None = None) -> tuple[JobRecords, Any]:
        with cls.lock:
            if cls.made is None:
                settings = settings or ServiceSettings.load()
                engines = ServiceEngines()
                engines.load(settings)
                cls.made = (JobRecords(settings.records_target), engines.dictation(settings))
            return cls.made


def _process_job_task(self: Task, job_id: str) -> str | None:
    """The task: the record decides whether there is anything to do (see the module docstring)."""
    records, pipeline = _Runtime.get()
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    job = process_job(records, pipeline, job_id, takeover=redelivered)
    return job.status if job is not None else None


def run_worker(settings: ServiceSettings, *, loglevel: str = "info") -> None:
    """Run a Celery worker: engines loaded and warmed first, then ``settings.workers`` threads."""
    if not settings.broker_url:
        raise ServiceUnavailableError("voxperf worker needs a broker", "give --broker amqp://HOST:5672//")
    configure_timing_log()
    _Runtime.get(settings)  # a broken engine spec or database fails here, in one line, before consuming
    app = make_celery(settings.broker_url, settings.broker_queue)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={max(1, settings.workers)}",
            f"--loglevel={loglevel}",
            f"--queues={settings.broker_queue}",
            "--without-gossip",
            "--without-mingle",
            f"--hostname=voxperf-{os.getpid()}@{socket.gethostname()}",
        ]
    )
