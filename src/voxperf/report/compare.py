"""Compare a head result with a base: per-metric deltas with CIs, verdicts, attribution.

Verdict rules (per metric and quantile, on raw samples; "worse" follows the metric's direction):

* fewer than 3 samples on either side → ``inconclusive`` (too few samples);
* the change exceeds the warning threshold and its 95 % bootstrap CI excludes 0 → ``regression``
  (worse) or ``improvement`` (better), at ``error`` severity when it also exceeds the error threshold;
* the change exceeds the threshold but the CI includes 0 → ``inconclusive`` (noisy, not significant);
* the change is within the threshold but an end of its CI is beyond it → ``inconclusive`` (too noisy
  to rule out a real change; never a silent pass);
* otherwise ``unchanged``.

A threshold is exceeded when the change passes every bound that is set: relative *and* absolute
(the dictation audit's "> 200 ms and > 10 %" for totals). Relative bounds apply to the symmetric ratio
max(head/base, base/head) − 1, so a verdict flips exactly when base and head are swapped. Value
limits (the TTS logging plan's "TTFA > 1 s warning, > 2 s error") are checked on the head's p50 and
reported as alerts.

Only what matches is compared: same lane, pipeline and level; fixtures with the same name and audio
sha256. Everything else is listed as skipped with the reason.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voxperf.bench import stats
from voxperf.bench.catalog import (
    DEFAULT_THRESHOLDS,
    METRIC_BETTER,
    METRIC_UNITS,
    Thresholds,
    better_of,
    catalogue_order,
    is_known_metric,
    is_stage_metric,
    thresholds_of,
    unit_of,
)
from voxperf.bench.schema import BenchResult
from voxperf.errors import UsageError
from voxperf.report.gate import Z95, Change, GateConfig, GateDecision, decide, independent_change, norm_sf

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Alert",
    "Attribution",
    "Comparison",
    "MetricComparison",
    "Thresholds",
    "comparability",
    "compare_results",
    "samples_by_group",
    "thresholds_from_config",
]

Verdict = Literal["regression", "improvement", "unchanged", "inconclusive"]
Severity = Literal["warning", "error"]
MIN_SAMPLES = 3


COMPARED_METRICS = tuple(m for m in METRIC_UNITS if m in DEFAULT_THRESHOLDS and m != "leading_silence_ms")


def compared_metrics(names: set[str]) -> list[str]:
    """The metrics a comparison judges among ``names``: every catalogue metric with thresholds
    (not the leading silence, a property of the voice) and the time of every span, custom ones too."""
    return [m for m in catalogue_order(names) if thresholds_of(m) is not None and m != "leading_silence_ms"]


TAIL_MIN_N = {"p95": stats.MIN_SAMPLES_P95, "p99": stats.MIN_SAMPLES_P99}


def thresholds_from_config(config: dict[str, Any]) -> dict[str, Thresholds]:
    """Defaults overridden by ``[tool.voxperf.thresholds.<metric>]`` tables."""
    out = dict(DEFAULT_THRESHOLDS)
    table = config.get("thresholds", {})
    if not isinstance(table, dict):
        raise UsageError(
            "[tool.voxperf.thresholds] must be a table", "e.g. [tool.voxperf.thresholds.total_ms]"
        )
    fields = set(Thresholds.__dataclass_fields__)
    for metric, values in table.items():
        if not is_known_metric(metric):
            raise UsageError(
                f"unknown metric {metric!r} in [tool.voxperf.thresholds]",
                f"use one of {', '.join(METRIC_BETTER)}, or <span name>_ms",
            )
        if not isinstance(values, dict) or not set(values) <= fields:
            raise UsageError(
                f"bad [tool.voxperf.thresholds.{metric}]", f"allowed keys: {', '.join(sorted(fields))}"
            )
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UsageError(
                    f"{metric}.{key} must be a non-negative number, got {value!r}", "fix the config"
                )
        base = out.get(metric) or thresholds_of(metric) or Thresholds()
        out[metric] = replace(base, **{k: float(v) for k, v in values.items()})
    return out


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """One metric's quantile, base vs head, in one lane/pipeline/level and fixture (None = aggregate)."""

    lane: str
    pipeline: str
    level: str | None
    fixture: str | None
    metric: str
    stat: str  # "p50" | "p95" | "corpus" (WER)
    unit: str
    better: str
    n_base: int
    n_head: int
    delta: stats.Delta
    verdict: Verdict
    severity: Severity | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = self.delta
        return {
            "lane": self.lane,
            "pipeline": self.pipeline,
            "level": self.level,
            "fixture": self.fixture,
            "metric": self.metric,
            "stat": self.stat,
            "unit": self.unit,
            "better": self.better,
            "nBase": self.n_base,
            "nHead": self.n_head,
            "base": d.base,
            "head": d.head,
            "abs": d.abs,
            "rel": d.rel,
            "absCi": list(d.abs_ci),
            "relCi": list(d.rel_ci) if d.rel_ci else None,
            "verdict": self.verdict,
            "severity": self.severity,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    """A head value beyond a limit (the TTS logging plan's alert thresholds)."""

    lane: str
    pipeline: str
    level: str | None
    metric: str
    value: float
    limit: float
    severity: Severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "pipeline": self.pipeline,
            "level": self.level,
            "metric": self.metric,
            "value": self.value,
            "limit": self.limit,
            "severity": self.severity,
        }


@dataclass
class Attribution:
    """Where a total's change went: stage mean deltas that add up to the total's mean delta."""

    lane: str
    pipeline: str
    level: str | None
    total_delta_ms: float
    stage_deltas_ms: dict[str, float]  # includes "overhead"; sums to total_delta_ms
    dominant: str | None
    files: dict[str, list[str]] = field(default_factory=dict)  # stage -> touched files mapped to it

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "pipeline": self.pipeline,
            "level": self.level,
            "totalDeltaMs": self.total_delta_ms,
            "stageDeltasMs": self.stage_deltas_ms,
            "dominant": self.dominant,
            "files": self.files,
        }


@dataclass
class Comparison:
    """Everything a report needs: rows, alerts, attribution, hints and what could not be compared."""

    base_label: str
    head_label: str
    rows: list[MetricComparison]
    alerts: list[Alert]
    attributions: list[Attribution]
    hints: list[str]
    skipped: list[str]
    baseline_mode: str | None = None
    decision: GateDecision | None = None  # the gate's answer on the headline metrics

    @property
    def regressions(self) -> list[MetricComparison]:
        return [r for r in self.rows if r.verdict == "regression"]

    @property
    def failed(self) -> bool:
        """The gate: a headline metric worse than its tolerance (Holm-controlled). Other rows and
        value alerts are information."""
        return self.decision is not None and self.decision.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base_label,
            "head": self.head_label,
            "baselineMode": self.baseline_mode,
            "failed": self.failed,
            "decision": self.decision.to_dict() if self.decision else None,
            "rows": [r.to_dict() for r in self.rows],
            "alerts": [a.to_dict() for a in self.alerts],
            "attributions": [a.to_dict() for a in self.attributions],
            "hints": self.hints,
            "skipped": self.skipped,
        }


# ------------------------------------------------------------------------------------ samples

Group = tuple[str, str, str | None]  # lane, pipeline, level


def samples_by_group(result: BenchResult) -> dict[Group, dict[str, dict[str, list[float]]]]:
    """(lane, pipeline, level) -> fixture -> metric -> measured samples (warm-up excluded)."""
    out: dict[Group, dict[str, dict[str, list[float]]]] = {}
    for lane_name, lane in result.lanes.items():
        for run in lane.runs:
            if run.warmup:
                continue
            per_metric = out.setdefault((lane_name, run.pipeline, run.level), {}).setdefault(run.fixture, {})
            for metric, value in run.metrics.items():
                if value is not None and is_known_metric(metric):
                    per_metric.setdefault(metric, []).append(float(value))
    return out


def _exceeds(
    abs_change: float, rel_change: float | None, rel_thr: float | None, abs_thr: float | None
) -> bool:
    """Does a change (already signed so that positive = worse or better as asked) pass every set bound?"""
    if rel_thr is None and abs_thr is None:
        return False
    if abs_thr is not None and not abs_change > abs_thr:
        return False
    return not (rel_thr is not None and (rel_change is None or not rel_change > rel_thr))


def symmetric_rel(rel: float) -> float:
    """A relative change as the symmetric ratio max(h/b, b/h) − 1, so +10 % and its inverse
    (−9.1 %) have the same size and swapping base and head cannot change a verdict's strength."""
    if rel >= 0:
        return rel
    if rel <= -1:
        return float("inf")
    return 1.0 / (1.0 + rel) - 1.0


def verdict_for(
    delta: stats.Delta, better: str, thr: Thresholds, n_base: int, n_head: int
) -> tuple[Verdict, Severity | None, str]:
    """Apply the module's verdict rules to one delta."""
    if min(n_base, n_head) < MIN_SAMPLES:
        return "inconclusive", None, f"too few samples (base {n_base}, head {n_head}; need {MIN_SAMPLES})"
    sign = 1.0 if better == "lower" else -1.0  # sign * change > 0 means worse
    worse = sign * delta.abs > 0
    mag = abs(delta.abs)
    rel_mag = symmetric_rel(delta.rel) if delta.rel is not None else None
    lo, hi = delta.abs_ci
    significant = lo > 0 or hi < 0
    if _exceeds(mag, rel_mag, thr.rel_warn, thr.abs_warn):
        if not significant:
            return "inconclusive", None, "change exceeds the threshold but its 95% CI includes 0 (noisy)"
        severity: Severity = "error" if _exceeds(mag, rel_mag, thr.rel_error, thr.abs_error) else "warning"
        return ("regression" if worse else "improvement"), severity, "exceeds threshold and significant"
    # within the threshold: could either end of the CI still be beyond it? (both ends, so a swap of
    # base and head gives the same answer)
    rel_ends: tuple[float | None, float | None] = (None, None)
    if delta.rel_ci is not None:
        rel_ends = (symmetric_rel(delta.rel_ci[0]), symmetric_rel(delta.rel_ci[1]))
    for end, rel_end in zip((lo, hi), rel_ends, strict=True):
        if _exceeds(abs(end), rel_end, thr.rel_warn, thr.abs_warn):
            return "inconclusive", None, "within threshold, but too noisy to rule out a change beyond it"
    return "unchanged", None, "within threshold"


# ------------------------------------------------------------------------------------ compare


def _fixture_weights(result: BenchResult) -> dict[str, tuple[str, float]]:
    """Fixture name -> (audio sha256, weight): aggregates weight fixtures by audio duration."""
    return {f.name: (f.sha256, float(f.durationS)) for f in result.fixtures}


# Metrics whose definition changed in schema v2: not compared across versions.
REDEFINED_IN_V2 = frozenset({"streaming_efficiency", "stt_rtfx"})


def compare_results(
    base: BenchResult,
    head: BenchResult,
    *,
    thresholds: dict[str, Thresholds] | None = None,
    stats_: tuple[str, ...] = ("p50", "p95"),
    per_fixture: bool = True,
    resamples: int = 1000,
    base_label: str = "base",
    head_label: str = "head",
    repo: Path | None = None,
    globs: dict[str, list[str]] | None = None,
    gate: GateConfig | None = None,
) -> Comparison:
    """Compare every comparable metric of head against base (see module docstring); the gate's
    decision comes from the headline metrics only (:mod:`voxperf.report.gate`)."""
    thr = thresholds or DEFAULT_THRESHOLDS
    gate = gate or GateConfig()
    skipped: list[str] = []
    redefined: frozenset[str] = frozenset()
    if min(base.schemaVersion, head.schemaVersion) < 2 <= max(base.schemaVersion, head.schemaVersion):
        redefined = REDEFINED_IN_V2  # v3 added records, not definitions: v2 and v3 compare fully
        skipped.append(
            f"schema versions differ (base {base.schemaVersion}, head {head.schemaVersion}): "
            f"{', '.join(sorted(redefined))} and WER were redefined and are not compared"
        )
    bs, hs = samples_by_group(base), samples_by_group(head)
    bfx, hfx = _fixture_weights(base), _fixture_weights(head)
    for group in sorted(set(bs) ^ set(hs), key=str):
        side = "head" if group in hs else "base"
        skipped.append(f"{'/'.join(str(g) for g in group if g)}: only in {side}")
    rows: list[MetricComparison] = []
    alerts: list[Alert] = []
    attributions: list[Attribution] = []
    qs = {"p50": 0.5, "p95": 0.95}
    for group in sorted(set(bs) & set(hs), key=str):
        lane, pipeline, level = group
        where = f"{lane}/{pipeline}/{level or '-'}"
        common = []
        for name in sorted(set(bs[group]) | set(hs[group])):
            if name not in bs[group] or name not in hs[group]:
                side = "head" if name in hs[group] else "base"
                skipped.append(f"{where}: fixture {name} only in {side}")
            elif bfx.get(name, ("", 0))[0] != hfx.get(name, ("?", 0))[0]:
                skipped.append(f"{where}: fixture {name} audio differs (sha256), not compared")
            else:
                common.append(name)
        if not common:
            continue
        tails_skipped = False
        present = {m for n in common for side in (bs, hs) for m in side[group][n]}
        for metric in compared_metrics(present):
            if metric in redefined:
                continue
            # only fixtures that have this metric on both sides
            names = [n for n in common if bs[group][n].get(metric) and hs[group][n].get(metric)]
            if not names:
                continue
            b_groups = [(bs[group][n][metric], hfx[n][1]) for n in names]
            h_groups = [(hs[group][n][metric], hfx[n][1]) for n in names]
            scopes: list[tuple[str | None, list[Any], list[Any]]] = [(None, b_groups, h_groups)]
            if per_fixture and len(names) > 1:
                for i, n in enumerate(names):
                    scopes.append((n, [b_groups[i]], [h_groups[i]]))
            for fixture, bg, hg in scopes:
                n_b, n_h = sum(len(g) for g, _ in bg), sum(len(g) for g, _ in hg)
                for stat_name in stats_:
                    need = TAIL_MIN_N.get(stat_name, 0)
                    if min(stats.effective_n(bg), stats.effective_n(hg)) < need:
                        tails_skipped = True  # a tail the samples cannot carry is not compared
                        continue
                    delta = stats.quantile_delta(bg, hg, qs[stat_name], resamples=resamples)
                    v, sev, why = verdict_for(
                        delta,
                        better_of(metric),
                        thr.get(metric) or thresholds_of(metric) or Thresholds(),
                        n_b,
                        n_h,
                    )
                    rows.append(
                        MetricComparison(
                            lane,
                            pipeline,
                            level,
                            fixture,
                            metric,
                            stat_name,
                            unit_of(metric),
                            better_of(metric),
                            n_b,
                            n_h,
                            delta,
                            v,
                            sev,
                            why,
                        )
                    )
            alerts.extend(_alerts(lane, pipeline, level, metric, h_groups, thr.get(metric)))
        if tails_skipped:
            skipped.append(
                f"{where}: tails not compared where n is too small "
                f"(p95 needs {stats.MIN_SAMPLES_P95}, p99 {stats.MIN_SAMPLES_P99} effective samples)"
            )
        attributions.append(_attribute(lane, pipeline, level, bs[group], hs[group], common, hfx))
    if not redefined:
        rows.extend(_wer_rows(base, head, thr.get("wer", Thresholds()), resamples, skipped))
    files = _touched_files(base, head, repo) if repo is not None else []
    if files:
        for a in attributions:
            a.files = _map_files(files, globs or {})
    rows.sort(key=_row_order)
    reasons = comparability(base, head)
    changes = _headline_changes(rows, base, head, gate)
    decision = decide(changes, alpha=gate.alpha, not_comparable=reasons)
    return Comparison(
        base_label, head_label, rows, alerts, attributions, _lane_hints(rows), skipped, decision=decision
    )


# other processes keeping this many more cores busy in one run than in the other: not comparable
LOAD_DIFFERENCE_CORES = 0.5
# the share of a lane's wall time its threads spent waiting for a CPU, base vs head
WAIT_DIFFERENCE = 0.10


def comparability(base: BenchResult, head: BenchResult) -> list[str]:
    """Why two stored runs cannot be compared honestly (empty when they can): machine, engines,
    how long each lane's threads waited for a CPU (run delay: the contention they met, which keeps
    growing on a saturated machine) and the CPU other processes used while each lane ran."""
    reasons = []
    bm, hm = base.machine, head.machine
    if bm.cpuModel and hm.cpuModel and bm.cpuModel != hm.cpuModel:
        reasons.append(f"CPU model differs ({bm.cpuModel} vs {hm.cpuModel})")
    if bm.coresLogical and hm.coresLogical and bm.coresLogical != hm.coresLogical:
        reasons.append(f"core count differs ({bm.coresLogical} vs {hm.coresLogical})")
    for lane in sorted(set(base.lanes) & set(head.lanes)):
        b_lane, h_lane = base.lanes[lane], head.lanes[lane]
        if b_lane.instrument != h_lane.instrument:
            reasons.append(f"{lane}: instruments differ ({b_lane.instrument} vs {h_lane.instrument})")
        b_eng = {e.role: e for e in b_lane.engines if not e.isFake}
        for e in h_lane.engines:
            b = b_eng.get(e.role)
            if e.isFake or b is None:
                continue
            before = (b.name, b.version, b.model, b.modelSource, b.settings)
            after = (e.name, e.version, e.model, e.modelSource, e.settings)
            if before != after:
                reasons.append(
                    f"{lane}: {e.role} engine differs ({b.name} {b.version} {b.model or ''} vs "
                    f"{e.name} {e.version} {e.model or ''}".rstrip()
                    + ")"
                )
        if b_lane.instrument == "instructions":
            continue  # counts do not depend on load
        waits = [_other_cores(x.resources.runDelayS, x.resources.wallS) for x in (b_lane, h_lane)]
        if None not in waits:
            wb, wh = waits
            assert wb is not None and wh is not None
            if abs(wb - wh) > WAIT_DIFFERENCE:
                reasons.append(
                    f"{lane}: requests waited for a CPU {wb:.0%} of the base run and {wh:.0%} of the "
                    "head run (other load; rerun under the same load, or use voxperf ab)"
                )
                continue
        loads = [_other_cores(x.resources.otherCpuS, x.resources.wallS) for x in (b_lane, h_lane)]
        if None not in loads:
            lb, lh = loads
            assert lb is not None and lh is not None
            if abs(lb - lh) > LOAD_DIFFERENCE_CORES:
                reasons.append(
                    f"{lane}: other processes kept {lb:.1f} core(s) busy during the base run and "
                    f"{lh:.1f} during the head run (rerun under the same load, or use voxperf ab)"
                )
    return reasons


def _other_cores(other_cpu_s: float | None, wall_s: float) -> float | None:
    return other_cpu_s / wall_s if other_cpu_s is not None and wall_s > 0 else None


def split_half_drift(result: BenchResult, lane: str, pipeline: str, level: str | None, metric: str) -> float:
    """How far a run's first and second halves of iterations disagree: the median over fixtures of
    |log(p50 first half / p50 second half)|. A run's own CI sees none of this slow drift; the gate
    adds it (or its floor, whichever is larger) as the between-run component of a stored comparison."""
    lane_result = result.lanes.get(lane)
    if lane_result is None:
        return 0.0
    per_fixture: dict[str, list[tuple[int, float]]] = {}
    for run in lane_result.runs:
        value = run.metrics.get(metric)
        if run.warmup or run.pipeline != pipeline or run.level != level or value is None or value <= 0:
            continue
        per_fixture.setdefault(run.fixture, []).append((run.iteration, float(value)))
    drifts = []
    for values in per_fixture.values():
        values.sort()
        half = len(values) // 2
        if half < 2:
            continue
        first = float(np.median([v for _, v in values[:half]]))
        second = float(np.median([v for _, v in values[half:]]))
        drifts.append(abs(np.log(first / second)))
    return float(np.median(drifts)) if drifts else 0.0


def _headline_changes(
    rows: list[MetricComparison], base: BenchResult, head: BenchResult, gate: GateConfig
) -> list[Change]:
    """The gated metrics' aggregate p50 (corpus for WER) changes, widened for between-run variance."""
    out: list[Change] = []
    for r in rows:
        if r.fixture is not None or r.metric not in gate.metrics or r.stat not in ("p50", "corpus"):
            continue
        where = (r.lane, r.pipeline, r.level)
        tol = gate.tolerance_for(r.metric)
        d = r.delta
        if r.metric == "wer":
            lo, hi = d.abs_ci
            se = (hi - lo) / (2 * Z95)
            tol_abs = tol.abs if tol.abs is not None else 0.0
            if se == 0:
                pw, pb = (0.0 if d.abs > tol_abs else 1.0), (0.0 if -d.abs > tol_abs else 1.0)
            else:
                pw, pb = norm_sf((d.abs - tol_abs) / se), norm_sf((-d.abs - tol_abs) / se)
            out.append(
                Change(
                    *where,
                    "wer",
                    "difference",
                    r.n_head,
                    d.base,
                    d.head,
                    d.abs,
                    (lo, hi),
                    pw,
                    pb,
                    tol_abs,
                    "corpus WER of two runs",
                )
            )
            continue
        if d.rel_ci is None or d.base <= 0 or d.head <= 0:
            continue
        between = 0.0
        if base.lanes[r.lane].instrument == "wall":
            drift = max(split_half_drift(x, r.lane, r.pipeline, r.level, r.metric) for x in (base, head))
            between = max(gate.between_run, drift)
        out.append(
            independent_change(
                metric=r.metric,
                base=d.base,
                head=d.head,
                rel_ci=d.rel_ci,
                n=min(r.n_base, r.n_head),
                tolerance=tol,
                where=where,
                between_run=between,
            )
        )
    return out


def _row_order(r: MetricComparison) -> tuple[Any, ...]:
    rank = {"regression": 0, "inconclusive": 1, "improvement": 2, "unchanged": 3}[r.verdict]
    return (
        rank,
        0 if r.severity == "error" else 1,
        r.lane,
        r.pipeline,
        r.level or "",
        r.fixture or "",
        r.metric,
        r.stat,
    )


def _alerts(
    lane: str, pipeline: str, level: str | None, metric: str, head_groups: list[Any], thr: Thresholds | None
) -> list[Alert]:
    if thr is None or (thr.limit_warn is None and thr.limit_error is None):
        return []
    value = stats.mixture_quantile(head_groups, 0.5)
    higher_is_worse = better_of(metric) == "lower"
    for limit, severity in ((thr.limit_error, "error"), (thr.limit_warn, "warning")):
        if limit is not None and (value > limit if higher_is_worse else value < limit):
            return [Alert(lane, pipeline, level, metric, value, limit, severity)]  # type: ignore[arg-type]
    return []


def _weighted_mean(groups: list[tuple[list[float], float]]) -> float:
    return stats.mixture_mean(groups)


def _wer_rows(
    base: BenchResult, head: BenchResult, thr: Thresholds, resamples: int, skipped: list[str]
) -> list[MetricComparison]:
    """Corpus WER, head − base, on the utterances both sides scored with the same normaliser.

    WER is deterministic per configuration: when every iteration on both sides gave the same
    transcript, the change on these utterances is exact (CI = the change itself). When iterations
    disagreed, the CI is a paired bootstrap over utterances."""
    bfx, hfx = _fixture_weights(base), _fixture_weights(head)
    rows: list[MetricComparison] = []
    for lane_name, hlane in head.lanes.items():
        blane = base.lanes.get(lane_name)
        if blane is None:
            continue
        for hw in hlane.wer:
            bw = next((w for w in blane.wer if (w.pipeline, w.level) == (hw.pipeline, hw.level)), None)
            if bw is None:
                continue
            where = f"{lane_name}/{hw.pipeline}/{hw.level or '-'}"
            if bw.normalizer != hw.normalizer:
                skipped.append(f"{where}: WER normalisers differ ({bw.normalizer} vs {hw.normalizer})")
                continue
            b_utt = {u.fixture: u for u in bw.utterances}
            pairs = [
                (b_utt[u.fixture], u)
                for u in hw.utterances
                if u.fixture in b_utt and bfx.get(u.fixture, ("", 0))[0] == hfx.get(u.fixture, ("?", 0))[0]
            ]
            if not pairs:
                continue
            b_edits = np.array([b.substitutions + b.deletions + b.insertions for b, _ in pairs], float)
            h_edits = np.array([h.substitutions + h.deletions + h.insertions for _, h in pairs], float)
            words = np.array([h.referenceWords for _, h in pairs], float)
            b_val, h_val = b_edits.sum() / words.sum(), h_edits.sum() / words.sum()
            deterministic = all(u.distinctHypotheses == 1 for pair in pairs for u in pair)
            if deterministic:
                # every iteration transcribed alike on both sides: the change on these utterances
                # is not an estimate, it is exact (no run-to-run noise to test against)
                lo = hi = h_val - b_val
                how = "transcripts deterministic on both sides: exact change"
            else:  # paired bootstrap over utterances (the same utterances resampled on both sides)
                _, (lo, hi) = stats.paired_ratio_delta_ci(b_edits, h_edits, words, resamples=resamples)
                how = "iterations disagree: CI by paired bootstrap over utterances"
            delta = stats.Delta(
                b_val, h_val, h_val - b_val, (h_val / b_val - 1.0) if b_val else None, (lo, hi), None
            )
            n_words = int(words.sum())
            verdict, severity, why = verdict_for(delta, "lower", thr, n_words, n_words)
            rows.append(
                MetricComparison(
                    lane_name,
                    hw.pipeline,
                    hw.level,
                    None,
                    "wer",
                    "corpus",
                    "ratio",
                    "lower",
                    n_words,
                    n_words,
                    delta,
                    verdict,
                    severity,
                    why + f" ({len(pairs)} utterances, {n_words} reference words; {how})",
                )
            )
    return rows


def _attribute(
    lane: str,
    pipeline: str,
    level: str | None,
    base: dict[str, dict[str, list[float]]],
    head: dict[str, dict[str, list[float]]],
    common: list[str],
    weights: dict[str, tuple[str, float]],
) -> Attribution:
    """Byte-weighted mean deltas of each stage and of overhead; they add up to the total's."""

    def mean(side: dict[str, dict[str, list[float]]], metric: str) -> float:
        groups = [(side[n][metric], weights[n][1]) for n in common if side[n].get(metric)]
        return _weighted_mean(groups) if groups else 0.0

    stages = sorted({m for n in common for m in list(base[n]) + list(head[n]) if is_stage_metric(m)})
    deltas = {m.removesuffix("_ms"): mean(head, m) - mean(base, m) for m in stages}
    deltas["overhead"] = mean(head, "overhead_ms") - mean(base, "overhead_ms")
    total = mean(head, "total_ms") - mean(base, "total_ms")
    dominant = max(deltas, key=lambda k: abs(deltas[k])) if deltas and total != 0 else None
    return Attribution(lane, pipeline, level, total, deltas, dominant)


_SHA = re.compile(r"^[0-9a-f]{40}$")


def _touched_files(base: BenchResult, head: BenchResult, repo: Path) -> list[str]:
    """Files changed between the two runs' commits. Result files are untrusted input: only full
    hex SHAs reach git (a value such as ``--output=...`` would otherwise be an option)."""
    commits = (base.git.commit, head.git.commit)
    if not all(c and _SHA.match(c) for c in commits):
        return []
    proc = subprocess.run(
        ["git", "-C", str(repo), "diff", "--name-only", "-z", *commits],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [f for f in proc.stdout.split("\0") if f] if proc.returncode == 0 else []


def _map_files(files: list[str], globs: dict[str, list[str]]) -> dict[str, list[str]]:
    """Touched files grouped by the stage whose globs match them (``[tool.voxperf.attribution]``)."""
    out: dict[str, list[str]] = {}
    for f in files:
        stages = [s for s, patterns in globs.items() if any(fnmatch.fnmatch(f, p) for p in patterns)]
        for s in stages or ["unmapped"]:
            out.setdefault(s, []).append(f)
    return out


def _lane_hints(rows: list[MetricComparison]) -> list[str]:
    """Provider regressed but codepath did not: the engine got slower; the reverse: our code did."""

    def regressed(lane: str) -> set[tuple[str, str | None, str]]:
        return {
            (r.pipeline, r.level, r.metric)
            for r in rows
            if r.lane == lane and r.fixture is None and r.stat == "p50" and r.verdict == "regression"
        }

    def steady(lane: str) -> set[tuple[str, str | None, str]]:
        return {
            (r.pipeline, r.level, r.metric)
            for r in rows
            if r.lane == lane and r.fixture is None and r.stat == "p50" and r.verdict == "unchanged"
        }

    hints = []
    provider_only = sorted(regressed("provider") & steady("codepath"), key=str)
    codepath_only = sorted(regressed("codepath") & steady("provider"), key=str)
    for pipeline, level, metric in provider_only:
        hints.append(
            f"{pipeline}/{level or '-'} {metric}: the provider lane regressed but the codepath lane did not: "
            "the engine, model or provider got slower, not the pipeline code"
        )
    for pipeline, level, metric in codepath_only:
        hints.append(
            f"{pipeline}/{level or '-'} {metric}: the codepath lane regressed but the provider lane did not: "
            "the pipeline's own code got slower (masked by engine noise in the provider lane)"
        )
    return hints
