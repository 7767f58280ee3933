"""Asynchronous transcription jobs: the job record, the store contract, and the embedded SQLite store.

A job's life: ``queued`` → ``running`` → ``done`` | ``failed``; ``cancelled`` from queued or
running. Every transition is a single atomic statement on the store, so a job is claimed by one
worker at a time, a completion is recorded at most once (``complete`` on a job that is no longer
running is a no-op), and a job that fails ``MAX_ATTEMPTS`` times is marked ``failed`` with its reason
instead of looping. Times are server wall-clock epoch seconds; durations are server-measured.

The embedded store keeps jobs in SQLite and the uploaded audio in a spool directory under generated
names, so accepted jobs survive a restart (:meth:`SQLiteJobStore.requeue_running` puts interrupted
jobs back in the queue).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from voxperf.errors import UsageError

__all__ = ["JOB_STATUSES", "MAX_ATTEMPTS", "Job", "JobStore", "SQLiteJobStore", "new_job_id"]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
MAX_ATTEMPTS = 3


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    """One transcription job as clients see it (``GET /v1/jobs/{id}``)."""

    id: str
    status: JobStatus = "queued"
    level: str = "raw"
    model: str = "tiny.en"
    language: str | None = None
    created_at: float = field(default_factory=time.time)  # server epoch seconds
    started_at: float | None = None
    completed_at: float | None = None  # recorded by the server: latency without poll quantisation
    attempts: int = 0
    text: str | None = None
    error: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> ms, from the trace
    queue_wait_ms: float | None = None  # created → first started
    processing_ms: float | None = None  # started → completed (last attempt)
    audio_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class JobStore(Protocol):
    """Where jobs and their audio live; every transition is atomic."""

    def create(self, job: Job, audio: bytes) -> Job: ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]: ...

    def claim(self, job_id: str | None = None) -> Job | None:
        """queued → running (attempts + 1): the given job, or the oldest queued one."""
        ...

    def audio(self, job_id: str) -> bytes | None: ...

    def complete(self, job_id: str, text: str, timings_ms: dict[str, float]) -> bool:
        """running → done; False (nothing changed) when the job is not running (idempotence)."""
        ...

    def fail(self, job_id: str, error: str, *, permanent: bool = False) -> Job | None:
        """running → queued again, or → failed after MAX_ATTEMPTS (at once when ``permanent``, e.g.
        undecodable audio that no retry can fix); returns the updated job."""
        ...

    def cancel(self, job_id: str) -> Job | None: ...

    def requeue_running(self) -> int:
        """After a restart: interrupted (running) jobs go back to the queue."""
        ...

    def counts(self) -> dict[str, int]: ...


_COLUMNS = (
    "id, status, level, model, language, created_at, started_at, completed_at, attempts, text, error, "
    "timings_ms, queue_wait_ms, processing_ms, audio_bytes"
)


class SQLiteJobStore:
    """Jobs in SQLite (WAL), audio in ``<dir>/audio/<id>.bin``: one machine, survives restarts."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.audio_dir = self.dir / "audio"
        try:
            self.audio_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the job directory {self.dir}: {exc.strerror}", "choose another"
            ) from exc
        self.path = self.dir / "jobs.sqlite"
        self._local = threading.local()
        with self._tx() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, level "
                "TEXT, model TEXT, "
                "language TEXT, created_at REAL, started_at REAL, completed_at REAL, attempts "
                "INTEGER, text TEXT, "
                "error TEXT, timings_ms TEXT, queue_wait_ms REAL, processing_ms REAL, audio_bytes INTEGER)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: object, *_: object) -> None:
            if exc_type is not None:
                self.conn.execute("ROLLBACK")
                return
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                self.conn.execute("ROLLBACK")  # never leave the connection inside a transaction
                raise

    def _tx(self) -> SQLiteJobStore._Tx:
        return self._Tx(self._conn())

    @staticmethod
    def _job(row: tuple[Any, ...]) -> Job:
        """A row in ``_COLUMNS`` order; timings are stored as JSON."""
        values = list(row)
        values[11] = json.loads(values[11] or "{}")
        return Job(*values)

    def create(self, job: Job, audio: bytes) -> Job:
        path = self.audio_dir / f"{job.id}.bin"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(audio)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # the audio is durable before the job is visible
        job.audio_bytes = len(audio)
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.status,
                    job.level,
                    job.model,
                    job.language,
                    job.created_at,
                    job.started_at,
                    job.completed_at,
                    job.attempts,
                    job.text,
                    job.error,
                    json.dumps(job.timings_ms),
                    job.queue_wait_ms,
                    job.processing_ms,
                    job.audio_bytes,
                ),
            )
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]:
        if status is not None and status not in JOB_STATUSES:
            raise UsageError(f"unknown job status {status!r}", f"use one of {', '.join(JOB_STATUSES)}")
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = (
            self._conn()
            .execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created_at DESC LIMIT ?", (*params, limit)
            )
            .fetchall()
        )
        return [self._job(r) for r in rows]

    def claim(self, job_id: str | None = None) -> Job | None:
        now = time.time()
        with self._tx() as conn:
            if job_id is None:
                row = conn.execute(
                    "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT 1"
                ).fetchone()
                if row is None:
                    return None
                job_id = row[0]
            cur = conn.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, "
                "queue_wait_ms = COALESCE(queue_wait_ms, (? - created_at) * 1000) WHERE id = ? AND "
                "status = 'queued'",
                (now, now, job_id),
            )
            if cur.rowcount != 1:
                return None
        return self.get(job_id)

    def audio(self, job_id: str) -> bytes | None:
        try:
            return (self.audio_dir / f"{job_id}.bin").read_bytes()
        except FileNotFoundError:
            return None

    def complete(self, job_id: str, text: str, timings_ms: dict[str, float]) -> bool:
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = 'done', text = ?, timings_ms = ?, completed_at = ?, "
                "processing_ms = (? - started_at) * 1000, error = NULL WHERE id = ? AND status = 'running'",
                (text, json.dumps(timings_ms), now, now, job_id),
            )
            done = cur.rowcount == 1
        if done:
            (self.audio_dir / f"{job_id}.bin").unlink(missing_ok=True)
        return done

    def fail(self, job_id: str, error: str, *, permanent: bool = False) -> Job | None:
        now = time.time()
        limit = 0 if permanent else MAX_ATTEMPTS
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET error = ?, status = CASE WHEN attempts >= ? THEN 'failed' ELSE "
                "'queued' END, "
                "completed_at = CASE WHEN attempts >= ? THEN ? ELSE NULL END WHERE id = ? AND status "
                "= 'running'",
                (error[:2000], limit, limit, now, job_id),
            )
        job = self.get(job_id)
        if job is not None and job.status == "failed":
            (self.audio_dir / f"{job_id}.bin").unlink(missing_ok=True)
        return job

    def cancel(self, job_id: str) -> Job | None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ? WHERE id = ? AND status IN "
                "('queued', 'running')",
                (time.time(), job_id),
            )
        (self.audio_dir / f"{job_id}.bin").unlink(missing_ok=True)
        return self.get(job_id)

    def requeue_running(self) -> int:
        with self._tx() as conn:
            exhausted = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM jobs WHERE status = 'running' AND attempts >= ?", (MAX_ATTEMPTS,)
                )
            ]
            conn.execute(
                "UPDATE jobs SET status = 'failed', error = COALESCE(error, 'interrupted too many times'), "
                "completed_at = ? WHERE status = 'running' AND attempts >= ?",
                (time.time(), MAX_ATTEMPTS),
            )
            requeued = conn.execute("UPDATE jobs SET status = 'queued' WHERE status = 'running'").rowcount
        for job_id in exhausted:
            (self.audio_dir / f"{job_id}.bin").unlink(missing_ok=True)
        return requeued

    def counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {s: 0 for s in JOB_STATUSES} | dict(rows)
