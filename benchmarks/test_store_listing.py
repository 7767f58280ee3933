"""Listing a large store through its index (issue 3: 10,000 results listed in <= 1 s).

Run: make benchmarks ARGS="-k store -s"
"""

from __future__ import annotations

import time
from pathlib import Path

from voxperf.store.backend import LocalBackend
from voxperf.store.keys import StoreKey
from voxperf.store.store import ResultStore, canonical_bytes, split_lanes

N = 10_000


def test_list_10000_results(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import make_result

    one = split_lanes(make_result("0" * 40))["provider"]
    root = tmp_path / "store"
    audit = root / "audit"
    audit.mkdir(parents=True)
    for i in range(N):
        sha = f"{i:040x}"
        data = canonical_bytes(one.model_copy(update={"createdAt": f"2026-01-01T00:00:{i % 60:02d}Z"}))
        (audit / StoreKey(sha).relpath.removeprefix("audit/")).write_bytes(data)
    store = ResultStore(LocalBackend(root))
    t0 = time.perf_counter()
    assert store.rebuild_index() == N
    rebuild = time.perf_counter() - t0
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        rows = store.ls(limit=N)
        timings.append(time.perf_counter() - t0)
    timings.sort()
    print(
        f"\nrebuild index from {N} files: {rebuild:.2f} s; "
        f"ls of {len(rows)} results: median {timings[2] * 1000:.0f} ms"
    )
    assert len(rows) == N
    assert timings[2] <= 1.0
