"""The append-only store on a local directory, with real git repositories for baselines."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxperf.errors import StoreConflictError, StoreError, UsageError
from voxperf.store.backend import LocalBackend, atomic_create
from voxperf.store.config import open_store, store_location
from voxperf.store.keys import StoreKey, parse_relpath
from voxperf.store.store import ResultStore, nearest_persisted

from .conftest import commit, git, make_result


@pytest.fixture
def store(tmp_path: Path) -> ResultStore:
    return ResultStore(LocalBackend(tmp_path / "store"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    return r


SHA = "a" * 40


# ----------------------------------------------------------------------------------------- keys


def test_layout_matches_seed_000() -> None:
    assert StoreKey(SHA).relpath == f"audit/{SHA}.json"
    assert StoreKey(SHA, "codepath").relpath == f"audit/{SHA}-codepath.json"
    assert StoreKey(SHA, pr=42).relpath == f"audit/pr/42/{SHA}.json"
    assert StoreKey(SHA, "codepath", 42).relpath == f"audit/pr/42/{SHA}-codepath.json"
    for key in (StoreKey(SHA), StoreKey(SHA, "codepath", 7)):
        assert parse_relpath(key.relpath) == key
        assert parse_relpath(key.relpath + ".gz") == key


@pytest.mark.parametrize(
    ("commit_", "lane", "pr"),
    [
        ("../../etc/passwd", "provider", None),
        ("A" * 40, "provider", None),  # upper case is not canonical
        ("a" * 39, "provider", None),
        (SHA + "/..", "provider", None),
        (SHA, "../codepath", None),
        (SHA, "gpu", None),
        (SHA, "provider", -1),
        (SHA, "provider", 0),
        (SHA, "provider", True),
        (SHA, "provider", "1/../.."),
    ],
)
def test_keys_cannot_escape_the_root(commit_: object, lane: str, pr: object) -> None:
    with pytest.raises(StoreError):
        StoreKey(commit_, lane, pr)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [
        "audit/../x.json",
        f"audit/{SHA}-provider.json",
        f"audit/pr/-1/{SHA}.json",
        f"audit/{SHA}.txt",
        f"x/{SHA}.json",
        f"audit/pr/01/{SHA}.json",
        f"/audit/{SHA}.json",
    ],
)
def test_parse_relpath_rejects(path: str) -> None:
    assert parse_relpath(path) is None


@given(st.text(max_size=80))
def test_any_relpath_parsed_is_canonical(path: str) -> None:
    key = parse_relpath(path)
    if key is not None:
        assert key.relpath in (path, path.removesuffix(".gz"))
        assert ".." not in key.relpath


# ------------------------------------------------------------------------------------ put / get


def test_put_splits_lanes_and_round_trips(store: ResultStore) -> None:
    result = make_result(SHA)
    outcomes = store.put(result)
    assert sorted((o.key.relpath, o.status) for o in outcomes) == [
        (f"audit/{SHA}-codepath.json", "written"),
        (f"audit/{SHA}.json", "written"),
    ]
    provider = store.get(StoreKey(SHA))
    assert provider is not None and list(provider.lanes) == ["provider"]
    assert provider.lanes["provider"] == result.lanes["provider"]
    assert store.get(StoreKey("b" * 40)) is None


def test_identical_put_is_a_noop(store: ResultStore) -> None:
    store.put(make_result(SHA))
    path = store.backend.root / f"audit/{SHA}.json"
    before = path.stat().st_mtime_ns
    assert {o.status for o in store.put(make_result(SHA))} == {"identical"}
    assert path.stat().st_mtime_ns == before


def test_conflicting_put_is_refused_and_changes_nothing(store: ResultStore) -> None:
    store.put(make_result(SHA, stt=10.0))
    snapshot = {p: p.read_bytes() for p in (store.backend.root / "audit").rglob("*.json")}
    with pytest.raises(StoreConflictError) as err:
        store.put(make_result(SHA, stt=99.0))
    assert err.value.exit_code == 5 and "append-only" in err.value.message
    assert {p: p.read_bytes() for p in (store.backend.root / "audit").rglob("*.json")} == snapshot


def test_pr_results_are_separate(store: ResultStore) -> None:
    store.put(make_result(SHA), pr=7)
    store.put(make_result(SHA, stt=50.0))  # same commit on main: a different key, no conflict
    assert store.get(StoreKey(SHA, pr=7)) is not None
    assert [r.pr for r in store.ls(pr=7)] == [7, 7]


def test_result_without_commit(store: ResultStore) -> None:
    with pytest.raises(StoreError, match="no git commit"):
        store.put(make_result(None))


def test_gzip_files_are_read(store: ResultStore) -> None:
    root = store.backend.root
    (root / "audit").mkdir(parents=True)
    one = make_result(SHA)
    from voxperf.store.store import canonical_bytes, split_lanes

    data = canonical_bytes(split_lanes(one)["provider"])
    (root / f"audit/{SHA}.json.gz").write_bytes(gzip.compress(data))
    assert store.get(StoreKey(SHA)) is not None
    assert store.put(one)[0].status in ("identical", "written")
    store.rebuild_index()
    assert store.verify().ok


# ------------------------------------------------------------------------------- durability


def test_atomic_create_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    assert atomic_create(path, b"one")
    assert not atomic_create(path, b"two")
    assert path.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_process_killed_during_write_leaves_no_torn_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    target = root / f"audit/{SHA}.json"
    code = (
        "import sys; from pathlib import Path; from voxperf.store.backend import atomic_create; "
        f"atomic_create(Path({str(target)!r}), b'x' * (512 * 1024 * 1024))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    audit = root / "audit"
    deadline = time.monotonic() + 60
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        temps = list(audit.glob(".*.tmp")) if audit.exists() else []
        if temps and temps[0].stat().st_size > 0:
            started = True
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert started and proc.returncode == -signal.SIGKILL, "the writer must be killed mid-write"
    assert not target.exists()  # killed before the link: no file at all, never a torn one
    store = ResultStore(LocalBackend(root))
    assert store.verify().ok  # the half-written temp file is not a result


def _race_put(args: tuple[str, float]) -> str:
    root, stt = args
    store = ResultStore(LocalBackend(root))
    try:
        return ",".join(o.status for o in store.put(make_result(SHA, stt=stt)))
    except StoreConflictError:
        return "conflict"


def test_concurrent_writers_same_content(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    with ProcessPoolExecutor(4) as pool:
        outcomes = list(pool.map(_race_put, [(root, 10.0)] * 8))
    statuses = ",".join(outcomes).split(",")
    assert statuses.count("written") == 2  # one per lane, exactly once
    assert set(statuses) <= {"written", "identical"}
    assert ResultStore(LocalBackend(root)).verify().ok


def test_concurrent_writers_different_content(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    with ProcessPoolExecutor(4) as pool:
        outcomes = list(pool.map(_race_put, [(root, float(i)) for i in range(8)]))
    winners = [o for o in outcomes if o != "conflict"]
    # the codepath lane is identical across writers, the provider lane differs: one writer wins provider
    stored = ResultStore(LocalBackend(root)).get(StoreKey(SHA))
    assert stored is not None
    assert any("written" in o for o in winners)
    assert ResultStore(LocalBackend(root)).verify().ok


# ------------------------------------------------------------------------------------ baseline


def test_baseline_linear_history(store: ResultStore, repo: Path) -> None:
    c = [commit(repo, f"c{i}") for i in range(5)]
    store.put(make_result(c[1]))
    assert store.baseline(c[1], repo).mode == "exact"
    near = store.baseline(c[3], repo)
    assert (near.mode, near.key.commit if near.key else None, near.distance) == ("nearest_ancestor", c[1], 2)
    assert store.baseline(c[0], repo).mode == "missing"
    assert store.baseline(c[3], repo, depth=2).mode == "missing"  # bounded walk
    assert store.baseline("HEAD~1", repo).base == c[3]  # revisions resolve


def test_baseline_ignores_pr_runs_and_other_lanes(store: ResultStore, repo: Path) -> None:
    c = commit(repo, "only")
    store.put(make_result(c), pr=3)
    assert store.baseline(c, repo).mode == "missing"
    store.put(make_result(c))
    assert store.baseline(c, repo, lane="codepath").mode == "exact"


def test_baseline_through_a_merge(store: ResultStore, repo: Path) -> None:
    commit(repo, "root")
    git(repo, "checkout", "-q", "-b", "side")
    side = commit(repo, "side work")
    git(repo, "checkout", "-q", "main")
    commit(repo, "main work")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = git(repo, "rev-parse", "HEAD")
    store.put(make_result(side))
    found = store.baseline(merge, repo)
    assert found.mode == "nearest_ancestor" and found.key is not None and found.key.commit == side


def test_baseline_unknown_commit(store: ResultStore, repo: Path) -> None:
    commit(repo, "x")
    with pytest.raises(UsageError, match="not in the repository"):
        store.baseline("f" * 40, repo)


@given(
    st.lists(st.text("0123456789abcdef", min_size=40, max_size=40), unique=True, max_size=30),
    st.data(),
)
def test_nearest_persisted_properties(ancestors: list[str], data: st.DataObject) -> None:
    persisted = set(data.draw(st.lists(st.sampled_from(ancestors), max_size=10))) if ancestors else set()
    found = nearest_persisted(ancestors, persisted)
    if not persisted & set(ancestors):
        assert found is None
        return
    assert found is not None
    distance, sha = found
    assert ancestors[distance] == sha and sha in persisted
    assert not persisted & set(ancestors[:distance])  # nothing nearer was skipped
    assert (distance == 0) == (ancestors[0] in persisted)


# ------------------------------------------------------------------------------ history, index


def test_history_latest_n_in_order(store: ResultStore, repo: Path) -> None:
    commits = [commit(repo, f"c{i}") for i in range(20)]
    for i, c in enumerate(commits):
        store.put(make_result(c, created=f"2026-11-21T00:{i:02d}:00Z"))
    rows = store.ls(lane="provider", limit=16)
    assert [r.commit for r in rows] == commits[-16:]
    assert [r.commit for r in store.ls(lane="provider", limit=5, repo=repo)] == commits[-5:]
    with pytest.raises(UsageError):
        store.ls(limit=0)


def test_index_is_rebuildable(store: ResultStore) -> None:
    store.put(make_result(SHA))
    store.put(make_result("b" * 40), pr=2)
    (store.backend.root / ".voxperf-index.sqlite").unlink()
    assert store.rebuild_index() == 4
    assert store.verify().ok
    assert len(store.ls(pr=2)) == 2


def test_verify_finds_problems(store: ResultStore) -> None:
    store.put(make_result(SHA))
    root = store.backend.root
    (root / f"audit/{'c' * 40}.json").write_text("{not json")
    bad_version = json.loads((root / f"audit/{SHA}.json").read_text()) | {"schemaVersion": 99}
    (root / f"audit/{'d' * 40}.json").write_text(json.dumps(bad_version))
    (root / "audit/notes.json").write_text("{}")
    report = store.verify()
    problems = dict(report.problems)
    assert not report.ok
    assert f"audit/{'c' * 40}.json" in problems
    assert "schemaVersion" in problems[f"audit/{'d' * 40}.json"]
    assert "not a valid store path" in problems["audit/notes.json"]


def test_backfill_reports_each_kind(store: ResultStore, tmp_path: Path) -> None:
    store.put(make_result(SHA, stt=10.0))
    artifacts = tmp_path / "artifacts"
    (artifacts / "audit" / "pr" / "9").mkdir(parents=True)
    from voxperf.bench.schema import dump_result

    dump_result(make_result(SHA, stt=10.0), artifacts / "same.json")  # identical
    dump_result(make_result(SHA, stt=77.0), artifacts / "clash.json")  # conflicting
    dump_result(make_result("e" * 40), artifacts / "new.json")  # new
    dump_result(make_result("f" * 40), artifacts / "audit" / "pr" / "9" / f"{'f' * 40}.json")  # PR by layout
    (artifacts / "junk.json").write_text("[]")
    report = store.backfill(artifacts)
    assert sorted(report.conflicts) == ["clash.json"]
    assert f"audit/{'e' * 40}.json" in report.written
    assert f"audit/pr/9/{'f' * 40}.json" in report.written
    assert f"audit/{SHA}.json" in report.identical
    assert [f for f, _ in report.errors] == ["junk.json"]
    assert store.get(StoreKey(SHA)).lanes["provider"].runs[0].metrics["stt_ms"] == 10.0  # type: ignore[union-attr]


# -------------------------------------------------------------------------------------- config


def test_store_location_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXPERF_STORE", raising=False)
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    assert store_location(None, project / "sub") == ".voxperf/store"
    (project / "pyproject.toml").write_text('[tool.voxperf]\nstore = "perf-store"\n')
    assert store_location(None, project / "sub") == str(project / "perf-store")
    monkeypatch.setenv("VOXPERF_STORE", "/env/store")
    assert store_location(None, project) == "/env/store"
    assert store_location("/flag/store", project) == "/flag/store"
    (project / "pyproject.toml").write_text("[tool.voxperf\n")
    monkeypatch.delenv("VOXPERF_STORE")
    with pytest.raises(UsageError, match=r"pyproject\.toml"):
        store_location(None, project)


def test_open_store_local(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "s"))
    assert isinstance(s.backend, LocalBackend)


def test_fresh_clone_of_a_git_store_sees_baselines_and_history(repo: Path, tmp_path: Path) -> None:
    """A CI runner starts with an empty clone: the index must come from the files, not from the writer."""
    from voxperf.store.git import GitBackend

    bare = tmp_path / "perf.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    c1 = commit(repo, "one")
    c2 = commit(repo, "two")
    writer = ResultStore(GitBackend(str(bare), tmp_path / "writer"))
    writer.put(make_result(c1))
    reader = ResultStore(GitBackend(str(bare), tmp_path / "reader"))
    found = reader.baseline(c2, repo)
    assert (found.mode, found.key.commit if found.key else None) == ("nearest_ancestor", c1)
    assert [r.commit for r in reader.ls(lane="provider")] == [c1]


def test_files_written_by_another_process_are_indexed(store: ResultStore) -> None:
    other = ResultStore(LocalBackend(store.backend.root))
    other._index_path = store.backend.root / "other-index.sqlite"  # a writer with its own index
    other.put(make_result(SHA))
    assert {r.lane for r in store.ls()} == {"provider", "codepath"}


def test_gzip_bomb_is_refused(store: ResultStore, tmp_path: Path) -> None:
    import zlib

    from voxperf.store import backend

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    bomb = compressor.compress(b"\0" * (300 * 1024 * 1024)) + compressor.flush()
    assert len(bomb) < 1024 * 1024
    (artifacts / "bomb.json.gz").write_bytes(bomb)
    report = store.backfill(artifacts)
    assert [f for f, _ in report.errors] == ["bomb.json.gz"] and "expands" in report.errors[0][1]
    assert backend.MAX_RESULT_BYTES < 300 * 1024 * 1024


def test_unwritable_store_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    backend_ = LocalBackend(tmp_path / "ok")
    backend_.root = blocker  # the store's audit/ directory cannot be created under a file
    with pytest.raises(StoreError, match="cannot write to the store"):
        backend_.put_many([(f"audit/{SHA}.json", b"{}")])


def test_unknown_lane_in_queries(store: ResultStore, repo: Path) -> None:
    c = commit(repo, "x")
    with pytest.raises(UsageError, match="unknown lane"):
        store.ls(lane="bogus")
    with pytest.raises(UsageError, match="unknown lane"):
        store.baseline(c, repo, lane="bogus")


def test_store_reads_never_follow_symlinks(store: ResultStore) -> None:
    store.put(make_result(SHA))
    root = store.backend.root
    os.symlink("/dev/zero", root / f"audit/{'e' * 40}.json")  # a valid-looking key, endless content
    os.symlink(root / f"audit/{SHA}.json", root / f"audit/{'f' * 40}.json")
    assert {r.commit for r in store.ls()} == {SHA}  # links are not results: not listed, not read
    assert store.verify().ok
    with pytest.raises(StoreError, match="symlink"):
        store.backend.read(f"audit/{'e' * 40}.json")


def test_a_killed_puts_temp_file_is_cleaned_on_the_next_write(store: ResultStore) -> None:
    store.put(make_result(SHA))
    audit = store.backend.root / "audit"
    orphan = audit / f".{'b' * 40}.json.0123.tmp"  # what a put killed before its link leaves
    orphan.write_bytes(b"half a result")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = audit / f".{'c' * 40}.json.4567.tmp"  # a put in progress right now: kept
    fresh.write_bytes(b"in progress")
    store.put(make_result("b" * 40))
    assert not orphan.exists() and fresh.exists()


def test_verify_does_not_blame_files_the_index_has_not_seen_yet(store: ResultStore) -> None:
    store.put(make_result(SHA))
    other = ResultStore(LocalBackend(store.backend.root))
    other._index_path = store.backend.root / "other-index.sqlite"  # another writer, its own index
    other.put(make_result("b" * 40))
    report = store.verify()
    assert report.ok, report.problems
