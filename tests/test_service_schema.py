"""Schemathesis against the published OpenAPI of voxperf serve: no 5xx, responses match the schema.

Driven through schemathesis's Python API (one Hypothesis run per operation), because its pytest
plugin does not support this pytest version.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from voxperf.service.app import ServiceSettings

from .conftest import fake_engines, serve_app

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")


def _checks() -> list:  # type: ignore[type-arg]
    """No server errors, documented status codes, content types and bodies. Not "positive data
    acceptance": any bytes are schema-valid for a file upload, but this service rightly rejects
    bytes that are not audio (415)."""
    from schemathesis import checks

    return [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ]


CHECKS = _checks()


def test_every_operation_conforms(tmp_path: Path) -> None:
    cfg = ServiceSettings(job_dir=str(tmp_path), workers=1, max_upload_bytes=200_000)
    for url in serve_app(cfg, fake_engines()):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 9
        checked: list[str] = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(timeout=30)
                assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
                case.validate_response(response, checks=CHECKS)

            run()
            checked.append(f"{operation.method.upper()} {operation.path}")
        assert "POST /v1/audio/transcriptions" in checked and "POST /v1/jobs" in checked
