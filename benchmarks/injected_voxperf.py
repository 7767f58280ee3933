"""``voxperf`` with a known change injected: the "head" of the gate's power experiments.

Run as ``python benchmarks/injected_voxperf.py bench-worker`` (what ``voxperf ab --head-cmd``
does). ``VOXPERF_INJECT`` selects the change:

* ``stt_slowdown=0.10``: faster-whisper's transcribe takes 10 % longer (it sleeps 10 % of the time
  the real call took, right after it): a real engine made slower by a known amount;
* ``pipeline_work=N``: the dictation pipeline does N extra iterations of pure-Python work per
  request (a change in pipeline code, for the instruction-count instrument).

Anything else runs voxperf unchanged.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def _inject(spec: str) -> None:
    key, _, value = spec.partition("=")
    if key == "stt_slowdown":
        from voxperf.engines.stt import faster_whisper

        factor = float(value)
        original = faster_whisper.FasterWhisperSTT.transcribe

        def slowed(self: Any, audio: Any) -> Any:
            t0 = time.perf_counter()
            out = original(self, audio)
            time.sleep((time.perf_counter() - t0) * factor)
            return out

        faster_whisper.FasterWhisperSTT.transcribe = slowed  # type: ignore[method-assign]
    elif key == "pipeline_work":
        from voxperf.pipeline import dictation

        n = int(value)
        run = dictation.DictationPipeline.run

        def heavier(self: Any, *args: Any, **kwargs: Any) -> Any:
            total = 0
            for i in range(n):
                total += i * i % 7
            return run(self, *args, **kwargs)

        dictation.DictationPipeline.run = heavier  # type: ignore[method-assign]
    elif spec:
        raise SystemExit(f"unknown VOXPERF_INJECT {spec!r}: use stt_slowdown=F or pipeline_work=N")


if __name__ == "__main__":
    _inject(os.environ.get("VOXPERF_INJECT", ""))
    from voxperf.cli import main

    sys.argv[0] = "voxperf"
    main()
