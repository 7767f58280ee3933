"""Validation of telemetry batches as an ingest endpoint receives them (NDJSON, optionally gzip).

Each line is checked on its own: a good line is kept (rebuilt from the event definition's
fields: anything else is not stored), a bad one is reported with its line number and the reason,
and the rest of the batch still counts (partial success). Sizes are bounded before and after
decompression, so a small gzip body cannot expand without limit.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voxperf.engines.base import LEVELS
from voxperf.telemetry.client import EVENT_FIELDS

__all__ = ["IngestError", "LineError", "ParsedBatch", "decode_body", "parse_batch", "validate_event"]

MAX_BODY_BYTES = 8 * 2**20  # as received (compressed)
MAX_EXPANDED_BYTES = 64 * 2**20
MAX_LINE_BYTES = 16 * 2**10
MAX_LINES = 100_000
SCHEMA_VERSIONS = frozenset({1})


class IngestError(ValueError):
    """The whole batch is refused: ``status`` is the HTTP status to answer with (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class LineError:
    line: int  # 1-based, as an editor shows it
    reason: str


@dataclass
class ParsedBatch:
    events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    dropped_fields: int = 0  # fields not in the event definition: not stored


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """The NDJSON bytes of a request body (gzip or identity), bounded in size."""
    if len(body) > MAX_BODY_BYTES:
        raise IngestError(413, f"the body is larger than {MAX_BODY_BYTES} bytes: send smaller batches")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise IngestError(415, f"Content-Encoding {encoding!r} is not supported: send gzip or identity")
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as fh:
            while chunk := fh.read(1 << 20):
                out += chunk
                if len(out) > MAX_EXPANDED_BYTES:
                    raise IngestError(
                        413, f"the body expands past {MAX_EXPANDED_BYTES} bytes: send smaller batches"
                    )
    except (OSError, EOFError) as exc:
        raise IngestError(400, f"the body is not valid gzip: {exc}") from None
    return bytes(out)


def _count(name: str, value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"event.fields.{name} must be a number >= 0, got {value!r}")
    return value


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise ValueError(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def validate_event(obj: object) -> tuple[dict[str, Any], int]:
    """The stored form of one event and how many unknown fields were left out; ``ValueError``
    with the reason when the line is not a valid event."""
    if not isinstance(obj, dict):
        raise ValueError("a line must be a JSON object")
    version = obj.get("schemaVersion")
    if isinstance(version, bool) or version not in SCHEMA_VERSIONS:
        raise ValueError(f"schemaVersion {version!r} is not supported (use 1)")
    inner = obj.get("event")
    if not isinstance(inner, dict):
        raise ValueError("event must be an object")
    name = inner.get("name")
    allowed = EVENT_FIELDS.get(name) if isinstance(name, str) else None
    if allowed is None:
        raise ValueError(f"unknown event name {name!r} (known: {', '.join(EVENT_FIELDS)})")
    timestamp = _text("event.timestamp", inner.get("timestamp"), 40)
    try:
        datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"event.timestamp {timestamp!r} is not an ISO-8601 time") from None
    fields_in = inner.get("fields")
    if not isinstance(fields_in, dict):
        raise ValueError("event.fields must be an object")
    fields: dict[str, Any] = {}
    for key, kind in allowed.items():
        if key not in fields_in or fields_in[key] is None:
            continue
        if kind == "level":
            level = fields_in[key]
            if level not in LEVELS:
                raise ValueError(f"event.fields.{key} must be one of {', '.join(LEVELS)}, got {level!r}")
            fields[key] = level
        else:
            fields[key] = _count(key, fields_in[key])
    unknown = len(set(fields_in) - set(allowed)) + len(
        set(obj) - {"schemaVersion", "appVersion", "appBuild", "osVersion", "event"}
    )
    unknown += len(set(inner) - {"timestamp", "name", "sessionID", "fields"})
    stored = {
        "schemaVersion": version,
        "appVersion": _text("appVersion", obj.get("appVersion"), 64),
        "appBuild": _text("appBuild", obj.get("appBuild", "0"), 64),
        "osVersion": _text("osVersion", obj.get("osVersion", "unknown"), 128),
        "event": {
            "timestamp": timestamp,
            "name": name,
            "sessionID": _text("event.sessionID", inner.get("sessionID"), 64),
            "fields": fields,
        },
    }
    return stored, unknown


def parse_batch(data: bytes) -> ParsedBatch:
    """Every line of an NDJSON batch validated on its own (blank lines are skipped)."""
    out = ParsedBatch()
    lines = data.split(b"\n")
    if len(lines) > MAX_LINES + 1:
        raise IngestError(413, f"more than {MAX_LINES} lines in one batch: send smaller batches")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            out.errors.append(LineError(number, f"the line is longer than {MAX_LINE_BYTES} bytes"))
            continue
        try:
            event, unknown = validate_event(json.loads(raw))
        except json.JSONDecodeError as exc:
            out.errors.append(LineError(number, f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            out.errors.append(LineError(number, str(exc)))
            continue
        out.events.append(event)
        out.dropped_fields += unknown
    return out
