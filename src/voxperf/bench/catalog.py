"""The metric catalogue: every summarised metric with its unit, which direction is better, and the
change the regression gate cares about (its thresholds).

Runner, reports and gates import this; a metric that is not here is not summarised or compared.
The thresholds live here, not in the report, because the bench needs them too: a summary is
"noisy" when its confidence interval is wider than the change the gate would flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from voxperf.trace.stages import Stage

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METRIC_BETTER",
    "METRIC_UNITS",
    "Better",
    "Thresholds",
    "is_stage_metric",
    "noise_thresholds",
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
    "instructions": "instr",  # per request, counted by callgrind (--instrument instructions)
}

_HIGHER_IS_BETTER = frozenset({"stt_rtfx", "stt_rtfx_trimmed", "rtfx", "streaming_efficiency"})
METRIC_BETTER: dict[str, Better] = {
    **{name: ("higher" if name in _HIGHER_IS_BETTER else "lower") for name in METRIC_UNITS},
    "wer": "lower",  # corpus WER: compared from the lane's WER records, not from samples
}


def is_stage_metric(name: str) -> bool:
    """``<stage>_ms`` for a pipeline stage (the parts a total decomposes into)."""
    return name.removesuffix("_ms") in {s.value for s in Stage} and name.endswith("_ms")


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
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    **{m: _ms(0.10, 5.0, 0.25, 20.0) for m in METRIC_UNITS if is_stage_metric(m)},
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
    "instructions": Thresholds(0.01, None, 0.05, None),  # deterministic: 1 % is a finding, not noise
    "wer": Thresholds(None, 0.02, None, 0.05),  # absolute: 2 / 5 percentage points of corpus WER
}


def noise_thresholds(metric: str) -> tuple[float | None, float | None]:
    """(relative, absolute) size of a change the gate would warn about: a CI wider than that is noisy."""
    thr = DEFAULT_THRESHOLDS.get(metric)
    if thr is None:
        return None, None
    return thr.rel_warn, thr.abs_warn
