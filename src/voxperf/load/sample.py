"""One request of a load run, as the load generator saw it, with the definitions of its times.

Every time is in nanoseconds from the run's start (``t0``, shared by all generator processes):
``intended`` is when the arrival schedule meant the request to start; ``actual`` when it was sent
(later when the generator was busy: the lag is coordinated omission made visible); ``first_byte``
when the response headers arrived; ``last_byte`` when its body was complete (for a job, when the
job was seen finished). A request that never started is ``dropped`` (``actual`` None).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ERROR_CLASSES", "LoadSample"]

# error classes, so a report can say what went wrong, not only that something did
ERROR_CLASSES = (
    "connect",  # no connection (refused, reset before a response)
    "timeout",  # no complete answer within the request timeout
    "http_4xx",  # the server refused the request (429 included: overload is a failure here)
    "http_5xx",
    "job_failed",  # a job API reported the job failed or cancelled
    "job_timeout",  # the job did not finish within max polls
    "bad_response",  # an answer that does not parse or misses what the scenario needs
    "dropped",  # never started: every slot was busy at its intended time (with --drop-when-busy)
)


@dataclass(slots=True)
class LoadSample:
    """What happened to one scheduled request (see the module docstring for the clocks)."""

    scenario: str
    seq: int  # index in the whole schedule
    generator: int  # which generator process ran it
    intended_ns: int
    actual_ns: int | None = None
    first_byte_ns: int | None = None
    last_byte_ns: int | None = None
    status: int | None = None
    error: str | None = None
    detail: str | None = None  # what the error was (an exception's type and message, an HTTP body)
    fixture: str | None = None
    audio_s: float | None = None  # seconds of audio sent (STT) or received (TTS): for RTFx under load
    bytes_out: int = 0
    bytes_in: int = 0
    metrics: dict[str, float] = field(
        default_factory=dict
    )  # scenario-specific ms values (job_ms, ttfa_ms ...)
    text: str | None = None  # what an STT answered, for WER under load (never sent anywhere)

    @property
    def ok(self) -> bool:
        return self.error is None and self.last_byte_ns is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadSample:
        return cls(**data)
