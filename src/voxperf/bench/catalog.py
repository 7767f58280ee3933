"""The metric catalogue: every summarised metric with its unit and which direction is better.

Runner, reports and gates import this; a metric that is not here is not summarised or compared.
"""

from __future__ import annotations

from typing import Literal

from voxperf.trace.stages import Stage

__all__ = ["METRIC_BETTER", "METRIC_UNITS", "Better", "is_stage_metric"]

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
    "stt_rtfx": "x",
    "rtfx": "x",
    "streaming_efficiency": "ratio",
    "wer": "ratio",
}

_HIGHER_IS_BETTER = frozenset({"stt_rtfx", "rtfx", "streaming_efficiency"})
METRIC_BETTER: dict[str, Better] = {
    name: ("higher" if name in _HIGHER_IS_BETTER else "lower") for name in METRIC_UNITS
}


def is_stage_metric(name: str) -> bool:
    """``<stage>_ms`` for a pipeline stage (the parts a total decomposes into)."""
    return name.removesuffix("_ms") in {s.value for s in Stage} and name.endswith("_ms")
