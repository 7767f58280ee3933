"""The job API and the embedded queue (SQLite, restart resume, cancel, drain), on fake engines."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from voxperf.engines.fakes import FakeSTT
from voxperf.engines.rewrite.local import LocalRewriter
from voxperf.pipeline.dictation import DictationPipeline
from voxperf.service.app import ServiceEngines, ServiceSettings
from voxperf.service.jobs import MAX_ATTEMPTS, Job, JobRecords
from voxperf.service.worker import EmbeddedQueue, process_job

from .conftest import fake_engines, serve_app, tone


def pipeline(engines: ServiceEngines) -> DictationPipeline:
    return engines.dictation(ServiceSettings())


def wait_for(url: str, job_id: str, statuses: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict:
    deadline = time.monotonic() + 30
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def test_jobs_list_cancel_and_errors(tmp_path: Path) -> None:
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):  # accept only
        ids = [httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()["id"] for _ in range(3)]
        listed = httpx.get(f"{url}/v1/jobs", params={"status": "queued"}).json()["data"]
        assert {j["id"] for j in listed} == set(ids)
        cancelled = httpx.delete(f"{url}/v1/jobs/{ids[0]}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert httpx.delete(f"{url}/v1/jobs/{ids[0]}").status_code == 409
        assert httpx.get(f"{url}/v1/jobs/nope").status_code == 404
        assert httpx.get(f"{url}/v1/jobs", params={"status": "weird"}).status_code == 400
        assert httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", b"")}).status_code == 422
        assert httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", b"plain text")}).status_code == 415
        assert (
            httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, data={"level": "x"}).status_code
            == 400
        )
        metrics = httpx.get(f"{url}/metrics").text
        assert "voxperf_queue_depth 2.0" in metrics  # 3 accepted, 1 cancelled, the bad ones refused


def test_restart_resumes_queued_and_interrupted_jobs(tmp_path: Path) -> None:
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):
        ids = [httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()["id"] for _ in range(3)]
    JobRecords(tmp_path).claim(ids[1], "gone")  # as if a worker died while running it
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=1), fake_engines()):
        jobs = [wait_for(url, i) for i in ids]
    assert [j["status"] for j in jobs] == ["done"] * 3
    assert jobs[1]["attempts"] == 2 and jobs[0]["attempts"] == 1
    assert all(JobRecords(tmp_path).audio(i) is None for i in ids)  # uploads removed once done


def test_bad_audio_fails_once_without_looping(tmp_path: Path) -> None:
    store = JobRecords(tmp_path)
    job = store.create(Job(id="bad"), b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 10)
    done = process_job(store, pipeline(fake_engines()), "bad")
    assert done is not None and (done.status, done.attempts) == ("failed", 1) and done.error
    assert job.id == "bad"


def test_engine_errors_retry_then_fail(tmp_path: Path) -> None:
    class Broken(FakeSTT):
        def transcribe(self, audio):  # type: ignore[override]
            raise RuntimeError("engine crashed")

    store = JobRecords(tmp_path)
    store.create(Job(id="j"), tone())
    engines = ServiceEngines(stt=Broken(), rewriter=LocalRewriter(), ready=True)
    statuses = [process_job(store, pipeline(engines)).status for _ in range(MAX_ATTEMPTS)]  # type: ignore[union-attr]
    assert statuses == ["queued"] * (MAX_ATTEMPTS - 1) + ["failed"]
    final = store.get("j")
    assert final is not None and final.attempts == MAX_ATTEMPTS and "engine crashed" in (final.error or "")
    assert process_job(store, pipeline(engines)) is None  # nothing left to claim: no loop


def test_cancelled_running_job_result_is_dropped(tmp_path: Path) -> None:
    store = JobRecords(tmp_path)
    store.create(Job(id="c"), tone())
    running = store.claim("c", "w1")
    assert running is not None
    store.cancel("c")
    assert store.complete(running, "late text", {}) is False
    job = store.get("c")
    assert job is not None and (job.status, job.text) == ("cancelled", None)
    assert store.claim("c", "w2") is None and store.claim("c", "w2", takeover=True) is None


def test_drain_finishes_the_running_job(tmp_path: Path) -> None:
    store = JobRecords(tmp_path)
    store.create(Job(id="slow"), tone())
    queue = EmbeddedQueue(store, pipeline(fake_engines(latency="0.5s")), workers=1)
    queue.start()
    deadline = time.monotonic() + 10
    while store.get("slow").status != "running":  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    queue.stop(timeout_s=10)
    assert store.get("slow").status == "done"  # type: ignore[union-attr]


def test_tts_cache_and_metrics(tmp_path: Path) -> None:
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=1), fake_engines()):
        bodies, timings = [], []
        for _ in range(2):
            r = httpx.post(f"{url}/v1/audio/speech", json={"input": "One sentence. Another one."})
            assert r.status_code == 200
            bodies.append(r.content)
            timings.append(r.headers["server-timing"])
        assert bodies[0] == bodies[1]
        assert "cache;desc=miss" in timings[0] and "cache;desc=hit" in timings[1]
        job = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}).json()
        wait_for(url, job["id"])
        text = httpx.get(f"{url}/metrics").text
        assert "voxperf_tts_cache_hits_total 1.0" in text and "voxperf_tts_cache_misses_total 1.0" in text
        assert 'voxperf_jobs_total{outcome="done"} 1.0' in text
        assert 'voxperf_stage_duration_seconds_count{stage="stt"}' in text


def test_phrase_cache_lru_by_bytes() -> None:
    from voxperf.service.cache import PhraseCache

    cache = PhraseCache(max_bytes=10)
    assert cache.put(("a", "v", "wav"), [b"12345"], 16000)
    assert cache.put(("b", "v", "wav"), [b"12345"], 16000)
    assert cache.get(("a", "v", "wav")) is not None  # a is now most recent
    assert cache.put(("c", "v", "wav"), [b"123"], 16000)  # evicts b
    assert cache.get(("b", "v", "wav")) is None and cache.size_bytes == 8
    assert not cache.put(("huge", "v", "wav"), [b"x" * 11], 16000)


def test_speech_request_flow_events_are_emitted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    caplog.set_level(logging.INFO, logger="voxperf.timing")
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):
        assert (
            httpx.post(f"{url}/v1/audio/speech", json={"input": "First one. Second one. Third."}).status_code
            == 200
        )
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "voxperf.timing"]
    (event,) = [r for r in records if r["name"] == "speech_timing"]
    names = list(event["events_ms"])
    assert names[:3] == ["REQUEST_START", "INFERENCE_START", "FIRST_CHUNK_GENERATED"]
    assert names[-1] == "REQUEST_COMPLETE" and event["chunks"] == 3
    assert "FIRST_AUDIO_CHUNK" in names and event["ttfa_ms"] == event["events_ms"]["FIRST_AUDIO_CHUNK"]
    times = list(event["events_ms"].values())
    assert times == sorted(times) and times[0] == 0.0  # from the request's arrival


def test_malformed_corpus_keeps_memory_bounded(tmp_path: Path) -> None:
    import os
    import random

    import psutil

    rng = random.Random(0)
    corpus = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4096))) for _ in range(40)]
    header = tone()[:44]
    corpus += [header + bytes(rng.getrandbits(8) for _ in range(n)) for n in (0, 1, 7, 1000, 150_000)]
    corpus += [
        b"OggS" + b"\x00" * 200,
        b"fLaC" + b"\xff" * 500,
        b"\x1aE\xdf\xa3" + b"\x00" * 300,
        b"ID3" * 100,
    ]
    proc = psutil.Process(os.getpid())  # the server runs in this process
    for url in serve_app(
        ServiceSettings(job_dir=str(tmp_path), workers=0, max_upload_bytes=200_000), fake_engines()
    ):
        before = proc.memory_info().rss
        for payload in corpus * 3:
            r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("x.mp3", payload)}, timeout=30)
            assert 400 <= r.status_code < 500 or r.status_code == 200, r.text
        grown = proc.memory_info().rss - before
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert grown < 150 * 1024 * 1024, (
        f"RSS grew by {grown / 2**20:.0f} MiB over {len(corpus) * 3} bad uploads"
    )


def test_worker_survives_store_errors(tmp_path: Path) -> None:
    import sqlite3

    store = JobRecords(tmp_path)
    real_claim = store.claim_next
    failures = {"left": 2}

    def flaky_claim(worker):  # type: ignore[no-untyped-def]
        if failures["left"] > 0:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return real_claim(worker)

    store.claim_next = flaky_claim  # type: ignore[method-assign]
    queue = EmbeddedQueue(store, pipeline(fake_engines()), workers=1)
    queue.start()
    try:
        store.create(Job(id="after"), tone())
        queue.notify()
        deadline = time.monotonic() + 15
        while store.get("after").status != "done":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker died on a store error"
            time.sleep(0.05)
    finally:
        queue.stop(5)


def test_exhausted_interrupted_job_fails_and_frees_its_audio(tmp_path: Path) -> None:
    store = JobRecords(tmp_path)
    store.create(Job(id="x"), tone())
    for _ in range(MAX_ATTEMPTS):  # interrupted MAX_ATTEMPTS times (e.g. the server crashed mid-job)
        assert store.claim("x", "w") is not None
        store.requeue_running()
    job = store.get("x")
    assert job is not None and job.status == "failed" and "interrupted" in (job.error or "")
    assert store.audio("x") is None
