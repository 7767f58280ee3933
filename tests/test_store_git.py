"""GitBackend against real git repositories: a bare repo in a tmp dir stands for the remote.

No network: remotes are local paths (plus one refused localhost port). Concurrency is real: the
race tests run writers in separate processes, each with its own clone, pushing to one bare repo.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voxperf.errors import ExitCode, StoreConflictError, StoreError, StoreRemoteError
from voxperf.store.backend import Backend
from voxperf.store.git import GitBackend, is_git_location, parse_location

IDENTITY = ("-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main")
SHA_A = "a" * 40
SHA_B = "b" * 40


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run git in a test repository (never in the project checkout)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, env=env, capture_output=True, timeout=60, check=check
    )


def rel(i: int, pr: int | None = None) -> str:
    """A store path of the real layout (``audit/<sha>.json``, ``audit/pr/<n>/<sha>-codepath.json``)."""
    sha = f"{i:040x}"
    return f"audit/{sha}.json" if pr is None else f"audit/pr/{pr}/{sha}-codepath.json"


def payload(i: int, tag: str = "") -> bytes:
    return (json.dumps({"schemaVersion": 1, "n": i, "tag": tag}, indent=2) + "\n").encode()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """An empty bare repository: the shared remote."""
    path = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(path))
    return path


def commit_count(bare: Path, branch: str = "main") -> int:
    proc = git("rev-list", "--count", branch, cwd=bare, check=False)
    return int(proc.stdout) if proc.returncode == 0 else 0


def remote_files(bare: Path, branch: str = "main") -> list[str]:
    out = git("ls-tree", "-r", "--name-only", branch, cwd=bare).stdout.decode()
    return sorted(out.split())


def remote_bytes(bare: Path, path: str, branch: str = "main") -> bytes:
    return git("show", f"{branch}:{path}", cwd=bare).stdout


def assert_linear(bare: Path, branch: str = "main") -> None:
    """No merges and exactly one root: every commit has at most one parent."""
    lines = git("rev-list", "--parents", branch, cwd=bare).stdout.decode().splitlines()
    parents = [len(line.split()) - 1 for line in lines]
    assert max(parents) <= 1
    assert parents.count(0) == 1


def intercept_push(backend: GitBackend, before_push: Callable[[int], None]) -> list[int]:
    """Call ``before_push(n)`` right before the backend's n-th push: a deterministic race window."""
    real = backend._git
    pushes: list[int] = []

    def wrapped(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if args and args[0] == "push":
            pushes.append(len(pushes))
            before_push(len(pushes) - 1)
        return real(*args, **kwargs)

    backend._git = wrapped  # type: ignore[method-assign]
    return pushes


# ---------------------------------------------------------------------------- basic behaviour


def test_put_then_read_back_through_another_clone(bare: Path, tmp_path: Path) -> None:
    writer = GitBackend(str(bare), tmp_path / "w1")
    assert isinstance(writer, Backend)
    assert writer.name == "git"
    assert writer.root == (tmp_path / "w1").resolve()
    assert writer.list is not None and list(writer.list()) == []  # empty remote: empty store

    items = [(rel(1), payload(1)), (rel(2, pr=7), payload(2))]
    assert writer.put_many(items) == ["written", "written"]

    # the bytes are on the remote: the first commit started the branch
    assert commit_count(bare) == 1
    assert remote_files(bare) == sorted([rel(1), rel(2, pr=7)])
    assert remote_bytes(bare, rel(2, pr=7)) == payload(2)
    message = git("log", "-1", "--format=%an <%ae>%n%B", "main", cwd=bare).stdout.decode()
    assert message.startswith("voxperf <voxperf@localhost>\nvoxperf store: add 2 results\n")
    assert rel(1) in message and rel(2, pr=7) in message

    reader = GitBackend(str(bare), tmp_path / "w2")
    assert reader.read(rel(1)) == payload(1)
    assert reader.read(rel(2, pr=7)) == payload(2)
    assert reader.read(rel(3)) is None
    assert list(reader.list()) == sorted([rel(1), rel(2, pr=7)])

    # a later write by the first clone is seen by the second on its next read (it fetches first)
    assert writer.put_many([(rel(3), payload(3))]) == ["written"]
    assert reader.read(rel(3)) == payload(3)
    assert rel(3) in list(reader.list())
    assert git("log", "-1", "--format=%s", "main", cwd=bare).stdout.decode().strip() == (
        "voxperf store: add 1 result"
    )


def test_identical_bytes_are_a_no_op_without_a_commit(bare: Path, tmp_path: Path) -> None:
    first = GitBackend(str(bare), tmp_path / "w1")
    first.put_many([(rel(1), payload(1)), (rel(2), payload(2))])
    assert commit_count(bare) == 1

    second = GitBackend(str(bare), tmp_path / "w2")
    assert second.put_many([(rel(1), payload(1)), (rel(2), payload(2))]) == ["identical", "identical"]
    assert commit_count(bare) == 1  # nothing to commit, nothing pushed

    # a mixed batch commits only the new file; a duplicate inside the batch is identical
    statuses = second.put_many([(rel(1), payload(1)), (rel(3), payload(3)), (rel(3), payload(3))])
    assert statuses == ["identical", "written", "identical"]
    assert commit_count(bare) == 2
    changed = git("show", "--name-only", "--format=", "main", cwd=bare).stdout.decode().split()
    assert changed == [rel(3)]


def test_different_bytes_conflict_and_the_remote_is_unchanged(bare: Path, tmp_path: Path) -> None:
    first = GitBackend(str(bare), tmp_path / "w1")
    first.put_many([(rel(1), payload(1))])
    tip = git("rev-parse", "main", cwd=bare).stdout

    second = GitBackend(str(bare), tmp_path / "w2")
    with pytest.raises(StoreConflictError) as info:
        # a new file and a conflicting one: the whole batch is refused, nothing is pushed
        second.put_many([(rel(2), payload(2)), (rel(1), payload(1, "other"))])
    assert info.value.exit_code == ExitCode.CONFLICT
    assert rel(1) in info.value.message
    assert git("rev-parse", "main", cwd=bare).stdout == tip
    assert remote_files(bare) == [rel(1)]
    assert remote_bytes(bare, rel(1)) == payload(1)
    # and the refused file is not left behind in the clone as if it were stored
    assert second.read(rel(2)) is None
    assert list(second.list()) == [rel(1)]
    with pytest.raises(StoreConflictError):  # conflicts inside one batch too
        second.put_many([(rel(5), payload(5)), (rel(5), payload(6))])
    assert commit_count(bare) == 1


def test_index_and_temp_files_are_never_committed(bare: Path, tmp_path: Path) -> None:
    backend = GitBackend(str(bare), tmp_path / "w")
    exclude = (backend.root / ".git" / "info" / "exclude").read_text().splitlines()
    assert ".voxperf-index.sqlite" in exclude and "*.tmp" in exclude

    index = backend.root / ".voxperf-index.sqlite"
    index.write_bytes(b"SQLite format 3\0")
    (backend.root / ".voxperf-index.sqlite-wal").write_bytes(b"wal")
    (backend.root / "audit").mkdir()
    (backend.root / "audit" / ".left-over.json.tmp").write_bytes(b"partial")

    backend.put_many([(rel(1), payload(1))])
    backend.put_many([(rel(2), payload(2))])
    assert remote_files(bare) == [rel(1), rel(2)]
    history = git("log", "--all", "--name-only", "--format=", cwd=bare).stdout.decode().split()
    assert sorted(history) == [rel(1), rel(2)]
    # the index survives every reset/clean of the clone (the store keeps it there)
    assert backend.read(rel(1)) == payload(1)
    assert index.read_bytes() == b"SQLite format 3\0"


def test_clone_holds_nothing_of_its_own(bare: Path, tmp_path: Path) -> None:
    """A file left in the clone (crash before commit) is not a stored result: the next call drops it."""
    backend = GitBackend(str(bare), tmp_path / "w")
    backend.put_many([(rel(1), payload(1))])
    ghost = backend.root / rel(9)
    ghost.write_bytes(payload(9))
    assert list(backend.list()) == [rel(1)]
    assert backend.read(rel(9)) is None
    assert not ghost.exists()
    # a commit made locally but never pushed is forgotten too
    (backend.root / rel(8)).write_bytes(payload(8))
    git("add", rel(8), cwd=backend.root)
    git("commit", "-q", "-m", "local only", cwd=backend.root)
    assert backend.read(rel(8)) is None
    assert backend.put_many([(rel(8), payload(8, "new"))]) == ["written"]
    assert remote_bytes(bare, rel(8)) == payload(8, "new")
    assert_linear(bare)


def test_appends_to_history_written_by_others(bare: Path, tmp_path: Path) -> None:
    """Commits pushed by other tools (CI, an app's own perf-audit job) are kept; a ``.gz`` twin
    counts as present."""
    other = tmp_path / "other"
    git("clone", "-q", str(bare), str(other))
    (other / "README.md").write_text("append-only perf audit\n")
    (other / "audit").mkdir()
    (other / "audit" / f"{SHA_A}.json.gz").write_bytes(gzip.compress(payload(1)))
    git("add", ".", cwd=other)
    git("commit", "-q", "-m", "seed", cwd=other)
    git("push", "-q", "origin", "HEAD:main", cwd=other)
    seed = git("rev-parse", "main", cwd=bare).stdout.strip()

    backend = GitBackend(str(bare), tmp_path / "w")
    assert list(backend.list()) == [f"audit/{SHA_A}.json.gz"]
    assert backend.read(f"audit/{SHA_A}.json") == payload(1)
    statuses = backend.put_many([(f"audit/{SHA_A}.json", payload(1)), (f"audit/{SHA_B}.json", payload(2))])
    assert statuses == ["identical", "written"]
    assert git("rev-parse", "main~1", cwd=bare).stdout.strip() == seed  # appended on top
    assert remote_files(bare) == sorted(["README.md", f"audit/{SHA_A}.json.gz", f"audit/{SHA_B}.json"])


def test_other_branch_starts_as_an_orphan(bare: Path, tmp_path: Path) -> None:
    GitBackend(str(bare), tmp_path / "w1").put_many([(rel(1), payload(1))])
    results = GitBackend(str(bare), tmp_path / "w2", branch="perf-results", author="CI Bot <ci@example.com>")
    assert list(results.list()) == []  # the branch does not exist yet: an empty store
    assert results.put_many([(rel(2), payload(2))]) == ["written"]
    assert remote_files(bare, "perf-results") == [rel(2)]
    assert remote_files(bare, "main") == [rel(1)]
    assert commit_count(bare, "perf-results") == 1
    author = git("log", "-1", "--format=%an <%ae>", "perf-results", cwd=bare).stdout.decode().strip()
    assert author == "CI Bot <ci@example.com>"


def test_workdir_is_reused_and_foreign_directories_are_refused(bare: Path, tmp_path: Path) -> None:
    GitBackend(str(bare), tmp_path / "w").put_many([(rel(1), payload(1))])
    again = GitBackend(str(bare), tmp_path / "w")  # the existing clone is reused, not re-cloned
    assert again.read(rel(1)) == payload(1)

    repo = tmp_path / "someone-elses-repo"
    git("init", "-q", str(repo))
    with pytest.raises(StoreError, match="did not create"):
        GitBackend(str(bare), repo)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        GitBackend(str(bare), busy)
    assert (busy / "notes.txt").read_text() == "mine"


def test_relative_remote_path_is_resolved_against_the_cwd(
    bare: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = GitBackend("remote.git", "clone")
    assert backend.root == (tmp_path / "clone").resolve()
    assert backend.put_many([(rel(1), payload(1))]) == ["written"]
    assert remote_files(bare) == [rel(1)]


@pytest.mark.parametrize("bad", ["../escape.json", ".git/config", "/abs/x.json", "audit/../x.json", ""])
def test_paths_outside_the_store_are_refused(bare: Path, tmp_path: Path, bad: str) -> None:
    backend = GitBackend(str(bare), tmp_path / "w")
    with pytest.raises(StoreError, match="invalid store path"):
        backend.put_many([(bad, b"x")])
    assert commit_count(bare) == 0


def test_invalid_arguments(bare: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="branch"):
        GitBackend(str(bare), tmp_path / "a", branch="bad..name")
    with pytest.raises(StoreError, match="author"):
        GitBackend(str(bare), tmp_path / "b", author="no email")
    with pytest.raises(StoreError, match="max_retries"):
        GitBackend(str(bare), tmp_path / "c", max_retries=0)


# ---------------------------------------------------------------------------- remote failures


def test_unreachable_remote_is_a_store_remote_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-remote.git"
    with pytest.raises(StoreRemoteError) as info:
        GitBackend(str(missing), tmp_path / "w")
    assert not isinstance(info.value.__cause__, subprocess.CalledProcessError)
    assert str(missing) in info.value.message
    assert info.value.hint and "GIT_TERMINAL_PROMPT" in info.value.hint
    assert info.value.exit_code == ExitCode.PROVIDER
    assert not (tmp_path / "w").exists()


def test_credentials_in_the_url_are_not_echoed(tmp_path: Path) -> None:
    """A refused localhost port: fails fast, offline; the token must not appear in the error."""
    with pytest.raises(StoreRemoteError) as info:
        GitBackend("https://user:s3cr3t-token@127.0.0.1:1/org/perf.git", tmp_path / "w", timeout=30)
    assert "127.0.0.1:1/org/perf.git" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_remote_that_disappears_later(bare: Path, tmp_path: Path) -> None:
    backend = GitBackend(str(bare), tmp_path / "w")
    backend.put_many([(rel(1), payload(1))])
    bare.rename(tmp_path / "moved.git")
    for call in (lambda: backend.read(rel(1)), lambda: list(backend.list())):
        with pytest.raises(StoreRemoteError) as info:
            call()
        assert str(bare) in info.value.message and "fetch" in info.value.message
        assert info.value.hint
    with pytest.raises(StoreRemoteError, match=r"remote\.git"):
        backend.put_many([(rel(2), payload(2))])


def test_push_refused_by_the_remote_is_not_retried(bare: Path, tmp_path: Path) -> None:
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    backend = GitBackend(str(bare), tmp_path / "w", max_retries=5)
    pushes = intercept_push(backend, lambda n: None)
    with pytest.raises(StoreRemoteError, match="refused the push") as info:
        backend.put_many([(rel(1), payload(1))])
    assert "hook declined" in info.value.message
    assert len(pushes) == 1
    assert commit_count(bare) == 0


# ---------------------------------------------------------------------------- races, deterministic


def test_lost_push_is_retried_from_a_fresh_fetch(bare: Path, tmp_path: Path) -> None:
    """Another writer pushes between our fetch and our push: ours is rejected, refetched, re-pushed."""
    ours = GitBackend(str(bare), tmp_path / "ours")
    theirs = GitBackend(str(bare), tmp_path / "theirs")
    ours.put_many([(rel(0), payload(0))])

    def sneak_in(n: int) -> None:
        if n == 0:
            theirs.put_many([(rel(1), payload(1))])

    pushes = intercept_push(ours, sneak_in)
    assert ours.put_many([(rel(2), payload(2))]) == ["written"]
    assert len(pushes) == 2  # rejected once, then pushed on top of theirs
    assert remote_files(bare) == [rel(0), rel(1), rel(2)]
    assert commit_count(bare) == 3
    assert_linear(bare)


def test_lost_race_on_the_same_path(bare: Path, tmp_path: Path) -> None:
    """After the retry, same bytes are "identical" (no commit); different bytes are a conflict."""
    ours = GitBackend(str(bare), tmp_path / "ours")
    theirs = GitBackend(str(bare), tmp_path / "theirs")
    intercept_push(ours, lambda n: theirs.put_many([(rel(1), payload(1))]) if n == 0 else None)
    assert ours.put_many([(rel(1), payload(1))]) == ["identical"]
    assert commit_count(bare) == 1

    ours = GitBackend(str(bare), tmp_path / "ours")
    intercept_push(ours, lambda n: theirs.put_many([(rel(2), payload(2, "theirs"))]) if n == 0 else None)
    with pytest.raises(StoreConflictError):
        ours.put_many([(rel(2), payload(2, "ours")), (rel(3), payload(3))])
    assert remote_bytes(bare, rel(2)) == payload(2, "theirs")
    assert remote_files(bare) == [rel(1), rel(2)]
    assert commit_count(bare) == 2


def test_gives_up_after_max_retries(bare: Path, tmp_path: Path) -> None:
    ours = GitBackend(str(bare), tmp_path / "ours", max_retries=3)
    theirs = GitBackend(str(bare), tmp_path / "theirs")
    intercept_push(ours, lambda n: theirs.put_many([(rel(100 + n), payload(n))]))
    with pytest.raises(StoreRemoteError, match="after 3 attempts") as info:
        ours.put_many([(rel(1), payload(1))])
    assert info.value.hint and "max_retries" in info.value.hint
    assert remote_files(bare) == [rel(100), rel(101), rel(102)]  # theirs all landed, history intact
    assert_linear(bare)


# ---------------------------------------------------------------------------- races, real processes

WRITER = """
import json, sys, time
from pathlib import Path
from voxperf.errors import StoreConflictError
from voxperf.store.git import GitBackend

remote, workdir, go, ready, batches, max_retries = sys.argv[1:7]
backend = GitBackend(remote, workdir, max_retries=int(max_retries))
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.002)
out = []
for batch in json.loads(batches):
    try:
        out.extend(backend.put_many([(relpath, text.encode()) for relpath, text in batch]))
    except StoreConflictError:
        out.append("conflict")
print(json.dumps(out))
"""

Batch = list[tuple[str, str]]


def race(bare: Path, tmp_path: Path, writers: list[list[Batch]], max_retries: int = 5) -> list[list[str]]:
    """One process per writer, each with its own clone, released together; each calls put_many once
    per batch. Returns each writer's statuses ("conflict" for a StoreConflictError)."""
    go = tmp_path / "go"
    procs = []
    for i, batches in enumerate(writers):
        args = [str(bare), str(tmp_path / f"writer{i}"), str(go), str(tmp_path / f"ready{i}")]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, *args, json.dumps(batches), str(max_retries)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 20
    while not all((tmp_path / f"ready{i}").exists() for i in range(len(writers))):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return results


def assert_all_landed(bare: Path, files: list[tuple[str, str]], commits: int) -> None:
    assert remote_files(bare) == sorted(path for path, _ in files)
    for path, text in files:
        assert remote_bytes(bare, path) == text.encode()
    assert commit_count(bare) == commits  # none lost, none duplicated
    assert git("rev-list", "--merges", "--count", "main", cwd=bare).stdout.strip() == b"0"
    assert_linear(bare)


def test_two_processes_each_appending_ten_files(bare: Path, tmp_path: Path) -> None:
    """The CI case: two jobs store their results at the same moment, default retries."""
    files = [[(rel(w * 100 + i), f"writer {w} file {i}\n") for i in range(10)] for w in range(2)]
    results = race(bare, tmp_path, [[files[0]], [files[1]]])
    assert results == [["written"] * 10, ["written"] * 10]
    assert_all_landed(bare, files[0] + files[1], commits=2)


def test_two_processes_appending_back_to_back_lose_nothing(bare: Path, tmp_path: Path) -> None:
    """Worst case: each writer makes 10 single-file puts back to back, so they collide over and over.
    Every put must land once, as its own commit, on a linear history. The loser of a round competes
    again with a writer that never pauses, so it may lose several rounds in a row: hence the generous
    ``max_retries`` here (one-off CI writers, as above, need one retry)."""
    files = [[(rel(w * 100 + i), f"writer {w} file {i}\n") for i in range(10)] for w in range(2)]
    results = race(bare, tmp_path, [[[f] for f in files[0]], [[f] for f in files[1]]], max_retries=100)
    assert results == [["written"] * 10, ["written"] * 10]
    assert_all_landed(bare, files[0] + files[1], commits=20)


def test_two_processes_same_path_same_bytes(bare: Path, tmp_path: Path) -> None:
    batch = [(rel(1), "the same result\n")]
    results = race(bare, tmp_path, [[batch], [batch]])
    assert sorted(r for rs in results for r in rs) == ["identical", "written"]
    assert remote_files(bare) == [rel(1)]
    assert commit_count(bare) == 1


def test_two_processes_same_path_different_bytes(bare: Path, tmp_path: Path) -> None:
    results = race(bare, tmp_path, [[[(rel(1), "first\n")]], [[(rel(1), "second\n")]]])
    assert sorted(r for rs in results for r in rs) == ["conflict", "written"]
    winner = "first\n" if results[0] == ["written"] else "second\n"
    assert remote_bytes(bare, rel(1)) == winner.encode()
    assert remote_files(bare) == [rel(1)]
    assert commit_count(bare) == 1


# ---------------------------------------------------------------------------- locations


@pytest.mark.parametrize(
    ("text", "remote"),
    [
        ("git+/srv/perf.git", "/srv/perf.git"),
        ("git+https://host/org/repo.git", "https://host/org/repo.git"),
        ("git+file:///tmp/x.git", "file:///tmp/x.git"),
        (
            "git+ssh://git@github.com/misty-step/vox-perf-audit.git",
            "ssh://git@github.com/misty-step/vox-perf-audit.git",
        ),
        ("git+git@github.com:misty-step/vox-perf-audit.git", "git@github.com:misty-step/vox-perf-audit.git"),
        ("git+../perf.git", "../perf.git"),
    ],
)
def test_parse_location(text: str, remote: str) -> None:
    assert is_git_location(text)
    assert parse_location(text) == remote


@pytest.mark.parametrize(
    "text", ["", "git+", "git+   ", "/srv/perf.git", ".voxperf/store", "https://host/org/repo.git", "git:/x"]
)
def test_not_a_git_location(text: str) -> None:
    assert not is_git_location(text)
    with pytest.raises(StoreError, match="not a git store location"):
        parse_location(text)
