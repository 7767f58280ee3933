"""Result schema: round trip, refusal of unknown versions, published JSON Schema kept current."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from voxperf.bench.schema import (
    SCHEMA_HISTORY,
    SCHEMA_VERSION,
    BenchResult,
    dump_result,
    json_schema,
    load_result,
    parse_result,
)
from voxperf.errors import SchemaVersionError, UsageError

from .conftest import minimal_result

PUBLISHED = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "voxperf"
    / "schema"
    / f"result-v{SCHEMA_VERSION}.schema.json"
)


def test_round_trip(tmp_path: Path) -> None:
    result = parse_result(minimal_result())
    path = tmp_path / "r.json"
    dump_result(result, path)
    again = load_result(path)
    assert again == result
    assert json.loads(path.read_text())["schemaVersion"] == SCHEMA_VERSION


def test_gzip_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(json.dumps(minimal_result()).encode()))
    assert load_result(path).lanes["codepath"].runs[0].stagesNs == {"stt": 10}


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, "1", None])
def test_unknown_versions_refused(version: object) -> None:
    data = minimal_result()
    if version is None:
        del data["schemaVersion"]
    else:
        data["schemaVersion"] = version
    with pytest.raises(SchemaVersionError) as err:
        parse_result(data)
    assert err.value.hint


def test_newer_version_says_upgrade() -> None:
    data = minimal_result() | {"schemaVersion": SCHEMA_VERSION + 1}
    with pytest.raises(SchemaVersionError, match="schemaVersion") as err:
        parse_result(data)
    assert "upgrade" in (err.value.hint or "")


def test_invalid_content_names_the_field() -> None:
    data = minimal_result()
    data["lanes"]["codepath"]["runs"][0]["totalNs"] = "fast"
    with pytest.raises(UsageError, match="totalNs"):
        parse_result(data)


def test_unknown_field_refused() -> None:
    data = minimal_result()
    data["surprise"] = 1
    with pytest.raises(UsageError, match="surprise"):
        parse_result(data)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(minimal_result())[:100])
    with pytest.raises(UsageError, match="not valid JSON"):
        load_result(path)


def test_history_covers_current_version() -> None:
    assert SCHEMA_VERSION in SCHEMA_HISTORY
    assert max(SCHEMA_HISTORY) == SCHEMA_VERSION


def test_published_json_schema_is_current() -> None:
    """The committed schema file equals the one generated from the models (run `make schema`)."""
    assert PUBLISHED.is_file(), "run `make schema` to publish the JSON Schema"
    assert json.loads(PUBLISHED.read_text()) == json_schema()


def test_json_schema_validates_example() -> None:
    schema = json_schema()
    # the model reads every known version (old files stay loadable); new files are the current one
    assert schema["properties"]["schemaVersion"]["enum"] == sorted(SCHEMA_HISTORY)
    assert schema["properties"]["schemaVersion"]["default"] == SCHEMA_VERSION
    assert "lanes" in schema["required"]
    assert BenchResult.model_validate(minimal_result()).schemaVersion == SCHEMA_VERSION
