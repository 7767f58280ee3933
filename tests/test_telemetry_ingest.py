"""Telemetry batch validation: the documented example line accepted verbatim, every bad line
reported with its line number and reason while the good ones count, unknown fields never stored,
sizes bounded before and after gzip."""

from __future__ import annotations

import gzip
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TELEMETRY_EXAMPLE as EXAMPLE
from tests.conftest import telemetry_line
from voxperf.telemetry.ingest import MAX_EXPANDED_BYTES, IngestError, decode_body, parse_batch

LINE = json.dumps(EXAMPLE)


def test_the_documented_example_line_is_accepted_verbatim() -> None:
    pretty = json.dumps(EXAMPLE, indent=2)  # as documented, then as one NDJSON line
    batch = parse_batch(json.dumps(json.loads(pretty)).encode() + b"\n")
    assert batch.errors == [] and batch.events == [EXAMPLE]  # every field kept as sent


def test_bad_lines_are_reported_by_number_and_the_good_ones_still_count() -> None:
    rng = random.Random(7)
    lines = [LINE] * 1000
    bad = sorted(rng.sample(range(1000), 10))  # 1 % malformed, in different ways
    breakers = [
        lambda e: "{not json",
        lambda e: json.dumps({**e, "schemaVersion": 2}),
        lambda e: json.dumps({**e, "event": {**e["event"], "name": "keylog"}}),
        lambda e: json.dumps(
            {**e, "event": {**e["event"], "fields": {**e["event"]["fields"], "stt_ms": -1}}}
        ),
        lambda e: json.dumps({**e, "event": {**e["event"], "timestamp": "yesterday"}}),
    ]
    for k, i in enumerate(bad):
        lines[i] = breakers[k % len(breakers)](EXAMPLE)
    batch = parse_batch("\n".join(lines).encode())
    assert len(batch.events) == 990
    assert [e.line for e in batch.errors] == [i + 1 for i in bad]  # 1-based line numbers
    reasons = " | ".join(e.reason for e in batch.errors)
    for expected in (
        "not JSON",
        "unsupported schemaVersion",
        "unknown event name: Invalid value 'keylog'",
        "`float` >= 0.0 - at `$.event.fields.stt_ms`",
        "RFC 3339",
    ):
        assert expected in reasons


def test_unknown_fields_are_not_stored() -> None:
    event = json.loads(LINE)
    event["transcript"] = "CANARY"
    event["event"]["fields"]["text"] = "CANARY"
    batch = parse_batch(json.dumps(event).encode())
    assert batch.rows == 1 and "CANARY" not in json.dumps(batch.events)
    assert "CANARY" not in repr(batch.columns)  # not in any stored column either


def test_bodies_are_bounded_and_gzip_is_checked() -> None:
    body = gzip.compress((LINE + "\n").encode() * 3)
    assert parse_batch(decode_body(body, "gzip")).events == [EXAMPLE] * 3
    bomb = gzip.compress(b"\n" * (MAX_EXPANDED_BYTES + 1))
    with pytest.raises(IngestError) as too_big:
        decode_body(bomb, "gzip")
    assert too_big.value.status == 413
    with pytest.raises(IngestError) as broken:
        decode_body(b"not gzip", "gzip")
    assert broken.value.status == 400
    with pytest.raises(IngestError) as other:
        decode_body(b"", "br")
    assert other.value.status == 415


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), st.sampled_from([LINE.encode()])), max_size=30))
def test_any_bytes_are_either_an_event_or_a_numbered_error(lines: list[bytes]) -> None:
    cleaned = [raw.replace(b"\n", b" ") for raw in lines]
    batch = parse_batch(b"\n".join(cleaned))
    nonblank = [i + 1 for i, raw in enumerate(cleaned) if raw.strip()]
    assert batch.rows + len(batch.errors) == len(nonblank) == batch.lines
    assert {e.line for e in batch.errors} <= set(nonblank)
    assert batch.rows >= sum(1 for raw in cleaned if raw == LINE.encode())


@given(
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.sampled_from(["hit", "miss"]),
    st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True),
)
def test_a_valid_speech_event_is_stored_with_its_values(ttfa: float, cache: str, provider: str) -> None:
    line = telemetry_line("speech_timing", 1_796_083_200_123, ttfa_ms=ttfa, cache=cache, provider=provider)
    batch = parse_batch(line.encode())
    assert batch.errors == []
    (event,) = batch.events
    assert event["event"]["fields"] == {"ttfa_ms": ttfa, "cache": cache, "provider": provider}
    assert event["event"]["timestamp"] == "2026-12-01T00:00:00.123Z"
