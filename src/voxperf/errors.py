"""voxperf's exceptions and exit codes.

Every user mistake or environment problem is one of these, never a bare traceback. Each error
carries a message that names the problem, a hint that names the fix, a process exit code for the
CLI and an HTTP status for the service::

    VoxperfError                     base; exit 2 / HTTP 400
    ├── UsageError                   bad option or value;                exit 2 / 400
    │   ├── UnknownEngineError       engine name not registered;         exit 2 / 400
    │   └── SchemaVersionError       result file of an unknown version;  exit 2 / 422
    ├── DependencyMissingError       optional package or binary absent;  exit 2 / 501
    ├── FixtureError                 fixture set empty or unreadable;    exit 2 / 400
    ├── AudioError                   audio unreadable, corrupt or empty; exit 4 / 422
    ├── ModelNotFoundError           no weights for the requested model; exit 3 / 503
    ├── EngineError                  an engine failed while running;     exit 3 / 502
    ├── WorkerError                  a bench worker (base/head) failed;  exit 3 / 502
    ├── PartialFailure               some fixtures failed, results of the rest were written; exit 4
    ├── Cancelled                    a request stopped because it was cancelled; exit 2 / 499
    ├── GitHubError                  the GitHub API refused or failed;   exit 3 / 502
    ├── ServiceUnavailableError      job database or broker unreachable; exit 3 / 503
    │   └── StorageFullError         the service's disk is full;         exit 3 / 507
    └── StoreError                   result store problem;               exit 2 / 400
        ├── StoreConflictError       a key already holds different content; exit 5 / 409
        └── StoreRemoteError         the store's git remote failed;      exit 3 / 502

Exit codes live in one ``IntEnum`` (:class:`ExitCode`); the README documents them.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AudioError",
    "Cancelled",
    "DependencyMissingError",
    "EngineError",
    "ExitCode",
    "FixtureError",
    "GitHubError",
    "ModelNotFoundError",
    "PartialFailure",
    "SchemaVersionError",
    "ServiceUnavailableError",
    "StorageFullError",
    "StoreConflictError",
    "StoreError",
    "StoreRemoteError",
    "UnknownEngineError",
    "UsageError",
    "VoxperfError",
    "WorkerError",
]


class ExitCode(IntEnum):
    """Process exit codes of the ``voxperf`` command."""

    OK = 0
    GATE_FAILED = 1  # a regression at error level (compare/gate)
    USAGE = 2  # bad option, config, fixture set or missing optional dependency
    PROVIDER = 3  # engine or model problem (missing weights, engine crashed, auth)
    DATA = 4  # some inputs could not be processed; results for the rest were written
    CONFLICT = 5  # the append-only store already holds different content under that key
    NOT_COMPARABLE = 6  # gate: base and head cannot be compared honestly (machine, engines, load)


class VoxperfError(Exception):
    """Base of every voxperf error: ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code: ExitCode = ExitCode.USAGE
    http_status: int = 400

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(VoxperfError):
    """An option or value the user gave cannot be used."""


class UnknownEngineError(UsageError):
    """An engine spec names an engine voxperf does not know."""


class SchemaVersionError(UsageError):
    """A result file has a schema version this voxperf cannot read."""

    http_status = 422


class DependencyMissingError(VoxperfError):
    """An optional Python package or external binary is not installed."""

    http_status = 501


class FixtureError(VoxperfError):
    """The fixture set is empty, missing or malformed."""


class AudioError(VoxperfError):
    """Audio bytes could not be decoded (corrupt, truncated, empty or unsupported)."""

    exit_code = ExitCode.DATA
    http_status = 422


class ModelNotFoundError(VoxperfError):
    """No local weights were found for a model."""

    exit_code = ExitCode.PROVIDER
    http_status = 503


class EngineError(VoxperfError):
    """An engine raised while loading or running."""

    exit_code = ExitCode.PROVIDER
    http_status = 502


class WorkerError(VoxperfError):
    """A bench worker (the base's or the head's voxperf) failed to start, speak the protocol or answer."""

    exit_code = ExitCode.PROVIDER
    http_status = 502


class PartialFailure(VoxperfError):
    """Some fixtures failed; results for the ones that worked were still written."""

    exit_code = ExitCode.DATA


class StoreError(VoxperfError):
    """The result store cannot do what was asked (bad key, unreadable file, broken index)."""


class StoreConflictError(StoreError):
    """Append-only: the key already holds different content; nothing was changed."""

    exit_code = ExitCode.CONFLICT
    http_status = 409


class StoreRemoteError(StoreError):
    """The git remote behind a store could not be reached or refused the push."""

    exit_code = ExitCode.PROVIDER
    http_status = 502


class GitHubError(VoxperfError):
    """The GitHub REST API refused a request (auth, permissions) or could not be reached."""

    exit_code = ExitCode.PROVIDER
    http_status = 502


class Cancelled(VoxperfError):
    """A request stopped before its end because it was cancelled (its client went away)."""

    http_status = 499  # "client closed request": nobody reads the answer, the metrics count it


class ServiceUnavailableError(VoxperfError):
    """A service dependency (the job database, the broker) cannot be reached; retry later."""

    exit_code = ExitCode.PROVIDER
    http_status = 503


class StorageFullError(ServiceUnavailableError):
    """The service's disk is full: nothing more can be accepted until space is freed."""

    http_status = 507
