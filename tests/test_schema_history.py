"""Schema v2: old (v1) results still load, are labelled for what they are, and are not mixed up.

``tests/data/result-v1-*.json`` were written by voxperf at the last schema-v1 commit (3671aac).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.bench.schema import SCHEMA_HISTORY, SCHEMA_VERSION, definitions_label, load_result, parse_result
from voxperf.bench.table import render_result
from voxperf.report.compare import compare_results

DATA = Path(__file__).parent / "data"


def test_v1_results_still_load_and_are_labelled_as_old_definitions() -> None:
    for name in ("result-v1-codepath.json", "result-v1-provider.json"):
        old = load_result(DATA / name)
        assert old.schemaVersion == 1
        label = definitions_label(old)
        assert label is not None and "schema v1 definitions" in label and "corpus WER" in label
        console = Console(record=True, width=160)
        render_result(old, console)
        assert "schema v1" in console.export_text()


def test_current_results_carry_no_old_label_and_the_history_names_the_version(tone_dir: Path) -> None:
    config = BenchConfig(lanes=("codepath",), fixtures=tone_dir, iterations=2, warmup=0, resamples=50)
    result = run_bench(config, isolate=False).result
    assert result.schemaVersion == SCHEMA_VERSION == 3
    assert definitions_label(result) is None
    assert set(SCHEMA_HISTORY) == {1, 2, 3}
    again = parse_result(result.model_dump(mode="json"))
    assert again == result


def test_v2_and_v3_results_compare_in_full() -> None:
    """v3 added records (model hashes, plugin engines), not definitions: nothing is left out."""
    old = load_result(DATA / "result-v1-provider.json")
    v2 = parse_result({**old.model_dump(mode="json"), "schemaVersion": 2})
    v3 = parse_result({**old.model_dump(mode="json"), "schemaVersion": 3})
    comparison = compare_results(v2, v3, resamples=200)
    assert not any("redefined" in s for s in comparison.skipped)
    assert {"streaming_efficiency", "stt_rtfx"} <= {r.metric for r in comparison.rows}


def test_comparing_across_versions_leaves_out_redefined_metrics() -> None:
    old = load_result(DATA / "result-v1-provider.json")
    # the same run relabelled as v2 (what a head measured with this version would be compared as)
    head = parse_result({**old.model_dump(mode="json"), "schemaVersion": 2})
    comparison = compare_results(old, head, resamples=200)
    metrics = {r.metric for r in comparison.rows}
    assert "stt_ms" in metrics and "total_ms" in metrics
    assert not metrics & {"streaming_efficiency", "stt_rtfx", "wer"}
    assert any("redefined" in s for s in comparison.skipped)
    # identical data: nothing may be called a regression
    assert not comparison.regressions
