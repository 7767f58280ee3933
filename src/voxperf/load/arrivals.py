"""Open-model arrival schedules: when each request is meant to start.

A schedule is the intended start of every request, in seconds from the start of the run, fixed
before the run begins (so a slow target cannot slow the offered load: coordinated omission made
visible, not hidden). Processes: ``constant`` (evenly spaced, like k6's constant-arrival-rate),
``poisson`` (exponential gaps) and ``gamma`` (gaps with coefficient of variation
1/sqrt(burstiness): burstiness 1 is Poisson, below 1 burstier, above 1 more regular, as vLLM's
``bench serve``). A ramp changes the rate linearly from ``rate`` to ``ramp_to`` over the run; the
points are drawn at unit rate and mapped through the inverse of the cumulative rate, so the process
keeps its shape while the rate moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["PROCESSES", "Arrivals", "share"]

Process = Literal["constant", "poisson", "gamma"]
PROCESSES: tuple[Process, ...] = ("constant", "poisson", "gamma")


@dataclass(frozen=True, slots=True)
class Arrivals:
    """An arrival process over ``duration_s``: ``rate`` requests per second (linearly to
    ``ramp_to`` when given), drawn with ``seed`` (the same seed gives the same schedule)."""

    rate: float
    duration_s: float
    process: Process = "constant"
    burstiness: float = 1.0  # gamma only
    ramp_to: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {self.rate}")
        if self.ramp_to is not None and not (self.ramp_to >= 0 and math.isfinite(self.ramp_to)):
            raise ValueError(f"ramp_to must be >= 0, got {self.ramp_to}")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.process not in PROCESSES:
            raise ValueError(f"unknown arrival process {self.process!r}; use one of {', '.join(PROCESSES)}")
        if not self.burstiness > 0:
            raise ValueError(f"burstiness must be > 0, got {self.burstiness}")

    @property
    def expected(self) -> float:
        """Expected number of arrivals: the integral of the rate over the run."""
        end = self.rate if self.ramp_to is None else self.ramp_to
        return (self.rate + end) / 2 * self.duration_s

    def _unit_points(self, limit: float) -> np.ndarray:
        """Points of the process at rate 1 on [0, limit)."""
        if self.process == "constant":
            return np.arange(math.ceil(limit - 1e-9), dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        out: list[np.ndarray] = []
        t = 0.0
        while t < limit:
            n = max(16, int((limit - t) * 1.2) + 16)
            if self.process == "poisson":
                gaps = rng.exponential(1.0, n)
            else:
                gaps = rng.gamma(self.burstiness, 1.0 / self.burstiness, n)
            points = t + np.cumsum(gaps)
            out.append(points)
            t = float(points[-1])
        points = np.concatenate(out)
        # the first arrival at 0 for a renewal process started at an arrival, like the constant one
        points = np.concatenate(([0.0], points))
        return points[points < limit]

    def schedule(self) -> np.ndarray:
        """Intended start offsets in seconds, ascending, in [0, duration)."""
        unit = self._unit_points(self.expected)
        if self.ramp_to is None or self.ramp_to == self.rate:
            return unit / self.rate
        # cumulative rate L(t) = r0 t + (r1 - r0) t^2 / (2 D); solve L(t) = u for t
        r0, r1, d = self.rate, self.ramp_to, self.duration_s
        a = (r1 - r0) / (2 * d)
        disc = np.maximum(r0 * r0 + 4 * a * unit, 0.0)
        t = (2 * unit) / (r0 + np.sqrt(disc))  # the stable root of a t^2 + r0 t - u = 0
        return t[t < d]


def share(schedule: np.ndarray, index: int, count: int) -> np.ndarray:
    """The part of a schedule one of ``count`` load generators runs: every ``count``-th arrival
    from ``index``, so the generators together offer exactly the whole schedule."""
    if not 0 <= index < count:
        raise ValueError(f"generator index {index} is not in 0..{count - 1}")
    return schedule[index::count]
