"""Telemetry batch validation: the documented example line accepted verbatim, every bad line
reported with its line number and reason while the good ones count, unknown fields never stored,
sizes bounded before and after gzip."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from tests.conftest import TELEMETRY_EXAMPLE as EXAMPLE
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
