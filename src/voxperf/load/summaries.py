"""Gate the summaries other load tools write: a k6 ``--summary-export`` JSON and Locust's
``--csv`` stats file.

Such files hold aggregates (median, p95, rates), not samples, so no confidence interval can be
computed: two of them are compared by *allowed drift*, metric by metric, the way a k6 scenario's
``baseline.json`` is checked (p95 latency may grow by at most 10 %, the failure rate by at most one
point, throughput may fall by at most 10 %), and the verdict says so. voxperf's own load results
keep their raw samples and go through the statistical gate instead.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DriftRow", "SummaryFile", "compare_summaries", "is_headline", "parse_drift", "read_summary"]

Direction = Literal["lower", "higher"]


@dataclass(frozen=True, slots=True)
class SummaryFile:
    """The comparable numbers of one summary file: ``metric -> value`` and which way is better."""

    tool: str  # "k6" or "locust"
    path: str
    values: dict[str, float]
    better: dict[str, Direction]


def _k6(data: dict[str, object], path: Path) -> SummaryFile | None:
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return None
    values: dict[str, float] = {}
    better: dict[str, Direction] = {}
    for name, m in metrics.items():
        if not isinstance(m, dict):
            continue
        if "p(95)" in m:  # a trend (durations): lower is better
            for key, label in (("med", "p50"), ("p(95)", "p95")):
                if isinstance(m.get(key), int | float):
                    values[f"{name}.{label}"] = float(m[key])
                    better[f"{name}.{label}"] = "lower"
        elif "value" in m and ("passes" in m or "fails" in m):  # a rate
            values[f"{name}.rate"] = float(m["value"])
            better[f"{name}.rate"] = "lower" if "fail" in name or "drop" in name else "higher"
        elif "rate" in m and name in ("iterations", "http_reqs"):  # throughput counters
            values[f"{name}.rate"] = float(m["rate"])
            better[f"{name}.rate"] = "higher"
        elif name == "dropped_iterations" and "count" in m:
            values["dropped_iterations.count"] = float(m["count"])
            better["dropped_iterations.count"] = "lower"
    return SummaryFile("k6", str(path), values, better) if values else None


_LOCUST_HEADER = ("Type", "Name", "Request Count", "Failure Count")


def _locust(text: str, path: Path) -> SummaryFile | None:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not all(h in rows[0] for h in _LOCUST_HEADER):
        return None
    values: dict[str, float] = {}
    better: dict[str, Direction] = {}
    for row in rows:
        name = "aggregated" if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
        requests = float(row["Request Count"] or 0)
        for column, label in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
            if row.get(column) not in (None, "", "N/A"):
                values[f"{name}.{label}"] = float(row[column])
                better[f"{name}.{label}"] = "lower"
        if requests:
            values[f"{name}.failure_rate"] = float(row["Failure Count"] or 0) / requests
            better[f"{name}.failure_rate"] = "lower"
        if row.get("Requests/s"):
            values[f"{name}.rps"] = float(row["Requests/s"])
            better[f"{name}.rps"] = "higher"
    return SummaryFile("locust", str(path), values, better) if values else None


def read_summary(path: Path) -> SummaryFile | None:
    """A k6 summary export or a Locust stats CSV, or None when the file is neither."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix == ".csv":
        return _locust(text, path)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and "schemaVersion" not in data and "metrics" in data:
        return _k6(data, path)
    return None


@dataclass(frozen=True, slots=True)
class DriftRow:
    metric: str
    base: float
    head: float
    allowed: str  # "+10%", "+0.01"
    verdict: Literal["ok", "regression", "improvement"]
    gated: bool  # headline metrics decide; the others are shown for information


def is_headline(tool: str, metric: str) -> bool:
    """What decides by default: end-to-end latency p95, the scenario's own trends, failure rates
    and throughput; not k6's per-phase timings (sending, waiting ...) nor medians, which move
    between two runs of the same thing."""
    name, _, stat = metric.rpartition(".")
    if tool == "locust":
        return name == "aggregated" and stat in ("p95", "p99", "failure_rate", "rps")
    if stat == "p95":
        return name == "http_req_duration" or not name.startswith(("http_req", "iteration", "group"))
    return stat in ("rate", "count") and name != "http_reqs"  # http_reqs counts polls too


DEFAULT_RELATIVE = 0.10  # durations may grow, throughput may fall, by 10 %
DEFAULT_ABSOLUTE_RATE = 0.01  # failure rates may grow by one point
ABSOLUTE_MS = 1.0  # and a duration is not worse by less than a millisecond, whatever its ratio


def parse_drift(text: str | None) -> dict[str, float]:
    """``job_ms.p95=20%,job_failed.rate=0.02`` -> allowed drift per metric (a fraction for %,
    else an absolute amount); a malformed entry is a ``ValueError`` naming it."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
        except ValueError:
            raise ValueError(f"bad drift {part.strip()!r}: write metric=10% or metric=0.02") from None
    return out


def compare_summaries(
    base: SummaryFile, head: SummaryFile, drift: dict[str, float] | None = None
) -> list[DriftRow]:
    """Every metric both files have, against its allowed drift (relative for latencies and
    throughput, absolute for rates; ``drift`` overrides per metric)."""
    drift = drift or {}
    rows: list[DriftRow] = []
    for metric in sorted(set(base.values) & set(head.values)):
        b, h = base.values[metric], head.values[metric]
        lower_is_better = base.better.get(metric, "lower") == "lower"
        is_rate = (metric.endswith(".rate") and lower_is_better) or metric.endswith("failure_rate")
        is_duration = base.better.get(metric) == "lower" and not is_rate and not metric.endswith(".count")
        allowed = drift.get(metric, DEFAULT_ABSOLUTE_RATE if is_rate else DEFAULT_RELATIVE)
        worse = (h - b) if lower_is_better else (b - h)  # how much worse the head is, in the metric's unit
        limit = allowed if is_rate else allowed * abs(b)
        if is_duration:
            limit = max(limit, ABSOLUTE_MS)
        verdict: Literal["ok", "regression", "improvement"] = "ok"
        if worse > limit:
            verdict = "regression"
        elif -worse > limit:
            verdict = "improvement"
        sign = "+" if lower_is_better else "-"
        shown = f"{sign}{allowed:g}" if is_rate else f"{sign}{allowed:.0%}"
        gated = metric in drift or is_headline(base.tool, metric)
        rows.append(DriftRow(metric, b, h, shown, verdict, gated))
    return rows
