"""Where telemetry events live: an embedded DuckDB file (the default) or PostgreSQL (by URL).

One class, two SQL dialects that differ only in types and bulk loading; every query is the same
text on both. Why DuckDB for the embedded store: measured side by side on this project's 2-vCPU
machine (``benchmarks/telemetry_store_choice.py``, 1,000,000 events, 1,000 per transaction),
inserts are alike (DuckDB 124,000 events/s from column arrays, SQLite 118,000 with
``executemany`` in WAL mode), but "TTFA p95 per hour over 7 days" took 15 ms on DuckDB and
1,161 ms on SQLite, which has no percentile function (sorted in SQL, p95 per hour in numpy).

* **Exactly once.** A batch is stored in one transaction together with its id
  (``telemetry_batches``, primary key tenant + batch id). A retried batch finds its id and stores
  nothing; an acknowledgement is sent only after the commit, so a ``kill -9`` loses no
  acknowledged batch (DuckDB replays its write-ahead log on the next open).
* **Retention.** Raw events are kept ``raw_days``; :meth:`TelemetryStore.compact` first rolls the
  hours it is about to delete into hourly log-bucket histograms (``telemetry_rollups``, every
  dimension kept; a percentile from them is within 1 % of the raw one), kept ``rollup_days``.
* **Migrations.** ``telemetry_schema`` holds the applied version; :meth:`TelemetryStore.migrate`
  applies the missing steps of :data:`MIGRATIONS` in order, each in its own transaction.

Percentiles are continuous (``percentile_cont``: linear interpolation between the two nearest
ranks, as numpy's default), on the raw events; windows older than the raw retention come from the
rollups and say so (``source``).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voxperf.errors import ServiceUnavailableError, UsageError
from voxperf.extras import load
from voxperf.telemetry.histograms import HistogramPoint, histogram_quantile
from voxperf.telemetry.ingest import COLUMNS, ParsedBatch
from voxperf.telemetry.model import FILTERS, METRICS, NUMBER_COLUMNS, TEXT_COLUMNS, Metric

__all__ = ["MIGRATIONS", "Point", "Query", "Receipt", "TelemetryStore", "open_telemetry_store"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ROLLUP_BASE = 1.02  # bucket b holds values in [1.02^b, 1.02^(b+1)): a quantile within 1 %
ZERO_BUCKET = -100_000  # values of exactly 0
Dialect = Literal["duckdb", "postgres"]
_TYPES = {
    "duckdb": {"text": "VARCHAR", "number": "DOUBLE", "int": "BIGINT"},
    "postgres": {"text": "TEXT", "number": "DOUBLE PRECISION", "int": "BIGINT"},
}
_DIMENSIONS = ("name", "app_version", "processing_level", "provider", "cache", "outcome")


def _ddl(dialect: Dialect) -> list[list[str]]:
    t = _TYPES[dialect]
    event_columns = ", ".join(
        [f"tenant {t['text']} NOT NULL", f"ts_ms {t['int']} NOT NULL"]
        + [f"{c} {t['text']}" for c in COLUMNS[1:] if c not in NUMBER_COLUMNS]
        + [f"{c} {t['number']}" for c in NUMBER_COLUMNS]
    )
    dims = ", ".join(f"{c} {t['text']}" for c in _DIMENSIONS)
    return [
        [  # 1: events and batch ids
            f"CREATE TABLE telemetry_events ({event_columns})",
            f"CREATE TABLE telemetry_batches (tenant {t['text']} NOT NULL, batch_id {t['text']} NOT NULL, "
            f"received_ms {t['int']} NOT NULL, accepted {t['int']} NOT NULL, rejected {t['int']} NOT NULL, "
            "PRIMARY KEY (tenant, batch_id))",
        ],
        [  # 2: hourly rollups for retention
            f"CREATE TABLE telemetry_rollups (tenant {t['text']} NOT NULL, hour_ms {t['int']} NOT NULL, "
            f"{dims}, metric {t['text']} NOT NULL, bucket {t['int']} NOT NULL, n {t['int']} NOT NULL)",
        ]
        + (
            ["CREATE INDEX telemetry_events_time ON telemetry_events (tenant, ts_ms)"]
            if dialect == "postgres"  # DuckDB prunes by its per-block min/max instead
            else []
        ),
        [  # 3: OTLP histogram points (deltas) and the last cumulative point of each series
            f"CREATE TABLE telemetry_histograms (tenant {t['text']} NOT NULL, ts_ms {t['int']} NOT NULL, "
            f"metric {t['text']} NOT NULL, provider {t['text']}, app_version {t['text']}, "
            f"bounds {t['text']} NOT NULL, counts {t['text']} NOT NULL, total {t['number']}, n {t['int']})",
            f"CREATE TABLE telemetry_histogram_last (tenant {t['text']} NOT NULL, "
            f"series {t['text']} NOT NULL, start_ns {t['int']} NOT NULL, counts {t['text']} NOT NULL, "
            f"total {t['number']}, "
            "PRIMARY KEY (tenant, series))",
        ],
    ]


MIGRATIONS = {"duckdb": _ddl("duckdb"), "postgres": _ddl("postgres")}


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a batch did: stored now, or already stored under its id (nothing stored twice)."""

    accepted: int
    rejected: int
    duplicate: bool = False


@dataclass(frozen=True)
class Query:
    """A window of events of one tenant, cut into buckets, with dimension filters."""

    start_ms: int
    end_ms: int
    bucket_ms: int = HOUR_MS
    tenant: str = ""
    filters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise UsageError("the time window is empty", "give a start before the end")
        if self.bucket_ms <= 0:
            raise UsageError("the bucket must be longer than 0 ms", "use e.g. 60000 or 3600000")
        if (self.end_ms - self.start_ms) // self.bucket_ms > 10_000:
            raise UsageError("more than 10,000 buckets in the window", "use a longer bucket")
        unknown = set(self.filters) - set(FILTERS)
        if unknown:
            raise UsageError(
                f"unknown filter {sorted(unknown)[0]!r}", f"filter by one of: {', '.join(FILTERS)}"
            )


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of a series: its start, how many events, and the statistics asked for."""

    t_ms: int
    count: int
    values: dict[str, float | None]
    source: Literal["raw", "rollup", "histogram"] = "raw"


_PERCENTILE = re.compile(r"p([1-9][0-9]?)", re.ASCII)


def _quantile_label(stat: str) -> float:
    match = _PERCENTILE.fullmatch(stat)
    if match is None:
        raise UsageError(f"unknown statistic {stat!r}", "use p50, p95, p99 ... or mean")
    return int(match.group(1)) / 100


def metric(name: str) -> Metric:
    """The metric called ``name``; a usage error naming the known ones otherwise."""
    found = METRICS.get(name)
    if found is None:
        raise UsageError(f"unknown metric {name!r}", f"use one of: {', '.join(METRICS)}")
    return found


class TelemetryStore:
    """Telemetry events in DuckDB (a local file, or ``:memory:``) or PostgreSQL (a URL)."""

    def __init__(
        self,
        target: str | Path,
        *,
        raw_days: float = 30,
        rollup_days: float = 400,
        threads: int | None = None,
        checkpoint_mb: int = 64,
        clock: Callable[[], float] = time.time,
        migrate_to: int | None = None,
        read_only: bool = False,
    ) -> None:
        """Open (and create or migrate: to the latest schema, or ``migrate_to``) the store; with
        ``read_only`` an existing store at the current schema is only read (nothing created)."""
        self.target = str(target)
        self.raw_days = raw_days
        self.rollup_days = rollup_days
        self.clock = clock
        self._lock = threading.Lock()  # one writer at a time (DuckDB: one connection, cursors per call)
        self.dialect: Dialect = (
            "postgres" if self.target.startswith(("postgres://", "postgresql://")) else "duckdb"
        )
        if self.dialect == "postgres":
            self._psycopg = load("psycopg", "scale", "a PostgreSQL telemetry store")
            self._conn: Any = self._pg_connect()
        else:
            duckdb = load("duckdb", "telemetry", "the embedded telemetry store")
            path = self.target.removeprefix("duckdb://")
            if path != ":memory:" and not read_only:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # DuckDB checkpoints its write-ahead log into the file at this size: bigger means fewer,
            # cheaper-per-event checkpoints while ingesting, and a longer log to replay after a crash
            config: dict[str, Any] = {"checkpoint_threshold": f"{checkpoint_mb}MB"}
            # DuckDB sizes its pool by the machine's cores; a process pinned to fewer (taskset, a
            # container's cpuset) would run more threads than it has cores, so use the ones it has
            config["threads"] = threads or _usable_cpus()
            if read_only and path != ":memory:" and not Path(path).is_file():
                raise UsageError(
                    f"there is no telemetry store at {path}",
                    "give the --store path of voxperf telemetry serve, or the server's URL",
                )
            try:
                if read_only:
                    self._conn = duckdb.connect(path, read_only=True, config={"threads": config["threads"]})
                else:
                    self._conn = duckdb.connect(path, config=config)
            except duckdb.Error as exc:
                raise ServiceUnavailableError(
                    f"cannot open the telemetry store {path}: {exc}",
                    "check the path is writable and no other process holds it open (or use the server's URL)",
                ) from None
        if read_only:
            self._check_schema()
        else:
            self.migrate(migrate_to)

    def _check_schema(self) -> None:
        try:
            row = self._read("SELECT max(version) FROM telemetry_schema")
        except (ServiceUnavailableError, UsageError):
            raise
        except Exception:
            raise UsageError(
                f"{self.target} is not a voxperf telemetry store", "check the path or URL"
            ) from None
        version, known = int(row[0][0] or 0), len(MIGRATIONS[self.dialect])
        if version != known:
            raise UsageError(
                f"the telemetry store has schema version {version}; this voxperf reads {known}",
                "open it once with this voxperf's `voxperf telemetry serve` (it migrates), or upgrade",
            )

    def _pg_connect(self) -> Any:
        try:
            return self._psycopg.connect(self.target, connect_timeout=5)
        except self._psycopg.Error as exc:
            raise ServiceUnavailableError(
                f"cannot connect to the telemetry database: {str(exc).strip().splitlines()[0]}",
                "check the PostgreSQL URL and that the server is running",
            ) from None

    @contextmanager
    def _pg(self) -> Iterator[Any]:
        """The PostgreSQL connection, reopened when the last one was lost (a database restart, a
        terminated backend); a connection lost during the statement is a 503-type error."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._pg_connect()
        try:
            yield self._conn
        except self._psycopg.OperationalError as exc:
            raise ServiceUnavailableError(
                f"the telemetry database failed: {str(exc).strip().splitlines()[0]}",
                "retry; check the PostgreSQL server",
            ) from None

    # -- schema -------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            if self.dialect == "postgres":
                with self._pg() as conn, conn.transaction(), conn.cursor() as cur:
                    yield cur
                return
            cur = self._conn.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self.dialect == "postgres" else sql

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.dialect == "postgres":
            with self._lock, self._pg() as conn, conn.cursor() as cur:
                try:
                    cur.execute(self._sql(sql), list(params))
                    rows = cur.fetchall()
                finally:  # a failed statement must not leave the connection in an aborted transaction
                    if not conn.broken:
                        conn.rollback()
                return list(rows)
        cur = self._conn.cursor()  # a DuckDB cursor per reader: reads do not wait for the writer
        try:
            return list(cur.execute(sql, list(params)).fetchall())
        finally:
            cur.close()

    def schema_version(self) -> int:
        with self._transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS telemetry_schema (version BIGINT NOT NULL)")
            cur.execute("SELECT max(version) FROM telemetry_schema")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def migrate(self, to: int | None = None) -> int:
        """Apply the missing migrations (up to ``to``); the schema version afterwards."""
        steps = MIGRATIONS[self.dialect]
        target = len(steps) if to is None else to
        version = self.schema_version()
        if version > len(steps):
            raise UsageError(
                f"the telemetry store has schema version {version}, newer than this voxperf knows "
                f"({len(steps)})",
                "upgrade voxperf",
            )
        for number in range(version + 1, target + 1):
            with self._transaction() as cur:
                for statement in steps[number - 1]:
                    cur.execute(statement)
                cur.execute(self._sql("INSERT INTO telemetry_schema VALUES (?)"), [number])
        return max(version, target)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- writing ------------------------------------------------------------------------------

    def ingest(self, batch: ParsedBatch, *, batch_id: str, tenant: str = "") -> Receipt:
        """Store a validated batch once: a batch id already stored stores nothing again."""
        return self.ingest_many([(batch, batch_id, tenant)])[0]

    def ingest_many(self, items: Sequence[tuple[ParsedBatch, str, str]]) -> list[Receipt]:
        """Store several (batch, batch id, tenant) in one transaction (one commit, one bulk insert:
        a server groups the batches that arrive together), each exactly once; receipts in order.
        An id seen before, or twice in ``items``, stores nothing again."""
        now_ms = int(self.clock() * 1000)
        receipts: list[Receipt | None] = [None] * len(items)
        with self._transaction() as cur:
            known: dict[tuple[str, str], Receipt] = {}
            for tenant in {t for _, _, t in items}:
                ids = [b for _, b, t in items if t == tenant]
                marks = ", ".join("?" * len(ids))
                cur.execute(
                    self._sql(
                        "SELECT batch_id, accepted, rejected FROM telemetry_batches "
                        f"WHERE tenant = ? AND batch_id IN ({marks})"
                    ),
                    [tenant, *ids],
                )
                for batch_id, accepted, rejected in cur.fetchall():
                    known[(tenant, batch_id)] = Receipt(int(accepted), int(rejected), duplicate=True)
            fresh: list[tuple[ParsedBatch, str, str]] = []
            for k, (batch, batch_id, tenant) in enumerate(items):
                seen = known.get((tenant, batch_id))
                if seen is not None:
                    receipts[k] = seen
                    continue
                receipts[k] = Receipt(batch.rows, len(batch.errors))
                known[(tenant, batch_id)] = Receipt(batch.rows, len(batch.errors), duplicate=True)
                fresh.append((batch, batch_id, tenant))
            if fresh:
                marks = ", ".join(["(?, ?, ?, ?, ?)"] * len(fresh))
                cur.execute(
                    self._sql(f"INSERT INTO telemetry_batches VALUES {marks}"),
                    [v for b, i, t in fresh for v in (t, i, now_ms, b.rows, len(b.errors))],
                )
                stored = [(b, t) for b, _, t in fresh if b.rows]
                if stored:
                    self._insert(cur, stored)
        return [r for r in receipts if r is not None]

    def _insert(self, cur: Any, batches: Sequence[tuple[ParsedBatch, str]]) -> None:
        """One bulk insert per tenant of the events of every (batch, tenant)."""
        for tenant in dict.fromkeys(t for _, t in batches):
            parts = [b.columns for b, t in batches if t == tenant]
            columns = (
                parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            )
            names = ", ".join(columns)
            if self.dialect == "duckdb":
                cur.register("incoming", columns)  # NaN in a float column arrives as NULL
                try:  # the tenant is a parameter, not a column of n equal strings to convert
                    cur.execute(
                        f"INSERT INTO telemetry_events (tenant, {names}) SELECT ?, {names} FROM incoming",
                        [tenant],
                    )
                finally:
                    cur.unregister("incoming")
                continue
            arrays = [
                [None if v != v else float(v) for v in values] if k in NUMBER_COLUMNS else values.tolist()
                for k, values in columns.items()
            ]
            with cur.copy(f"COPY telemetry_events (tenant, {names}) FROM STDIN") as copy:
                for row in zip(*arrays, strict=True):
                    copy.write_row((tenant, *row))

    def ingest_histograms(
        self, points: Sequence[HistogramPoint], *, batch_id: str, tenant: str = "", rejected: int = 0
    ) -> Receipt:
        """Store OTLP histogram points once per batch id; cumulative points become deltas."""
        now_ms = int(self.clock() * 1000)
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT accepted, rejected FROM telemetry_batches WHERE tenant = ? AND batch_id = ?"
                ),
                [tenant, batch_id],
            )
            seen = cur.fetchone()
            if seen is not None:
                return Receipt(int(seen[0]), int(seen[1]), duplicate=True)
            cur.execute(
                self._sql("INSERT INTO telemetry_batches VALUES (?, ?, ?, ?, ?)"),
                [tenant, batch_id, now_ms, len(points), rejected],
            )
            for p in sorted(points, key=lambda x: x.ts_ms):
                counts, total = list(p.counts), p.total_ms
                if p.cumulative:
                    cur.execute(
                        self._sql(
                            "SELECT start_ns, counts, total FROM telemetry_histogram_last "
                            "WHERE tenant = ? AND series = ?"
                        ),
                        [tenant, p.series],
                    )
                    last = cur.fetchone()
                    stale = False
                    if last is not None and int(last[0]) == p.start_ns:
                        saved = json.loads(last[1])
                        if not isinstance(saved, dict) or saved.get("bounds") != list(p.bounds):
                            stale = True  # new bucket bounds mid-run: this point is the new baseline
                        elif any(a < b for a, b in zip(counts, saved["counts"], strict=True)):
                            continue  # an older point arriving late: its counts are in the later one
                        else:
                            counts = [a - b for a, b in zip(counts, saved["counts"], strict=True)]
                            total -= float(last[2] or 0.0)
                    # (no previous point, or a new start time: a restarted process, counted whole)
                    cur.execute(
                        self._sql("DELETE FROM telemetry_histogram_last WHERE tenant = ? AND series = ?"),
                        [tenant, p.series],
                    )
                    cur.execute(
                        self._sql("INSERT INTO telemetry_histogram_last VALUES (?, ?, ?, ?, ?)"),
                        [
                            tenant, p.series, p.start_ns,
                            json.dumps({"bounds": list(p.bounds), "counts": list(p.counts)}), p.total_ms,
                        ],
                    )  # fmt: skip
                    if stale:
                        continue
                if not any(counts):
                    continue
                cur.execute(
                    self._sql("INSERT INTO telemetry_histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    [
                        tenant, p.ts_ms, p.metric, p.provider, p.app_version,
                        json.dumps(list(p.bounds)), json.dumps(counts), total, sum(counts),
                    ],
                )  # fmt: skip
        return Receipt(len(points), rejected)

    def _histogram_series(self, m: Metric, q: Query, stats: Sequence[str]) -> list[Point]:
        clauses, params = ["tenant = ?", "ts_ms >= ?", "ts_ms < ?", "metric = ?"], [
            q.tenant, q.start_ms, q.end_ms, m.name,
        ]  # fmt: skip
        for key in ("provider", "app_version"):
            if key in q.filters:
                clauses.append(f"{key} = ?")
                params.append(q.filters[key])
        if set(q.filters) - {"provider", "app_version"}:
            return []  # histograms carry no other dimension
        offset = q.start_ms % q.bucket_ms
        rows = self._read(
            f"SELECT (ts_ms - {offset}) - (ts_ms - {offset}) % {q.bucket_ms} + {offset} AS t, "
            f"bounds, counts, total FROM telemetry_histograms WHERE {' AND '.join(clauses)} ORDER BY t",
            params,
        )
        merged: dict[int, dict[str, list[float]]] = {}
        for t, bounds, counts, total in rows:
            by_bounds = merged.setdefault(int(t), {})
            acc = by_bounds.setdefault(bounds, [0.0] * (len(json.loads(counts)) + 1))
            for i, c in enumerate(json.loads(counts)):
                acc[i] += c
            acc[-1] += float(total or 0.0)
        points = []
        for t, by_bounds in sorted(merged.items()):
            # percentiles from the layout holding most observations (layouts do not merge); the
            # count and the mean are over all of them
            bounds_text, acc = max(by_bounds.items(), key=lambda kv: sum(kv[1][:-1]))
            counts = [int(c) for c in acc[:-1]]
            bounds = json.loads(bounds_text)
            n = sum(int(sum(a[:-1])) for a in by_bounds.values())
            total_ms = sum(a[-1] for a in by_bounds.values())
            values: dict[str, float | None] = {}
            for stat in stats:
                values[stat] = (
                    total_ms / n
                    if stat == "mean"
                    else histogram_quantile(_quantile_label(stat), bounds, counts)
                )
            points.append(Point(t, n, values, "histogram"))
        return points

    def compact(self, now_ms: int | None = None) -> dict[str, int]:
        """Roll whole hours older than ``raw_days`` into histograms, delete those raw events, and
        drop rollups older than ``rollup_days``: how many rows each step touched."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        raw_cut = now_ms - int(self.raw_days * DAY_MS)
        raw_cut -= raw_cut % HOUR_MS
        rollup_cut = now_ms - int(self.rollup_days * DAY_MS)
        dims = ", ".join(_DIMENSIONS)
        bucket = _log_bucket("v")
        values = " UNION ALL ".join(
            f"SELECT tenant, ts_ms, {dims}, '{c}' AS metric, {c} AS v FROM telemetry_events "
            f"WHERE ts_ms < ? AND {c} IS NOT NULL"
            for c in (*NUMBER_COLUMNS,)
        )
        counted = (
            f"SELECT tenant, ts_ms, {dims}, 'events' AS metric, 0 AS v FROM telemetry_events WHERE ts_ms < ?"
        )
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO telemetry_rollups (tenant, hour_ms, {dims}, metric, bucket, n) "
                    f"SELECT tenant, ts_ms - ts_ms % {HOUR_MS}, {dims}, metric, "
                    f"CASE WHEN metric = 'events' THEN 0 ELSE {bucket} END, count(*) "
                    f"FROM ({values} UNION ALL {counted}) AS x "
                    f"GROUP BY tenant, ts_ms - ts_ms % {HOUR_MS}, {dims}, metric, "
                    f"CASE WHEN metric = 'events' THEN 0 ELSE {bucket} END"
                ),
                [raw_cut] * (len(NUMBER_COLUMNS) + 1),
            )
            rolled = cur.rowcount if self.dialect == "postgres" else int(cur.fetchone()[0])
            cur.execute(self._sql("DELETE FROM telemetry_events WHERE ts_ms < ?"), [raw_cut])
            deleted = cur.rowcount if self.dialect == "postgres" else int(cur.fetchone()[0])
            cur.execute(self._sql("DELETE FROM telemetry_rollups WHERE hour_ms < ?"), [rollup_cut])
            expired = cur.rowcount if self.dialect == "postgres" else int(cur.fetchone()[0])
            cur.execute(self._sql("DELETE FROM telemetry_batches WHERE received_ms < ?"), [raw_cut])
        return {"rolled_up": rolled, "deleted": deleted, "expired_rollups": expired}

    def rolled_through_ms(self) -> int:
        """Events before this time exist only as rollups (0: nothing was rolled up yet)."""
        row = self._read("SELECT max(hour_ms) FROM telemetry_rollups")
        return 0 if not row or row[0][0] is None else int(row[0][0]) + HOUR_MS

    # -- reading ------------------------------------------------------------------------------

    def _where(self, q: Query, m: Metric | None, start_ms: int, end_ms: int) -> tuple[str, list[Any]]:
        clauses, params = ["tenant = ?", "ts_ms >= ?", "ts_ms < ?"], [q.tenant, start_ms, end_ms]
        if m is not None and m.event != "*":
            clauses.append("name = ?")
            params.append(m.event)
        for key, value in sorted(q.filters.items()):
            clauses.append(f"{key} = ?")
            params.append(value)
        return " AND ".join(clauses), params

    def count(self, q: Query) -> int:
        where, params = self._where(q, None, q.start_ms, q.end_ms)
        return int(self._read(f"SELECT count(*) FROM telemetry_events WHERE {where}", params)[0][0])

    def series(self, name: str, q: Query, stats: Sequence[str] = ("p50", "p95")) -> list[Point]:
        """One point per non-empty bucket of the window: percentiles (or the mean) of a timing,
        or a rate (cache hit rate, error rate, events per second)."""
        m = metric(name)
        if m.histogram:
            return self._histogram_series(m, q, stats)
        if not m.rate and not stats:
            raise UsageError("no statistic asked for", "ask for p50, p95, p99 or mean")
        cut = self.rolled_through_ms()
        if cut == 0 or q.start_ms >= cut:  # nothing rolled up yet, or the window is all raw
            return self._raw_series(m, q, stats, q.start_ms, q.end_ms)
        if q.end_ms <= cut:
            return self._rollup_series(m, q, stats, q.start_ms, q.end_ms)
        # the bucket holding the cut is one point: its raw events join the rollups' histograms
        offset = q.start_ms % q.bucket_ms
        into = (cut - offset) % q.bucket_ms
        boundary = min(q.end_ms, cut if into == 0 else cut + q.bucket_ms - into)
        points = self._rollup_series(m, q, stats, q.start_ms, cut, raw_until=boundary)
        if boundary < q.end_ms:
            points += self._raw_series(m, q, stats, boundary, q.end_ms)
        return points

    def _aggregates(self, m: Metric, stats: Sequence[str]) -> tuple[str, str, list[str]]:
        """(count expression, aggregate expressions, their names) for a metric."""
        if m.name == "cache_hit_rate":
            return (
                "count(cache)",
                "avg(CASE WHEN cache = 'hit' THEN 1.0 WHEN cache = 'miss' THEN 0.0 END)",
                ["value"],
            )
        if m.name == "error_rate":
            return (
                "count(outcome)",
                "avg(CASE WHEN outcome = 'error' THEN 1.0 WHEN outcome IS NOT NULL THEN 0.0 END)",
                ["value"],
            )
        if m.name == "throughput":
            return "count(*)", "count(*)", ["value"]
        exprs = []
        for stat in stats:
            if stat == "mean":
                exprs.append(f"avg({m.column})")
            else:
                exprs.append(f"percentile_cont({_quantile_label(stat)}) WITHIN GROUP (ORDER BY {m.column})")
        return f"count({m.column})", ", ".join(exprs), list(stats)

    def _raw_series(
        self, m: Metric, q: Query, stats: Sequence[str], start_ms: int, end_ms: int
    ) -> list[Point]:
        where, params = self._where(q, m, start_ms, end_ms)
        counted, aggregates, labels = self._aggregates(m, stats)
        if m.column is not None:
            where += f" AND {m.column} IS NOT NULL"
        offset = q.start_ms % q.bucket_ms  # buckets start at the window's start
        rows = self._read(
            f"SELECT (ts_ms - {offset}) - (ts_ms - {offset}) % {q.bucket_ms} + {offset} AS t, "
            f"{counted}, {aggregates} FROM telemetry_events WHERE {where} GROUP BY t ORDER BY t",
            params,
        )
        scale = 1000 / q.bucket_ms if m.name == "throughput" else 1.0
        points = []
        for row in rows:
            values = {
                k: (None if v is None else float(v) * scale) for k, v in zip(labels, row[2:], strict=True)
            }
            points.append(Point(int(row[0]), int(row[1]), values))
        return [p for p in points if p.count]

    def _rollup_series(
        self, m: Metric, q: Query, stats: Sequence[str], start_ms: int, end_ms: int, raw_until: int = 0
    ) -> list[Point]:
        """Points from the hourly rollups of [start, end) (hour-granular: an hour is counted where
        it starts), plus raw events of [start, raw_until) folded into the same histograms."""
        where, params = self._where(q, m, start_ms, end_ms)
        where = where.replace("ts_ms", "hour_ms")
        # raw events join the histograms: those of [end, raw_until) (the bucket holding the cut) and
        # any in [start, end) that arrived late, after their hour was rolled up (compaction deletes
        # what it rolls up in the same transaction, so nothing is counted twice)
        raw_where, raw_params = self._where(q, m, start_ms, max(end_ms, raw_until))
        offset = q.start_ms % q.bucket_ms
        bucket_expr = f"(hour_ms - {offset}) - (hour_ms - {offset}) % {q.bucket_ms} + {offset}"
        raw_bucket = bucket_expr.replace("hour_ms", "ts_ms")
        if m.column is not None:
            rows = self._read(
                f"SELECT t, bucket, sum(n) FROM ("
                f"SELECT {bucket_expr} AS t, bucket, n FROM telemetry_rollups WHERE {where} AND metric = ? "
                f"UNION ALL SELECT {raw_bucket} AS t, {_log_bucket(m.column)} AS bucket, 1 AS n "
                f"FROM telemetry_events WHERE {raw_where} AND {m.column} IS NOT NULL"
                f") AS x GROUP BY t, bucket ORDER BY t, bucket",
                [*params, m.column, *raw_params],
            )
            by_t: dict[int, list[tuple[int, int]]] = {}
            for t, b, n in rows:
                by_t.setdefault(int(t), []).append((int(b), int(n)))
            out = []
            for t, hist in sorted(by_t.items()):
                values = {s: histogram_stat(hist, s) for s in stats}
                out.append(Point(t, sum(n for _, n in hist), values, "rollup"))
            return out
        dim = {"cache_hit_rate": "cache", "error_rate": "outcome", "throughput": None}[m.name]
        group = f", {dim}" if dim else ""
        rows = self._read(
            f"SELECT t{group}, sum(n) FROM ("
            f"SELECT {bucket_expr} AS t{group}, n FROM telemetry_rollups WHERE {where} AND metric = 'events' "
            f"UNION ALL SELECT {raw_bucket} AS t{group}, 1 AS n FROM telemetry_events WHERE {raw_where}"
            f") AS x GROUP BY t{group} ORDER BY t",
            [*params, *raw_params],
        )
        counts: dict[int, dict[Any, int]] = {}
        for row in rows:
            counts.setdefault(int(row[0]), {})[row[1] if dim else None] = int(row[-1])
        out = []
        for t, by in sorted(counts.items()):
            if m.name == "throughput":
                n = by[None]
                out.append(Point(t, n, {"value": n * 1000 / q.bucket_ms}, "rollup"))
                continue
            known = {k: v for k, v in by.items() if k is not None}
            n = sum(known.values())
            if not n:
                continue
            bad = known.get("hit" if dim == "cache" else "error", 0)
            out.append(Point(t, n, {"value": bad / n}, "rollup"))
        return out

    def summary(self, q: Query) -> dict[str, dict[str, Any]]:
        """Every metric over the whole window: count and p50/p95 (timings) or the value (rates)."""
        whole = Query(q.start_ms, q.end_ms, q.end_ms - q.start_ms, q.tenant, q.filters)
        out: dict[str, dict[str, Any]] = {}
        for name, m in METRICS.items():
            stats: tuple[str, ...] = ("value",) if m.rate else ("p50", "p95")
            points = self.series(name, whole, () if m.rate else stats)
            if not points:
                out[name] = {"count": 0, **dict.fromkeys(stats), "source": None}
                continue
            (p,) = points  # one bucket: the whole window (across the rollup cut, one merged point)
            out[name] = {"count": p.count, **{s: p.values.get(s) for s in stats}, "source": p.source}
        return out

    def slowest(self, name: str, q: Query, limit: int = 20) -> list[dict[str, Any]]:
        """The slowest events of a window for a timing metric: the drill-down from a spike."""
        m = metric(name)
        if m.column is None:
            what = "an OTLP histogram (no single events)" if m.histogram else "a rate, not a timing"
            raise UsageError(f"{name} is {what}", "drill down on an event timing such as ttfa_ms")
        where, params = self._where(q, m, q.start_ms, q.end_ms)
        keep = ("ts_ms", "session_id", "app_version", "app_build", "os_version", *TEXT_COLUMNS, m.column)
        order = "ASC" if m.name == "streaming_efficiency" else "DESC"  # the worst first
        rows = self._read(
            f"SELECT {', '.join(dict.fromkeys(keep))} FROM telemetry_events WHERE {where} "
            f"AND {m.column} IS NOT NULL ORDER BY {m.column} {order}, ts_ms LIMIT {int(limit)}",
            params,
        )
        return [dict(zip(dict.fromkeys(keep), row, strict=True)) for row in rows]

    def breakdown(
        self, name: str, by: str, q: Query, stats: Sequence[str] = ("p50", "p95")
    ) -> list[dict[str, Any]]:
        """A metric per value of a dimension over the window (provider comparison, versions ...)."""
        m = metric(name)
        if m.histogram:
            raise UsageError(f"{name} is an OTLP histogram", "break down an event metric such as ttfa_ms")
        if by not in FILTERS:
            raise UsageError(f"cannot break down by {by!r}", f"use one of: {', '.join(FILTERS)}")
        if not m.rate and not stats:
            raise UsageError("no statistic asked for", "ask for p50, p95, p99 or mean")
        where, params = self._where(q, m, q.start_ms, q.end_ms)
        counted, aggregates, labels = self._aggregates(m, stats)
        if m.column is not None:
            where += f" AND {m.column} IS NOT NULL"
        rows = self._read(
            f"SELECT {by}, {counted}, {aggregates} FROM telemetry_events WHERE {where} "
            f"GROUP BY {by} ORDER BY {by}",
            params,
        )
        scale = 1000 / (q.end_ms - q.start_ms) if m.name == "throughput" else 1.0
        return [
            {by: row[0], "count": int(row[1])}
            | {k: (None if v is None else float(v) * scale) for k, v in zip(labels, row[2:], strict=True)}
            for row in rows
            if row[1]
        ]

    def options(self, q: Query) -> dict[str, list[str]]:
        """The values each filter takes in the window (for the dashboard's selectors)."""
        where, params = self._where(q, None, q.start_ms, q.end_ms)
        out = {}
        for key in FILTERS:
            # OTLP histograms carry a version and a provider too: their values are choices as well
            histograms = (
                f" UNION SELECT DISTINCT {key} FROM telemetry_histograms WHERE {where} AND {key} IS NOT NULL"
                if key in ("app_version", "provider") and not q.filters
                else ""
            )
            rows = self._read(
                f"SELECT {key} FROM (SELECT DISTINCT {key} FROM telemetry_events WHERE {where} "
                f"AND {key} IS NOT NULL{histograms}) AS x ORDER BY {key} LIMIT 200",
                [*params, *(params if histograms else [])],
            )
            out[key] = [str(r[0]) for r in rows]
        return out


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _log_bucket(expr: str) -> str:
    """SQL: the rollup bucket of a value (the same on DuckDB and PostgreSQL)."""
    log = f"CAST(floor(ln({expr}) / ln({ROLLUP_BASE})) AS BIGINT)"
    return f"CASE WHEN {expr} = 0 THEN {ZERO_BUCKET} ELSE {log} END"


def histogram_stat(hist: Sequence[tuple[int, int]], stat: str) -> float | None:
    """A percentile (or the mean) of a log-bucket histogram, each bucket at its geometric centre."""
    if not hist:
        return None
    buckets = np.array([b for b, _ in hist], dtype=np.float64)
    counts = np.array([n for _, n in hist], dtype=np.float64)
    centre = np.where(buckets == ZERO_BUCKET, 0.0, ROLLUP_BASE ** (buckets + 0.5))
    order = np.argsort(centre)
    centre, counts = centre[order], counts[order]
    if stat == "mean":
        return float((centre * counts).sum() / counts.sum())
    rank = _quantile_label(stat) * (counts.sum() - 1)  # percentile_cont's rank, on bucket centres
    cumulative = np.cumsum(counts)
    below = int(np.searchsorted(cumulative, math.floor(rank) + 1))
    above = int(np.searchsorted(cumulative, math.floor(rank) + 2))
    low, high = centre[min(below, len(centre) - 1)], centre[min(above, len(centre) - 1)]
    return float(low + (rank - math.floor(rank)) * (high - low))


def open_telemetry_store(target: str | Path, **options: Any) -> TelemetryStore:
    """A :class:`TelemetryStore` for a DuckDB path or a PostgreSQL URL."""
    return TelemetryStore(target, **options)
