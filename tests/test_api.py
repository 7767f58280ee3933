"""The curated public API stays honest, and importing voxperf does no work."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import voxperf


def test_every_export_resolves_to_its_defining_module() -> None:
    for name in voxperf.__all__:
        value = getattr(voxperf, name)
        if inspect.isclass(value) or inspect.isfunction(value):  # constants and aliases have no module
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


def test_the_type_checking_block_names_exactly_the_exports() -> None:
    """Type checkers see the TYPE_CHECKING imports, the runtime sees _EXPORTS: one list, twice."""
    tree = ast.parse(Path(voxperf.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: 'X as X' re-exports under --strict"
            typed[alias.name] = node.module
    assert typed == voxperf._EXPORTS


@pytest.mark.slow
def test_a_type_checker_sees_the_real_objects(tmp_path: Path) -> None:
    from mypy import api

    user = tmp_path / "user.py"
    user.write_text(
        "import voxperf\n"
        "reveal_type(voxperf.Trace)\n"
        "trace = voxperf.Trace()\n"
        "reveal_type(voxperf.stage_totals_ms(trace))\n"
        "voxperf.Trace(request_id=3)\n"  # a wrong type must be caught, not waved through as Any
    )
    out, _err, status = api.run(["--strict", "--no-incremental", str(user)])
    assert 'Revealed type is "def (request_id: str | None' in out and "voxperf.trace.core.Trace" in out
    assert 'Revealed type is "dict[str, float]"' in out
    assert "user.py:5: error" in out and status == 1
