"""One typed settings object for ``voxperf serve`` and its Celery workers.

Every setting has one name and is looked up in one order, everywhere: a command-line flag, then the
environment variable ``VOXPERF_<NAME>`` (e.g. ``VOXPERF_STT_SPEC``), then ``[tool.voxperf.serve]`` in
``pyproject.toml`` of the working directory, then the default below. Server and workers read the
same object, so they cannot run different engines by accident. Values are validated by pydantic
(strings from the environment converted, numbers finite and not negative, lists comma-separated);
a bad one is a one-line error naming where it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from voxperf.errors import UsageError

__all__ = ["ServiceSettings", "env_name", "validated"]


def env_name(setting: str) -> str:
    return f"VOXPERF_{setting.upper()}"


def _split(value: Any) -> Any:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


Count = Annotated[int, Field(ge=0)]  # sizes and counts
Number = Annotated[float, Field(ge=0)]  # durations, rates (finite: NaN and Infinity are refused)
Names = Annotated[list[str], BeforeValidator(_split)]  # "a,b" in a variable or flag, a list in TOML


class ServiceSettings(BaseModel):
    """Limits, engines, queue and security; defaults are safe for a single machine."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_upload_bytes: Count = 25 * 1024 * 1024
    max_duration_s: Number = 600.0
    api_token: str | None = None
    cors_origins: Names = Field(default_factory=list)
    stt_spec: str = "faster-whisper"
    tts_spec: str = "piper"
    rewrite_spec: str = "local"
    job_dir: str = ".voxperf/jobs"  # embedded: SQLite job records (jobs.sqlite) under this directory
    jobs_db: str | None = None  # postgresql://... : job records shared by servers and workers
    broker_url: str | None = None  # amqp://... : jobs go to Celery workers (voxperf worker)
    broker_queue: str = "voxperf.jobs"  # the RabbitMQ queue (one per deployment sharing a broker)
    workers: Count = 1  # embedded job worker threads; Celery worker threads for voxperf worker
    tts_cache_bytes: Count = 32 * 1024 * 1024
    drain_timeout_s: Number = 30.0
    # tenants: "tenant:KEY" (hashed when loaded) or "tenant:sha256:HEX"; a keys file has one such
    # entry per line (# comments); api_token is the one-tenant shorthand (tenant "default")
    api_keys: Names = Field(default_factory=list)
    api_keys_file: str | None = None
    public_metrics: bool = False  # /metrics without a key (a Prometheus scrape on a private network)
    allowed_hosts: Names = Field(default_factory=list)  # Host header allow-list (empty: any)
    # backpressure: beyond these, 429 with Retry-After
    max_queued_jobs: Count = 64  # jobs queued or running, all tenants
    max_queued_audio_s: Number = 3600.0  # their audio, all tenants
    tenant_max_jobs: Count = 16  # jobs queued or running, per tenant
    tenant_rate_per_s: Number = 0.0  # requests per second per tenant (0: no rate limit)
    tenant_burst: Count = 20  # requests a tenant may send at once above its rate
    max_inflight_transcriptions: Count = 4  # synchronous transcriptions at once
    inflight_wait_s: Number = 10.0  # how long a transcription may wait for one of those (as many wait)
    max_inflight_speech: Count = 4  # speech streams at once
    tts_slots: Count = 0  # syntheses running at once, shared by the streams (0: one per CPU core)
    max_inflight_uploads: Count = 4  # job submissions being read, checked and stored at once
    request_deadline_s: Number = 300.0  # a speech stream or synchronous transcription, at most
    body_timeout_s: Number = 30.0  # between two pieces of a request body

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
        path = pyproject if pyproject is not None else Path("pyproject.toml")
        table = _pyproject_table(path)
        unknown = sorted(set(table) - set(cls.model_fields))
        if unknown:
            raise UsageError(
                f"unknown setting(s) in [tool.voxperf.serve]: {', '.join(unknown)}",
                f"known: {', '.join(cls.model_fields)}",
            )
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in cls.model_fields:
            flag = (flags or {}).get(name)
            if flag is not None:
                values[name], sources[name] = flag, f"--{name.replace('_', '-')}"
            elif env.get(env_name(name), "").strip():
                values[name], sources[name] = env[env_name(name)], env_name(name)
            elif name in table:
                values[name], sources[name] = table[name], f"[tool.voxperf.serve] {name} in {path}"
        settings = validated(cls, values, sources)
        settings.validate_urls()
        return settings

    def validate_urls(self) -> None:
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


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], values: dict[str, Any], sources: Mapping[str, str]) -> Model:
    """``model`` from ``values``; a bad one is a usage error naming where it came from (the flag,
    the variable or the file) and the rule it broke."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        raise UsageError(
            f"bad {sources.get(name, name)}: {first['msg']}", "fix it, or unset it for the default"
        ) from None


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
