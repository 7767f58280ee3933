"""A git repository as an append-only result store (the dictation app's ``vox-perf-audit`` pattern).

:class:`GitBackend` keeps a local clone (``workdir``) of a remote and drives the ``git`` command line
(argument lists, never a shell; a timeout on every call; no prompts). The clone holds nothing of its
own between calls: every operation starts by fetching and resetting it to ``origin/<branch>``.

Writes are race-safe against other writers pushing to the same remote (CI jobs on several
machines): fetch, reset, refuse conflicts, write, commit once, push with a plain (non-force) push.
If another writer pushed first the push is rejected as non-fast-forward and the whole cycle is
retried from the fetch after a short jittered backoff, so identical content written by the winner
becomes "identical" and different content becomes a :class:`StoreConflictError`. History is only
ever appended to: no force-push, no rebase, no rewrite.

Store locations name a git store as ``git+<url-or-path>`` (``git+/srv/perf.git``,
``git+https://host/org/repo.git``, ``git+file:///tmp/x.git``); see :func:`parse_location`.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import random
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from voxperf.errors import DependencyMissingError, StoreError, StoreRemoteError
from voxperf.store.backend import PutStatus, atomic_create, check_new, list_stored, read_stored

__all__ = ["GIT_PREFIX", "GitBackend", "is_git_location", "parse_location"]

log = logging.getLogger(__name__)

GIT_PREFIX = "git+"
_INDEX_NAME = ".voxperf-index.sqlite"  # the store's rebuildable index (voxperf.store.store.INDEX_NAME)
# never committed: the index (plus SQLite's -wal/-shm/-journal companions) and atomic_create's temp files
_EXCLUDES = (_INDEX_NAME, f"{_INDEX_NAME}-*", "*.tmp")
_MARKER = "voxperf.managed"  # git config key marking a clone this backend created (and may reset)
_LOCK_NAME = "voxperf.lock"  # in .git/: serialises processes sharing one workdir
_AUTHOR = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# how git reports "someone else updated the branch first" (plain rejection or a lost ref-lock race)
_RACE_MARKERS = (
    "non-fast-forward",
    "fetch first",
    "[rejected]",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
    "stale info",
)
_NO_PROMPT_HINT = (
    "check the URL or path and that you can reach it; git runs without prompts "
    "(GIT_TERMINAL_PROMPT=0), so use a credential helper, a token in the URL or an SSH key"
)

try:  # POSIX advisory locks; elsewhere one workdir must not be shared by concurrent processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def is_git_location(text: str) -> bool:
    """True when a store location names a git repository (``git+<url-or-path>``)."""
    return isinstance(text, str) and text.startswith(GIT_PREFIX) and bool(text[len(GIT_PREFIX) :].strip())


def parse_location(text: str) -> str:
    """The remote (URL or path) of a ``git+<url-or-path>`` store location, e.g. ``git+/srv/p.git`` ->
    ``/srv/p.git``; raises :class:`StoreError` for anything else."""
    if not is_git_location(text):
        raise StoreError(
            f"{text!r} is not a git store location",
            "write it as git+<url-or-path>, e.g. git+https://github.com/org/perf.git or git+/srv/perf.git",
        )
    return text[len(GIT_PREFIX) :].strip()


def _redact(text: str) -> str:
    """Hide credentials embedded in URLs (``https://user:token@host`` -> ``https://***@host``)."""
    return _USERINFO.sub("***@", text)


def _normalize_remote(remote: str) -> str:
    """URLs and scp-style ``host:path`` stay as written; a local path becomes absolute, because git
    runs with the clone as its working directory, where a relative path would mean something else."""
    if "://" in remote:
        return remote
    if re.match(r"^[^/\\]*:", remote) and not re.match(r"^[A-Za-z]:[\\/]", remote):
        return remote  # scp-like user@host:path
    return str(Path(remote).expanduser().resolve())


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return _redact(line.strip())
    return "no error output"


def _git_env() -> dict[str, str]:
    """The caller's environment minus anything that would point git at another repository, with
    prompts off and C-locale messages (they are parsed)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_COMMON_DIR",
            "GIT_NAMESPACE",
            "GIT_PREFIX",
        }
    }
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C", LANGUAGE="C")
    return env


class GitBackend:
    """An append-only store in a git repository, through a managed local clone (``root``)."""

    name = "git"

    def __init__(
        self,
        remote: str,
        workdir: str | os.PathLike[str],
        *,
        branch: str = "main",
        author: str = "voxperf <voxperf@localhost>",
        max_retries: int = 5,
        timeout: float = 120.0,
        refresh_interval: float = 0.0,
    ) -> None:
        """Clone ``remote`` into ``workdir`` unless it is already this backend's clone.

        ``timeout`` bounds every git call (seconds). ``refresh_interval``: reads and listings reuse
        the last fetch when it is younger than this (0: always fetch first); writes always fetch.
        """
        if not isinstance(remote, str) or not remote.strip():
            raise StoreError("the git store has no remote", "pass a URL or path, e.g. git+/srv/perf.git")
        if max_retries < 1:
            raise StoreError(f"max_retries must be at least 1, got {max_retries}", "pass max_retries >= 1")
        m = _AUTHOR.match(author)
        if m is None:
            raise StoreError(f"invalid git author {author!r}", 'write it as "Name <email>"')
        self.remote = _normalize_remote(remote.strip())
        self.branch = branch
        self.max_retries = max_retries
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self.root = Path(workdir).expanduser().resolve()
        self._identity = ("-c", f"user.name={m['name']}", "-c", f"user.email={m['email']}")
        self._env = _git_env()
        self._last_refresh = -float("inf")
        self._check_branch()
        with self._open_lock():  # several processes may open (or create) the same clone at once
            self._open_clone()

    def __repr__(self) -> str:
        return f"GitBackend({_redact(self.remote)!r}, {str(self.root)!r}, branch={self.branch!r})"

    # ------------------------------------------------------------------ git plumbing

    def _git(
        self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one git command (list arguments, no shell, timeout, no prompts). ``check`` raises a
        :class:`StoreError` naming the command on failure; callers that interpret failures pass False."""
        cmd = [
            "git",
            *self._identity,
            "-c",
            "init.defaultBranch=main",
            "-c",
            "core.autocrlf=false",
            "-c",
            "commit.gpgSign=false",
            "-c",
            f"core.hooksPath={os.devnull}",
            "-c",
            "credential.interactive=never",
            *args,
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd or self.root,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout or self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise DependencyMissingError(
                "the git command is not installed", "install git to use a git+ store"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise StoreRemoteError(
                f"git {args[0]} on the store {_redact(self.remote)} timed out after {exc.timeout:.0f}s",
                "check the network and that the remote answers; git never prompts here",
            ) from exc
        if check and proc.returncode != 0:
            raise StoreError(
                f"git {' '.join(args[:2])} failed in {self.root}: {_first_line(proc.stderr)}",
                f"the managed clone may be damaged: delete {self.root} and retry",
            )
        return proc

    def _remote_error(self, what: str, proc: subprocess.CompletedProcess[str]) -> StoreRemoteError:
        return StoreRemoteError(
            f"cannot {what} git remote {_redact(self.remote)}: {_first_line(proc.stderr)}", _NO_PROMPT_HINT
        )

    def _check_branch(self) -> None:
        proc = self._git(
            "check-ref-format", f"refs/heads/{self.branch}", cwd=Path(tempfile.gettempdir()), check=False
        )
        if proc.returncode != 0 or self.branch.startswith("-"):
            raise StoreError(f"invalid git branch name {self.branch!r}", "pass a branch name such as main")

    def _open_clone(self) -> None:
        """Use ``root`` if it is already our clone, else clone into it (it must be absent or empty)."""
        if (self.root / ".git").is_dir():
            marker = self._git("config", "--get", _MARKER, check=False).stdout.strip()
            if marker != "true":
                raise StoreError(
                    f"{self.root} is a git repository voxperf did not create",
                    "the git store resets its clone on every call: give it a directory of its own",
                )
            # the clone is ours and holds nothing of its own: follow the remote we are given now
            self._git("remote", "set-url", "origin", self.remote)
        else:
            if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
                raise StoreError(
                    f"cannot clone the git store into {self.root}: it exists and is not empty",
                    "point the store's workdir at a new or empty directory",
                )
            try:
                self.root.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create {self.root.parent}: {exc.strerror}", "choose another path"
                ) from exc
            proc = self._git(
                "clone", "--quiet", "--no-checkout", "--no-tags", "--config", f"{_MARKER}=true",
                "--", self.remote, str(self.root),
                cwd=self.root.parent, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise self._remote_error("clone", proc)
        # a wildcard refspec: a branch missing on the remote is an empty store, not a fetch error
        self._git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
        self._git("config", "remote.origin.tagOpt", "--no-tags")
        self._git("config", "gc.autoDetach", "false")
        self._git("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        info = self.root / ".git" / "info"
        info.mkdir(parents=True, exist_ok=True)
        exclude = info / "exclude"
        have = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        missing = [p for p in _EXCLUDES if p not in have]
        if missing:
            exclude.write_text("\n".join([*have, *missing]) + "\n", encoding="utf-8")
        # results are opaque bytes: no end-of-line conversion, filters or keyword expansion
        (info / "attributes").write_text("* -text -filter -ident\n", encoding="utf-8")

    @contextlib.contextmanager
    def _open_lock(self) -> Iterator[None]:
        """A lock beside the workdir (the clone may not exist yet, so it cannot live inside it)."""
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f".{self.root.name}.open.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise operations on this clone across processes and threads sharing the workdir."""
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        with open(self.root / ".git" / _LOCK_NAME, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _rev(self, ref: str) -> str | None:
        proc = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None

    def _sync(self) -> str | None:
        """Fetch and make the clone exactly ``origin/<branch>`` (tree, index, branch; untracked files
        except the excluded index removed). Returns the remote tip, None if the branch does not exist."""
        ref = f"refs/remotes/origin/{self.branch}"
        before = self._rev(ref)
        proc = self._git("fetch", "--quiet", "--prune", "--no-tags", "origin", check=False)
        if proc.returncode != 0:
            raise self._remote_error("fetch from", proc)
        tip = self._rev(ref)
        if before and before != tip:
            if tip is None:
                log.warning("branch %s was deleted on the git store %s", self.branch, _redact(self.remote))
            elif self._git("merge-base", "--is-ancestor", before, tip, check=False).returncode != 0:
                log.warning(
                    "history of %s on the git store %s was rewritten (%s is gone): the store is meant to be "
                    "append-only",
                    self.branch,
                    _redact(self.remote),
                    before[:12],
                )
        if tip is None:  # empty remote (or no such branch yet): an unborn branch, empty index
            self._git("update-ref", "-d", f"refs/heads/{self.branch}", check=False)
            self._git("read-tree", "--empty")
        else:
            self._git("reset", "--quiet", "--hard", tip)
        self._git("clean", "-d", "--force", "--quiet")  # no -x: excluded files (the index) stay
        self._last_refresh = time.monotonic()
        return tip

    def _refresh(self) -> None:
        if time.monotonic() - self._last_refresh >= self.refresh_interval:
            self._sync()

    # ------------------------------------------------------------------ Backend

    def refresh(self) -> None:
        """Fetch now and bring the clone to the remote branch's tip."""
        with self._locked():
            self._sync()

    def read(self, relpath: str) -> bytes | None:
        """The bytes stored at ``relpath`` (or its ``.gz`` twin) on the remote branch; None if absent."""
        _check_relpath(relpath)
        with self._locked():
            self._refresh()
            return read_stored(self.root, relpath)

    def list(self) -> Iterator[str]:
        """Every result path on the remote branch (a snapshot taken now, not lazily)."""
        with self._locked():
            self._refresh()
            return iter(sorted(list_stored(self.root)))

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> builtins.list[PutStatus]:
        """Append the new files in one commit and push it; identical ones are no-ops; any conflict
        refuses the whole batch before anything is pushed. Retries when another writer pushed first."""
        items = [(relpath, bytes(data)) for relpath, data in items]
        for relpath, _ in items:
            _check_relpath(relpath)
        if not items:
            return []
        with self._locked():
            last = ""
            for attempt in range(self.max_retries):
                base = self._sync()
                statuses, new = self._plan(items)
                if not new:
                    return statuses
                for relpath, data in new:
                    if not atomic_create(self.root / relpath, data):  # cannot happen on a clean tree
                        raise StoreError(f"{relpath} appeared in {self.root} while writing", "retry")
                paths = [relpath for relpath, _ in new]
                self._git("add", "--force", "--", *paths)
                body = "\n".join(paths)
                self._git("commit", "--quiet", "--no-verify", "-m", self._subject(len(new)), "-m", body)
                proc = self._git(
                    "push", "--porcelain", "origin", f"HEAD:refs/heads/{self.branch}", check=False
                )
                if proc.returncode == 0:
                    self._last_refresh = time.monotonic()
                    if _up_to_date(proc):
                        # another writer had pushed this very commit (same parent, tree, author, message
                        # and second): the files were already there, our push changed nothing
                        return ["identical" for _ in statuses]
                    return statuses
                if not self._lost_race(proc, base):
                    raise StoreRemoteError(
                        f"git remote {_redact(self.remote)} refused the push to {self.branch}: "
                        f"{_push_reason(proc)}",
                        "check write access (token scope, branch protection, hooks) on the store repository",
                    )
                last = _push_reason(proc)
                delay = random.uniform(0, min(2.0, 0.05 * 2**attempt))
                log.info(
                    "push to %s lost a race (attempt %d), retrying in %.2fs", self.branch, attempt + 1, delay
                )
                time.sleep(delay)
            raise StoreRemoteError(
                f"gave up pushing to git remote {_redact(self.remote)} after {self.max_retries} attempts: "
                f"other writers kept pushing first (last: {last})",
                "retry later, or allow more attempts (max_retries)",
            )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _subject(n: int) -> str:
        return f"voxperf store: add {n} result{'' if n == 1 else 's'}"

    def _plan(
        self, items: Sequence[tuple[str, bytes]]
    ) -> tuple[builtins.list[PutStatus], builtins.list[tuple[str, bytes]]]:
        """Status of each item against the synced tree (raises on conflict) and the files to write."""
        statuses: list[PutStatus] = []
        new: dict[str, bytes] = {}
        for relpath, data in items:
            existing = new.get(relpath)
            if existing is None:
                existing = read_stored(self.root, relpath)
            status = check_new(existing, data, relpath)
            if status is None:
                new[relpath] = data
                status = "written"
            statuses.append(status)
        return statuses, list(new.items())

    def _lost_race(self, proc: subprocess.CompletedProcess[str], base: str | None) -> bool:
        """Was the push rejected because another writer updated the branch first?"""
        out = f"{proc.stdout}\n{proc.stderr}"
        if any(marker in out for marker in _RACE_MARKERS) and "hook declined" not in out:
            return True
        # unrecognised wording: it was a race if the remote branch moved since our fetch
        check = self._git("ls-remote", "--heads", "origin", f"refs/heads/{self.branch}", check=False)
        if check.returncode != 0:
            return False
        tip = check.stdout.split()[0] if check.stdout.strip() else None
        return tip != base


def _up_to_date(proc: subprocess.CompletedProcess[str]) -> bool:
    """Did ``git push --porcelain`` report the ref as already up to date (flag ``=``)?"""
    return any(line.startswith("=\t") for line in proc.stdout.splitlines())


def _push_reason(proc: subprocess.CompletedProcess[str]) -> str:
    """Why a push failed: the porcelain status of the rejected ref, else git's first error line."""
    for line in proc.stdout.splitlines():
        if line.startswith("!"):
            return _redact(line.split("\t")[-1].strip())
    return _first_line(proc.stderr)


def _check_relpath(relpath: str) -> None:
    """Store paths are relative, normalised and stay out of ``.git`` (the clone's own data)."""
    p = PurePosixPath(relpath) if isinstance(relpath, str) else None
    if (
        p is None
        or not relpath
        or "\\" in relpath
        or "\0" in relpath
        or p.is_absolute()
        or any(part in ("..", ".", ".git", "") for part in relpath.split("/"))
    ):
        raise StoreError(f"invalid store path {relpath!r}", "store paths come from StoreKey.relpath")
