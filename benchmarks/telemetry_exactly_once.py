"""Exactly-once ingest through retries, resends and ``kill -9`` of the telemetry server.

    .venv/bin/python benchmarks/telemetry_exactly_once.py [--events 1000000] [--kills 3]

What is checked, end to end through ``voxperf telemetry serve`` on a DuckDB file in a temp dir:

* The generator (``benchmarks/telemetry_ingest.py``) makes ``--events`` lines in batches of 1,000,
  each batch with a unique ``X-Voxperf-Batch-Id``; 1 % of the lines are malformed, the five kinds
  in turn at random lines (bad JSON: truncated, trailing comma, single quotes; a negative number;
  an unknown event name; a bad timestamp: no zone, 30 February, a word, epoch digits; a wrong
  ``schemaVersion``: 2, 0, "1"), and 2 % of the batches carry a blank line somewhere (it must still
  count in the line numbers). Each event has its own session id.
* 10 % of the batches are sent a second time with the same id (a client retry), 1 to 12 places
  later in the sending order, so some resends race their original on another connection.
* Four threads send over keep-alive connections; a batch that got no answer (connection error)
  is sent again with the same id until it gets one (429/5xx: after Retry-After).
* The server is ``kill -9``'ed ``--kills`` times, when that fraction of the sends has been
  answered, and restarted on the same file and port (the sender keeps retrying meanwhile).

At the end the server is stopped and the file opened read-only:

1. stored rows == valid lines sent; no session id stored twice (``GROUP BY session_id HAVING
   count(*) > 1`` empty); the stored session ids are exactly the valid ones (none missing, none of
   a malformed line), and each stored event's ``ts_ms`` and ``ttfa_ms`` equal the generated ones;
2. ``telemetry_batches`` holds every batch once, with its accepted/rejected counts;
3. every answer (first, resend or retry) is 200 with accepted = the batch's valid lines and
   rejected = its malformed ones, and lists exactly the malformed lines' 1-based numbers with a
   reason of the right kind;
4. no acknowledged batch was lost: per batch at most one answer says ``duplicate: false``, and none
   says so after an earlier answer (a batch acknowledged before a kill and stored again after it
   would); every batch acknowledged before a kill has all its events in the final store.

Writes benchmarks/results/telemetry-exactly-once.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from telemetry_ingest import (
    RESULTS,
    Answer,
    Batch,
    Generated,
    Server,
    free_port,
    generate,
    machine,
    send,
    window_ending_now,
    workdir,
)

REASON_PREFIX = {
    "bad_json": "not JSON",
    "unknown_event": "unknown event name",
    "bad_timestamp": "event.timestamp must be",
    "wrong_schema_version": "unsupported schemaVersion",
}


def reason_fits(kind: str, reason: str) -> bool:
    if kind == "negative_number":
        return ">= 0" in reason and (
            "$.event.fields.server_ms" in reason or "$.event.fields.stt_ms" in reason
        )
    return reason.startswith(REASON_PREFIX[kind])


def sending_order(batches: int, resend_fraction: float, rng: random.Random) -> tuple[list[int], set[int]]:
    """Every batch once, in order, and ``resend_fraction`` of them again 1-12 places later."""
    resent = set(rng.sample(range(batches), round(batches * resend_fraction)))
    keyed = [(float(i), i) for i in range(batches)]
    keyed += [(i + rng.randint(1, 12) + 0.5, i) for i in resent]
    keyed.sort()
    return [i for _, i in keyed], resent


class Killer:
    """``kill -9`` the server when given numbers of sends have been answered, then restart it."""

    def __init__(self, server: Server, at_answers: list[int], rng: random.Random) -> None:
        self.server, self.at, self.rng = server, sorted(at_answers), rng
        self.answered = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.done = threading.Event()
        self.kills: list[dict[str, Any]] = []
        self.acked: set[int] = set()  # batches with an answer so far
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.failure: BaseException | None = None

    def on_answer(self, answer: Answer) -> None:
        with self.lock:
            self.answered += 1
            self.acked.add(answer.batch)
            if self.at and self.answered >= self.at[0]:
                self.at.pop(0)
                self.wake.set()

    def _run(self) -> None:
        try:
            while not self.done.is_set():
                if not self.wake.wait(0.1):
                    continue
                self.wake.clear()
                time.sleep(self.rng.uniform(0, 0.05))  # land anywhere in a batch's handling
                with self.lock:
                    acked_before = set(self.acked)
                    answered = self.answered
                killed_at = time.monotonic()
                self.server.kill()
                wal = self.server.store.with_name(self.server.store.name + ".wal")
                wal_bytes = wal.stat().st_size if wal.exists() else 0
                restart_s = self.server.start()
                self.kills.append(
                    {
                        "afterAnswers": answered,
                        "batchesAcknowledgedBefore": len(acked_before),
                        "acknowledged": acked_before,
                        "killedAt": killed_at,
                        "walBytesAtKill": wal_bytes,
                        "restartS": round(restart_s, 2),
                    }
                )
                print(
                    f"kill -9 after {answered} answers (WAL {wal_bytes / 2**20:.1f} MiB); "
                    f"restarted in {restart_s:.2f} s",
                    flush=True,
                )
        except BaseException as exc:
            self.failure = exc

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def check_answers(data: Generated, answers: list[Answer]) -> dict[str, Any]:
    """Each answer against the generator's record; the duplicate flags over time."""
    by_batch: dict[int, list[Answer]] = defaultdict(list)
    for a in answers:
        by_batch[a.batch].append(a)
    statuses: Counter[int] = Counter(a.status for a in answers)
    wrong_counts = wrong_lines = wrong_reasons = truncated = 0
    reasons_by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    first_stores = Counter[int]()
    stored_after_ack = []
    for index, group in by_batch.items():
        batch: Batch = data.batches[index]
        expected_lines = [no for no, _ in batch.bad]
        kinds = dict(batch.bad)
        group.sort(key=lambda a: a.answered_at)
        for k, a in enumerate(group):
            body = a.body
            if body.get("accepted") != batch.valid or body.get("rejected") != len(batch.bad):
                wrong_counts += 1
            truncated += bool(body.get("errors_truncated"))
            got = [int(e["line"]) for e in body.get("errors", [])]
            if got != expected_lines:
                wrong_lines += 1
            for e in body.get("errors", []):
                kind = kinds.get(int(e["line"]))
                if kind is None or not reason_fits(kind, str(e["reason"])):
                    wrong_reasons += 1
                elif len(reasons_by_kind[kind]) < 8:
                    reasons_by_kind[kind][str(e["reason"])[:120]] += 1
            if not body.get("duplicate"):
                first_stores[index] += 1
                # stored again after an answer: this attempt was sent after another copy had been
                # answered (two copies answered from one group commit may arrive in either order)
                sent_at = a.answered_at - a.latency_s
                if any(other.answered_at < sent_at for other in group[:k]):
                    stored_after_ack.append(batch.batch_id)
    bad_lines = Counter(kind for b in data.batches for _, kind in b.bad)
    return {
        "answers": len(answers),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "batchesAnswered": len(by_batch),
        "duplicateAnswers": sum(1 for a in answers if a.body.get("duplicate")),
        "batchesWithoutAFirstStoreAnswer": sum(1 for i in by_batch if first_stores[i] == 0),
        "batchesWithTwoFirstStoreAnswers": sum(1 for n in first_stores.values() if n > 1),
        "batchesStoredAgainAfterAnAnswer": stored_after_ack[:20],
        "answersWithWrongCounts": wrong_counts,
        "answersWithWrongLineNumbers": wrong_lines,
        "errorsWithWrongReason": wrong_reasons,
        "answersTruncated": truncated,
        "malformedLinesByKind": dict(bad_lines),
        "reasonExamples": {k: list(v) for k, v in reasons_by_kind.items()},
        "answersAfterConnectionErrors": sum(1 for a in answers if a.connection_errors),
    }


def check_store(store: Path, data: Generated) -> dict[str, Any]:
    import duckdb

    with duckdb.connect(str(store), read_only=True) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry_events").fetchone()
        twice = conn.execute(
            "SELECT session_id, count(*) FROM telemetry_events GROUP BY session_id HAVING count(*) > 1"
        ).fetchall()
        stored = conn.execute("SELECT session_id, ts_ms, ttfa_ms FROM telemetry_events").fetchnumpy()
        batch_rows = conn.execute("SELECT batch_id, accepted, rejected FROM telemetry_batches").fetchall()
    assert row is not None
    rows = int(row[0])
    index = np.array([int(s.rsplit("-", 1)[1]) for s in stored["session_id"]], dtype=np.int64)
    prefix_ok = all(s.startswith(data.tag + "-") for s in stored["session_id"][:1000])
    stored_mask = np.zeros(data.events, dtype=bool)
    stored_mask[index] = True
    ts = np.asarray(stored["ts_ms"], dtype=np.int64)
    ttfa = np.ma.filled(stored["ttfa_ms"].astype(np.float64), np.nan)
    expected_ttfa = data.ttfa_ms[index]
    ttfa_equal = (ttfa == expected_ttfa) | (np.isnan(ttfa) & np.isnan(expected_ttfa))
    expected_batches = {b.batch_id: (b.valid, len(b.bad)) for b in data.batches}
    got_batches = {str(b): (int(a), int(r)) for b, a, r in batch_rows}
    return {
        "storedRows": rows,
        "validLinesSent": int(data.valid.sum()),
        "sessionIdsStoredTwice": len(twice),
        "sessionIdsStoredTwiceExamples": [list(t) for t in twice[:5]],
        "validEventsMissing": int((data.valid & ~stored_mask).sum()),
        "malformedLinesStored": int((~data.valid & stored_mask).sum()),
        "sessionIdPrefixOk": prefix_ok,
        "tsMismatches": int((ts != data.ts_ms[index]).sum()),
        "ttfaMismatches": int((~ttfa_equal).sum()),
        "batchRows": len(batch_rows),
        "batchRowsExpected": len(expected_batches),
        "batchRowsWithWrongCounts": sum(1 for k, v in got_batches.items() if expected_batches.get(k) != v),
        "batchesMissing": len(set(expected_batches) - set(got_batches)),
        "_storedMask": stored_mask,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 and restarts of the server mid-run")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--bad-fraction", type=float, default=0.01)
    parser.add_argument("--resend-fraction", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--out", type=Path, default=RESULTS / "telemetry-exactly-once.json")
    args = parser.parse_args()
    info = machine()
    rng = random.Random(args.seed)
    start_ms, end_ms = window_ending_now()
    t = time.monotonic()
    data = generate(
        args.events,
        seed=args.seed,
        start_ms=start_ms,
        span_ms=end_ms - start_ms,
        bad_fraction=args.bad_fraction,
        blank_line_batches=0.02,
        tag="x",
    )
    order, resent = sending_order(len(data.batches), args.resend_fraction, rng)
    print(
        f"built {len(data.batches)} batches ({int((~data.valid).sum()):,} malformed lines) in "
        f"{time.monotonic() - t:.1f} s; {len(order)} sends ({len(resent)} resends)",
        flush=True,
    )
    kill_at = [round(len(order) * (k + 1) / (args.kills + 1)) for k in range(args.kills)]
    with workdir("voxperf-telemetry-once-") as work:
        store = work / "telemetry.duckdb"
        server = Server(store, free_port(), None, work / "server.log")
        server.start()
        started = time.monotonic()
        with Killer(server, kill_at, rng) as killer:
            log = send(server.port, data.batches, order, threads=args.threads, on_answer=killer.on_answer)
        wall = time.monotonic() - started
        if killer.failure is not None:
            raise killer.failure
        exit_code = server.stop()
        server_log = (work / "server.log").read_text(errors="replace")
        stored = check_store(store, data)
    answers = check_answers(data, log.answers)
    stored_mask = stored.pop("_storedMask")
    kills = []
    for kill in killer.kills:
        acked: set[int] = kill.pop("acknowledged")
        lost = [
            b.batch_id
            for b in (data.batches[i] for i in sorted(acked))
            if not stored_mask[b.events][data.valid[b.events]].all()
        ]
        kill["killedAtS"] = round(kill.pop("killedAt") - started, 2)
        kills.append({**kill, "acknowledgedBatchesLost": len(lost), "lostExamples": lost[:5]})
    ok = (
        stored["storedRows"] == stored["validLinesSent"]
        and stored["sessionIdsStoredTwice"] == 0
        and stored["validEventsMissing"] == 0
        and stored["malformedLinesStored"] == 0
        and stored["tsMismatches"] == 0
        and stored["ttfaMismatches"] == 0
        and stored["batchRows"] == stored["batchRowsExpected"]
        and stored["batchRowsWithWrongCounts"] == 0
        and answers["statuses"] == {"200": len(order)}
        and answers["answersWithWrongCounts"] == 0
        and answers["answersWithWrongLineNumbers"] == 0
        and answers["errorsWithWrongReason"] == 0
        and answers["batchesWithTwoFirstStoreAnswers"] == 0
        and not answers["batchesStoredAgainAfterAnAnswer"]
        and all(k["acknowledgedBatchesLost"] == 0 for k in kills)
        and len(kills) >= args.kills
    )
    result: dict[str, Any] = {
        "experiment": (
            "exactly-once ingest: 1 % malformed lines, 10 % of batches resent with the same id, the "
            "server kill -9'ed and restarted mid-run, connection failures retried with the same id"
        ),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {**info, "loadavgAtEnd": [round(x, 2) for x in os.getloadavg()]},
        "config": {
            "events": args.events,
            "batches": len(data.batches),
            "sends": len(order),
            "resends": len(resent),
            "badFraction": args.bad_fraction,
            "malformedLines": int((~data.valid).sum()),
            "batchesWithABlankLine": sum(1 for b in data.batches if b.blank_line is not None),
            "threads": args.threads,
            "killsPlannedAtAnswers": kill_at,
        },
        "wallS": round(wall, 1),
        "serverStarts": server.starts,
        "serverExitCode": exit_code,
        "serverLogTracebacks": server_log.count("Traceback"),
        "serverLogTail": server_log.splitlines()[-20:],
        "kills": kills,
        "sender": {
            "httpStatuses": {str(k): v for k, v in sorted(log.statuses.items())},
            "connectionErrors": dict(log.connection_errors),
        },
        "store": stored,
        "answers": answers,
        "ok": ok,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    s, a = stored, answers
    print(
        f"{len(kills)} kill -9 + restarts; {len(order)} sends ({len(resent)} resends), "
        f"{sum(log.connection_errors.values())} connection errors retried, statuses {a['statuses']}"
    )
    print(
        f"stored {s['storedRows']:,} rows for {s['validLinesSent']:,} valid lines; session ids stored twice: "
        f"{s['sessionIdsStoredTwice']}; missing: {s['validEventsMissing']}; malformed stored: "
        f"{s['malformedLinesStored']}; ts/ttfa mismatches: {s['tsMismatches']}/{s['ttfaMismatches']}"
    )
    print(
        f"answers: {a['answersWithWrongLineNumbers']} with wrong line numbers, "
        f"{a['errorsWithWrongReason']} wrong reasons, {a['answersWithWrongCounts']} wrong counts; "
        f"duplicate answers {a['duplicateAnswers']} ({a['batchesWithoutAFirstStoreAnswer']} batches stored "
        f"before a kill without their answer, then answered as duplicates); "
        f"acknowledged batches lost after kills: {[k['acknowledgedBatchesLost'] for k in kills]}"
    )
    print(f"{'OK' if ok else 'FAILED'}; load {[round(x, 2) for x in os.getloadavg()]}; wrote {args.out}")


if __name__ == "__main__":
    main()
