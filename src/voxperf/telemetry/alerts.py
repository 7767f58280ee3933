"""Alerts on production telemetry: warning/error thresholds, raised only on a sustained breach.

Each :class:`Threshold` watches one statistic of one metric over consecutive windows (``window_s``
long). A window *reaches* a level when its statistic is past that level's threshold and it holds at
least ``min_events`` events (a near-empty window neither breaches nor clears). The state moves:

* **up** to the highest level that at least ``breaches`` (N) of the last ``windows`` (M) windows
  reached: one slow window is not an incident;
* **down** only when N of the last M windows are back inside the *current* level's threshold by
  the ``hysteresis`` margin (10 %: a TTFA warning at 1,000 ms clears below 900 ms), so a value
  hovering at the threshold does not flap. It then goes to the highest level that still holds by
  the rule above.

The defaults are the TTS server's logging plan's: TTFA > 1 s warning, > 2 s error (p95); server
response > 1 s / > 3 s (p95); streaming efficiency < 80 % / < 60 % (median); cache hit rate < 20 %
warning. The error-rate defaults (> 5 % / > 20 %) are voxperf's own: the plan names the metric
but no threshold.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from voxperf.telemetry.store import Query, TelemetryStore

__all__ = ["DEFAULT_THRESHOLDS", "AlertEngine", "AlertState", "Threshold", "level_of", "next_level"]

log = logging.getLogger("voxperf.telemetry")
Level = Literal["ok", "warning", "error"]
_RANK: dict[str, int] = {"ok": 0, "warning": 1, "error": 2}
_LEVELS: tuple[Level, ...] = ("ok", "warning", "error")


@dataclass(frozen=True)
class Threshold:
    """When one statistic of one metric is a warning or an error."""

    metric: str
    stat: str  # "p95", "p50", "mean" of a timing; "value" of a rate
    warning: float | None
    error: float | None
    direction: Literal["above", "below"] = "above"
    window_s: float = 300.0
    windows: int = 6  # M
    breaches: int = 4  # N
    hysteresis: float = 0.1
    min_events: int = 20

    @property
    def key(self) -> str:
        return f"{self.metric}.{self.stat}"

    def limit(self, level: Level) -> float | None:
        return self.warning if level == "warning" else self.error if level == "error" else None


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("ttfa_ms", "p95", 1000.0, 2000.0),
    Threshold("server_ms", "p95", 1000.0, 3000.0),
    Threshold("streaming_efficiency", "p50", 0.8, 0.6, "below"),
    Threshold("cache_hit_rate", "value", 0.2, None, "below"),
    Threshold("error_rate", "value", 0.05, 0.2),
)


def _past(value: float, limit: float, direction: str, margin: float = 0.0) -> bool:
    """``value`` is past ``limit`` (moved towards good by ``margin`` of it, for clearing)."""
    if direction == "above":
        return value > limit * (1 - margin)
    return value < limit * (1 + margin)


def level_of(threshold: Threshold, value: float | None, count: int) -> Level | None:
    """The level one window reached (None: too few events to say)."""
    if value is None or count < threshold.min_events:
        return None
    for level in ("error", "warning"):
        limit = threshold.limit(level)
        if limit is not None and _past(value, limit, threshold.direction):
            return level
    return "ok"


def next_level(threshold: Threshold, current: Level, windows: Sequence[tuple[float | None, int]]) -> Level:
    """The new state from the current one and the latest windows (oldest first, as (value, count))."""
    recent = list(windows)[-threshold.windows :]
    reached = [level_of(threshold, v, n) for v, n in recent]
    sustained: Level = "ok"
    for level in ("warning", "error"):
        if sum(1 for r in reached if r is not None and _RANK[r] >= _RANK[level]) >= threshold.breaches:
            sustained = level
    if _RANK[sustained] >= _RANK[current]:
        return sustained
    # going down: N of the last M windows must be clear of the current level by the margin
    limit = threshold.limit(current)
    if limit is None:
        return current
    clear = sum(
        1
        for v, n in recent
        if v is not None
        and n >= threshold.min_events
        and not _past(v, limit, threshold.direction, threshold.hysteresis)
    )
    return sustained if clear >= threshold.breaches else current


@dataclass
class AlertState:
    """One alert of one tenant: its level, since when, and the windows it was decided on."""

    tenant: str
    key: str
    metric: str
    stat: str
    level: Level = "ok"
    since_ms: int = 0
    value: float | None = None  # the latest window's statistic
    warning: float | None = None
    error: float | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class AlertEngine:
    """Evaluates the thresholds on the store's windows, keeps each tenant's state, and calls the
    webhook (a JSON POST, in the background, retried 3 times) when a state changes."""

    def __init__(
        self,
        store: TelemetryStore,
        thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS,
        *,
        webhook_url: str | None = None,
        clock: Callable[[], float] = time.time,
        notify: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.thresholds = tuple(thresholds)
        self.webhook_url = webhook_url
        self.clock = clock
        self.notify = notify or _post_json
        self.states: dict[tuple[str, str], AlertState] = {}
        self.changes: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def evaluate(self, tenant: str = "", now_ms: int | None = None) -> list[AlertState]:
        """Decide every alert of ``tenant`` on the complete windows before ``now_ms``."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        out = []
        for threshold in self.thresholds:
            window_ms = int(threshold.window_s * 1000)
            end = now_ms - now_ms % window_ms  # complete windows only
            start = end - threshold.windows * window_ms
            q = Query(start, end, window_ms, tenant)
            stat = "value" if threshold.stat == "value" else threshold.stat
            stats = () if stat == "value" else (stat,)
            points = {p.t_ms: p for p in self.store.series(threshold.metric, q, stats or ("p50",))}
            windows: list[tuple[float | None, int]] = []
            detail = []
            for t in range(start, end, window_ms):
                p = points.get(t)
                value = None if p is None else p.values.get(stat)
                count = 0 if p is None else p.count
                windows.append((value, count))
                detail.append({"t_ms": t, "value": value, "count": count})
            with self._lock:
                state = self.states.setdefault(
                    (tenant, threshold.key),
                    AlertState(tenant, threshold.key, threshold.metric, threshold.stat, since_ms=now_ms),
                )
                level = next_level(threshold, state.level, windows)
                state.value, state.windows = windows[-1][0], detail
                state.warning, state.error = threshold.warning, threshold.error
                if level != state.level:
                    change = {
                        "tenant": tenant,
                        "alert": threshold.key,
                        "from": state.level,
                        "to": level,
                        "at_ms": now_ms,
                        "value": state.value,
                        "windows": detail,
                    }
                    state.level, state.since_ms = level, now_ms
                    self.changes.append(change)
                    if self.webhook_url:
                        threading.Thread(
                            target=self.notify, args=(self.webhook_url, change), daemon=True
                        ).start()
            out.append(state)
        return out

    def current(self, tenant: str = "") -> list[AlertState]:
        with self._lock:
            return [s for (t, _), s in self.states.items() if t == tenant]


def _post_json(url: str, body: dict[str, Any], attempts: int = 3) -> None:
    data = json.dumps({"voxperf_alert": body}).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                answer.read()
                return
        except OSError as exc:
            log.warning("alert webhook %s failed (attempt %d): %s", url, attempt + 1, exc)
            time.sleep(2**attempt)
