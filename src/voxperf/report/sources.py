"""Where comparisons get their base and trend: files, or the store (per-lane files reassembled)."""

from __future__ import annotations

from pathlib import Path

from voxperf.bench.schema import BenchResult
from voxperf.errors import UsageError
from voxperf.report.compare import Comparison
from voxperf.store.keys import StoreKey
from voxperf.store.store import ResultStore

__all__ = ["baseline_from_store", "load_comparison", "merge_lanes", "trend_from_store"]


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


def _open_store(location: str | None) -> ResultStore:
    from voxperf.store.config import open_store, store_location

    return open_store(store_location(location), create=False)


def load_comparison(
    head: Path,
    base: Path | None,
    base_commit: str | None,
    store: str | None,
    repo: Path,
    trend: int,
    pr: int | None,
    resamples: int,
    gate_metrics: str | None = None,
) -> tuple[Comparison, Comparison | None, list[tuple[str, BenchResult]], BenchResult | None]:
    """Load head, base (a file, or the stored baseline of a commit) and the trend; compare them
    with the project's thresholds, gate and attribution settings (``[tool.voxperf]``). What
    ``voxperf compare``, ``gate`` and ``report`` show.

    Returns (comparison, comparison vs the previous trend run or None, trend runs, base result or None)."""
    from voxperf.bench.schema import load_result
    from voxperf.report.compare import Comparison, compare_results, thresholds_from_config
    from voxperf.report.gate import GateDecision, gate_config_from
    from voxperf.report.sources import baseline_from_store, trend_from_store
    from voxperf.store.config import project_config

    head_result = load_result(head)
    config, _ = project_config()
    thresholds = thresholds_from_config(config)
    gate_config = gate_config_from(config.get("gate", {}), gate_metrics)
    globs = config.get("attribution", {})
    if not isinstance(globs, dict) or not all(
        isinstance(v, list) and all(isinstance(g, str) for g in v) for v in globs.values()
    ):
        raise UsageError(
            "[tool.voxperf.attribution] must map stage names to lists of globs", 'e.g. stt = ["src/stt/**"]'
        )
    if (base is None) == (base_commit is None):
        raise UsageError(
            "give exactly one of --base FILE or --base-commit SHA", "e.g. --base-commit origin/main"
        )
    opened = None
    if base_commit is not None:
        opened = _open_store(store)
    elif trend > 0:  # the trend is context: without a store there is simply none
        from voxperf.errors import StoreError

        try:
            opened = _open_store(store)
        except StoreError:
            opened = None
    base_result: BenchResult | None
    if base is not None:
        base_result, mode, label = load_result(base), None, str(base)
    else:
        assert opened is not None and base_commit is not None
        base_result, mode, label = baseline_from_store(opened, base_commit, repo, list(head_result.lanes))
    trend_runs = (
        trend_from_store(opened, limit=trend, repo=repo, pr=pr) if (opened is not None and trend > 0) else []
    )
    head_label = (head_result.git.commit or str(head))[:12]
    if base_result is None:
        empty = Comparison(
            label,
            head_label,
            [],
            [],
            [],
            [],
            [f"no baseline found for {label}: nothing compared"],
            baseline_mode="missing",
            decision=GateDecision("nothing compared", [], [f"no baseline found for {label}"]),
        )
        return empty, None, trend_runs, None
    comparison = compare_results(
        base_result,
        head_result,
        thresholds=thresholds,
        base_label=label,
        head_label=head_label,
        repo=repo if (repo / ".git").exists() else None,
        globs=globs,
        resamples=resamples,
        gate=gate_config,
    )
    comparison.baseline_mode = mode
    previous = [r for _, r in trend_runs if r.git.commit != head_result.git.commit]
    vs_trend = None
    if previous:
        vs_trend = compare_results(
            previous[-1],
            head_result,
            thresholds=thresholds,
            resamples=resamples,
            base_label="previous run",
            head_label=head_label,
            gate=gate_config,
        )
    return comparison, vs_trend, trend_runs, base_result
