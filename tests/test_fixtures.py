"""Fixture loading (directories, manifests) and built-in fixtures made with the real Piper voice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voxperf.audio.codec import decode_file, encode
from voxperf.audio.fixtures import (
    FIXTURE_SAMPLE_RATE,
    Fixture,
    default_cache_dir,
    load_fixtures,
    make_fixture,
)
from voxperf.audio.pcm import Audio
from voxperf.audio.texts import VARIANTS
from voxperf.engines.base import EngineInfo
from voxperf.errors import EngineError, FixtureError, UsageError


def tone_file(path: Path, seconds: float = 0.5, rate: int = 16000, fmt: str = "wav") -> Path:
    t = np.arange(int(seconds * rate)) / rate
    path.write_bytes(encode(Audio((0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate), fmt))
    return path


# --- load_fixtures: directories ----------------------------------------------------------------


def test_directory_with_and_without_transcripts(tmp_path: Path) -> None:
    tone_file(tmp_path / "b.wav", seconds=0.5)
    tone_file(tmp_path / "a.flac", seconds=1.25, rate=22050, fmt="flac")
    (tmp_path / "a.txt").write_text("  hello world \n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not audio")
    (tmp_path / "c.opus").write_bytes(encode(Audio(np.zeros(4800, np.float32) + 0.1, 48000), "opus"))
    (tmp_path / "c.txt").write_text("third", encoding="utf-8")

    fixtures, warnings = load_fixtures(tmp_path)

    assert [f.name for f in fixtures] == ["a", "b", "c"]
    a, b, c = fixtures
    assert a.text == "hello world"
    assert (a.sample_rate, a.duration_s) == (22050, pytest.approx(1.25, abs=1e-3))
    assert a.bytes == (tmp_path / "a.flac").stat().st_size
    assert a.sha256 == hashlib.sha256((tmp_path / "a.flac").read_bytes()).hexdigest()
    assert b.text is None and b.duration_s == pytest.approx(0.5)
    assert c.sample_rate == 48000 and c.duration_s == pytest.approx(0.1, abs=0.02)
    assert warnings == ["no transcript for b.wav: timed without WER (add b.txt)"]
    assert a.to_dict() == {
        "name": "a",
        "path": str(tmp_path / "a.flac"),
        "durationS": pytest.approx(1.25, abs=1e-3),
        "sampleRate": 22050,
        "bytes": a.bytes,
        "sha256": a.sha256,
        "variant": None,
        "hasTranscript": True,
        "text": "hello world",
    }
    assert b.to_dict()["hasTranscript"] is False


def test_pyav_only_format_gets_duration_from_full_decode(tmp_path: Path) -> None:
    import av

    path = tmp_path / "clip.m4a"
    with av.open(str(path), mode="w", format="ipod") as container:
        stream = container.add_stream("aac", rate=48000, layout="mono")
        for start in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.full((1, min(1024, 48000 - start)), 0.1, np.float32), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = 48000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    (fixture,), _ = load_fixtures(tmp_path)
    assert fixture.sample_rate == 48000
    assert fixture.duration_s == pytest.approx(1.0, abs=0.05)


def test_unreadable_file_is_kept_with_zero_duration_and_a_warning(tmp_path: Path) -> None:
    tone_file(tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + b"\x00" * 10)
    fixtures, warnings = load_fixtures(tmp_path)
    broken = next(f for f in fixtures if f.name == "broken")
    assert broken.duration_s == 0.0 and broken.sample_rate == 0 and broken.bytes == 14
    assert any("broken.wav cannot be decoded" in w for w in warnings)
    assert next(f for f in fixtures if f.name == "good").duration_s == pytest.approx(0.5)


def test_same_stem_two_formats_get_distinct_names(tmp_path: Path) -> None:
    tone_file(tmp_path / "x.wav")
    tone_file(tmp_path / "x.flac", fmt="flac")
    fixtures, _ = load_fixtures(tmp_path)
    assert sorted(f.name for f in fixtures) == ["x.flac", "x.wav"]


def test_empty_directory_is_fixture_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no audio here")
    with pytest.raises(FixtureError, match="no audio files") as info:
        load_fixtures(tmp_path)
    assert ".wav" in (info.value.hint or "")


def test_missing_source_is_fixture_error(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="does not exist"):
        load_fixtures(tmp_path / "nope")
    (tmp_path / "list.csv").write_text("a,b")
    with pytest.raises(FixtureError, match="neither"):
        load_fixtures(tmp_path / "list.csv")


def test_single_audio_file_source(tmp_path: Path) -> None:
    path = tone_file(tmp_path / "one.wav")
    (tmp_path / "one.txt").write_text("just one")
    fixtures, warnings = load_fixtures(path)
    assert [(f.name, f.text) for f in fixtures] == [("one", "just one")]
    assert warnings == []


# --- load_fixtures: manifests ------------------------------------------------------------------


def test_manifest_with_relative_and_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    tone_file(tmp_path / "audio" / "one.wav", seconds=0.25)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    absolute = tone_file(elsewhere / "two.wav", seconds=0.75)
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(
        json.dumps({"audio": "audio/one.wav", "text": "first clip"})
        + "\n\n"
        + json.dumps({"audio": str(absolute)})
        + "\n",
        encoding="utf-8",
    )
    fixtures, warnings = load_fixtures(manifest)
    assert [(f.name, f.text, f.path) for f in fixtures] == [
        ("one", "first clip", tmp_path / "audio" / "one.wav"),
        ("two", None, absolute),
    ]
    assert fixtures[1].duration_s == pytest.approx(0.75)
    assert len(warnings) == 1 and "two.wav" in warnings[0] and "line 3" in warnings[0]


def test_malformed_manifest_line_is_named(tmp_path: Path) -> None:
    tone_file(tmp_path / "one.wav")
    manifest = tmp_path / "set.jsonl"
    manifest.write_text('{"audio": "one.wav", "text": "ok"}\n{"audio": "one.wav", "text": \n')
    with pytest.raises(FixtureError, match=r"set\.jsonl line 2 is not valid JSON"):
        load_fixtures(manifest)
    manifest.write_text('{"audio": "one.wav"}\n["one.wav"]\n')
    with pytest.raises(FixtureError, match='line 2 has no "audio" path'):
        load_fixtures(manifest)
    manifest.write_text('{"audio": "one.wav", "text": 5}\n')
    with pytest.raises(FixtureError, match=r"line 1.*must be a string"):
        load_fixtures(manifest)


def test_manifest_entry_for_missing_file(tmp_path: Path) -> None:
    manifest = tmp_path / "set.jsonl"
    manifest.write_text('{"audio": "gone.wav", "text": "x"}\n')
    with pytest.raises(FixtureError, match=r"line 1 points at .*gone\.wav"):
        load_fixtures(manifest)


def test_empty_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "set.jsonl"
    manifest.write_text("\n\n")
    with pytest.raises(FixtureError, match="lists no fixtures"):
        load_fixtures(manifest)


# --- default_cache_dir -------------------------------------------------------------------------


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOXPERF_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VOXPERF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "voxperf" / "fixtures"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "voxperf" / "fixtures"


# --- make_fixture with real Piper --------------------------------------------------------------


class CountingTTS:
    """Delegates to a real engine and counts how often it was asked to synthesise."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.info: EngineInfo = inner.info  # type: ignore[attr-defined]
        self.sample_rate: int = inner.sample_rate  # type: ignore[attr-defined]
        self.calls = 0

    def stream(self, text: str) -> Iterator[Audio]:
        self.calls += 1
        return self.inner.stream(text)  # type: ignore[attr-defined, no-any-return]

    def warmup(self) -> None:
        self.inner.warmup()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def piper() -> object:
    from voxperf.engines.tts.piper import PiperTTS

    return PiperTTS()


def test_unknown_variant_lists_variants(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        make_fixture("huge", SineTTS(), tmp_path)  # type: ignore[arg-type]
    assert all(name in (info.value.hint or "") for name in ("short", "medium", "long"))


@pytest.mark.engines
def test_make_fixture_synthesises_caches_and_reuses(piper: object, tmp_path: Path) -> None:
    tts = CountingTTS(piper)
    first = make_fixture("short", tts, tmp_path)  # type: ignore[arg-type]
    assert tts.calls == 1
    assert isinstance(first, Fixture)
    assert first.name == "short" and first.variant == "short" and first.text == VARIANTS["short"]
    assert (
        first.path.parent == tmp_path and first.path.name.startswith("short-") and first.path.suffix == ".wav"
    )
    assert len(first.path.stem) == len("short-") + 12
    assert first.path.with_suffix(".txt").read_text().strip() == VARIANTS["short"]
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert sidecar["text"] == VARIANTS["short"] and sidecar["engine"]["name"] == "piper"

    audio = decode_file(first.path)
    assert audio.sample_rate == first.sample_rate == FIXTURE_SAMPLE_RATE
    assert 2.0 < first.duration_s < 5.0 and audio.duration_s == pytest.approx(first.duration_s)
    assert np.sqrt(np.mean(audio.samples**2)) > 0.01  # speech, not silence

    mtime = first.path.stat().st_mtime_ns
    second = make_fixture("short", tts, tmp_path)  # type: ignore[arg-type]
    assert tts.calls == 1  # reused: not synthesised again
    assert second == first
    assert first.path.stat().st_mtime_ns == mtime

    # a damaged cached file is detected by its hash and made again
    first.path.write_bytes(first.path.read_bytes()[:-100])
    third = make_fixture("short", tts, tmp_path)  # type: ignore[arg-type]
    assert tts.calls == 2 and third.sha256 == first.sha256

    fixtures, warnings = load_fixtures(tmp_path)  # a cache dir is itself a fixture directory
    assert [(f.name, f.text) for f in fixtures] == [(first.path.stem, VARIANTS["short"])] and warnings == []


@pytest.mark.engines
def test_make_fixture_is_reproducible_across_fresh_caches(piper: object, tmp_path: Path) -> None:
    one = make_fixture("short", piper, tmp_path / "one")  # type: ignore[arg-type]
    two = make_fixture("short", piper, tmp_path / "two")  # type: ignore[arg-type]
    assert one.path.name == two.path.name
    assert one.sha256 == two.sha256
    assert one.path.read_bytes() == two.path.read_bytes()


class SineTTS:
    """A tiny deterministic engine (not Piper) for tests about keys and errors, not about speech."""

    sample_rate = 8000

    def __init__(self, **settings: object) -> None:
        self.info = EngineInfo(role="tts", name="sine", version="1", model="m", settings=dict(settings))
        self.calls = 0

    def stream(self, text: str) -> Iterator[Audio]:
        self.calls += 1
        for _ in text.split("."):
            yield Audio(np.full(800, 0.1, np.float32), self.sample_rate)

    def warmup(self) -> None:
        pass


def test_settings_change_the_file_name(tmp_path: Path) -> None:
    slow = make_fixture("short", SineTTS(speed=1.0), tmp_path)  # type: ignore[arg-type]
    fast = make_fixture("short", SineTTS(speed=1.2), tmp_path)  # type: ignore[arg-type]
    again = make_fixture("short", SineTTS(speed=1.0), tmp_path)  # type: ignore[arg-type]
    assert slow.path != fast.path
    assert again.path == slow.path
    assert slow.sample_rate == FIXTURE_SAMPLE_RATE and slow.duration_s == pytest.approx(0.2)


def test_engine_that_yields_nothing_is_engine_error(tmp_path: Path) -> None:
    class Mute(SineTTS):
        def stream(self, text: str) -> Iterator[Audio]:
            return iter(())

    with pytest.raises(EngineError, match="no audio"):
        make_fixture("short", Mute(), tmp_path)  # type: ignore[arg-type]
    assert not list(tmp_path.glob("*.json"))


def test_same_file_name_in_two_folders_gets_two_names(tmp_path: Path) -> None:
    for sub, seconds in (("a", 0.5), ("b", 1.0)):
        (tmp_path / sub).mkdir()
        tone_file(tmp_path / sub / "clip.wav", seconds)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a/clip.wav", "text": "one"}\n{"audio": "b/clip.wav", "text": "two"}\n'
        '{"audio": "a/clip.wav", "text": "again"}\n'
    )
    fixtures, _ = load_fixtures(manifest)
    names = [f.name for f in fixtures]
    assert len(set(names)) == 3
    assert names[:2] == ["a/clip", "b/clip"]
    assert [f.duration_s for f in fixtures[:2]] == [pytest.approx(0.5), pytest.approx(1.0)]


def test_edited_sidecar_is_a_cache_miss(tmp_path: Path) -> None:
    first = make_fixture("short", SineTTS(speed=1.0), tmp_path)  # type: ignore[arg-type]
    sidecar = first.path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["durationS"] = "about three seconds"
    sidecar.write_text(json.dumps(data))
    again = make_fixture("short", SineTTS(speed=1.0), tmp_path)  # type: ignore[arg-type]
    assert again.duration_s == pytest.approx(first.duration_s)
    assert json.loads(sidecar.read_text())["durationS"] == pytest.approx(first.duration_s)  # rewritten
