"""The Redis job store: the :class:`~voxperf.service.jobs.JobStore` contract for many API servers and
workers on different machines.

Layout under a key prefix (default ``voxperf``; tests use their own to isolate keys)::

    <prefix>:job:<id>        hash: the Job's fields (+ worker, heartbeat_at, completions)
    <prefix>:audio:<id>      the uploaded bytes; deleted on done/failed/cancelled, TTL as a safety net
    <prefix>:status:<status> sorted set of job ids scored by created_at (list, claim oldest, counts)

Every transition is one Lua script, so it is atomic on the server: two workers can never claim the
same job, ``complete`` applies only to a running job (at most one completion is recorded; the hash
counts them in ``completions``), and a job fails for good after ``MAX_ATTEMPTS``. Times come from the
Redis server clock (``TIME``), the one clock every machine shares, so queue waits and leases are free
of clock skew between API servers and workers; ``create`` therefore stamps ``created_at`` itself.

A worker holds a job by a lease: ``claim``/``reclaim`` record the worker and ``heartbeat_at``, and the
worker calls :meth:`RedisJobStore.heartbeat` while it runs the job. :meth:`RedisJobStore.reclaim` (for
a redelivered message) takes over a running job only when its lease is stale, so a duplicate delivery
cannot steal a job from a live worker. Scripts build key names from the prefix, so the store needs a
single Redis (not Redis Cluster).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions

from voxperf.errors import StoreRemoteError, UsageError
from voxperf.service.jobs import JOB_STATUSES, MAX_ATTEMPTS, Job

__all__ = ["AUDIO_TTL_S", "LOST_ERROR", "RedisJobStore", "redact_url"]

AUDIO_TTL_S = 7 * 24 * 3600  # uploaded audio outlives any sane queue wait, then Redis drops it
LOST_ERROR = "worker lost too many times"
_ERROR_MAX = 2000  # as SQLiteJobStore: the reason is kept, a multi-megabyte traceback is not

T = TypeVar("T")

# Shared by every script: the Redis clock, number formatting, and the index/status move.
_PRELUDE = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function move(p, id, k, from, to)
  redis.call('ZREM', p .. ':status:' .. from, id)
  redis.call('ZADD', p .. ':status:' .. to, redis.call('HGET', k, 'created_at'), id)
  redis.call('HSET', k, 'status', to)
end
local function start(k, worker, t)
  redis.call('HINCRBY', k, 'attempts', 1)
  redis.call('HSET', k, 'started_at', fmt(t), 'worker', worker, 'heartbeat_at', fmt(t))
  if not redis.call('HGET', k, 'queue_wait_ms') then
    local created = tonumber(redis.call('HGET', k, 'created_at'))
    redis.call('HSET', k, 'queue_wait_ms', fmt((t - created) * 1000))
  end
end
"""

# ARGV: prefix, id, audio, audio_ttl_s, status, field, value, ... -> created_at, or 0 if the id exists
_CREATE = (
    _PRELUDE
    + """
local p, id = ARGV[1], ARGV[2]
local k = p .. ':job:' .. id
if redis.call('EXISTS', k) == 1 then return 0 end
local created = fmt(now())
redis.call('HSET', k, 'created_at', created, 'status', ARGV[5], 'attempts', 0, 'completions', 0)
for i = 6, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('SET', p .. ':audio:' .. id, ARGV[3], 'EX', ARGV[4])
redis.call('ZADD', p .. ':status:' .. ARGV[5], created, id)
return created
"""
)

# ARGV: prefix, id ('' = oldest queued), worker -> the claimed id, or nil
_CLAIM = (
    _PRELUDE
    + """
local p, id, worker = ARGV[1], ARGV[2], ARGV[3]
if id == '' then
  local ids = redis.call('ZRANGE', p .. ':status:queued', 0, 0)
  if #ids == 0 then return false end
  id = ids[1]
end
local k = p .. ':job:' .. id
if redis.call('HGET', k, 'status') ~= 'queued' then return false end
start(k, worker, now())
move(p, id, k, 'queued', 'running')
return id
"""
)

# ARGV: prefix, id, text, timings_json -> 1 if recorded, 0 if the job was not running
_COMPLETE = (
    _PRELUDE
    + """
local p, id = ARGV[1], ARGV[2]
local k = p .. ':job:' .. id
if redis.call('HGET', k, 'status') ~= 'running' then return 0 end
if ARGV[5] ~= nil and ARGV[5] ~= '' and redis.call('HGET', k, 'worker') ~= ARGV[5] then
  return 0  -- this worker lost the job to another one (reclaimed): its outcome is not recorded
end
local t = now()
local started = tonumber(redis.call('HGET', k, 'started_at'))
redis.call('HSET', k, 'text', ARGV[3], 'timings_ms', ARGV[4], 'completed_at', fmt(t),
  'processing_ms', fmt((t - started) * 1000))
redis.call('HDEL', k, 'error')
redis.call('HINCRBY', k, 'completions', 1)
move(p, id, k, 'running', 'done')
redis.call('DEL', p .. ':audio:' .. id)
return 1
"""
)

# ARGV: prefix, id, error, limit -> 1 if the job was running (now queued or failed), else 0
_FAIL = (
    _PRELUDE
    + """
local p, id = ARGV[1], ARGV[2]
local k = p .. ':job:' .. id
local status = redis.call('HGET', k, 'status')
if status ~= 'running' then
  if status == 'failed' then redis.call('DEL', p .. ':audio:' .. id) end
  return 0
end
if ARGV[5] ~= nil and ARGV[5] ~= '' and redis.call('HGET', k, 'worker') ~= ARGV[5] then
  return 0  -- this worker lost the job to another one (reclaimed): its outcome is not recorded
end
redis.call('HSET', k, 'error', ARGV[3])
if tonumber(redis.call('HGET', k, 'attempts')) >= tonumber(ARGV[4]) then
  redis.call('HSET', k, 'completed_at', fmt(now()))
  move(p, id, k, 'running', 'failed')
  redis.call('DEL', p .. ':audio:' .. id)
else
  redis.call('HDEL', k, 'completed_at')
  move(p, id, k, 'running', 'queued')
end
return 1
"""
)

# ARGV: prefix, id -> 1 if cancelled now, else 0
_CANCEL = (
    _PRELUDE
    + """
local p, id = ARGV[1], ARGV[2]
local k = p .. ':job:' .. id
local status = redis.call('HGET', k, 'status')
redis.call('DEL', p .. ':audio:' .. id)
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', k, 'completed_at', fmt(now()))
move(p, id, k, status, 'cancelled')
return 1
"""
)

# ARGV: prefix, id, worker, lease_s (0 = ignore the lease), max_attempts -> id if taken over (running)
# or failed for good, nil if not ours (terminal, unknown, or a live worker still holds the lease)
_RECLAIM = (
    _PRELUDE
    + """
local p, id, worker = ARGV[1], ARGV[2], ARGV[3]
local lease, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local k = p .. ':job:' .. id
local status = redis.call('HGET', k, 'status')
local t = now()
if status == 'queued' then
  start(k, worker, t)
  move(p, id, k, 'queued', 'running')
  return id
end
if status ~= 'running' then return false end
if lease > 0 then
  local beat = redis.call('HGET', k, 'heartbeat_at')
  if beat and t - tonumber(beat) < lease then return false end
end
if tonumber(redis.call('HGET', k, 'attempts')) >= limit then
  redis.call('HSET', k, 'error', ARGV[6], 'completed_at', fmt(t))
  move(p, id, k, 'running', 'failed')
  redis.call('DEL', p .. ':audio:' .. id)
  return id
end
start(k, worker, t)
return id
"""
)

# ARGV: prefix, id, worker -> 1 while this worker still holds the running job, else 0
_HEARTBEAT = (
    _PRELUDE
    + """
local k = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', k, 'status') ~= 'running' or redis.call('HGET', k, 'worker') ~= ARGV[3] then
  return 0
end
redis.call('HSET', k, 'heartbeat_at', fmt(now()))
return 1
"""
)

_FLOATS = ("created_at", "started_at", "completed_at", "queue_wait_ms", "processing_ms")
_STRINGS = ("level", "model", "language", "text", "error")
_META = ("worker", "heartbeat_at", "completions")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for error messages and logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        query = "&".join(
            f"{k}=***" if k.lower() in ("password", "username") else (f"{k}={v}" if sep else k)
            for k, sep, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparseable URL>"


class RedisJobStore:
    """Jobs, their audio and per-status indexes in one Redis; every transition is a Lua script.

    Semantics are those of :class:`~voxperf.service.jobs.SQLiteJobStore`, plus :meth:`reclaim`,
    :meth:`heartbeat` and :meth:`meta` for queues that redeliver messages (Celery).
    """

    def __init__(self, url: str, *, prefix: str = "voxperf") -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise UsageError(f"bad job key prefix {prefix!r}", "use a non-empty prefix without spaces")
        self.url = url
        self.prefix = prefix
        try:
            self._r: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
            )
        except ValueError as exc:
            raise UsageError(
                f"bad Redis URL {redact_url(url)!r}: {exc}", "write it as redis://host:6379/0"
            ) from exc
        self._scripts = {
            name: self._r.register_script(source)
            for name, source in (
                ("create", _CREATE),
                ("claim", _CLAIM),
                ("complete", _COMPLETE),
                ("fail", _FAIL),
                ("cancel", _CANCEL),
                ("reclaim", _RECLAIM),
                ("heartbeat", _HEARTBEAT),
            )
        }
        with self._remote():
            self._r.ping()  # fail at start-up, with the URL, rather than on the first job

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _remote(self) -> Iterator[None]:
        """Turn redis-py errors into StoreRemoteError naming the (redacted) URL and the fix."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreRemoteError(
                f"cannot reach the Redis job store at {redact_url(self.url)}: {exc}",
                "start Redis or fix the queue URL (redis://host:6379/0); check the password and network",
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise StoreRemoteError(
                f"the Redis job store at {redact_url(self.url)} refused a command: {exc}",
                "check that the server is Redis >= 6.2, writable, and not out of memory",
            ) from exc

    def _run(self, name: str, *args: str | bytes | float | int) -> Any:
        with self._remote():
            return self._scripts[name](args=[self.prefix, *args])

    def _call(self, fn: Callable[[], T]) -> T:
        with self._remote():
            return fn()

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _audio_key(self, job_id: str) -> str:
        return f"{self.prefix}:audio:{job_id}"

    def _status_key(self, status: str) -> str:
        return f"{self.prefix}:status:{status}"

    @staticmethod
    def _job(raw: dict[bytes, bytes]) -> Job | None:
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        floats: dict[str, float | None] = {f: float(h[f]) if f in h else None for f in _FLOATS}
        strings: dict[str, str | None] = {f: h.get(f) for f in _STRINGS}
        return Job(
            id=h["id"],
            status=h["status"],  # type: ignore[arg-type]  # the scripts only write JOB_STATUSES
            level=strings["level"] or "raw",
            model=strings["model"] or "",
            language=strings["language"],
            created_at=floats["created_at"] or 0.0,
            started_at=floats["started_at"],
            completed_at=floats["completed_at"],
            attempts=int(h.get("attempts", 0)),
            text=strings["text"],
            error=strings["error"],
            timings_ms=json.loads(h.get("timings_ms") or "{}"),
            queue_wait_ms=floats["queue_wait_ms"],
            processing_ms=floats["processing_ms"],
            audio_bytes=int(h.get("audio_bytes", 0)),
        )

    # -- the JobStore contract ------------------------------------------------------------------------

    def create(self, job: Job, audio: bytes) -> Job:
        """Store the audio (with a TTL) and the job in one step; ``created_at`` is the Redis clock's."""
        job.audio_bytes = len(audio)
        fields: list[str] = ["id", job.id, "audio_bytes", str(job.audio_bytes)]
        fields += ["timings_ms", json.dumps(job.timings_ms)]
        for name in _STRINGS:
            value = getattr(job, name)
            if value is not None:
                fields += [name, value[:_ERROR_MAX] if name == "error" else value]
        created = self._run("create", job.id, audio, AUDIO_TTL_S, job.status, *fields)
        if created == 0:
            raise UsageError(f"job {job.id} already exists", "create jobs with a new id (new_job_id())")
        job.created_at = float(created)
        return job

    def get(self, job_id: str) -> Job | None:
        raw = cast(dict[bytes, bytes], self._call(lambda: self._r.hgetall(self._job_key(job_id))))  # type: ignore[arg-type]
        return self._job(raw)

    def meta(self, job_id: str) -> dict[str, str]:
        """Fields beyond :class:`Job`: ``worker`` (host:pid of the last claimer), ``heartbeat_at``,
        ``completions`` (how many completions were recorded: 1 at most, by construction)."""
        values = self._call(lambda: self._r.hmget(self._job_key(job_id), list(_META)))
        return {k: cast(bytes, v).decode() for k, v in zip(_META, values, strict=True) if v is not None}

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first, optionally of one status."""
        if status is not None and status not in JOB_STATUSES:
            raise UsageError(f"unknown job status {status!r}", f"use one of {', '.join(JOB_STATUSES)}")
        if limit <= 0:
            return []
        statuses = [status] if status else list(JOB_STATUSES)

        def fetch() -> list[Job]:
            pipe = self._r.pipeline(transaction=False)
            for s in statuses:
                pipe.zrevrange(self._status_key(s), 0, limit - 1, withscores=True)
            ranked = sorted(
                ((score, member.decode()) for rows in pipe.execute() for member, score in rows),
                reverse=True,
            )[:limit]
            pipe = self._r.pipeline(transaction=False)
            for _, jid in ranked:
                pipe.hgetall(self._job_key(jid))
            return [job for raw in pipe.execute() if (job := self._job(raw)) is not None]

        return self._call(fetch)

    def claim(self, job_id: str | None = None, *, worker: str = "") -> Job | None:
        """queued → running (attempts + 1): the given job, or the oldest queued one; race-free."""
        claimed = self._run("claim", job_id or "", worker)
        return None if claimed is None else self.get(claimed.decode())

    def audio(self, job_id: str) -> bytes | None:
        data = cast(bytes | None, self._call(lambda: self._r.get(self._audio_key(job_id))))
        return data

    def complete(self, job_id: str, text: str, timings_ms: dict[str, float], *, worker: str = "") -> bool:
        """running → done; False (nothing changed) when the job is not running (idempotence)."""
        return bool(self._run("complete", job_id, text, json.dumps(timings_ms), worker))

    def fail(self, job_id: str, error: str, *, permanent: bool = False, worker: str = "") -> Job | None:
        """running → queued again, or → failed after MAX_ATTEMPTS (at once when ``permanent``)."""
        limit = 0 if permanent else MAX_ATTEMPTS
        self._run("fail", job_id, error[:_ERROR_MAX], limit, worker)
        return self.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """queued/running → cancelled (a running job's later ``complete`` is then a no-op)."""
        self._run("cancel", job_id)
        return self.get(job_id)

    def requeue_running(self) -> int:
        """No-op for Redis, returns 0: running jobs may belong to live workers on other machines, so
        a restarting process must not take them; the broker redelivers a dead worker's message and
        :meth:`reclaim` takes the job over once its lease is stale."""
        return 0

    def counts(self) -> dict[str, int]:
        def fetch() -> dict[str, int]:
            pipe = self._r.pipeline(transaction=False)
            for s in JOB_STATUSES:
                pipe.zcard(self._status_key(s))
            return dict(zip(JOB_STATUSES, (int(n) for n in pipe.execute()), strict=True))

        return self._call(fetch)

    # -- redelivery support ---------------------------------------------------------------------------

    def reclaim(self, job_id: str, *, worker: str = "", lease_s: float | None = None) -> Job | None:
        """Take over a job whose message was redelivered because its worker died.

        running → running with attempts + 1 (or → failed with "worker lost too many times" once
        attempts >= MAX_ATTEMPTS); queued → claimed as usual. With ``lease_s``, a running job whose
        last heartbeat is younger than that is left alone (None): its worker is alive. Returns the
        updated job (running: yours to run; failed: nothing to run) or None.
        """
        lease = max(0.0, lease_s or 0.0)
        taken = self._run("reclaim", job_id, worker, lease, MAX_ATTEMPTS, LOST_ERROR)
        return None if taken is None else self.get(taken.decode())

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Renew ``worker``'s lease on a running job; False once the job is no longer its own
        (finished, cancelled or taken over)."""
        return bool(self._run("heartbeat", job_id, worker))

    def delete_all(self) -> int:
        """Delete every key under this store's prefix (tests and teardown); returns how many."""

        def wipe() -> int:
            deleted = 0
            batch: list[bytes] = []
            for key in self._r.scan_iter(match=f"{self.prefix}:*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(self._r.delete(*batch))
                    batch = []
            if batch:
                deleted += int(self._r.delete(*batch))
            return deleted

        return self._call(wipe)

    def close(self) -> None:
        self._r.close()

    def server_time(self) -> float:
        """The Redis server clock (epoch seconds), the one the scripts stamp times with."""
        sec, usec = self._call(lambda: self._r.time())
        return float(sec) + float(usec) / 1e6
