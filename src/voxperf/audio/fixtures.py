"""Fixtures: the audio a benchmark runs on, each with its reference transcript when one is known.

Two sources:

* **built-in** (:func:`make_fixture`): a text from :mod:`voxperf.audio.texts` spoken by a real TTS
  engine, stored as 16 kHz 16-bit WAV in a cache directory and reused while the text, engine,
  model, version and settings are unchanged. A JSON sidecar records the audio's sha256, so a run
  can show that its fixture is byte-identical to another machine's.
* **user audio** (:func:`load_fixtures`): a directory of audio files with same-name ``.txt``
  transcripts, or a JSONL manifest of ``{"audio": path, "text": transcript}`` lines.

Loading reads only headers: a file that cannot be read still becomes a fixture (duration 0 and a
warning) so the bench records that one failure and runs the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxperf.audio.codec import SUPPORTED_EXTENSIONS, decode_file, encode, resample
from voxperf.audio.pcm import Audio
from voxperf.audio.texts import VARIANTS
from voxperf.engines.base import TTSEngine
from voxperf.errors import AudioError, EngineError, FixtureError, UsageError
from voxperf.extras import load

__all__ = [
    "FIXTURE_SAMPLE_RATE",
    "Fixture",
    "default_cache_dir",
    "load_fixtures",
    "make_fixture",
]

FIXTURE_SAMPLE_RATE = (
    48000  # a typical microphone rate: the pipeline resamples to the engine rate, as an app would
)
_SIDECAR_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Fixture:
    """One audio file to benchmark, and what is known about it before it is decoded.

    ``text`` is the reference transcript (``None``: timed without WER); ``bytes`` and ``sha256``
    describe the file as stored; ``duration_s`` and ``sample_rate`` come from its header and are
    0 when the file could not be read; ``variant`` names the built-in text it was made from.
    """

    name: str
    path: Path
    text: str | None
    duration_s: float
    sample_rate: int
    bytes: int
    sha256: str
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for result files (camelCase keys)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "durationS": self.duration_s,
            "sampleRate": self.sample_rate,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "variant": self.variant,
            "hasTranscript": self.text is not None,
            "text": self.text,
        }


def default_cache_dir() -> Path:
    """``$VOXPERF_CACHE_DIR``, else ``$XDG_CACHE_HOME/voxperf/fixtures`` (``~/.cache/voxperf/fixtures``)."""
    env = os.environ.get("VOXPERF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "voxperf" / "fixtures"


# --- built-in fixtures -------------------------------------------------------------------------


def make_fixture(variant: str, tts: TTSEngine, cache_dir: Path) -> Fixture:
    """Speak the built-in text ``variant`` with ``tts`` into ``cache_dir``, or reuse the cached copy.

    The file is ``<variant>-<key12>.wav`` where the key hashes the text and the engine's name,
    model, version and settings; the sidecar ``.json`` stores the key and the audio's sha256, and
    a cached file is reused only when both still match (a damaged file is synthesised again).
    """
    if variant not in VARIANTS:
        raise UsageError(f"unknown fixture variant {variant!r}", f"use one of: {', '.join(VARIANTS)}")
    text = VARIANTS[variant]
    key = _fixture_key(text, tts)
    cache_dir = Path(cache_dir).expanduser()
    stem = f"{variant}-{key[:12]}"
    wav_path = cache_dir / f"{stem}.wav"
    txt_path = cache_dir / f"{stem}.txt"
    sidecar_path = cache_dir / f"{stem}.json"

    cached = _read_cached(wav_path, sidecar_path, key)
    if cached is not None:
        if not txt_path.is_file():
            try:
                _write_atomic(txt_path, (text + "\n").encode("utf-8"))
            except OSError as exc:
                raise FixtureError(
                    f"cannot write fixture transcript {txt_path}: {exc.strerror or exc}",
                    "point VOXPERF_CACHE_DIR at a writable directory",
                ) from exc
        return Fixture(
            name=variant,
            path=wav_path,
            text=text,
            duration_s=float(cached["durationS"]),
            sample_rate=int(cached["sampleRate"]),
            bytes=int(cached["bytes"]),
            sha256=str(cached["sha256"]),
            variant=variant,
        )

    audio = resample(_synthesise(tts, text), FIXTURE_SAMPLE_RATE)
    data = encode(audio, "wav")
    digest = hashlib.sha256(data).hexdigest()
    sidecar = {
        "schema": _SIDECAR_SCHEMA,
        "variant": variant,
        "text": text,
        "key": key,
        "engine": tts.info.to_dict(),
        "sha256": digest,
        "bytes": len(data),
        "sampleRate": audio.sample_rate,
        "durationS": audio.duration_s,
        "numSamples": audio.num_samples,
    }
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(wav_path, data)
        _write_atomic(txt_path, (text + "\n").encode("utf-8"))
        # the sidecar goes last: its presence says the WAV and transcript beside it are complete
        _write_atomic(sidecar_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    except OSError as exc:
        raise FixtureError(
            f"cannot write fixture {wav_path}: {exc.strerror or exc}",
            "point VOXPERF_CACHE_DIR at a writable directory",
        ) from exc
    return Fixture(
        name=variant,
        path=wav_path,
        text=text,
        duration_s=audio.duration_s,
        sample_rate=audio.sample_rate,
        bytes=len(data),
        sha256=digest,
        variant=variant,
    )


# engine settings that change how fast the audio is made, not the audio: not part of the cache key
_SPEED_ONLY_SETTINGS = frozenset({"threads", "spinning"})


def _fixture_key(text: str, tts: TTSEngine) -> str:
    info = tts.info
    material = {
        "text": text,
        "engine": info.name,
        "model": info.model,
        "version": info.version,
        "settings": {k: v for k, v in info.settings.items() if k not in _SPEED_ONLY_SETTINGS},
        "sampleRate": FIXTURE_SAMPLE_RATE,
        "format": "wav-pcm16",
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_cached(wav_path: Path, sidecar_path: Path, key: str) -> dict[str, Any] | None:
    """The sidecar of a complete, undamaged cached fixture with this key, else ``None``."""
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        if not isinstance(sidecar, dict) or sidecar.get("key") != key:
            return None
        with open(wav_path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except (OSError, ValueError):
        return None
    if digest != sidecar.get("sha256"):
        return None
    try:  # an edited sidecar is a cache miss, never a traceback
        sidecar["durationS"] = float(sidecar["durationS"])
        sidecar["sampleRate"] = int(sidecar["sampleRate"])
        sidecar["bytes"] = int(sidecar["bytes"])
    except (KeyError, TypeError, ValueError):
        return None
    return sidecar


def _synthesise(tts: TTSEngine, text: str) -> Audio:
    """Consume the whole stream and join its chunks (at the first chunk's rate)."""
    parts: list[np.ndarray] = []
    rate = 0
    for chunk in tts.stream(text):
        if rate == 0:
            rate = chunk.sample_rate
        parts.append(resample(chunk, rate).samples)
    if not parts or sum(len(p) for p in parts) == 0:
        raise EngineError(
            f"TTS engine {tts.info.name} produced no audio for a fixture text",
            "check the engine's voice/model with `voxperf engines`",
        )
    return Audio(np.concatenate(parts).astype(np.float32, copy=False), rate)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- user fixtures -----------------------------------------------------------------------------


def load_fixtures(source: Path) -> tuple[list[Fixture], list[str]]:
    """Fixtures from a directory, a ``.jsonl`` manifest or a single audio file, plus warnings.

    A directory contributes every file (not subdirectories) whose extension is in
    :data:`~voxperf.audio.codec.SUPPORTED_EXTENSIONS`, sorted by name, each with the same-stem
    ``.txt`` beside it as transcript. A manifest line is ``{"audio": path, "text": transcript}``
    with paths relative to the manifest. A missing transcript is a warning, not an error.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise FixtureError(
            f"fixture source {source} does not exist",
            "give a directory of audio files, a .jsonl manifest or one audio file",
        )
    warnings: list[str] = []
    if source.is_dir():
        entries = _directory_entries(source, warnings)
    elif source.suffix.lower() == ".jsonl":
        entries = _manifest_entries(source, warnings)
    elif source.suffix.lower() in SUPPORTED_EXTENSIONS:
        entries = [(source, _sibling_transcript(source, warnings))]
    else:
        raise FixtureError(
            f"fixture source {source} is neither a directory, a .jsonl manifest nor an audio file",
            f"audio files end in {', '.join(sorted(SUPPORTED_EXTENSIONS))}",
        )
    names = _unique_names([path for path, _ in entries])
    fixtures = [_probe(path, text, name, warnings) for (path, text), name in zip(entries, names, strict=True)]
    return fixtures, warnings


def _directory_entries(directory: Path, warnings: list[str]) -> list[tuple[Path, str | None]]:
    audio = sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not audio:
        raise FixtureError(
            f"no audio files in {directory}",
            f"add audio ({', '.join(sorted(SUPPORTED_EXTENSIONS))}) with a same-name .txt transcript "
            "beside each, or use the built-in fixtures",
        )
    return [(path, _sibling_transcript(path, warnings)) for path in audio]


def _sibling_transcript(audio: Path, warnings: list[str]) -> str | None:
    txt = audio.with_suffix(".txt")
    if not txt.is_file():
        warnings.append(f"no transcript for {audio.name}: timed without WER (add {txt.name})")
        return None
    try:
        text = txt.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"cannot read transcript {txt}: {exc}; {audio.name} is timed without WER")
        return None
    if not text:
        warnings.append(f"transcript {txt.name} is empty: {audio.name} is timed without WER")
        return None
    return text


def _manifest_entries(manifest: Path, warnings: list[str]) -> list[tuple[Path, str | None]]:
    hint = 'write one JSON object per line: {"audio": "clip.wav", "text": "what is said"}'
    try:
        lines = manifest.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FixtureError(f"cannot read manifest {manifest}: {exc}", hint) from exc
    entries: list[tuple[Path, str | None]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{manifest.name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FixtureError(f"{where} is not valid JSON: {exc.msg}", hint) from exc
        if not isinstance(record, dict) or not isinstance(record.get("audio"), str) or not record["audio"]:
            raise FixtureError(f'{where} has no "audio" path', hint)
        text = record.get("text")
        if text is not None and not isinstance(text, str):
            raise FixtureError(f'{where}: "text" must be a string', hint)
        path = Path(record["audio"]).expanduser()
        if not path.is_absolute():
            path = manifest.parent / path
        if not path.is_file():
            raise FixtureError(
                f"{where} points at {path}, which does not exist",
                "fix the path (relative paths are read from the manifest's directory)",
            )
        text = text.strip() if text is not None else None
        if not text:
            warnings.append(
                f'no transcript for {path.name} ({where}): timed without WER (add a "text" field)'
            )
            text = None
        entries.append((path, text))
    if not entries:
        raise FixtureError(f"manifest {manifest} lists no fixtures", hint)
    return entries


def _unique_names(paths: list[Path]) -> list[str]:
    """File stems as names; where stems collide, the path relative to the common folder, and a
    numeric suffix if even that collides (results, payloads and weights are keyed by name)."""
    stems = [p.stem for p in paths]
    names = [p.stem if stems.count(p.stem) == 1 else p.name for p in paths]
    if len(set(names)) != len(names):
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths])) if paths else Path()
        names = [
            n if names.count(n) == 1 else p.resolve().relative_to(root).with_suffix("").as_posix()
            for n, p in zip(names, paths, strict=True)
        ]
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return unique


def _probe(path: Path, text: str | None, name: str, warnings: list[str]) -> Fixture:
    """Size, hash and header facts of one file; unreadable files get zeros and a warning."""
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        size = path.stat().st_size
    except OSError as exc:
        warnings.append(f"cannot read {path}: {exc.strerror or exc}; it will be recorded as failed")
        return Fixture(name, path, text, 0.0, 0, 0, "", None)
    duration_s, rate = _header_duration(path, warnings)
    return Fixture(name, path, text, duration_s, rate, size, digest, None)


def _header_duration(path: Path, warnings: list[str]) -> tuple[float, int]:
    sf = load("soundfile", "bench", "reading fixtures")

    try:
        info = sf.info(str(path))
        if info.samplerate > 0 and info.frames > 0:
            return info.frames / info.samplerate, int(info.samplerate)
    except Exception:  # libsndfile cannot read this container: decode it fully below
        pass
    try:
        audio = decode_file(path)
    except AudioError as exc:
        warnings.append(f"{path.name} cannot be decoded ({exc.message}); it will be recorded as failed")
        return 0.0, 0
    return audio.duration_s, audio.sample_rate
