"""The curated public API stays honest, and importing voxperf does no work."""

from __future__ import annotations

import subprocess
import sys

import voxperf


def test_every_export_resolves_to_its_defining_module() -> None:
    for name in voxperf.__all__:
        value = getattr(voxperf, name)
        if name in ("__version__", "SCHEMA_VERSION"):
            continue
        assert value.__module__ == voxperf._EXPORTS[name], name


def test_unknown_attribute() -> None:
    try:
        _ = voxperf.NotAThing  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert "NotAThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_loads_no_engine() -> None:
    heavy = ("faster_whisper", "ctranslate2", "piper", "onnxruntime", "av", "soxr")
    code = f"import sys, voxperf, voxperf.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = proc.stdout.strip()
    assert out == ""
