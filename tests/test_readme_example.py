"""The README's "measure your own pipeline" example runs as printed and measures what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path


def test_the_readme_library_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Measure your own pipeline", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), namespace)
    result = namespace["result"]
    stages = result.trace  # type: ignore[attr-defined]
    from voxperf.trace.metrics import stage_totals_ns

    totals = stage_totals_ns(stages)
    assert {"decode", "resample", "stt", "stt.diarize", "rewrite", "paste"} <= set(totals)
    assert totals["stt.diarize"] <= totals["stt"]
    assert out.getvalue().startswith("1 speaker ")
