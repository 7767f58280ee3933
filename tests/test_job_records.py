"""The job record on both databases: SQLite (embedded) and the real PostgreSQL at 127.0.0.1:5432."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxperf.errors import UsageError
from voxperf.service.jobs import MAX_ATTEMPTS, SCHEMA_VERSION, Job, JobRecords

from .conftest import PG_URL, drop_schema, pg_url, postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobRecords]:
    if request.param == "sqlite":
        yield JobRecords(tmp_path)
        return
    schema = postgres_schema()
    if schema is None:
        pytest.skip(f"no PostgreSQL at {PG_URL} (set VOXPERF_TEST_POSTGRES_URL)")
    try:
        yield JobRecords(pg_url(schema))
    finally:
        drop_schema(schema)


def job(owner: str = "", **kw: object) -> Job:
    return Job(id=uuid.uuid4().hex, owner=owner, **kw)  # type: ignore[arg-type]


def test_create_get_and_owner_isolation(records: JobRecords) -> None:
    a = records.create(job("acme", audio_s=2.5), b"audio-a")
    assert records.get(a.id) == a and records.get(a.id, "acme") == a
    assert records.get(a.id, "other") is None  # another tenant's job does not exist for them
    assert records.audio(a.id) == b"audio-a" and a.audio_bytes == 7
    assert records.cancel(a.id, "other") is None and records.get(a.id).status == "queued"  # type: ignore[union-attr]
    assert records.active_load() == (1, 2.5) and records.active_load("other") == (0, 0.0)


def test_listing_is_paginated_per_owner(records: JobRecords) -> None:
    mine = [records.create(job("acme", created_at=1000.0 + i), b"x") for i in range(5)]
    records.create(job("other", created_at=2000.0), b"x")
    page1 = records.list("acme", limit=2)
    page2 = records.list("acme", limit=2, before=page1[-1].id)
    page3 = records.list("acme", limit=2, before=page2[-1].id)
    ids = [j.id for j in page1 + page2 + page3]
    assert ids == [j.id for j in reversed(mine)]  # newest first, each once, none of another owner's
    with pytest.raises(UsageError):
        records.list("other", before=mine[0].id)  # a cursor of another owner is unknown


def test_one_claim_wins_and_outcomes_are_fenced_by_attempt(records: JobRecords) -> None:
    j = records.create(job(), b"x")
    won: list[Job] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        got = records.claim(j.id, f"w{i}")
        if got is not None:
            with lock:
                won.append(got)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0].attempts == 1
    first = won[0]
    # the first worker "dies": a redelivered message takes the job over (attempt 2)
    second = records.claim(j.id, "w-new", takeover=True)
    assert second is not None and second.attempts == 2
    assert records.complete(first, "stale", {}) is False  # the lost worker cannot record an outcome
    assert records.fail(first, "stale error") is not None and records.get(j.id).status == "running"  # type: ignore[union-attr]
    assert records.complete(second, "text", {"stt": 1.0}) is True
    assert records.complete(second, "again", {}) is False  # recorded once
    done = records.get(j.id)
    assert done is not None and (done.status, done.text, done.attempts) == ("done", "text", 2)
    assert records.audio(j.id) is None  # the upload is gone with the job
    assert records.claim(j.id, "w-late", takeover=True) is None  # a late duplicate does nothing


def test_failures_retry_then_fail_and_takeovers_are_bounded(records: JobRecords) -> None:
    j = records.create(job(), b"x")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        running = records.claim(j.id, "w")
        assert running is not None and running.attempts == attempt
        after = records.fail(running, f"boom {attempt}")
        assert after is not None
    assert after.status == "failed" and after.error == f"boom {MAX_ATTEMPTS}"
    k = records.create(job(), b"x")
    assert records.claim(k.id, "w1") is not None
    for n in range(2, MAX_ATTEMPTS + 1):
        assert records.claim(k.id, f"w{n}", takeover=True) is not None
    assert records.claim(k.id, "w-last", takeover=True) is None  # lost too many times: failed
    lost = records.get(k.id)
    assert lost is not None and lost.status == "failed" and "lost" in (lost.error or "")
    bad = records.create(job(), b"x")
    claimed = records.claim(bad.id, "w")
    assert claimed is not None
    assert records.fail(claimed, "undecodable", permanent=True).status == "failed"  # type: ignore[union-attr]


def test_admission_bound_holds_under_concurrent_submissions(records: JobRecords) -> None:
    def admit(r: JobRecords) -> None:
        if r.active_load()[0] >= 5:
            raise UsageError("full", "wait")

    accepted, refused = [], []
    lock = threading.Lock()

    def submit() -> None:
        try:
            j = records.create(job(), b"x", admit)
            with lock:
                accepted.append(j.id)
        except UsageError:
            with lock:
                refused.append(1)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 5 and len(refused) == 15
    assert records.active_load()[0] == 5  # a refused submission stored nothing


def test_requeue_after_an_embedded_restart(records: JobRecords) -> None:
    j = records.create(job(), b"x")
    assert records.claim(j.id, "w") is not None
    assert records.requeue_running() == 1
    assert records.get(j.id).status == "queued" and records.queued_ids() == [j.id]  # type: ignore[union-attr]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    JobRecords(tmp_path)
    import sqlite3

    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        conn.execute("INSERT INTO voxperf_schema (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(UsageError, match="schema"):
        JobRecords(tmp_path)


def test_an_unreachable_database_is_a_one_line_error() -> None:
    from voxperf.errors import ServiceUnavailableError

    with pytest.raises(ServiceUnavailableError, match="cannot connect"):
        JobRecords("postgresql://nobody@127.0.0.1:1/none")
