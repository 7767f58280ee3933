"""The append-only result store: put, get, history, baseline lookup, backfill and verify.

Results are split per lane on the way in (one file per (commit, lane), or (PR, commit, lane)), in
canonical JSON, so the same run stored twice is byte-identical and a no-op. A SQLite index beside
the files (``.voxperf-index.sqlite``) makes listing fast; it holds nothing that cannot be rebuilt
from the files (:meth:`ResultStore.rebuild_index`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxperf.bench.schema import LANES, BenchResult, parse_result
from voxperf.errors import StoreConflictError, StoreError, UsageError, VoxperfError
from voxperf.store.backend import Backend, PutStatus, bounded_gunzip
from voxperf.store.keys import PROVIDER_LANE, StoreKey, parse_relpath

__all__ = [
    "DEFAULT_DEPTH",
    "DEFAULT_HISTORY",
    "INDEX_NAME",
    "BackfillReport",
    "Baseline",
    "IndexRow",
    "PutOutcome",
    "ResultStore",
    "VerifyReport",
    "canonical_bytes",
    "nearest_persisted",
    "split_lanes",
]

INDEX_NAME = ".voxperf-index.sqlite"
DEFAULT_DEPTH = 400
DEFAULT_HISTORY = 16
_INDEX_VERSION = 1


def canonical_bytes(result: BenchResult) -> bytes:
    """The one serialisation the store writes: the same content always gives the same bytes."""
    return (result.model_dump_json(indent=2) + "\n").encode("utf-8")


def split_lanes(result: BenchResult) -> dict[str, BenchResult]:
    """One result per lane (same metadata, one lane each): the store's unit."""
    return {name: result.model_copy(update={"lanes": {name: lane}}) for name, lane in result.lanes.items()}


@dataclass(frozen=True, slots=True)
class PutOutcome:
    key: StoreKey
    status: PutStatus

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.key.commit,
            "lane": self.key.lane,
            "pr": self.key.pr,
            "path": self.key.relpath,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One stored result as the index knows it."""

    relpath: str
    commit: str
    lane: str
    pr: int | None
    created_at: str
    branch: str | None
    schema_version: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The answer to "what do I compare against?": the mode says how it was found."""

    mode: Literal["exact", "nearest_ancestor", "missing"]
    base: str  # the commit asked for
    key: StoreKey | None  # where the baseline is (None when missing)
    distance: int | None  # commits between base and the baseline found (0 = exact)
    searched: int  # how many ancestors were looked at

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "base": self.base,
            "commit": self.key.commit if self.key else None,
            "lane": self.key.lane if self.key else None,
            "path": self.key.relpath if self.key else None,
            "distance": self.distance,
            "searched": self.searched,
        }


@dataclass
class BackfillReport:
    written: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "identical": self.identical,
            "conflicts": self.conflicts,
            "errors": [{"file": f, "message": m} for f, m in self.errors],
        }


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "problems": [{"path": p, "problem": m} for p, m in self.problems],
        }


def nearest_persisted(
    ancestors: Sequence[str], persisted: set[str] | frozenset[str]
) -> tuple[int, str] | None:
    """The first commit in ``ancestors`` (nearest first, base itself at 0) that has a result.

    Pure, so the walk is property-tested apart from git: returns (distance, commit) or None.
    """
    for distance, commit in enumerate(ancestors):
        if commit in persisted:
            return distance, commit
    return None


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreError(
            f"git failed in {repo}: {exc}", "is git installed and the path a repository?"
        ) from exc
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["unknown error"])[0]
        raise UsageError(
            f"git {' '.join(args[:2])} failed in {repo}: {first}", "check the repository and the revision"
        )
    return proc.stdout


def resolve_commit(repo: Path, rev: str) -> str:
    """A revision (SHA, short SHA, branch, tag) resolved to its full commit SHA in ``repo``."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except UsageError:
        raise UsageError(
            f"commit {rev!r} is not in the repository at {repo}",
            "fetch it first (git fetch origin) or pass a commit that exists",
        ) from None


class ResultStore:
    """Append-only store of bench results over a :class:`Backend`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._index_path = Path(backend.root) / INDEX_NAME
        self._schema_ready = False

    # ---------------------------------------------------------------- index

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS results (relpath TEXT PRIMARY KEY, commit_sha TEXT NOT NULL, "
        "lane TEXT NOT NULL, pr INTEGER, created_at TEXT NOT NULL, branch TEXT, "
        "schema_version INTEGER NOT NULL, sha256 TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS results_main ON results (pr, lane, created_at)",
        "CREATE INDEX IF NOT EXISTS results_commit ON results (commit_sha)",
    )

    def _with_retry(self, work: Any) -> Any:
        """Run ``work()``; transient lock errors from concurrent writers are retried (bounded)."""
        delay = 0.01
        for attempt in range(60):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                transient = "locked" in str(exc) or "busy" in str(exc)
                if not transient or attempt == 59:
                    raise
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; ``write`` wraps the block in BEGIN IMMEDIATE ... COMMIT
        (taking the write lock up front, so concurrent writers wait instead of deadlocking)."""
        try:
            conn = sqlite3.connect(self._index_path, timeout=30, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the store index {self._index_path}: {exc}", "check permissions"
            ) from exc
        try:
            if not self._schema_ready:

                def setup() -> None:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        for statement in self._SCHEMA:
                            conn.execute(statement)
                        conn.execute(f"PRAGMA user_version={_INDEX_VERSION}")
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise

                self._with_retry(setup)
                self._schema_ready = True
            if write:
                self._with_retry(lambda: conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            else:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"the store index {self._index_path} is unusable: {exc}",
                "delete it; `voxperf store verify --rebuild` recreates it from the files",
            ) from exc
        finally:
            conn.close()

    @staticmethod
    def _row(key: StoreKey, relpath: str, result: BenchResult, data: bytes) -> tuple[Any, ...]:
        return (
            relpath,
            key.commit,
            key.lane,
            key.pr,
            result.createdAt,
            result.git.branch,
            result.schemaVersion,
            hashlib.sha256(data).hexdigest(),
        )

    def _index_add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._db(write=True) as conn:
            conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _rows_for(self, relpaths: Iterable[str]) -> list[tuple[Any, ...]]:
        """Index rows for stored files (unreadable ones are skipped: verify reports them)."""
        rows = []
        for relpath in relpaths:
            key = parse_relpath(relpath)
            if key is None:
                continue
            data = self.backend.read(key.relpath)
            if data is None:
                continue
            try:
                result = parse_result(json.loads(data), source=relpath)
            except (VoxperfError, ValueError):
                continue
            rows.append(self._row(key, key.relpath, result, data))
        return rows

    def refresh_index(self) -> int:
        """Index files that other writers added (a pulled git store, another process); returns how many.

        The index is a cache of the files, never the truth: every query calls this first, so a fresh
        clone of a git store answers baselines and history like the writer that made it."""
        listed = {r.removesuffix(".gz") for r in self.backend.list()}
        with self._db() as conn:
            known = {row[0] for row in conn.execute("SELECT relpath FROM results")}
        new = sorted(listed - known)
        if new:
            self._index_add(self._rows_for(new))
        return len(new)

    def rebuild_index(self) -> int:
        """Recreate the index from the files alone; returns the number of results indexed."""
        rows = self._rows_for(self.backend.list())
        self._index_path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{self._index_path}{suffix}").unlink(missing_ok=True)
        self._schema_ready = False
        self._index_add(rows)
        return len(rows)

    # ---------------------------------------------------------------- write

    def put(
        self,
        result: BenchResult,
        *,
        pr: int | None = None,
        commit: str | None = None,
        allow_dirty: bool = True,
    ) -> list[PutOutcome]:
        """Store each lane of ``result`` under (commit, lane[, PR]); identical content is a no-op.

        ``commit`` defaults to the commit recorded in the result. A conflict in any lane refuses
        the whole put before anything is written. ``allow_dirty=False`` refuses a result measured
        on a working tree with uncommitted changes (it would be filed under a commit it does not
        match): what ``voxperf bench --store`` asks for unless told ``--allow-dirty``.
        """
        if result.git.dirty and not allow_dirty:
            raise UsageError(
                "the store refuses a result measured on a dirty working tree: it would be filed under a "
                "commit it does not match",
                "commit or stash your changes, or pass --allow-dirty",
            )
        sha = commit or result.git.commit
        if sha is None:
            raise StoreError(
                "the result records no git commit",
                "run voxperf bench inside a git checkout, or pass --commit",
            )
        items: list[tuple[StoreKey, BenchResult, bytes]] = []
        for lane, one in split_lanes(result).items():
            key = StoreKey(commit=sha, lane=lane, pr=pr)
            items.append((key, one, canonical_bytes(one)))
        statuses = self.backend.put_many([(k.relpath, data) for k, _, data in items])
        self._index_add([self._row(k, k.relpath, one, data) for k, one, data in items])
        return [PutOutcome(k, s) for (k, _, _), s in zip(items, statuses, strict=True)]

    # ---------------------------------------------------------------- read

    def get(self, key: StoreKey) -> BenchResult | None:
        data = self.backend.read(key.relpath)
        if data is None:
            return None
        try:
            return parse_result(json.loads(data), source=key.relpath)
        except ValueError as exc:
            raise StoreError(
                f"stored file {key.relpath} is not valid JSON", "run `voxperf store verify`"
            ) from exc

    def _rows(
        self, where: str, params: Sequence[Any], order: str = "created_at DESC, commit_sha", limit: int = -1
    ) -> list[IndexRow]:
        with self._db() as conn:
            cur = conn.execute(
                "SELECT relpath, commit_sha, lane, pr, created_at, branch, schema_version, sha256 "
                "FROM results "
                f"WHERE {where} ORDER BY {order} LIMIT ?",
                (*params, limit),
            )
            return [IndexRow(*r) for r in cur.fetchall()]

    def ls(
        self,
        *,
        pr: int | None = None,
        lane: str | None = None,
        limit: int = DEFAULT_HISTORY,
        repo: Path | None = None,
    ) -> list[IndexRow]:
        """Main-line history (latest ``limit`` runs) or all runs of one PR, oldest first.

        With ``repo``, order is the commits' order in ``git rev-list HEAD`` (commit order);
        otherwise the runs' creation time.
        """
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}", "use e.g. --limit 16")
        if lane is not None and lane not in LANES:
            raise UsageError(f"unknown lane {lane!r}", f"use one of {', '.join(LANES)}")
        self.refresh_index()
        params: list[Any] = [] if pr is None else [pr]
        where = "pr IS NULL" if pr is None else "pr = ?"
        if lane is not None:
            where += " AND lane = ?"
            params.append(lane)
        if repo is None:
            rows = self._rows(where, params, limit=limit if pr is None else -1)
            return list(reversed(rows))
        order = {c: i for i, c in enumerate(_git(repo, "rev-list", "HEAD").split())}
        rows = self._rows(where, params)
        rows.sort(key=lambda r: (-order.get(r.commit, -1), r.created_at))  # ancestors first, unknown first
        return rows[-limit:] if pr is None else rows

    def persisted_commits(self, lane: str = PROVIDER_LANE) -> set[str]:
        self.refresh_index()
        with self._db() as conn:
            cur = conn.execute("SELECT commit_sha FROM results WHERE pr IS NULL AND lane = ?", (lane,))
            return {r[0] for r in cur.fetchall()}

    def baseline(
        self, base: str, repo: Path, *, lane: str = PROVIDER_LANE, depth: int = DEFAULT_DEPTH
    ) -> Baseline:
        """The main-line result at ``base``, else the nearest persisted ancestor within ``depth``."""
        if depth < 1:
            raise UsageError(f"--depth must be at least 1, got {depth}", "use e.g. --depth 400")
        if lane not in LANES:
            raise UsageError(f"unknown lane {lane!r}", f"use one of {', '.join(LANES)}")
        commit = resolve_commit(repo, base)
        ancestors = _git(repo, "rev-list", f"--max-count={depth}", commit).split()
        found = nearest_persisted(ancestors, self.persisted_commits(lane))
        if found is None:
            return Baseline("missing", commit, None, None, len(ancestors))
        distance, sha = found
        return Baseline(
            "exact" if distance == 0 else "nearest_ancestor",
            commit,
            StoreKey(sha, lane),
            distance,
            distance + 1,
        )

    # ---------------------------------------------------------------- backfill, verify

    def backfill(self, directory: Path, *, pr: int | None = None) -> BackfillReport:
        """Import result files (e.g. CI artifacts); identical ones are skipped, conflicts reported.

        A file's key comes from its place in the audit layout (``audit/pr/<pr>/<sha>[-lane].json``)
        when it has one, else from the commit recorded inside it (and ``pr``).
        """
        if not directory.is_dir():
            raise UsageError(
                f"backfill source {directory} is not a directory", "pass a directory of result files"
            )
        report = BackfillReport()
        files = sorted(
            p for p in directory.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz"))
        )
        for path in files:
            label = str(path.relative_to(directory))
            try:
                raw = path.read_bytes()
                if raw[:2] == b"\x1f\x8b":
                    raw = bounded_gunzip(raw, label)
                result = parse_result(json.loads(raw), source=label)
            except (VoxperfError, ValueError, OSError, EOFError) as exc:
                report.errors.append((label, str(exc)))
                continue
            layout = parse_relpath("audit/" + label.split("audit/", 1)[1]) if "audit/" in label else None
            file_pr = layout.pr if layout else pr
            commit = layout.commit if layout else None
            try:
                for outcome in self.put(result, pr=file_pr, commit=commit):
                    (report.written if outcome.status == "written" else report.identical).append(
                        outcome.key.relpath
                    )
            except StoreConflictError:
                report.conflicts.append(label)
            except StoreError as exc:
                report.errors.append((label, str(exc)))
        return report

    def verify(self) -> VerifyReport:
        """Every file parses, has a known schema version, sits at a valid key, and matches the index."""
        report = VerifyReport()
        self.refresh_index()  # a file another writer added is new to the index, not a problem
        seen: dict[str, str] = {}
        for relpath in sorted(self.backend.list()):
            report.checked += 1
            key = parse_relpath(relpath)
            if key is None:
                report.problems.append(
                    (relpath, "not a valid store path (audit/[pr/<n>/]<40-hex sha>[-lane].json)")
                )
                continue
            try:
                data = self.backend.read(relpath.removesuffix(".gz"))
                assert data is not None
                result = parse_result(json.loads(data), source=relpath)
            except (VoxperfError, ValueError) as exc:
                report.problems.append((relpath, str(exc)))
                continue
            if list(result.lanes) != [key.lane]:
                report.problems.append(
                    (relpath, f"holds lanes {list(result.lanes)} but its name says {key.lane}")
                )
            seen[key.relpath] = hashlib.sha256(data).hexdigest()
        indexed = {r.relpath: r.sha256 for r in self._rows("1=1", [])}
        for relpath, digest in seen.items():
            if relpath not in indexed:
                report.problems.append((relpath, "missing from the index (run verify --rebuild)"))
            elif indexed[relpath] != digest:
                report.problems.append((relpath, "content differs from the index (run verify --rebuild)"))
        for relpath in indexed.keys() - seen.keys():
            report.problems.append((relpath, "in the index but the file is gone (run verify --rebuild)"))
        return report
