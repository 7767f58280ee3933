"""The real ``voxperf serve`` process: SIGTERM drains, and queued jobs complete after a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from .conftest import free_port, start_serve, tone


def test_sigterm_drains_and_restart_completes_everything(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(tmp_path, port, workers=1)
    try:
        ids = [httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()["id"] for _ in range(4)]
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/v1/jobs/{ids[0]}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown (cooperative signal handling)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
    # the running job was finished during the drain; the queued ones are still queued
    from voxperf.service.jobs import JobRecords

    store = JobRecords(tmp_path)
    statuses = [store.get(i).status for i in ids]  # type: ignore[union-attr]
    assert statuses[0] == "done" and "queued" in statuses[1:]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(tmp_path, port, workers=2)
    try:
        deadline = time.monotonic() + 30
        while {httpx.get(f"{url}/v1/jobs/{i}").json()["status"] for i in ids} != {"done"}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        jobs = [httpx.get(f"{url}/v1/jobs/{i}").json() for i in ids]
        assert all(j["attempts"] == 1 for j in jobs)  # nothing ran twice
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
