"""Transcription jobs: the job record, one thin idempotent table in a real database.

A job's life: ``queued`` → ``running`` → ``done`` | ``failed``; ``cancelled`` from queued or
running. The record is the only state: messages (Celery's, or the embedded workers' polling) say
*which* job to look at, the record says *whether* there is anything to do. Every transition is one
conditional ``UPDATE``, so:

* a job is claimed by one worker at a time (``queued`` → ``running``, attempts + 1); a redelivered
  message (its worker died) takes a ``running`` job over, which is again one update;
* the attempt number is a fencing token: ``complete`` and ``fail`` name the attempt they belong to
  and change nothing when the job has moved on (taken over, cancelled, already done), so an outcome
  is recorded at most once, whoever runs a job twice;
* a job interrupted ``MAX_ATTEMPTS`` times, or failing that often, is ``failed`` with its reason.

Two databases, one schema: SQLite (the embedded default: a file under the job directory) and
PostgreSQL (``postgresql://...``, for API servers and Celery workers on several machines). The
upload is kept in the same database (``job_audio``) until the job ends, so a worker on another
machine reads it where it reads the record, and an accepted job survives any restart.
"""

from __future__ import annotations

import builtins
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxperf.errors import ServiceUnavailableError, StorageFullError, UsageError
from voxperf.extras import load

__all__ = ["JOB_STATUSES", "MAX_ATTEMPTS", "SCHEMA_VERSION", "Job", "JobRecords", "new_job_id"]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
MAX_ATTEMPTS = 3
SCHEMA_VERSION = 1
MIN_FREE_BYTES = 64 * 2**20  # below this, an embedded server is not ready (a 25 MiB upload must fit)
_ADMIT_LOCK = 0x766F78  # "vox": the advisory lock that serialises admissions on PostgreSQL


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    """One transcription job as its owner sees it (``GET /v1/jobs/{id}``)."""

    id: str
    owner: str = ""  # the tenant that submitted it ("" when the server has no tenants)
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
    audio_s: float = 0.0  # duration of the upload: what the queue bound counts
    worker: str | None = None  # who runs (ran) the last attempt; not shown to clients

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["worker"]
        return out


_FIELDS = tuple(Job.__dataclass_fields__)
_COLUMNS = ", ".join(_FIELDS)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL, level TEXT NOT NULL,
  model TEXT NOT NULL, language TEXT, created_at DOUBLE PRECISION NOT NULL,
  started_at DOUBLE PRECISION, completed_at DOUBLE PRECISION, attempts INTEGER NOT NULL,
  text TEXT, error TEXT, timings_ms TEXT NOT NULL, queue_wait_ms DOUBLE PRECISION,
  processing_ms DOUBLE PRECISION, audio_bytes INTEGER NOT NULL, audio_s DOUBLE PRECISION NOT NULL,
  worker TEXT);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at);
CREATE TABLE IF NOT EXISTS job_audio (id TEXT PRIMARY KEY, data {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS voxperf_schema (version INTEGER NOT NULL)
"""


class JobRecords:
    """Jobs and their uploads in SQLite (a directory or ``sqlite:///path``) or PostgreSQL (a URL)."""

    def __init__(self, target: str | Path) -> None:
        text = str(target)
        self.postgres = text.startswith(("postgresql://", "postgres://"))
        self.target = text
        self._local = threading.local()
        if not self.postgres:
            path = Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:///") else None
            if path is None:
                path = Path(text) / "jobs.sqlite"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create the job directory {path.parent}: {exc.strerror}", "choose another"
                ) from exc
            self.path: Path | None = path
        else:
            self.path = None
        self._migrate()

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self.postgres:
            psycopg = load("psycopg", "scale", "a PostgreSQL job store")

            try:
                conn = psycopg.connect(self.target, autocommit=True, connect_timeout=5)
            except psycopg.Error as exc:
                raise ServiceUnavailableError(
                    f"cannot connect to the job database: {str(exc).strip().splitlines()[0]}",
                    "check that PostgreSQL is running and the URL (user, host, database) is right",
                ) from exc
        else:
            assert self.path is not None
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn = conn
        return conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self._conn().execute(self._sql(sql), tuple(params))
        except sqlite3.OperationalError as exc:
            if "disk" in str(exc) or "full" in str(exc):
                raise StorageFullError(
                    f"the job database cannot be written: {exc}", "free disk space under the job directory"
                ) from exc
            raise
        except Exception as exc:
            if self.postgres and type(exc).__module__.startswith("psycopg"):
                self._local.conn = None  # a broken connection is not reused
                raise ServiceUnavailableError(
                    f"the job database failed: {str(exc).strip().splitlines()[0]}",
                    "check that PostgreSQL is running",
                ) from exc
            raise

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._execute("BEGIN IMMEDIATE" if not self.postgres else "BEGIN")
        try:
            yield
        except BaseException:
            self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def _migrate(self) -> None:
        blob = "BYTEA" if self.postgres else "BLOB"
        with self._transaction():
            for statement in _SCHEMA.format(blob=blob).split(";"):
                if statement.strip():
                    self._execute(statement)
            row = self._execute("SELECT MAX(version) FROM voxperf_schema").fetchone()
            version = row[0] if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise UsageError(
                    f"the job database has schema {version}, this voxperf knows {SCHEMA_VERSION}",
                    "upgrade voxperf, or point it at another database",
                )
            if version < SCHEMA_VERSION:
                self._execute("INSERT INTO voxperf_schema (version) VALUES (?)", (SCHEMA_VERSION,))

    def healthy(self) -> str | None:
        """None when new jobs can be written; else why not (a full disk, an unreachable database)."""
        try:
            if self.path is not None:
                free = shutil.disk_usage(self.path.parent).free
                if free < MIN_FREE_BYTES:
                    return f"the job directory's disk has {free // 2**20} MiB free"
            with self._transaction():
                self._execute("SELECT COUNT(*) FROM voxperf_schema").fetchone()
        except (ServiceUnavailableError, sqlite3.Error, OSError) as exc:
            return str(getattr(exc, "message", exc))
        return None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @staticmethod
    def _job(row: Sequence[Any]) -> Job:
        values = dict(zip(_FIELDS, row, strict=True))
        values["timings_ms"] = json.loads(values["timings_ms"] or "{}")
        return Job(**values)

    def _drop_audio_if_ended(self, job_id: str) -> None:
        """An upload is kept until its job has ended (done, failed, cancelled), not longer."""
        self._execute(
            "DELETE FROM job_audio WHERE id = ? AND id IN "
            "(SELECT id FROM jobs WHERE status IN ('done', 'failed', 'cancelled'))",
            (job_id,),
        )

    def _one(self, sql: str, params: Sequence[Any]) -> Job | None:
        row = self._execute(sql, params).fetchone()
        return self._job(row) if row else None

    # -- the API's side ----------------------------------------------------------------------

    def create(self, job: Job, audio: bytes, admit: Callable[[JobRecords], None] | None = None) -> Job:
        """Store the upload and the queued record in one transaction (both or neither).

        ``admit(records)`` runs first inside the same transaction, with submissions serialised
        (SQLite's write lock, a PostgreSQL advisory lock), so a bound it checks holds exactly."""
        job.audio_bytes = len(audio)
        values = [getattr(job, f) for f in _FIELDS]
        values[_FIELDS.index("timings_ms")] = json.dumps(job.timings_ms)
        with self._transaction():
            if admit is not None:
                if self.postgres:
                    self._execute("SELECT pg_advisory_xact_lock(?)", (_ADMIT_LOCK,))
                admit(self)
            self._execute("INSERT INTO job_audio (id, data) VALUES (?, ?)", (job.id, audio))
            self._execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})", values)
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when it does not exist or belongs to another owner (when one is given)."""
        if owner is None:
            return self._one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return self._one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND owner = ?", (job_id, owner))

    def list(
        self, owner: str | None, status: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[Job]:
        """An owner's jobs, newest first; ``before`` (a job id) continues a listing after that job."""
        if status is not None and status not in JOB_STATUSES:
            raise UsageError(f"unknown job status {status!r}", f"use one of {', '.join(JOB_STATUSES)}")
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if before is not None:
            anchor = self.get(before, owner)
            if anchor is None:
                raise UsageError(f"unknown listing cursor {before!r}", "use the next_before of the last page")
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [anchor.created_at, anchor.created_at, anchor.id]
        rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [self._job(r) for r in rows]

    def cancel(self, job_id: str, owner: str | None = None) -> Job | None:
        """queued/running → cancelled (a running attempt's outcome is then dropped); the upload goes."""
        owned = "" if owner is None else " AND owner = ?"
        params: tuple[Any, ...] = (time.time(), job_id) + (() if owner is None else (owner,))
        with self._transaction():
            self._execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ? WHERE id = ? AND status IN "
                f"('queued', 'running'){owned}",
                params,
            )
            self._drop_audio_if_ended(job_id)
        return self.get(job_id, owner)

    def active_load(self, owner: str | None = None) -> tuple[int, float]:
        """Jobs queued or running and their audio seconds (all owners, or one): the queue bound."""
        owned, params = ("", ()) if owner is None else (" AND owner = ?", (owner,))
        row = self._execute(
            "SELECT COUNT(*), COALESCE(SUM(audio_s), 0) FROM jobs "
            f"WHERE status IN ('queued', 'running'){owned}",
            params,
        ).fetchone()
        return int(row[0]), float(row[1])

    def counts(self) -> dict[str, int]:
        rows = self._execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {s: 0 for s in JOB_STATUSES} | {str(s): int(n) for s, n in rows}

    def queued_ids(self, limit: int | None = None) -> builtins.list[str]:
        """Queued jobs, oldest first (re-sent to the queue after a server restart: duplicates are no-ops)."""
        sql = "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at"
        rows = self._execute(sql + " LIMIT ?", (limit,)) if limit else self._execute(sql)
        return [str(r[0]) for r in rows.fetchall()]

    # -- the workers' side -------------------------------------------------------------------

    def claim(self, job_id: str, worker: str, *, takeover: bool = False) -> Job | None:
        """queued → running for ``worker`` (attempts + 1); with ``takeover`` (the message was
        redelivered because its worker died) a running job is taken over too. None: nothing to do."""
        now = time.time()
        states = "('queued', 'running')" if takeover else "('queued')"
        with self._transaction():
            if takeover:  # a job lost too often fails instead of looping
                self._execute(
                    "UPDATE jobs SET status = 'failed', completed_at = ?, "
                    "error = COALESCE(error, 'its worker was lost too many times') "
                    "WHERE id = ? AND status = 'running' AND attempts >= ?",
                    (now, job_id, MAX_ATTEMPTS),
                )
            self._execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, worker = ?, "
                "queue_wait_ms = COALESCE(queue_wait_ms, (? - created_at) * 1000) "
                f"WHERE id = ? AND status IN {states}",
                (now, worker, now, job_id),
            )
            self._drop_audio_if_ended(job_id)
        job = self.get(job_id)
        return job if job is not None and job.status == "running" and job.worker == worker else None

    def claim_next(self, worker: str) -> Job | None:
        """The oldest queued job, claimed (the embedded workers' pull); None when none is queued."""
        for job_id in self.queued_ids(limit=8):  # another worker may take the oldest first
            job = self.claim(job_id, worker)
            if job is not None:
                return job
        return None

    def audio(self, job_id: str) -> bytes | None:
        row = self._execute("SELECT data FROM job_audio WHERE id = ?", (job_id,)).fetchone()
        return bytes(row[0]) if row else None

    def complete(self, job: Job, text: str, timings_ms: dict[str, float]) -> bool:
        """running → done, only for the attempt that ``job`` is; False (nothing changed) otherwise."""
        now = time.time()
        with self._transaction():
            cur = self._execute(
                "UPDATE jobs SET status = 'done', text = ?, timings_ms = ?, completed_at = ?, "
                "processing_ms = (? - started_at) * 1000, error = NULL "
                "WHERE id = ? AND status = 'running' AND attempts = ?",
                (text, json.dumps(timings_ms), now, now, job.id, job.attempts),
            )
            self._drop_audio_if_ended(job.id)
        return bool(cur.rowcount == 1)

    def fail(self, job: Job, error: str, *, permanent: bool = False) -> Job | None:
        """The attempt ``job`` failed: queued again, or failed after MAX_ATTEMPTS (at once when
        ``permanent``, e.g. undecodable audio that no retry can fix). Returns the record as it is."""
        now = time.time()
        limit = 0 if permanent else MAX_ATTEMPTS
        with self._transaction():
            self._execute(
                "UPDATE jobs SET error = ?, "
                "status = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END, "
                "completed_at = CASE WHEN attempts >= ? THEN ? ELSE NULL END "
                "WHERE id = ? AND status = 'running' AND attempts = ?",
                (error[:2000], limit, limit, now, job.id, job.attempts),
            )
            self._drop_audio_if_ended(job.id)
        return self.get(job.id)

    def requeue_running(self) -> int:
        """After an embedded server restarts: its interrupted jobs go back to the queue (or fail
        once interrupted ``MAX_ATTEMPTS`` times). Not for a shared database: other servers' jobs."""
        now = time.time()
        with self._transaction():
            self._execute(
                "UPDATE jobs SET status = 'failed', completed_at = ?, "
                "error = COALESCE(error, 'interrupted too many times') "
                "WHERE status = 'running' AND attempts >= ?",
                (now, MAX_ATTEMPTS),
            )
            self._execute(
                "DELETE FROM job_audio WHERE id IN (SELECT id FROM jobs WHERE status IN ('failed', 'done', "
                "'cancelled'))"
            )
            requeued = int(
                self._execute("UPDATE jobs SET status = 'queued' WHERE status = 'running'").rowcount
            )
        return requeued
