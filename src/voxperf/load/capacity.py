"""Capacity search: the highest offered load (arrival rate, or concurrent streams) that meets
every SLO, with its bracket.

The search runs the load at a point, judges it (every SLO met, no errors, not saturated), grows
the load geometrically until a point fails, then bisects between the highest passing and the
lowest failing point until they are within ``tolerance`` of each other (1 stream apart for
concurrency). A point is *saturated* when the starts fell behind the offered rate (achieved < 90 %
of offered) or most starts were late: the generator or the target could not keep up, so going
higher is pointless and the growth phase stops there. Each point can be run several times
(``runs``); it passes only when every run passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CapacityResult", "Judgement", "judge", "search_capacity"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """One run at one point: did it pass, and why not."""

    passed: bool
    saturated: bool
    reasons: tuple[str, ...] = ()


@dataclass
class CapacityResult:
    """The answer: ``capacity`` (the highest passing point, None when even the first failed) and
    ``bracket`` = [max passing, min failing] (None ends when the search never saw one)."""

    capacity: float | None
    bracket: tuple[float | None, float | None]
    points: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "bracket": list(self.bracket),
            "points": self.points,
            "stopped": self.stopped,
        }


def judge(report: Any, *, max_error_rate: float = 0.0) -> Judgement:
    """Whether one run's report meets its SLOs with at most ``max_error_rate`` errors, unsaturated."""
    reasons: list[str] = []
    missed = [name for name, met in report.slo_met.items() if not met]
    if missed:
        reasons.append("missed " + ", ".join(missed))
    if report.error_rate > max_error_rate:
        reasons.append(
            f"errors {report.error_rate:.1%} ({', '.join(f'{k} {v}' for k, v in report.errors.items())})"
        )
    saturated = False
    if report.offered_rate is not None:
        if report.achieved_rate < 0.9 * report.offered_rate:
            saturated = True
            reasons.append(
                f"saturated: {report.achieved_rate:.2f}/s started of {report.offered_rate:g}/s offered"
            )
        elif report.started and report.late > report.started / 2:
            saturated = True
            reasons.append(f"saturated: {report.late} of {report.started} starts late")
    return Judgement(not reasons, saturated, tuple(reasons))


def search_capacity(
    run_point: Callable[[float], list[Judgement]],
    *,
    start: float,
    maximum: float,
    growth: float = 2.0,
    tolerance: float = 0.1,
    integer: bool = False,
    max_points: int = 20,
) -> CapacityResult:
    """Search with ``run_point(load) -> judgements of its runs`` (see the module docstring)."""
    if not (start > 0 and maximum >= start and growth > 1 and tolerance > 0):
        raise ValueError("capacity search needs 0 < start <= maximum, growth > 1 and tolerance > 0")
    points: list[dict[str, Any]] = []
    best: float | None = None
    worst: float | None = None

    def evaluate(load: float) -> bool:
        judgements = run_point(load)
        passed = all(j.passed for j in judgements)
        points.append(
            {
                "load": load,
                "passed": passed,
                "saturated": any(j.saturated for j in judgements),
                "runs": len(judgements),
                "reasons": sorted({r for j in judgements for r in j.reasons}),
            }
        )
        return passed

    def snap(x: float) -> float:
        return float(math.floor(x)) if integer else x

    load = snap(start)
    stopped = "bracketed"
    while True:  # grow until a point fails (or the maximum passes)
        if evaluate(load):
            best = load
            if load >= maximum:
                stopped = "maximum passed"
                break
            load = min(snap(load * growth) if not integer else max(load + 1, snap(load * growth)), maximum)
        else:
            worst = load
            if points[-1]["saturated"]:
                stopped = "saturated"
            break
        if len(points) >= max_points:
            stopped = "point budget"
            break
    while best is not None and worst is not None and len(points) < max_points:
        if integer and worst - best <= 1:
            break
        if not integer and (worst - best) / best <= tolerance:
            break
        mid = snap((best + worst) / 2) if integer else math.sqrt(best * worst)  # geometric for rates
        if mid in (best, worst):
            break
        if evaluate(mid):
            best = mid
        else:
            worst = mid
    return CapacityResult(capacity=best, bracket=(best, worst), points=points, stopped=stopped)
