"""Helpers shared by engine modules: option values arrive as strings from specs; versions from metadata."""

from __future__ import annotations

import importlib.metadata

from voxperf.errors import UsageError

__all__ = ["package_version", "parse_bool"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(engine: str, option: str, value: object) -> bool:
    """``true/false/yes/no/on/off/1/0`` (or a bool) for an engine option; anything else is a usage error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(
        f"bad {option}={value!r} for {engine}: not a boolean", f"use {option}=true or {option}=false"
    )


def package_version(dist: str) -> str:
    """The installed version of a distribution, or ``"unknown"`` (recorded in result files)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
