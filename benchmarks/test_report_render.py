"""Rendering with a 1,000-run trend window (issue 4: Markdown + HTML <= 2 s, HTML <= 5 MB).

Run: make benchmarks ARGS="-k render -s"
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf

from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.report.compare import compare_results
from voxperf.report.html import render_html
from voxperf.report.render import TrendPoint, render_markdown, trend_points


def test_render_with_1000_run_trend(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    for name, f in (("a", 220), ("b", 330)):
        sf.write(tmp_path / f"{name}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 16000)
        (tmp_path / f"{name}.txt").write_text("hello world")
    config = BenchConfig(lanes=("codepath",), fixtures=tmp_path, iterations=10, warmup=1, resamples=200)
    base = run_bench(config).result
    head = run_bench(config).result
    point = trend_points([("main", base)])[0]
    rng = np.random.default_rng(0)
    trend = [
        TrendPoint(
            "main",
            f"{i:040x}",
            point.created_at,
            {k: v * (1 + 0.05 * rng.standard_normal()) for k, v in point.p50.items()},
        )
        for i in range(1000)
    ]
    t0 = time.perf_counter()
    comparison = compare_results(base, head)
    t1 = time.perf_counter()
    markdown = render_markdown(comparison, trend=trend)
    html = render_html(comparison, base, head, trend)
    t2 = time.perf_counter()
    size = len(html.encode())
    print(
        f"\ncompare {t1 - t0:.2f} s; Markdown + HTML with a 1000-run trend {t2 - t1:.2f} s; "
        f"HTML {size / 2**20:.2f} MiB, Markdown {len(markdown) / 1024:.0f} KiB"
    )
    assert t2 - t1 <= 2.0 and size <= 5 * 2**20
