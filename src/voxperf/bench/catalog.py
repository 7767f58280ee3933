"""The metric catalogue: every summarised metric with its unit, which direction is better, and the
change the regression gate cares about (its thresholds).

Runner, reports and gates import this; a metric that is not here is not summarised or compared.
The thresholds live here, not in the report, because the bench needs them too: a summary is
"noisy" when its confidence interval is wider than the change the gate would flag.

Stages are open: a span of any name (a custom stage such as ``diarize``, or ``stt.encode`` opened by
an engine inside ``stt``) is the metric ``<name>_ms``, in ms, lower is better, with the stages'
thresholds (:func:`unit_of`, :func:`better_of`, :func:`thresholds_of`). :func:`register_metric`
adds any other metric (a unit, a direction, thresholds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from voxperf.trace.stages import DICTATION_STAGES, SPEECH_STAGES, Stage

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DICTATION_ROWS",
    "HEADLINE_METRICS",
    "METRIC_BETTER",
    "METRIC_UNITS",
    "SPEECH_ROWS",
    "STAGE_THRESHOLDS",
    "Better",
    "Thresholds",
    "better_of",
    "catalogue_order",
    "is_known_metric",
    "is_stage_metric",
    "noise_thresholds",
    "register_metric",
    "thresholds_of",
    "unit_of",
]

Better = Literal["lower", "higher"]

METRIC_UNITS: dict[str, str] = {
    **{f"{s.value}_ms": "ms" for s in Stage},
    "total_ms": "ms",
    "total_stage_ms": "ms",
    "overhead_ms": "ms",
    "ttfa_ms": "ms",
    "first_chunk_ms": "ms",
    "generation_ms": "ms",
    "streaming_ms": "ms",
    "leading_silence_ms": "ms",
    "cpu_ms": "ms",
    "stt_rtfx": "x",  # input audio duration ÷ stt time
    "stt_rtfx_trimmed": "x",  # VAD-trimmed duration (what the engine was given) ÷ stt time
    "rtfx": "x",
    "streaming_efficiency": "ratio",
    "stall_count": "count",
    "stall_ms": "ms",
    "prebuffer_ms": "ms",
    # load runs (voxperf load): per request, from the intended start unless said otherwise
    "latency_ms": "ms",  # intended start -> last byte (what a user waits, generator queueing included)
    "service_ms": "ms",  # actual start -> last byte (what a closed-loop tool reports)
    "lag_ms": "ms",  # intended -> actual start (coordinated omission made visible)
    "ttfb_ms": "ms",  # intended start -> response headers
    "job_ms": "ms",  # a job's created -> completed, on the server's clock
    "queue_wait_ms": "ms",
    "processing_ms": "ms",
    "max_chunk_gap_ms": "ms",
    "instructions": "instr",  # per request, counted by callgrind (--instrument instructions)
}

_HIGHER_IS_BETTER = frozenset({"stt_rtfx", "stt_rtfx_trimmed", "rtfx", "streaming_efficiency"})
METRIC_BETTER: dict[str, Better] = {
    **{name: ("higher" if name in _HIGHER_IS_BETTER else "lower") for name in METRIC_UNITS},
    "wer": "lower",  # corpus WER: compared from the lane's WER records, not from samples
}


_BUILTIN_STAGES = frozenset(f"{s.value}_ms" for s in Stage)

# the rows a pipeline's table shows, in order: its stages (from the Stage enum), then its totals
DICTATION_ROWS: tuple[str, ...] = (
    *(f"{s.value}_ms" for s in DICTATION_STAGES),
    *("total_ms", "overhead_ms", "cpu_ms", "stt_rtfx", "stt_rtfx_trimmed", "instructions"),
)
SPEECH_ROWS: tuple[str, ...] = (
    "ttfa_ms",
    "first_chunk_ms",
    *(f"{s.value}_ms" for s in SPEECH_STAGES),
    *("total_ms", "overhead_ms", "cpu_ms", "rtfx", "streaming_efficiency", "stall_count", "stall_ms"),
    *("prebuffer_ms", "instructions"),
)
# what a report shows even when unchanged: what users of each pipeline watch first
HEADLINE_METRICS: tuple[str, ...] = (
    "total_ms",
    "ttfa_ms",
    f"{Stage.STT.value}_ms",
    f"{Stage.REWRITE.value}_ms",
    f"{Stage.ENCODE.value}_ms",
    f"{Stage.SYNTHESIZE.value}_ms",
    "overhead_ms",
    "wer",
    "stt_rtfx",
    "rtfx",
    "streaming_efficiency",
)


def is_span_metric(name: str) -> bool:
    """``<name>_ms`` of a span: a built-in or custom stage, or a sub-span (``stt.encode_ms``); not a
    catalogue metric such as ``total_ms`` or ``ttfa_ms``."""
    if name in _BUILTIN_STAGES:
        return True
    return name.endswith("_ms") and len(name) > 3 and name not in METRIC_UNITS


def is_stage_metric(name: str) -> bool:
    """``<stage>_ms`` of a top-level span, built-in or custom: the parts a total decomposes into
    (a sub-span, ``stt.encode_ms``, is part of its stage, not a part of its own)."""
    return is_span_metric(name) and "." not in name


def is_known_metric(name: str) -> bool:
    """In the catalogue, or the time of a span (summarised, compared and gated like the stages)."""
    return name in METRIC_UNITS or name in METRIC_BETTER or is_span_metric(name)


def unit_of(name: str) -> str:
    return METRIC_UNITS.get(name) or ("ms" if is_span_metric(name) else "")


def better_of(name: str) -> Better:
    return METRIC_BETTER.get(name, "lower")


def catalogue_order(names: Iterable[str]) -> list[str]:
    """Known metrics among ``names``: the catalogue's order first, then span metrics by name."""
    present = set(names)
    ordered = [m for m in METRIC_UNITS if m in present]
    return ordered + sorted(m for m in present if m not in METRIC_UNITS and is_span_metric(m))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a change matters (relative as a fraction, absolute in the metric's unit) and value limits."""

    rel_warn: float | None = 0.10
    abs_warn: float | None = None
    rel_error: float | None = 0.25
    abs_error: float | None = None
    limit_warn: float | None = None  # head p50 beyond this (worse direction) raises an alert
    limit_error: float | None = None


def _ms(rw: float, aw: float, re: float, ae: float, **kw: Any) -> Thresholds:
    return Thresholds(rel_warn=rw, abs_warn=aw, rel_error=re, abs_error=ae, **kw)


# Totals follow the dictation app's audit ("> 200 ms and > 10 %"); TTFA, efficiency and their value
# limits follow the TTS server's logging plan (TTFA > 1 s warning, > 2 s error; efficiency < 80 % /
# < 60 %).
STAGE_THRESHOLDS = _ms(0.10, 5.0, 0.25, 20.0)
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    **{m: STAGE_THRESHOLDS for m in _BUILTIN_STAGES},
    "total_ms": _ms(0.10, 100.0, 0.10, 200.0),
    "total_stage_ms": _ms(0.10, 100.0, 0.10, 200.0),
    "overhead_ms": _ms(0.25, 0.05, 0.50, 0.5),
    "ttfa_ms": _ms(0.10, 50.0, 0.20, 200.0, limit_warn=1000.0, limit_error=2000.0),
    "first_chunk_ms": _ms(0.10, 50.0, 0.20, 200.0),
    "generation_ms": _ms(0.10, 50.0, 0.20, 200.0),
    "streaming_ms": _ms(0.10, 50.0, 0.20, 200.0),
    "cpu_ms": _ms(0.15, 20.0, 0.30, 100.0),
    "stt_rtfx": Thresholds(0.10, None, 0.20, None),
    "stt_rtfx_trimmed": Thresholds(0.10, None, 0.20, None),
    "rtfx": Thresholds(0.10, None, 0.20, None),
    "streaming_efficiency": Thresholds(None, 0.05, None, 0.10, limit_warn=0.80, limit_error=0.60),
    "stall_ms": _ms(0.10, 50.0, 0.25, 200.0),
    "prebuffer_ms": _ms(0.10, 50.0, 0.25, 200.0),
    "latency_ms": _ms(0.10, 50.0, 0.25, 200.0),
    "service_ms": _ms(0.10, 50.0, 0.25, 200.0),
    "lag_ms": _ms(0.50, 2.0, 1.00, 10.0),
    "ttfb_ms": _ms(0.10, 50.0, 0.25, 200.0),
    "job_ms": _ms(0.10, 100.0, 0.25, 500.0),
    "instructions": Thresholds(0.01, None, 0.05, None),  # deterministic: 1 % is a finding, not noise
    "wer": Thresholds(None, 0.02, None, 0.05),  # absolute: 2 / 5 percentage points of corpus WER
}


def thresholds_of(metric: str) -> Thresholds | None:
    """The metric's thresholds: its own, the stages' for any span, else None (reported, not judged)."""
    return DEFAULT_THRESHOLDS.get(metric) or (STAGE_THRESHOLDS if is_span_metric(metric) else None)


def register_metric(
    name: str, unit: str, better: Better = "lower", thresholds: Thresholds | None = None
) -> None:
    """Add a metric that records carry (e.g. ``llm_tokens``, a count) to the catalogue."""
    METRIC_UNITS[name] = unit
    METRIC_BETTER[name] = better
    if thresholds is not None:
        DEFAULT_THRESHOLDS[name] = thresholds


def noise_thresholds(metric: str) -> tuple[float | None, float | None]:
    """(relative, absolute) size of a change the gate would warn about: a CI wider than that is noisy."""
    thr = thresholds_of(metric)
    if thr is None:
        return None, None
    return thr.rel_warn, thr.abs_warn
