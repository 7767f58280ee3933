"""Embedded telemetry store: DuckDB or SQLite? Measured side by side on the same data.

Both get the same 1,000,000 speech events (27 columns as in the telemetry events table: 10 text,
17 numbers, most NULL), 1,000 events per transaction, into a fresh file:

* **SQLite** (WAL, ``synchronous=NORMAL``, an index on time): ``executemany`` of row tuples;
* **DuckDB**: the store's own path, column arrays registered and inserted in one statement.

Then the dashboard query "TTFA p95 per hour over 7 days", 20 times each: DuckDB's
``percentile_cont``; SQLite has no percentile function, so it sorts per hour in SQL and numpy
takes the p95 of each hour (what an app would do), checked equal to DuckDB's answer.

Writes ``benchmarks/results/telemetry-store-choice.json``.
Run: ``.venv/bin/python benchmarks/telemetry_store_choice.py [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from voxperf.telemetry.ingest import COLUMNS
from voxperf.telemetry.model import NUMBER_COLUMNS

HOUR_MS = 3_600_000
SPAN_MS = 7 * 24 * HOUR_MS
BATCH = 1000


def columns(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {"tenant": np.full(n, "", dtype=object)}
    for name in COLUMNS:
        if name == "ts_ms":
            out[name] = np.sort(1_796_083_200_000 + rng.integers(0, SPAN_MS, n))
        elif name in NUMBER_COLUMNS:
            values = np.round(rng.lognormal(6.3, 0.5, n), 3) if name in ("ttfa_ms", "server_ms") else np.nan
            out[name] = np.full(n, np.nan) if np.isscalar(values) else values
        elif name == "name":
            out[name] = np.full(n, "speech_timing", dtype=object)
        elif name == "session_id":
            out[name] = np.array([f"s-{i:09d}" for i in range(n)], dtype=object)
        elif name in ("provider", "cache", "outcome", "app_version"):
            choices = {"provider": ["piper", "espeak-ng"], "cache": ["hit", "miss"], "outcome": ["ok"]}
            out[name] = rng.choice(choices.get(name, ["1.0.0", "1.1.0"]), n).astype(object)
        else:
            out[name] = np.full(n, None, dtype=object)
    return out


def ddl(text: str, number: str) -> str:
    parts = ["tenant " + text, "ts_ms BIGINT"] + [
        f"{c} {number if c in NUMBER_COLUMNS else text}" for c in COLUMNS if c != "ts_ms"
    ]
    return f"CREATE TABLE telemetry_events ({', '.join(parts)})"


def query_window(cols: dict[str, np.ndarray]) -> tuple[int, int]:
    return int(cols["ts_ms"][0]) - int(cols["ts_ms"][0]) % HOUR_MS, int(cols["ts_ms"][-1]) + 1


def sqlite_run(path: Path, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(ddl("TEXT", "REAL"))
    db.execute("CREATE INDEX telemetry_events_time ON telemetry_events (tenant, ts_ms)")
    names = list(cols)
    rows = list(
        zip(
            *[[None if isinstance(v, float) and v != v else v for v in cols[k].tolist()] for k in names],
            strict=True,
        )
    )
    marks = ", ".join("?" * len(names))
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        with db:
            db.executemany(
                f"INSERT INTO telemetry_events ({', '.join(names)}) VALUES ({marks})", rows[i : i + BATCH]
            )
    insert_s = time.perf_counter() - started
    start, end = query_window(cols)
    times, answer = [], {}
    for _ in range(20):
        t = time.perf_counter()
        hours = db.execute(
            "SELECT ts_ms - ts_ms % ? AS h, ttfa_ms FROM telemetry_events WHERE tenant = '' AND ts_ms >= ? "
            "AND ts_ms < ? AND ttfa_ms IS NOT NULL ORDER BY h, ttfa_ms",
            (HOUR_MS, start, end),
        ).fetchall()
        data = np.array(hours, dtype=np.float64)
        cut = np.flatnonzero(np.diff(data[:, 0])) + 1
        answer = {
            int(part[0, 0]): float(np.percentile(part[:, 1], 95)) for part in np.split(data, cut) if len(part)
        }
        times.append(time.perf_counter() - t)
    db.close()
    return {"insertEventsPerS": round(len(rows) / insert_s), "query": _ms(times), "answer": answer}


def duckdb_run(path: Path, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    db = duckdb.connect(str(path))
    db.execute(ddl("VARCHAR", "DOUBLE"))
    names = ", ".join(cols)
    n = len(cols["ts_ms"])
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        part = {k: v[i : i + BATCH] for k, v in cols.items()}
        db.execute("BEGIN TRANSACTION")
        db.register("incoming", part)
        db.execute(f"INSERT INTO telemetry_events ({names}) SELECT {names} FROM incoming")
        db.unregister("incoming")
        db.execute("COMMIT")
    insert_s = time.perf_counter() - started
    start, end = query_window(cols)
    times, answer = [], {}
    for _ in range(20):
        t = time.perf_counter()
        rows = db.execute(
            "SELECT ts_ms - ts_ms % ? AS h, percentile_cont(0.95) WITHIN GROUP (ORDER BY ttfa_ms) "
            "FROM telemetry_events WHERE tenant = '' AND ts_ms >= ? AND ts_ms < ? AND ttfa_ms IS NOT NULL "
            "GROUP BY h ORDER BY h",
            [HOUR_MS, start, end],
        ).fetchall()
        answer = {int(h): float(p) for h, p in rows}
        times.append(time.perf_counter() - t)
    db.close()
    return {"insertEventsPerS": round(n / insert_s), "query": _ms(times), "answer": answer}


def _ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50Ms": round(statistics.median(ordered) * 1000, 2),
        "p95Ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        "maxMs": round(ordered[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    cols = columns(args.events)
    with tempfile.TemporaryDirectory() as work:
        lite = sqlite_run(Path(work) / "t.sqlite", cols)
        duck = duckdb_run(Path(work) / "t.duckdb", cols)
    same = lite["answer"].keys() == duck["answer"].keys() and all(
        abs(lite["answer"][h] - duck["answer"][h]) <= 1e-9 * abs(duck["answer"][h]) for h in duck["answer"]
    )
    result = {
        "events": args.events,
        "eventsPerTransaction": BATCH,
        "sqlite": {k: v for k, v in lite.items() if k != "answer"},
        "duckdb": {k: v for k, v in duck.items() if k != "answer"},
        "sameAnswer": same,
        "hours": len(duck["answer"]),
        "machine": {
            "nproc": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "sqlite": sqlite3.sqlite_version,
        },
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "telemetry-store-choice.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
