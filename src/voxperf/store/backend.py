"""Store backends: one small interface, a local directory, and (``git.py``) a git repository.

A backend stores opaque bytes under store-relative paths produced by
:class:`~voxperf.store.keys.StoreKey`. It is append-only: :meth:`Backend.put_new` creates a file or
finds it already there; it never replaces one. Every backend also has a local ``root`` directory
holding the files (for git: the working clone), where the store keeps its rebuildable index.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import stat
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from voxperf.errors import StoreConflictError, StoreError

__all__ = ["Backend", "LocalBackend", "PutStatus", "atomic_create", "fsync_dir"]

PutStatus = Literal["written", "identical"]


@runtime_checkable
class Backend(Protocol):
    """Append-only storage of result files."""

    name: str
    root: Path  # local directory holding the files (and the index)

    def read(self, relpath: str) -> bytes | None:
        """The (decompressed) bytes stored at ``relpath`` or its ``.gz`` twin; None if absent."""
        ...

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> list[PutStatus]:
        """Create each file that does not exist; identical content is a no-op; different content
        raises :class:`StoreConflictError` before anything is written."""
        ...

    def list(self) -> Iterator[str]:
        """Every stored path under ``audit/`` (``.json`` and ``.json.gz``), relative to the root."""
        ...


def fsync_dir(path: Path) -> None:
    """Make a directory entry durable (a rename or link is not durable until its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_create(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` atomically and durably, never replacing an existing file.

    Writes a temp file in the same directory, fsyncs it, hard-links it to the final name (``link``
    fails if the name exists, so two racing writers cannot both win) and fsyncs the directory. A
    crash at any point leaves either no file or the complete file, never a torn one. Returns False
    when ``path`` already existed (nothing written).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot write to the store at {path.parent}: {exc.strerror or exc}",
            "check the store directory exists and is writable",
        ) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:  # e.g. a filesystem without hard links
            raise StoreError(
                f"cannot create {path}: {exc.strerror or exc}",
                "put the store on a local filesystem that supports hard links",
            ) from exc
        fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


MAX_RESULT_BYTES = 256 * 1024 * 1024  # a result file larger than this is not a bench result
STALE_TEMP_S = 600.0  # a put takes milliseconds: a temp file this old belongs to a killed writer


def remove_stale_temps(directory: Path, *, now: float | None = None) -> int:
    """Delete temp files left by puts that were killed (older than ``STALE_TEMP_S``); returns how many."""
    now = time.time() if now is None else now
    removed = 0
    for tmp in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if not tmp.is_symlink() and now - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()
                removed += 1
    return removed


def bounded_gunzip(raw: bytes, label: str, limit: int = MAX_RESULT_BYTES) -> bytes:
    """Decompress gzip without letting a small file expand past ``limit`` (a gzip bomb)."""
    out = bytearray()
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
        while chunk := fh.read(1 << 20):
            out += chunk
            if len(out) > limit:
                raise StoreError(
                    f"{label} expands to more than {limit} bytes", "this is not a voxperf result"
                )
    return bytes(out)


def _read_regular(path: Path, limit: int = MAX_RESULT_BYTES) -> bytes | None:
    """The bytes of a regular file, never through a symlink (a link to /dev/zero must not be read
    until memory runs out) and never more than ``limit``; None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW refused a symlink
            raise StoreError(
                f"{path} is a symlink; the store reads only regular files", "remove the link"
            ) from exc
        raise StoreError(
            f"cannot read {path}: {exc.strerror or exc}", "check the store's permissions"
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise StoreError(f"{path} is not a regular file", "remove it from the store")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"{path} is larger than {limit} bytes", "this is not a voxperf result")
    return data


def read_stored(root: Path, relpath: str) -> bytes | None:
    """Read ``relpath`` or its gzip twin under ``root``; the bytes returned are decompressed."""
    path = root / relpath
    data = _read_regular(path)
    if data is not None:
        return data
    gz = path.with_name(path.name + ".gz")
    raw = _read_regular(gz)
    if raw is None:
        return None
    try:
        return bounded_gunzip(raw, str(gz))
    except (OSError, EOFError) as exc:
        raise StoreError(f"stored file {gz} is not valid gzip: {exc}", "run `voxperf store verify`") from exc


def list_stored(root: Path) -> Iterator[str]:
    audit = root / "audit"
    if not audit.is_dir():
        return
    for dirpath, _dirs, files in os.walk(audit):  # symlinked directories are not followed
        for name in files:
            if name.endswith((".json", ".json.gz")) and not name.startswith("."):
                path = Path(dirpath) / name
                if not path.is_symlink():  # a link is never a stored result
                    yield path.relative_to(root).as_posix()


def check_new(existing: bytes | None, data: bytes, relpath: str) -> PutStatus | None:
    """None when the key is free, "identical" when it holds these bytes, else a conflict."""
    if existing is None:
        return None
    if existing == data:
        return "identical"
    raise StoreConflictError(
        f"{relpath} already holds a different result; the store is append-only",
        "results are never replaced: re-run on a new commit, or remove the file by hand if it is wrong",
    )


class LocalBackend:
    """A plain directory (default ``.voxperf/store``)."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create store directory {self.root}: {exc.strerror}", "choose another path"
            ) from exc

    def read(self, relpath: str) -> bytes | None:
        return read_stored(self.root, relpath)

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> list[PutStatus]:
        # refuse conflicts before writing anything
        for relpath, data in items:
            check_new(self.read(relpath), data, relpath)
        out: list[PutStatus] = []
        for relpath, data in items:
            if atomic_create(self.root / relpath, data):
                out.append("written")
            else:  # a concurrent writer won the race: identical is fine, different is a conflict
                out.append(check_new(self.read(relpath), data, relpath) or "identical")
        return out

    def list(self) -> Iterator[str]:
        return list_stored(self.root)

    def __repr__(self) -> str:
        return f"LocalBackend({self.root})"
