"""Where comparisons get their base and trend: files, or the store (per-lane files reassembled)."""

from __future__ import annotations

from pathlib import Path

from voxperf.bench.schema import BenchResult
from voxperf.store.keys import StoreKey
from voxperf.store.store import ResultStore

__all__ = ["baseline_from_store", "merge_lanes", "trend_from_store"]


def merge_lanes(parts: list[BenchResult]) -> BenchResult | None:
    """One result holding the lanes of several per-lane results (metadata from the first)."""
    if not parts:
        return None
    lanes = {}
    for p in parts:
        lanes.update(p.lanes)
    return parts[0].model_copy(update={"lanes": lanes})


def baseline_from_store(
    store: ResultStore, base: str, repo: Path, lanes: list[str], *, depth: int = 400
) -> tuple[BenchResult | None, str, str]:
    """The stored baseline of each lane at ``base`` (exact or nearest ancestor), merged.

    Returns (result or None, mode, label). The mode is ``exact`` when every lane was exact,
    ``nearest_ancestor`` when any was found further back, ``missing`` when none was found.
    """
    parts, modes, commits = [], [], set()
    for lane in lanes:
        answer = store.baseline(base, repo, lane=lane, depth=depth)
        modes.append(answer.mode)
        if answer.key is not None:
            got = store.get(answer.key)
            if got is not None:
                parts.append(got)
                commits.add(answer.key.commit[:12])
    merged = merge_lanes(parts)
    if merged is None:
        return None, "missing", base[:12]
    found = [m for m in modes if m != "missing"]  # the mode describes the lanes that were found
    mode = "exact" if all(m == "exact" for m in found) else "nearest_ancestor"
    if len(found) < len(modes):
        mode += " (some lanes missing)"
    return merged, mode, ",".join(sorted(commits))


def trend_from_store(
    store: ResultStore, *, limit: int = 16, repo: Path | None = None, pr: int | None = None
) -> list[tuple[str, BenchResult]]:
    """The latest ``limit`` main-line runs (plus a PR's runs when ``pr`` is given), oldest first."""
    out: list[tuple[str, BenchResult]] = []
    sources: list[tuple[str, int | None]] = [("main", None)] + ([(f"pr/{pr}", pr)] if pr is not None else [])
    for source, number in sources:
        by_commit: dict[str, list[BenchResult]] = {}
        order: list[str] = []
        for row in store.ls(pr=number, limit=limit * 2, repo=repo):
            got = store.get(StoreKey(row.commit, row.lane, row.pr))
            if got is None:
                continue
            if row.commit not in by_commit:
                order.append(row.commit)
            by_commit.setdefault(row.commit, []).append(got)
        for commit in order[-limit:]:
            merged = merge_lanes(by_commit[commit])
            if merged is not None:
                out.append((source, merged))
    out.sort(key=lambda sr: sr[1].createdAt)
    return out[-limit:]
