"""voxperf serve --queue redis://...: the HTTP job API in front of real Celery workers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from voxperf.service.app import ServiceSettings

from .conftest import run_cli
from .test_celery_queue import REDIS_URL, Workers, _prefix, _redis_answers
from .test_service import _serve
from .test_service_jobs import fake_engines, tone

pytestmark = pytest.mark.skipif(not _redis_answers(), reason=f"no Redis answering at {REDIS_URL}")


def test_job_api_on_celery_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _prefix()
    monkeypatch.setenv("VOXPERF_JOB_PREFIX", prefix)
    workers = Workers(prefix, tmp_path)
    try:
        workers.ensure(2)
        for url in _serve(
            ServiceSettings(queue_url=REDIS_URL, job_dir=str(tmp_path / "unused")), fake_engines()
        ):
            ids = [
                httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()["id"] for _ in range(3)
            ]
            deadline = time.monotonic() + 60
            while {httpx.get(f"{url}/v1/jobs/{i}").json()["status"] for i in ids} != {"done"}:
                assert time.monotonic() < deadline, workers.tail()
                time.sleep(0.1)
            jobs = [httpx.get(f"{url}/v1/jobs/{i}").json() for i in ids]
            assert all(j["attempts"] == 1 and j["text"] for j in jobs)
            assert "voxperf_queue_depth 0.0" in httpx.get(f"{url}/metrics").text
            assert not (tmp_path / "unused").exists()  # state lives in Redis, not on this machine
    finally:
        workers.stop_all()
        from voxperf.service.redis_jobs import RedisJobStore

        RedisJobStore(REDIS_URL, prefix=prefix).delete_all()


def test_worker_cli_usage_errors() -> None:
    proc = run_cli("worker", "--queue", "amqp://x")
    assert proc.returncode == 2 and "redis://" in proc.stderr and "Traceback" not in proc.stderr
