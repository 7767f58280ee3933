"""Tenants and backpressure: who is asking, and whether the server can take it now.

* **Tenants.** API keys map to tenants (``tenant:KEY`` or ``tenant:sha256:HEX`` entries from
  settings or a keys file). Only SHA-256 digests are kept in memory and on disk; a presented key is
  hashed and compared in constant time. A tenant sees, reads and cancels only its own jobs. With no
  keys configured the server is open and every job belongs to the tenant ``""``.
* **Rate.** A token bucket per tenant (``tenant_rate_per_s``, ``tenant_burst``), on an injectable
  clock.
* **In flight.** Synchronous work (transcriptions, speech streams) is counted; past the bound a
  transcription waits a little for a slot (a queue no longer than the bound itself), then is
  answered 429, instead of queueing without bound in a thread pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from voxperf.errors import UsageError
from voxperf.service.http import ApiError
from voxperf.service.settings import ServiceSettings

__all__ = ["InFlight", "KeyRing", "RateLimiter", "hash_key"]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class KeyRing:
    """Key digests → tenant. Empty: the server is open (no authentication)."""

    digests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KeyRing:
        entries = list(settings.api_keys)
        if settings.api_token:
            entries.append(f"default:{settings.api_token}")
        if settings.api_keys_file:
            path = Path(settings.api_keys_file)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise UsageError(
                    f"cannot read the API keys file {path}: {exc.strerror}", "check the path"
                ) from exc
            entries += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return cls.from_entries(entries)

    @classmethod
    def from_entries(cls, entries: list[str]) -> KeyRing:
        """A ring from ``tenant:KEY`` / ``tenant:sha256:HEX`` entries (a usage error names a bad one)."""
        ring = cls()
        for entry in entries:
            tenant, sep, secret = entry.partition(":")
            if not sep or not tenant.strip() or not secret:
                raise UsageError(
                    "an API key entry is not tenant:KEY or tenant:sha256:HEX",
                    "e.g. VOXPERF_API_KEYS=acme:sha256:<64 hex digits> (voxperf serve --hash-key prints one)",
                )
            if secret.startswith("sha256:"):
                digest = secret.removeprefix("sha256:").lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise UsageError(
                        f"tenant {tenant}: the sha256 digest is not 64 hex digits", "hash the key again"
                    )
            else:
                digest = hash_key(secret)
            ring.digests[digest] = tenant.strip()
        return ring

    @property
    def open(self) -> bool:
        return not self.digests

    def tenant(self, authorization: str | None) -> str:
        """The tenant of an ``Authorization: Bearer KEY`` header; 401 when there is none or it is unknown."""
        if self.open:
            return ""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            presented = hash_key(key.strip())
            for digest, tenant in self.digests.items():
                if hmac.compare_digest(presented, digest):
                    return tenant
        raise ApiError(
            401,
            "missing or invalid API key",
            "authentication_error",
            "send Authorization: Bearer <your API key>",
            {"WWW-Authenticate": "Bearer"},
        )


class RateLimiter:
    """A token bucket per tenant; ``check`` raises 429 with the seconds until a token is back."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, tenant: str) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(tenant, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise ApiError(
                    429,
                    f"rate limit: {self.rate:g} requests/s per tenant",
                    "rate_limited",
                    "slow down and retry after the Retry-After seconds",
                    {"Retry-After": str(max(1, round(wait + 0.5)))},
                )
            self._buckets[tenant] = (tokens - 1.0, now)


class InFlight:
    """A bound on synchronous work in progress: past it, 429 (no unbounded queueing)."""

    def __init__(self, limit: int, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.what, self.clock = limit, what, clock
        self.active = 0
        self.waiting = 0
        self._lock = threading.Lock()

    def _take(self) -> Callable[[], None] | None:
        """A free slot and the function that gives it back (once, however many exit paths call it)."""
        with self._lock:
            if self.active >= self.limit:
                return None
            self.active += 1
        held = [True]

        def give_back() -> None:
            with self._lock:
                if held[0]:
                    held[0] = False
                    self.active -= 1

        return give_back

    def claim(self) -> Callable[[], None]:
        """Take a slot now (429 when none is free); returns what gives it back."""
        give_back = self._take()
        if give_back is None:
            raise self._busy()
        return give_back

    def _busy(self) -> ApiError:
        return ApiError(
            429,
            f"the server is busy: {self.active} {self.what} in progress (limit {self.limit})",
            "overloaded",
            "retry after the Retry-After seconds, or submit a job (POST /v1/jobs)",
            {"Retry-After": "1"},
        )

    @asynccontextmanager
    async def queued_slot(self, wait_s: float) -> AsyncIterator[None]:
        """A slot, waiting up to ``wait_s`` for one; at most ``limit`` requests wait at once, so the
        queue stays bounded. Past either bound: 429 with Retry-After."""
        give_back = self._take()
        if give_back is None:
            with self._lock:
                if self.waiting >= self.limit or wait_s <= 0:
                    raise self._busy()
                self.waiting += 1
            try:
                deadline = self.clock() + wait_s
                while (give_back := self._take()) is None:
                    if self.clock() >= deadline:
                        raise self._busy()
                    await asyncio.sleep(0.02)
            finally:
                with self._lock:
                    self.waiting -= 1
        try:
            yield
        finally:
            give_back()
