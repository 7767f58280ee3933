"""Optional parts of voxperf and the pip extras that install them.

The core install (``pip install voxperf``) has trace, stats, schema, compare, gate, report and
store. Everything else is an extra; code reaching for a missing one gets a one-line
:class:`~voxperf.errors.DependencyMissingError` naming the extra to install, never a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from voxperf.errors import DependencyMissingError

__all__ = ["EXTRAS", "installed", "load", "missing_extra", "require_extra"]

# extra -> the importable modules it provides (engine extras live on each engine's plugin)
EXTRAS: dict[str, tuple[str, ...]] = {
    "bench": ("soundfile", "soxr", "av", "jiwer", "whisper_normalizer"),
    "serve": ("fastapi", "uvicorn", "multipart", "prometheus_client", "fastapi_offline"),
    "scale": ("celery", "psycopg"),
    "otel": ("opentelemetry",),
    "load": ("locust", "gevent"),
    "telemetry": ("duckdb", "msgspec"),
}


def missing_extra(extra: str, purpose: str, module: str) -> DependencyMissingError:
    return DependencyMissingError(
        f"{purpose} needs {module}, which is not installed", f"pip install 'voxperf[{extra}]'"
    )


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(extra: str, purpose: str) -> None:
    """Raise a :class:`DependencyMissingError` naming ``extra`` unless all its modules are installed."""
    for module in EXTRAS[extra]:
        if not installed(module):
            raise missing_extra(extra, purpose, module)


def load(module: str, extra: str, purpose: str) -> Any:
    """``import module`` (cheap once imported), or the error naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(extra, purpose, module.split(".")[0]) from exc
