"""Store keys: (commit, lane) on the main line, (PR, commit, lane) for pull requests.

The layout is the dictation audit's, generalised to any lane::

    audit/<commit>.json                      main line, provider lane
    audit/<commit>-<lane>.json               main line, other lanes (codepath)
    audit/pr/<pr>/<commit>.json              pull request, provider lane
    audit/pr/<pr>/<commit>-<lane>.json       pull request, other lanes

Keys are validated (a full 40-hex commit, a positive integer PR, a known lane), so no key can name
a path outside the store's root. ``.json.gz`` files are read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voxperf.bench.schema import LANES
from voxperf.errors import StoreError

__all__ = ["PROVIDER_LANE", "StoreKey", "parse_relpath"]

PROVIDER_LANE = "provider"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_RELPATH = re.compile(
    r"^audit/(?:pr/(?P<pr>[1-9][0-9]{0,9})/)?(?P<commit>[0-9a-f]{40})(?:-(?P<lane>[a-z]+))?\.json(?P<gz>\.gz)?$"
)


@dataclass(frozen=True, slots=True, order=True)
class StoreKey:
    """Where one lane's result for one commit (and optionally one PR) lives."""

    commit: str
    lane: str = PROVIDER_LANE
    pr: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.commit, str) or not _COMMIT.match(self.commit):
            raise StoreError(
                f"invalid commit {self.commit!r}: the store needs a full 40-character lowercase hex SHA",
                "pass the output of `git rev-parse <rev>`",
            )
        if self.lane not in LANES:
            raise StoreError(f"invalid lane {self.lane!r}", f"use one of {', '.join(LANES)}")
        if self.pr is not None and (
            isinstance(self.pr, bool) or not isinstance(self.pr, int) or not 0 < self.pr < 10**10
        ):
            raise StoreError(f"invalid PR number {self.pr!r}", "pass a positive integer, e.g. --pr 42")

    @property
    def relpath(self) -> str:
        """The path of this key's file, relative to the store root (always inside ``audit/``)."""
        name = self.commit if self.lane == PROVIDER_LANE else f"{self.commit}-{self.lane}"
        prefix = "audit/" if self.pr is None else f"audit/pr/{self.pr}/"
        return f"{prefix}{name}.json"

    def __str__(self) -> str:
        where = "main" if self.pr is None else f"PR #{self.pr}"
        return f"{where} {self.commit[:12]} {self.lane}"


def parse_relpath(relpath: str) -> StoreKey | None:
    """The key a store-relative path stands for, or None if the path is not a result file."""
    m = _RELPATH.match(relpath.replace("\\", "/"))
    if m is None:
        return None
    lane = m.group("lane") or PROVIDER_LANE
    if lane == PROVIDER_LANE and m.group("lane"):
        return None  # "<sha>-provider.json" is not a canonical name
    if lane not in LANES:
        return None
    pr = int(m.group("pr")) if m.group("pr") else None
    return StoreKey(commit=m.group("commit"), lane=lane, pr=pr)
