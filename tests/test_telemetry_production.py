"""Bench and production side by side: ``voxperf telemetry compare`` on a store file and
``voxperf report --telemetry`` against a real telemetry server show the result's p95 next to
production's p95 for one app version, computed like numpy's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from voxperf.telemetry.ingest import parse_batch
from voxperf.telemetry.server import TelemetrySettings, create_telemetry_app
from voxperf.telemetry.store import TelemetryStore

from .conftest import make_result, run_cli, serve_app, telemetry_line


def _fill(store: TelemetryStore) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    now_ms = int(time.time() * 1000)
    values = {
        "1.0.0": np.round(rng.lognormal(6.0, 0.3, 300), 3),
        "1.1.0": np.round(rng.lognormal(6.4, 0.3, 200), 3),
    }
    lines = [
        telemetry_line(
            "pipeline_timing",
            now_ms - int(rng.integers(60_000, 3_600_000)),
            app_version=version,
            processing_level="raw",
            stt_ms=float(v),
            total_ms=float(v) + 40,
        )
        for version, vs in values.items()
        for v in vs
    ]
    store.ingest(parse_batch("\n".join(lines).encode()), batch_id="prod")
    return values


def test_telemetry_compare_puts_the_bench_p95_beside_production(tmp_path: Path) -> None:
    path = tmp_path / "prod.duckdb"
    store = TelemetryStore(path)
    values = _fill(store)
    store.close()
    result = tmp_path / "head.json"
    result.write_text(make_result("b" * 40).model_dump_json())
    done = run_cli(
        "telemetry", "compare", str(result), "--telemetry", str(path), "--app-version", "1.1.0", "--json"
    )
    assert done.returncode == 0, done.stderr
    rows = {r["metric"]: r for r in json.loads(done.stdout)}
    stt = rows["stt_ms"]
    assert stt["lane"] == "provider" and stt["bench_p95"] == pytest.approx(11.8)
    assert stt["prod_n"] == 200
    assert stt["prod_p95"] == pytest.approx(np.percentile(values["1.1.0"], 95), rel=1e-9)
    assert stt["prod_p50"] == pytest.approx(np.percentile(values["1.1.0"], 50), rel=1e-9)


def test_report_includes_production_p95_for_this_version(tmp_path: Path) -> None:
    store = TelemetryStore(":memory:")
    values = _fill(store)
    app = create_telemetry_app(TelemetrySettings(), store=store, background=False, own_store=True)
    head, base = tmp_path / "head.json", tmp_path / "base.json"
    head.write_text(make_result("b" * 40).model_dump_json())
    base.write_text(make_result("a" * 40).model_dump_json())
    out = tmp_path / "report.md"
    for url in serve_app(None, None, app=app):  # type: ignore[arg-type]
        done = run_cli(
            "report", str(head), "--base", str(base), "--markdown", str(out), "--telemetry", url,
            "--app-version", "1.0.0",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "Bench vs production (version 1.0.0, last 7d)" in text
    row = next(line for line in text.splitlines() if line.startswith("| dictation | stt_ms |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "11.8 ms"  # the bench's p95
    assert cells[4] == "300"  # production events of 1.0.0
    assert cells[6] == f"{np.percentile(values['1.0.0'], 95):.1f} ms"
    unreachable = run_cli("report", str(head), "--base", str(base), "--telemetry", "http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "cannot read production telemetry" in unreachable.stderr


def test_a_wrong_store_path_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    result = tmp_path / "head.json"
    result.write_text(make_result("b" * 40).model_dump_json())
    missing = tmp_path / "typo" / "prod.duckdb"
    done = run_cli("telemetry", "compare", str(result), "--telemetry", str(missing))
    assert done.returncode == 2 and "there is no telemetry store at" in done.stderr
    assert not missing.parent.exists()
    store = TelemetryStore(tmp_path / "long.duckdb")
    _fill(store)
    store.close()
    long = run_cli(
        "telemetry", "compare", str(result), "--telemetry", str(tmp_path / "long.duckdb"), "--window", "500d"
    )
    assert long.returncode == 0, long.stderr  # one bucket, however long the window
