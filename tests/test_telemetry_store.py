"""The telemetry store on its real engines (an embedded DuckDB file, PostgreSQL at 127.0.0.1):
batches stored exactly once, percentiles equal numpy's, rates equal direct counts, retention
rolls raw events into histograms within 1 %, migrations move old stores forward."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.errors import UsageError
from voxperf.telemetry.ingest import parse_batch
from voxperf.telemetry.store import DAY_MS, HOUR_MS, MIGRATIONS, Query, TelemetryStore, histogram_stat

from .conftest import PG_URL, drop_schema, pg_url, postgres_schema, telemetry_line

T0 = 1_796_083_200_000  # 2026-12-01T00:00:00Z, a whole hour
NOW_S = (T0 + 3 * DAY_MS) / 1000


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TelemetryStore]:
    if request.param == "duckdb":
        opened = TelemetryStore(tmp_path / "telemetry.duckdb", clock=lambda: NOW_S)
        yield opened
        opened.close()
        return
    schema = postgres_schema()
    if schema is None:
        pytest.skip(f"no PostgreSQL at {PG_URL} (set VOXPERF_TEST_POSTGRES_URL)")
    opened = TelemetryStore(pg_url(schema), clock=lambda: NOW_S)
    try:
        yield opened
    finally:
        opened.close()
        drop_schema(schema)


def speech_events(n: int, seed: int = 1, hours: int = 6) -> tuple[list[str], dict[str, np.ndarray]]:
    """``n`` speech events over ``hours`` hours from T0, and their values as arrays."""
    rng = np.random.default_rng(seed)
    ts = T0 + rng.integers(0, hours * HOUR_MS, n)
    ttfa = np.round(rng.lognormal(6.2, 0.5, n), 3)
    provider = rng.choice(["piper", "espeak-ng"], n)
    version = rng.choice(["1.0.0", "1.1.0"], n)
    cache = rng.choice(["hit", "miss"], n, p=[0.3, 0.7])
    outcome = rng.choice(["ok", "error"], n, p=[0.95, 0.05])
    lines = [
        telemetry_line(
            "speech_timing",
            int(ts[i]),
            app_version=str(version[i]),
            session=f"s{seed}-{i}",
            provider=str(provider[i]),
            cache=str(cache[i]),
            outcome=str(outcome[i]),
            ttfa_ms=float(ttfa[i]),
        )
        for i in range(n)
    ]
    values = {
        "ts": ts,
        "ttfa": ttfa,
        "provider": provider,
        "version": version,
        "cache": cache,
        "outcome": outcome,
    }
    return lines, values


def batch(lines: list[str]) -> bytes:
    return "\n".join(lines).encode()


def test_a_batch_is_stored_once_however_often_it_is_sent(store: TelemetryStore) -> None:
    lines, _ = speech_events(200)
    parsed = parse_batch(batch([*lines, "{not json"]))
    first = store.ingest(parsed, batch_id="b-1", tenant="acme")
    again = store.ingest(parsed, batch_id="b-1", tenant="acme")
    other = store.ingest(parsed, batch_id="b-1", tenant="globex")  # ids are per tenant
    assert (first.accepted, first.rejected, first.duplicate) == (200, 1, False)
    assert (again.accepted, again.rejected, again.duplicate) == (200, 1, True)
    assert not other.duplicate
    window = Query(T0, T0 + DAY_MS, tenant="acme")
    assert store.count(window) == 200
    assert store.count(Query(T0, T0 + DAY_MS, tenant="globex")) == 200
    assert store.count(Query(T0, T0 + DAY_MS, tenant="nobody")) == 0


def test_percentiles_per_bucket_equal_numpy_and_filters_apply(store: TelemetryStore) -> None:
    lines, v = speech_events(3000)
    store.ingest(parse_batch(batch(lines)), batch_id="b")
    q = Query(T0, T0 + 6 * HOUR_MS, HOUR_MS)
    points = store.series("ttfa_ms", q, ("p50", "p95", "p99", "mean"))
    assert [p.t_ms for p in points] == [T0 + h * HOUR_MS for h in range(6)]
    for p in points:
        mask = (v["ts"] >= p.t_ms) & (v["ts"] < p.t_ms + HOUR_MS)
        assert p.count == mask.sum()
        for stat, q_ in (("p50", 50), ("p95", 95), ("p99", 99)):
            assert p.values[stat] == pytest.approx(np.percentile(v["ttfa"][mask], q_), rel=1e-9)
        assert p.values["mean"] == pytest.approx(v["ttfa"][mask].mean(), rel=1e-9)
    piper = Query(T0, T0 + 6 * HOUR_MS, 6 * HOUR_MS, filters={"provider": "piper", "app_version": "1.1.0"})
    (only,) = store.series("ttfa_ms", piper, ("p95",))
    mask = (v["provider"] == "piper") & (v["version"] == "1.1.0")
    assert only.count == mask.sum()
    assert only.values["p95"] == pytest.approx(np.percentile(v["ttfa"][mask], 95), rel=1e-9)


def test_rates_equal_direct_counts(store: TelemetryStore) -> None:
    lines, v = speech_events(2000, seed=2)
    store.ingest(parse_batch(batch(lines)), batch_id="b")
    whole = Query(T0, T0 + 6 * HOUR_MS, 6 * HOUR_MS)
    (hits,) = store.series("cache_hit_rate", whole, ())
    (errors,) = store.series("error_rate", whole, ())
    (rate,) = store.series("throughput", whole, ())
    assert hits.values["value"] == pytest.approx((v["cache"] == "hit").mean(), rel=1e-12)
    assert errors.values["value"] == pytest.approx((v["outcome"] == "error").mean(), rel=1e-12)
    assert rate.values["value"] == pytest.approx(2000 / (6 * 3600), rel=1e-12)


def test_slowest_and_breakdown(store: TelemetryStore) -> None:
    lines, v = speech_events(500, seed=3)
    store.ingest(parse_batch(batch(lines)), batch_id="b")
    q = Query(T0, T0 + 6 * HOUR_MS)
    slow = store.slowest("ttfa_ms", q, limit=5)
    assert [e["ttfa_ms"] for e in slow] == pytest.approx(sorted(v["ttfa"], reverse=True)[:5])
    assert {"session_id", "provider", "app_version"} <= set(slow[0])
    rows = {r["provider"]: r for r in store.breakdown("ttfa_ms", "provider", q, ("p95",))}
    for name in ("piper", "espeak-ng"):
        mask = v["provider"] == name
        assert rows[name]["count"] == mask.sum()
        assert rows[name]["p95"] == pytest.approx(np.percentile(v["ttfa"][mask], 95), rel=1e-9)
    with pytest.raises(UsageError, match="rate, not a timing"):
        store.slowest("cache_hit_rate", q)
    with pytest.raises(UsageError, match="cannot break down"):
        store.breakdown("ttfa_ms", "session_id", q)


def test_retention_rolls_up_within_one_percent_and_deletes_raw(store: TelemetryStore) -> None:
    lines, v = speech_events(4000, seed=4)
    store.ingest(parse_batch(batch(lines)), batch_id="b")
    store.raw_days = 1
    done = store.compact(now_ms=T0 + DAY_MS + 3 * HOUR_MS)  # hours 0-2 leave the raw table
    assert done["deleted"] == int((v["ts"] < T0 + 3 * HOUR_MS).sum())
    assert store.rolled_through_ms() == T0 + 3 * HOUR_MS
    q = Query(T0, T0 + 6 * HOUR_MS, HOUR_MS)
    points = store.series("ttfa_ms", q, ("p50", "p95"))
    assert [p.source for p in points] == ["rollup"] * 3 + ["raw"] * 3
    for p in points:
        mask = (v["ts"] >= p.t_ms) & (v["ts"] < p.t_ms + HOUR_MS)
        assert p.count == mask.sum()  # counts are exact
        for stat, q_ in (("p50", 50), ("p95", 95)):
            assert p.values[stat] == pytest.approx(np.percentile(v["ttfa"][mask], q_), rel=0.01)
    hits = store.series("cache_hit_rate", q, ())
    for p in hits:  # rates stay exact: the dimensions are kept in the rollups
        mask = (v["ts"] >= p.t_ms) & (v["ts"] < p.t_ms + HOUR_MS)
        assert p.values["value"] == pytest.approx((v["cache"][mask] == "hit").mean(), rel=1e-12)
    piper = store.series("ttfa_ms", Query(T0, T0 + HOUR_MS, HOUR_MS, filters={"provider": "piper"}), ("p95",))
    mask = (v["ts"] < T0 + HOUR_MS) & (v["provider"] == "piper")
    assert piper[0].source == "rollup" and piper[0].count == mask.sum()
    straddle = store.series("ttfa_ms", Query(T0, T0 + 6 * HOUR_MS, 2 * HOUR_MS), ("p95",))
    assert [(p.t_ms, p.source) for p in straddle] == [  # the bucket holding the cut is one point
        (T0, "rollup"), (T0 + 2 * HOUR_MS, "rollup"), (T0 + 4 * HOUR_MS, "raw"),
    ]  # fmt: skip
    for p in straddle:
        mask = (v["ts"] >= p.t_ms) & (v["ts"] < p.t_ms + 2 * HOUR_MS)
        assert p.count == mask.sum()
        assert p.values["p95"] == pytest.approx(np.percentile(v["ttfa"][mask], 95), rel=0.01)
    whole = store.summary(Query(T0, T0 + 6 * HOUR_MS))
    assert whole["ttfa_ms"]["count"] == len(v["ts"]) and whole["ttfa_ms"]["source"] == "rollup"
    assert whole["cache_hit_rate"]["value"] == pytest.approx((v["cache"] == "hit").mean(), rel=1e-12)
    late, _ = speech_events(50, seed=40, hours=1)  # events of a rolled-up hour arriving late
    store.ingest(parse_batch(batch(late)), batch_id="late")
    (first,) = store.series("ttfa_ms", Query(T0, T0 + HOUR_MS, HOUR_MS), ("p95",))
    assert first.count == int((v["ts"] < T0 + HOUR_MS).sum()) + 50 and first.source == "rollup"
    store.compact(now_ms=T0 + DAY_MS + 3 * HOUR_MS)  # rolled up now: counted once, not twice
    (again,) = store.series("ttfa_ms", Query(T0, T0 + HOUR_MS, HOUR_MS), ("p95",))
    assert again.count == first.count
    store.rollup_days = 1
    expired = store.compact(now_ms=T0 + 2 * DAY_MS + 4 * HOUR_MS)
    assert expired["expired_rollups"] > 0
    assert all(p.source == "raw" for p in store.series("ttfa_ms", q, ("p95",)))


def test_migrations_bring_an_old_store_forward_and_refuse_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old = TelemetryStore(path, clock=lambda: NOW_S, migrate_to=1)  # as the first release left it
    assert old.schema_version() == 1
    lines, _ = speech_events(10)
    old.ingest(parse_batch(batch(lines)), batch_id="kept")
    old.close()
    store = TelemetryStore(path, clock=lambda: NOW_S)
    assert store.schema_version() == len(MIGRATIONS["duckdb"]) == 3
    assert store.count(Query(T0, T0 + DAY_MS)) == 10  # data survives the migration
    assert store.ingest(parse_batch(batch(lines)), batch_id="kept").duplicate
    with store._transaction() as cur:
        cur.execute("INSERT INTO telemetry_schema VALUES (99)")
    store.close()
    with pytest.raises(UsageError, match="newer than this voxperf knows"):
        TelemetryStore(path)


def test_a_failed_query_leaves_the_store_usable(store: TelemetryStore) -> None:
    lines, _ = speech_events(20)
    with pytest.raises(UsageError, match="no statistic"):
        store.series("ttfa_ms", Query(T0, T0 + DAY_MS), ())
    with pytest.raises(Exception):  # noqa: B017 - the database's own error type
        store._read("SELECT no_such_column FROM telemetry_events")
    assert store.ingest(parse_batch(batch(lines)), batch_id="after").accepted == 20
    assert store.count(Query(T0, T0 + DAY_MS)) == 20


def test_bad_queries_name_the_problem() -> None:
    with pytest.raises(UsageError, match="window is empty"):
        Query(10, 10)
    with pytest.raises(UsageError, match="more than 10,000 buckets"):
        Query(0, DAY_MS * 30, 1000)
    with pytest.raises(UsageError, match="unknown filter 'text'"):
        Query(0, DAY_MS, filters={"text": "x"})
    store = TelemetryStore(":memory:")
    with pytest.raises(UsageError, match="unknown metric"):
        store.series("latency", Query(0, DAY_MS))
    with pytest.raises(UsageError, match="unknown statistic"):
        store.series("ttfa_ms", Query(0, DAY_MS), ("p100",))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.5, max_value=1e6, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from(["p50", "p90", "p95", "p99"]),
)
def test_a_rollup_percentile_is_within_one_percent_of_the_raw_one(values: list[float], stat: str) -> None:
    buckets: dict[int, int] = {}
    for x in values:
        b = math.floor(math.log(x) / math.log(1.02))
        buckets[b] = buckets.get(b, 0) + 1
    got = histogram_stat(sorted(buckets.items()), stat)
    want = float(np.percentile(values, int(stat[1:])))
    assert got is not None and abs(got - want) <= 0.0101 * want


def test_batches_stored_together_are_each_stored_once(store: TelemetryStore) -> None:
    a, _ = speech_events(30, seed=21)
    b, _ = speech_events(40, seed=22)
    pa, pb = parse_batch(batch(a)), parse_batch(batch(b))
    receipts = store.ingest_many([(pa, "a", ""), (pb, "b", ""), (pa, "a", ""), (pb, "b", "other")])
    assert [(r.accepted, r.duplicate) for r in receipts] == [
        (30, False),
        (40, False),
        (30, True),
        (40, False),
    ]
    again = store.ingest_many([(pa, "a", ""), (pb, "c", "")])
    assert [(r.accepted, r.duplicate) for r in again] == [(30, True), (40, False)]
    assert store.count(Query(T0, T0 + DAY_MS)) == 30 + 40 + 40
    assert store.count(Query(T0, T0 + DAY_MS, tenant="other")) == 40


def test_a_lost_postgresql_connection_is_a_503_then_reopened() -> None:
    import psycopg

    from voxperf.errors import ServiceUnavailableError

    schema = postgres_schema()
    if schema is None:
        pytest.skip(f"no PostgreSQL at {PG_URL} (set VOXPERF_TEST_POSTGRES_URL)")
    store = TelemetryStore(pg_url(schema), clock=lambda: NOW_S)
    try:
        lines, _ = speech_events(10)
        store.ingest(parse_batch(batch(lines)), batch_id="before")
        with psycopg.connect(PG_URL, autocommit=True) as admin:  # the database drops the store's session
            admin.execute("SELECT pg_terminate_backend(%s)", [store._conn.info.backend_pid])
        with pytest.raises(ServiceUnavailableError, match="telemetry database failed"):
            store.count(Query(T0, T0 + DAY_MS))
        assert store.count(Query(T0, T0 + DAY_MS)) == 10  # reconnected
        assert store.ingest(parse_batch(batch(lines)), batch_id="before").duplicate
    finally:
        store.close()
        drop_schema(schema)
