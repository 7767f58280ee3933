"""One typed settings object for ``voxperf serve`` and its Celery workers.

Every setting has one name and is looked up in one order, everywhere: a command-line flag, then the
environment variable ``VOXPERF_<NAME>`` (e.g. ``VOXPERF_STT_SPEC``), then ``[tool.voxperf.serve]`` in
``pyproject.toml`` of the working directory, then the default below. Server and workers read the
same object, so they cannot run different engines by accident.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxperf.errors import UsageError

__all__ = ["ServiceSettings", "env_name"]


def env_name(setting: str) -> str:
    return f"VOXPERF_{setting.upper()}"


@dataclass
class ServiceSettings:
    """Limits, engines, queue and security; defaults are safe for a single machine."""

    max_upload_bytes: int = 25 * 1024 * 1024
    max_duration_s: float = 600.0
    api_token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    stt_spec: str = "faster-whisper"
    tts_spec: str = "piper"
    rewrite_spec: str = "local"
    job_dir: str = ".voxperf/jobs"  # embedded: SQLite job records (jobs.sqlite) under this directory
    jobs_db: str | None = None  # postgresql://... : job records shared by servers and workers
    broker_url: str | None = None  # amqp://... : jobs go to Celery workers (voxperf worker)
    broker_queue: str = "voxperf.jobs"  # the RabbitMQ queue (one per deployment sharing a broker)
    workers: int = 1  # embedded job worker threads; Celery worker threads for voxperf worker
    tts_cache_bytes: int = 32 * 1024 * 1024
    drain_timeout_s: float = 30.0
    # tenants: "tenant:KEY" (hashed when loaded) or "tenant:sha256:HEX"; a keys file has one such
    # entry per line (# comments); api_token is the one-tenant shorthand (tenant "default")
    api_keys: list[str] = field(default_factory=list)
    api_keys_file: str | None = None
    public_metrics: bool = False  # /metrics without a key (a Prometheus scrape on a private network)
    allowed_hosts: list[str] = field(default_factory=list)  # Host header allow-list (empty: any)
    # backpressure: beyond these, 429 with Retry-After
    max_queued_jobs: int = 64  # jobs queued or running, all tenants
    max_queued_audio_s: float = 3600.0  # their audio, all tenants
    tenant_max_jobs: int = 16  # jobs queued or running, per tenant
    tenant_rate_per_s: float = 0.0  # requests per second per tenant (0: no rate limit)
    tenant_burst: int = 20  # requests a tenant may send at once above its rate
    max_inflight_transcriptions: int = 4  # synchronous transcriptions at once
    inflight_wait_s: float = 10.0  # how long a transcription may wait for one of those (as many wait)
    max_inflight_speech: int = 4  # speech streams at once
    tts_slots: int = 0  # syntheses running at once, shared by the streams (0: one per CPU core)
    max_inflight_uploads: int = 4  # job submissions being read, checked and stored at once
    request_deadline_s: float = 300.0  # a speech stream or synchronous transcription, at most
    body_timeout_s: float = 30.0  # between two pieces of a request body

    @property
    def records_target(self) -> str:
        """Where job records live: the PostgreSQL URL, else the embedded SQLite directory."""
        return self.jobs_db or self.job_dir

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        pyproject: Path | None = None,
    ) -> ServiceSettings:
        """Settings from flags (None = not given) > ``VOXPERF_*`` > ``[tool.voxperf.serve]`` > defaults."""
        env = os.environ if env is None else env
        table = _pyproject_table(pyproject if pyproject is not None else Path("pyproject.toml"))
        unknown = sorted(set(table) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UsageError(
                f"unknown setting(s) in [tool.voxperf.serve]: {', '.join(unknown)}",
                f"known: {', '.join(f.name for f in dataclasses.fields(cls))}",
            )
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            flag = (flags or {}).get(f.name)
            if flag is not None:
                values[f.name] = _coerce(hints[f.name], flag, f"--{f.name.replace('_', '-')}")
            elif env.get(env_name(f.name), "").strip():
                values[f.name] = _coerce(hints[f.name], env[env_name(f.name)], env_name(f.name))
            elif f.name in table:
                values[f.name] = _coerce(hints[f.name], table[f.name], f"[tool.voxperf.serve] {f.name}")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.workers < 0:
            raise UsageError(
                f"workers must be >= 0, got {self.workers}", "0 accepts jobs without running them"
            )
        for f in dataclasses.fields(self):  # every number here is a size, a count or a duration
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise UsageError(
                    f"{f.name} must not be negative", f"set {env_name(f.name)} to a positive number"
                )
        if self.broker_url and not self.broker_url.startswith(("amqp://", "amqps://")):
            raise UsageError(
                f"unsupported broker URL {self.broker_url.split('@')[-1]!r}",
                "use RabbitMQ: amqp://USER:PASSWORD@HOST:5672//",
            )
        if self.jobs_db and not self.jobs_db.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise UsageError(
                "unsupported jobs database URL", "use postgresql://USER@HOST:5432/DB or sqlite:///PATH"
            )
        if self.broker_url and not self.jobs_db:
            raise UsageError(
                "Celery workers need a job database they can reach too",
                "give --jobs-db postgresql://... (VOXPERF_JOBS_DB) with --broker",
            )


def _pyproject_table(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", "fix the TOML or run from another directory") from exc
    table = doc.get("tool", {}).get("voxperf", {}).get("serve", {})
    if not isinstance(table, dict):
        raise UsageError("[tool.voxperf.serve] must be a table", "e.g. [tool.voxperf.serve] workers = 2")
    return {str(k).replace("-", "_"): v for k, v in table.items()}


def _coerce(kind: Any, value: Any, source: str) -> Any:
    """A flag, variable or TOML value as the setting's type; a one-line error naming where it came from."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        kind = args[0]
    if typing.get_origin(kind) is list:
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(v).strip() for v in items if str(v).strip()]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"bad {source}={value!r}", "give true or false")
    try:
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value).strip()) if not isinstance(value, int | float) else int(value)
        if kind is float:
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
    except (TypeError, ValueError):
        raise UsageError(
            f"bad {source}={value!r}", f"give {'an integer' if kind is int else 'a number'}"
        ) from None
    return str(value)
