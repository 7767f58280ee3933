"""Where the store is: flag, then ``VOXPERF_STORE``, then ``[tool.voxperf] store`` in
``pyproject.toml`` or ``store`` in ``voxperf.toml`` (nearest to the working directory), then
``.voxperf/store``. A location ``git+<url-or-path>`` is a git repository used as the store."""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any

from voxperf.errors import StoreError, UsageError
from voxperf.store.backend import LocalBackend
from voxperf.store.store import ResultStore

__all__ = ["DEFAULT_STORE", "open_store", "project_config", "store_location"]

DEFAULT_STORE = ".voxperf/store"


def project_config(cwd: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The ``[tool.voxperf]`` table (or ``voxperf.toml``) nearest to ``cwd``, and the file's directory."""
    here = (cwd or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for name, table in (("voxperf.toml", None), ("pyproject.toml", ("tool", "voxperf"))):
            path = directory / name
            if not path.is_file():
                continue
            try:
                data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"cannot read {path}: {exc}", "fix the TOML syntax") from exc
            if table is not None:
                for part in table:
                    data = data.get(part, {}) if isinstance(data, dict) else {}
                if not data:
                    continue
            return data, directory
    return {}, None


def store_location(flag: str | None = None, cwd: Path | None = None) -> str:
    """Resolve the store location by precedence (see module docstring)."""
    if flag:
        return flag
    env = os.environ.get("VOXPERF_STORE")
    if env:
        return env
    config, where = project_config(cwd)
    value = config.get("store")
    if value is not None:
        if not isinstance(value, str) or not value:
            raise UsageError(
                "[tool.voxperf] store must be a non-empty string", 'e.g. store = ".voxperf/store"'
            )
        if value.startswith("git+") or Path(value).is_absolute() or where is None:
            return value
        return str(where / value)  # relative to the config file, not to wherever the command runs
    return DEFAULT_STORE


def open_store(location: str, *, create: bool = True) -> ResultStore:
    """A :class:`ResultStore` over a local directory or, for ``git+...``, a managed git clone.

    With ``create=False`` (commands that only read) a local store that does not exist is an
    error rather than a new empty store, so a mistyped path cannot silently mean "no baseline"."""
    if location.startswith("git+"):
        from voxperf.store.git import GitBackend, parse_location

        remote = parse_location(location)
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voxperf" / "stores"
        workdir = cache / hashlib.sha256(remote.encode()).hexdigest()[:16]
        # one fetch serves a whole operation (verify reads every file) instead of one fetch per file
        return ResultStore(GitBackend(remote, workdir, refresh_interval=5.0))
    if not create and not Path(location).expanduser().is_dir():
        raise StoreError(
            f"there is no store at {location}", "check --store / VOXPERF_STORE / [tool.voxperf] store"
        )
    return ResultStore(LocalBackend(location))
