"""The Redis job store and the Celery queue, against the real Redis at 127.0.0.1:6379.

Store tests check that :class:`RedisJobStore` keeps :class:`SQLiteJobStore`'s semantics (atomic,
race-free transitions) plus ``reclaim`` and leases. Queue tests start real worker processes
(``python -m voxperf.service.celery_app worker``, solo pool, fake STT that sleeps 4 s) and kill one
with SIGKILL mid-job: the job must finish on the other worker, exactly once.

Isolation: every test uses its own key prefix (the job store and, through kombu's
``global_keyprefix``, the broker queue and its unacked bookkeeping) in DB 15 by default
(``VOXPERF_TEST_REDIS_URL``), and deletes its keys afterwards. Which worker runs a job is read
from the job hash: a claim records ``worker = host:pid`` of the process running it.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

redis = pytest.importorskip("redis")
pytest.importorskip("celery")

from voxperf.errors import StoreRemoteError, UsageError  # noqa: E402
from voxperf.service.celery_app import QUEUE, enqueue, live_workers, make_celery, take_job  # noqa: E402
from voxperf.service.jobs import MAX_ATTEMPTS, Job, JobStore, new_job_id  # noqa: E402
from voxperf.service.redis_jobs import AUDIO_TTL_S, LOST_ERROR, RedisJobStore  # noqa: E402

REDIS_URL = os.environ.get("VOXPERF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
STT_LATENCY_S = 4.0  # long enough to kill a worker in the middle of a job
# A dead worker's message comes back after this (production: 60 s). Shorter than a job on purpose:
# a live worker must keep the message it runs invisible, or every job would be delivered twice.
VISIBILITY_TIMEOUT_S = 3.0
HEARTBEAT_S = 0.5  # lease stale after 1.5 s (production: 5 s / 15 s)


def _redis_answers() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.exceptions.RedisError:
        return False


pytestmark = pytest.mark.skipif(
    not _redis_answers(), reason=f"no Redis answers PING at {REDIS_URL} (start redis-server to run these)"
)


def _prefix() -> str:
    return f"vxtest-{uuid.uuid4().hex[:12]}"


def _wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(
        buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16"
    )
    return buf.getvalue()


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float, detail: Callable[[], str] = str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``detail()`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{detail()}")
        time.sleep(0.1)


@pytest.fixture
def store() -> Iterator[RedisJobStore]:
    s = RedisJobStore(REDIS_URL, prefix=_prefix())
    try:
        yield s
    finally:
        s.delete_all()
        s.close()


@pytest.fixture
def raw() -> Iterator[Any]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


# -- RedisJobStore: SQLiteJobStore's semantics --------------------------------------------------------


def test_create_get_list_counts(store: RedisJobStore, raw: Any) -> None:
    assert isinstance(store, JobStore)
    audio = _wav()
    jobs = [store.create(Job(new_job_id(), level=level), audio) for level in ("raw", "clean", "raw")]
    got = store.get(jobs[1].id)
    assert got is not None
    assert (got.status, got.level, got.attempts, got.audio_bytes) == ("queued", "clean", 0, len(audio))
    assert got.created_at == pytest.approx(jobs[1].created_at)
    assert got.started_at is None and got.text is None and got.timings_ms == {}
    assert store.audio(jobs[0].id) == audio
    assert 0 < raw.ttl(f"{store.prefix}:audio:{jobs[0].id}") <= AUDIO_TTL_S
    assert store.get("nope") is None and store.audio("nope") is None

    assert [j.id for j in store.list()] == [j.id for j in reversed(jobs)]  # newest first
    assert [j.id for j in store.list("queued", limit=2)] == [jobs[2].id, jobs[1].id]
    assert store.list("done") == []
    claimed = store.claim()
    assert claimed is not None and claimed.id == jobs[0].id  # the oldest queued
    assert [j.id for j in store.list("running")] == [jobs[0].id]
    assert store.counts() == {"queued": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
    with pytest.raises(UsageError):
        store.list("bogus")
    with pytest.raises(UsageError):
        store.create(Job(jobs[0].id), audio)


def test_claim_of_one_job_is_race_free(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"audio")
    threads = 16
    barrier = threading.Barrier(threads)
    results: list[Job | None] = [None] * threads

    def grab(i: int) -> None:
        barrier.wait()
        results[i] = store.claim(job.id, worker=f"w{i}")

    pool = [threading.Thread(target=grab, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    winners = [i for i, r in enumerate(results) if r is not None]
    assert len(winners) == 1
    got = store.get(job.id)
    assert got is not None and got.status == "running" and got.attempts == 1
    assert store.meta(job.id)["worker"] == f"w{winners[0]}"


def test_claim_of_oldest_hands_each_job_to_one_worker(store: RedisJobStore) -> None:
    ids = {store.create(Job(new_job_id()), b"a").id for _ in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def drain() -> None:
        barrier.wait()
        while (job := store.claim()) is not None:
            with lock:
                claimed.append(job.id)

    pool = [threading.Thread(target=drain) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert store.counts()["running"] == 30 and store.counts()["queued"] == 0


def test_complete_is_recorded_once(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"audio")
    assert store.complete(job.id, "too early", {}) is False  # queued, not running
    store.claim(job.id)
    assert store.complete(job.id, "hello", {"stt": 12.5}) is True
    assert store.complete(job.id, "again", {"stt": 1.0}) is False
    done = store.get(job.id)
    assert done is not None
    assert (done.status, done.text, done.timings_ms, done.error) == ("done", "hello", {"stt": 12.5}, None)
    assert done.started_at is not None and done.completed_at is not None
    assert done.completed_at >= done.started_at >= done.created_at
    assert done.processing_ms is not None and done.processing_ms >= 0
    assert done.queue_wait_ms is not None and done.queue_wait_ms >= 0
    assert store.meta(job.id)["completions"] == "1"
    assert store.audio(job.id) is None
    assert store.counts()["done"] == 1 and store.counts()["running"] == 0


def test_fail_requeues_until_max_attempts(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"audio")
    for attempt in range(1, MAX_ATTEMPTS):
        assert store.claim(job.id) is not None
        after = store.fail(job.id, f"engine crashed #{attempt}")
        assert after is not None
        assert (after.status, after.attempts, after.error) == (
            "queued",
            attempt,
            f"engine crashed #{attempt}",
        )
        assert after.completed_at is None and store.audio(job.id) == b"audio"
    assert store.claim(job.id) is not None
    final = store.fail(job.id, "x" * 5000)
    assert final is not None
    assert (final.status, final.attempts) == ("failed", MAX_ATTEMPTS)
    assert final.error == "x" * 2000 and final.completed_at is not None
    assert store.audio(job.id) is None
    assert store.claim(job.id) is None and store.complete(job.id, "late", {}) is False
    assert store.fail(job.id, "again").status == "failed"  # type: ignore[union-attr]
    assert store.counts()["failed"] == 1 and store.counts()["queued"] == 0


def test_permanent_fail_is_immediate(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"garbage")
    store.claim(job.id)
    final = store.fail(job.id, "not audio", permanent=True)
    assert final is not None
    assert (final.status, final.attempts, final.error) == ("failed", 1, "not audio")
    assert store.audio(job.id) is None


def test_cancel_queued_and_running(store: RedisJobStore) -> None:
    queued = store.create(Job(new_job_id()), b"a")
    cancelled = store.cancel(queued.id)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.completed_at is not None
    assert store.claim(queued.id) is None and store.audio(queued.id) is None

    running = store.create(Job(new_job_id()), b"b")
    store.claim(running.id)
    assert store.cancel(running.id).status == "cancelled"  # type: ignore[union-attr]
    assert store.complete(running.id, "too late", {}) is False  # the result of a cancelled job is dropped
    assert store.get(running.id).status == "cancelled"  # type: ignore[union-attr]
    assert store.meta(running.id)["completions"] == "0"

    done = store.create(Job(new_job_id()), b"c")
    store.claim(done.id)
    store.complete(done.id, "ok", {})
    assert store.cancel(done.id).status == "done"  # type: ignore[union-attr]
    assert store.cancel("nope") is None
    assert store.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 2}


def test_reclaim_after_a_lost_worker(store: RedisJobStore, raw: Any) -> None:
    job = store.create(Job(new_job_id()), b"audio")
    assert store.claim(job.id, worker="w1") is not None
    assert store.heartbeat(job.id, "w1") is True
    assert store.heartbeat(job.id, "w2") is False  # only the holder renews the lease

    assert store.reclaim(job.id, worker="w2", lease_s=60) is None  # w1's lease is fresh: w1 is alive
    stale = store.server_time() - 120
    raw.hset(f"{store.prefix}:job:{job.id}", "heartbeat_at", f"{stale:.6f}")  # w1 stopped beating
    taken = store.reclaim(job.id, worker="w2", lease_s=60)
    assert taken is not None and (taken.status, taken.attempts) == ("running", 2)
    assert store.meta(job.id)["worker"] == "w2"
    assert store.heartbeat(job.id, "w1") is False  # w1 lost it

    third = store.reclaim(job.id, worker="w3")  # no lease check: taken over unconditionally
    assert third is not None and (third.status, third.attempts) == ("running", MAX_ATTEMPTS)
    lost = store.reclaim(job.id, worker="w4")
    assert lost is not None and (lost.status, lost.attempts, lost.error) == (
        "failed",
        MAX_ATTEMPTS,
        LOST_ERROR,
    )
    assert store.audio(job.id) is None
    assert store.reclaim(job.id, worker="w5") is None  # terminal: nothing to take

    queued = store.create(Job(new_job_id()), b"q")
    again = store.reclaim(queued.id, worker="w1")  # a redelivered message for a queued job: a plain claim
    assert again is not None and (again.status, again.attempts) == ("running", 1)
    assert store.reclaim("nope") is None


def test_requeue_running_is_a_noop(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"a")
    store.claim(job.id)
    assert store.requeue_running() == 0
    assert store.get(job.id).status == "running"  # type: ignore[union-attr]


def test_take_job_decisions(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"a")
    action, taken = take_job(store, job.id, worker="w1", redelivered=False, lease_s=60)
    assert action == "run" and taken is not None and taken.attempts == 1
    # a duplicate message while w1 is alive: wait (retry later), do not steal
    action, _ = take_job(store, job.id, worker="w2", redelivered=False, lease_s=60)
    assert action == "wait"
    action, _ = take_job(store, job.id, worker="w2", redelivered=True, lease_s=60)
    assert action == "wait"
    store.complete(job.id, "ok", {})
    action, final = take_job(store, job.id, worker="w2", redelivered=True, lease_s=60)
    assert action == "drop" and final is not None and final.status == "done"
    assert take_job(store, "nope", worker="w2", redelivered=False, lease_s=60) == ("drop", None)


def test_unreachable_redis_is_a_store_remote_error() -> None:
    with pytest.raises(StoreRemoteError) as info:
        RedisJobStore("redis://:hunter2@127.0.0.1:1/0")
    assert "127.0.0.1:1" in info.value.message and "hunter2" not in str(info.value)
    assert info.value.hint


# -- the real queue: worker processes, redelivery after kill -9 ---------------------------------------


class Workers:
    """Worker subprocesses (solo pool, each in its own process group) for one key prefix."""

    def __init__(self, prefix: str, logs: Path) -> None:
        self.prefix = prefix
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "VOXPERF_JOB_PREFIX": prefix,
            "VOXPERF_STT_SPEC": f"fake:latency={STT_LATENCY_S}s",
            "VOXPERF_REWRITE_SPEC": "local",
            "VOXPERF_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "VOXPERF_HEARTBEAT_S": str(HEARTBEAT_S),
            "PYTHONUNBUFFERED": "1",
        }

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "voxperf.service.celery_app", "worker", "--queue", REDIS_URL]
        with open(self.logs / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [*cmd, "--concurrency", "1", "--loglevel", "info"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg takes the whole worker
            )
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def ensure(self, n: int, timeout_s: float = 60) -> list[subprocess.Popen[bytes]]:
        """Start workers until ``n`` are alive, and wait until every one of them consumes."""
        while len(self.alive()) < n:
            self._start()
        procs = self.alive()[:n]
        pids = {str(p.pid) for p in procs}

        def ready() -> bool:
            for p in procs:
                if p.poll() is not None:
                    pytest.fail(f"worker {p.pid} exited with {p.returncode}\n{self.tail()}")
            live = {w.rsplit(":", 1)[1] for w in live_workers(REDIS_URL, prefix=self.prefix)}
            return pids <= live

        _wait_for(f"{n} workers to be ready", ready, timeout_s, self.tail)
        return procs

    def by_pid(self, pid: int) -> subprocess.Popen[bytes]:
        matches = [p for p in self.procs if p.pid == pid]
        assert matches, f"pid {pid} is none of our workers {[p.pid for p in self.procs]}"
        return matches[0]

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(30)

    def stop_all(self) -> None:
        for p in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(p)

    def mark(self) -> dict[Path, int]:
        """Where each log ends now; :meth:`since` reads what was written after."""
        return {log: log.stat().st_size for log in self.logs.glob("worker-*.log")}

    def since(self, mark: dict[Path, int]) -> str:
        parts = []
        for log in sorted(self.logs.glob("worker-*.log")):
            with open(log, "rb") as fh:
                fh.seek(mark.get(log, 0))
                parts.append(fh.read().decode(errors="replace"))
        return "\n".join(parts)

    def tail(self, lines: int = 40) -> str:
        out = []
        for log in sorted(self.logs.glob("worker-*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workers, RedisJobStore, Any]]:
    """Worker processes, a store and a Celery app (for enqueue), all on one fresh prefix."""
    prefix = _prefix()
    store = RedisJobStore(REDIS_URL, prefix=prefix)
    workers = Workers(prefix, tmp_path_factory.mktemp("workers"))
    app = make_celery(REDIS_URL, prefix=prefix)
    try:
        yield workers, store, app
    finally:
        workers.stop_all()
        app.close()
        store.delete_all()
        store.close()


def _broker_drained(raw: Any, prefix: str) -> bool:
    """No message left anywhere in the broker: not queued, not held unacked by a worker."""
    return raw.llen(f"{prefix}:broker:{QUEUE}") == 0 and raw.hlen(f"{prefix}:broker:unacked") == 0


def _wait_terminal(store: RedisJobStore, job_id: str, timeout_s: float, workers: Workers) -> Job:
    def terminal() -> Job | None:
        job = store.get(job_id)
        return job if job is not None and job.status in ("done", "failed", "cancelled") else None

    return _wait_for(
        f"job {job_id} to finish", terminal, timeout_s, lambda: f"{store.get(job_id)}\n{workers.tail()}"
    )


@pytest.mark.slow
def test_jobs_on_two_workers_all_complete(queue: tuple[Workers, RedisJobStore, Any], raw: Any) -> None:
    workers, store, app = queue
    procs = workers.ensure(2)
    mark = workers.mark()
    audio = _wav()
    ids = [store.create(Job(new_job_id()), audio).id for _ in range(4)]
    for job_id in ids:
        enqueue(app, job_id)
    finals = [_wait_terminal(store, job_id, 60, workers) for job_id in ids]
    for job in finals:
        assert (job.status, job.attempts, job.error) == ("done", 1, None), workers.tail()
        assert job.text and job.timings_ms["stt"] >= STT_LATENCY_S * 1000
        assert store.meta(job.id)["completions"] == "1"
    ran_on = {int(store.meta(job_id)["worker"].rsplit(":", 1)[1]) for job_id in ids}
    assert ran_on == {p.pid for p in procs}  # both workers took jobs (prefetch 1, one job at a time)
    _wait_for("the broker to drain", lambda: _broker_drained(raw, store.prefix), 30, workers.tail)
    # each job ran longer than the visibility timeout, yet no message was delivered a second time:
    # the workers kept the messages they were running invisible to the restore sweeps
    logs = workers.since(mark)
    assert logs.count(" received") == len(ids), logs
    assert "redelivered" not in logs and "held by a live worker" not in logs, logs


@pytest.mark.slow
def test_duplicate_message_runs_the_job_once(queue: tuple[Workers, RedisJobStore, Any], raw: Any) -> None:
    workers, store, app = queue
    workers.ensure(2)
    job = store.create(Job(new_job_id()), _wav())
    enqueue(app, job.id)
    enqueue(app, job.id)  # e.g. an API server retrying its publish: both workers get a message
    final = _wait_terminal(store, job.id, 60, workers)
    assert (final.status, final.attempts) == ("done", 1), workers.tail()
    assert store.meta(job.id)["completions"] == "1"
    # the second message waits while the first worker holds the lease, then sees "done" and is dropped
    _wait_for("the broker to drain", lambda: _broker_drained(raw, store.prefix), 30, workers.tail)
    assert store.get(job.id).attempts == 1  # type: ignore[union-attr]


@pytest.mark.slow
def test_garbage_audio_fails_permanently(queue: tuple[Workers, RedisJobStore, Any], raw: Any) -> None:
    workers, store, app = queue
    workers.ensure(2)
    job = store.create(Job(new_job_id()), b"this is not audio at all " * 64)
    enqueue(app, job.id)
    final = _wait_terminal(store, job.id, 60, workers)
    assert (final.status, final.attempts) == ("failed", 1), workers.tail()
    assert final.error is not None and "not a recognised audio format" in final.error
    assert store.audio(job.id) is None
    # no retry is pending anywhere: the message was acknowledged and nothing was re-sent
    _wait_for("the broker to drain", lambda: _broker_drained(raw, store.prefix), 30, workers.tail)
    assert store.get(job.id).attempts == 1  # type: ignore[union-attr]


@pytest.mark.slow
def test_job_survives_kill_9_of_its_worker(queue: tuple[Workers, RedisJobStore, Any], raw: Any) -> None:
    workers, store, app = queue
    procs = workers.ensure(2)
    job = store.create(Job(new_job_id()), _wav())
    enqueue(app, job.id)

    def running() -> bool:
        got = store.get(job.id)
        return got is not None and got.status == "running"

    _wait_for("the job to start", running, 30, workers.tail)
    holder = store.meta(job.id)["worker"]
    victim = workers.by_pid(int(holder.rsplit(":", 1)[1]))
    survivor = next(p for p in procs if p is not victim)
    killed_at = time.monotonic()
    workers.kill(victim)  # SIGKILL to its process group, mid-job: no ack, no cleanup
    assert victim.returncode == -signal.SIGKILL

    final = _wait_terminal(store, job.id, 60, workers)
    recovered_s = time.monotonic() - killed_at
    meta = store.meta(job.id)
    assert final.status == "done", workers.tail()
    assert final.attempts == 2  # the lost attempt counts
    assert meta["completions"] == "1"
    assert meta["worker"].rsplit(":", 1)[1] == str(survivor.pid)
    assert final.text and final.processing_ms is not None and final.processing_ms >= STT_LATENCY_S * 1000
    assert store.complete(job.id, "from the dead worker", {}) is False  # a late loser records nothing
    assert store.meta(job.id)["completions"] == "1"
    _wait_for("the broker to drain", lambda: _broker_drained(raw, store.prefix), 30, workers.tail)
    print(
        f"\nkill -9 → done on the other worker in {recovered_s:.1f} s "
        f"(visibility timeout {VISIBILITY_TIMEOUT_S} s)"
    )


def test_a_worker_that_lost_its_job_cannot_record_an_outcome(store: RedisJobStore) -> None:
    job = store.create(Job(new_job_id()), b"audio")
    assert store.claim(job.id, worker="A") is not None
    assert store.reclaim(job.id, worker="B") is not None  # B took over (A's lease went stale)
    after_a = store.fail(job.id, "A's late failure", worker="A")
    assert after_a is not None and after_a.status == "running" and after_a.error is None
    assert store.complete(job.id, "A's late text", {}, worker="A") is False
    assert store.complete(job.id, "B's text", {"stt": 1.0}, worker="B") is True
    done = store.get(job.id)
    assert done is not None and (done.status, done.text) == ("done", "B's text")
    assert store.meta(job.id)["completions"] == "1"
