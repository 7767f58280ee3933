"""Scale-out on real parts: Celery workers on the RabbitMQ at 127.0.0.1:5672, job records in the
PostgreSQL at 127.0.0.1:5432, a worker killed with SIGKILL mid-job (skipped, with the reason, when
either service is absent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from voxperf.service.app import ServiceSettings
from voxperf.service.jobs import JobRecords

from .conftest import BROKER, drop_schema, fake_engines, pg_url, postgres_schema, rabbitmq_up, serve_app, tone


@pytest.fixture
def scale_out(tmp_path: Path) -> Iterator[tuple[ServiceSettings, dict[str, str]]]:
    if not rabbitmq_up():
        pytest.skip(f"no RabbitMQ at {BROKER} (set VOXPERF_TEST_BROKER_URL)")
    schema = postgres_schema()
    if schema is None:
        pytest.skip("no PostgreSQL for the job records (set VOXPERF_TEST_POSTGRES_URL)")
    queue = f"voxperf.test.{uuid.uuid4().hex[:8]}"  # this run's jobs only
    settings = ServiceSettings(
        job_dir=str(tmp_path), jobs_db=pg_url(schema), broker_url=BROKER, broker_queue=queue, workers=1
    )
    env = {
        **os.environ,
        "VOXPERF_JOBS_DB": pg_url(schema),
        "VOXPERF_BROKER_URL": BROKER,
        "VOXPERF_BROKER_QUEUE": queue,
        "NO_COLOR": "1",
    }
    try:
        yield settings, env
    finally:
        drop_schema(schema)
        from voxperf.service.celery_app import make_celery

        with make_celery(BROKER, queue).connection_for_write() as conn:  # leave no queue behind
            conn.default_channel.queue_delete(queue)


def start_worker(env: dict[str, str], log: Path, stt: str = "fake:latency=1.5s") -> subprocess.Popen[bytes]:
    voxperf = str(Path(sys.executable).parent / "voxperf")
    with log.open("ab") as out:
        return subprocess.Popen(
            [voxperf, "worker", "--stt", stt, "--concurrency", "1", "--loglevel", "warning"],
            stdout=out,
            stderr=out,
            env=env,
        )


def wait_until(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_jobs_survive_a_killed_worker_and_complete_once(
    scale_out: tuple[ServiceSettings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = scale_out
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    workers = [start_worker(env, logs[0]), start_worker(env, logs[1])]
    records = JobRecords(settings.records_target)
    try:
        for url in serve_app(settings, fake_engines()):
            ids = [
                httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()["id"] for _ in range(6)
            ]
            # kill -9 the worker that runs the first job, as soon as it runs it
            wait_until(lambda: records.get(ids[0]).status == "running")  # type: ignore[union-attr]  # noqa: B023 - called at once
            running = records.get(ids[0])
            assert running is not None and running.worker is not None
            pid = int(running.worker.split(":")[1])
            victim = next(w for w in workers if w.pid == pid)
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait(10)
            workers.append(start_worker(env, tmp_path / "w2.log"))  # restarted, as a supervisor would
            wait_until(lambda: records.get(ids[0]).attempts == 2)  # type: ignore[union-attr]  # noqa: B023 - called at once
            redelivered_s = time.monotonic() - killed_at
            wait_until(lambda: {records.get(i).status for i in ids} == {"done"}, 90)  # type: ignore[union-attr]  # noqa: B023 - called at once
            jobs = [httpx.get(f"{url}/v1/jobs/{i}").json() for i in ids]
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
    assert redelivered_s < 30  # RabbitMQ redelivers when the dead worker's connection closes
    assert jobs[0]["attempts"] == 2 and all(j["attempts"] == 1 for j in jobs[1:])
    assert all(j["text"] for j in jobs)
    # every completion was recorded once: one pipeline_timing line per job across all workers' logs
    lines = "".join(p.read_text(errors="replace") for p in tmp_path.glob("w*.log"))
    assert all(lines.count(f'"sessionID":"{i}"') == 1 for i in ids)


def test_cancel_revokes_and_duplicates_do_nothing(
    scale_out: tuple[ServiceSettings, dict[str, str]], tmp_path: Path
) -> None:
    from voxperf.service.celery_app import enqueue, make_celery

    settings, env = scale_out
    records = JobRecords(settings.records_target)
    for url in serve_app(settings, fake_engines()):  # no worker yet: jobs wait in RabbitMQ
        ids = [httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()["id"] for _ in range(2)]
        assert httpx.delete(f"{url}/v1/jobs/{ids[0]}").json()["status"] == "cancelled"
        app = make_celery(BROKER, settings.broker_queue)
        enqueue(app, ids[1])  # a duplicate message for the same job
        worker = start_worker(env, tmp_path / "w.log", stt="fake:latency=0.1s")
        try:
            wait_until(lambda: records.get(ids[1]).status == "done")  # type: ignore[union-attr]  # noqa: B023 - called at once
            wait_until(lambda: _waiting(app, settings.broker_queue) == 0)  # the duplicate was delivered  # noqa: B023
        finally:
            worker.send_signal(signal.SIGTERM)  # warm shutdown: a delivered task finishes first
            worker.wait(30)
    done, cancelled = records.get(ids[1]), records.get(ids[0])
    assert done is not None and done.attempts == 1 and done.status == "done"
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.text is None


def _waiting(app: object, queue: str) -> int:
    with app.connection_for_write() as conn:  # type: ignore[attr-defined]
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)


def test_worker_usage_errors_are_one_line() -> None:
    voxperf = str(Path(sys.executable).parent / "voxperf")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXPERF_")}
    for args, needle in (
        (["worker"], "needs a broker"),
        (["worker", "--broker", "redis://x:6379/0", "--jobs-db", "postgresql://x/y"], "unsupported broker"),
        (["worker", "--broker", BROKER], "job database"),
    ):
        result = subprocess.run([voxperf, *args], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
