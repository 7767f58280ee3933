"""Codec tests: real encoders and decoders (libsndfile, FFmpeg via PyAV, soxr) on synthetic tones."""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile as sf

from voxperf.audio.codec import SUPPORTED_EXTENSIONS, decode, decode_file, encode, probe_format, resample
from voxperf.audio.pcm import Audio
from voxperf.errors import AudioError, UsageError


def tone(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0, amp: float = 0.3) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def sf_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def pyav_bytes(audio: Audio, container_format: str, codec_name: str) -> bytes:
    """Encode with FFmpeg directly (independent of voxperf's encoder) to test the PyAV decode path."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_format) as container:
        stream = container.add_stream(codec_name, rate=audio.sample_rate, layout="mono")
        for start in range(0, audio.num_samples, 1024):
            chunk = audio.samples[start : start + 1024].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = audio.sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def dominant_freq(audio: Audio) -> float:
    spectrum = np.abs(np.fft.rfft(audio.samples))
    return float(np.fft.rfftfreq(audio.num_samples, 1 / audio.sample_rate)[np.argmax(spectrum)])


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_round_trip_keeps_rate_length_and_samples(fmt: str) -> None:
    original = tone(1.5, 16000)
    data = encode(original, fmt)
    assert probe_format(data) == fmt
    back = decode(data)
    assert back.sample_rate == 16000
    assert back.num_samples == original.num_samples
    assert back.samples.dtype == np.float32
    # 16-bit quantisation error only
    assert np.max(np.abs(back.samples - original.samples)) < 1e-4


def test_opus_round_trip_is_48k_same_duration_same_pitch() -> None:
    original = tone(2.0, 16000, freq=440.0)
    data = encode(original, "opus")
    assert data[:4] == b"OggS"
    assert probe_format(data) == "opus"
    assert len(data) < len(encode(original, "wav")) / 4  # it really is compressed
    back = decode(data, name="clip.opus")
    assert back.sample_rate == 48000
    assert back.duration_s == pytest.approx(2.0, abs=0.03)
    assert dominant_freq(back) == pytest.approx(440.0, abs=2.0)
    assert 0.2 < np.max(np.abs(back.samples)) < 0.45


def test_opus_bitrate_changes_size() -> None:
    noise = Audio(np.random.default_rng(0).uniform(-0.3, 0.3, 48000 * 2).astype(np.float32), 48000)
    assert len(encode(noise, "opus", bitrate=64000)) > 1.5 * len(encode(noise, "opus", bitrate=16000))


def test_mp3_written_by_libsndfile_decodes() -> None:
    original = tone(1.0, 16000, freq=440.0)
    data = sf_bytes(original.samples, 16000, "MP3", "MPEG_LAYER_III")
    assert probe_format(data) == "mp3"
    back = decode(data)
    assert back.sample_rate == 16000
    assert back.duration_s == pytest.approx(1.0, abs=0.1)
    assert dominant_freq(back) == pytest.approx(440.0, abs=5.0)


def test_ogg_vorbis_decodes() -> None:
    data = sf_bytes(tone(1.0, 22050).samples, 22050, "OGG", "VORBIS")
    assert probe_format(data) == "ogg"
    back = decode(data)
    assert (back.sample_rate, round(back.duration_s, 2)) == (22050, 1.0)


@pytest.mark.parametrize(
    ("container_format", "codec_name", "expected_probe"),
    [("ipod", "aac", "mp4"), ("mp4", "aac", "mp4"), ("webm", "libopus", "webm"), ("adts", "aac", "aac")],
)
def test_pyav_containers_decode(container_format: str, codec_name: str, expected_probe: str) -> None:
    data = pyav_bytes(tone(1.0, 48000, freq=1000.0), container_format, codec_name)
    assert probe_format(data) == expected_probe
    back = decode(data)
    assert back.sample_rate == 48000
    assert back.duration_s == pytest.approx(1.0, abs=0.05)
    assert dominant_freq(back) == pytest.approx(1000.0, abs=5.0)


def test_stereo_44k_wav_becomes_mono_average() -> None:
    rate = 44100
    left = np.full(rate, 0.5, dtype=np.float32)
    right = np.full(rate, -0.1, dtype=np.float32)
    data = sf_bytes(np.stack([left, right], axis=1), rate, "WAV", "PCM_16")
    back = decode(data)
    assert back.sample_rate == 44100
    assert back.samples.ndim == 1 and back.num_samples == rate
    assert np.allclose(back.samples, 0.2, atol=1e-3)


def test_container_is_detected_from_bytes_not_name() -> None:
    data = encode(tone(0.5), "flac")
    back = decode(data, name="mislabelled.mp3")
    assert back.sample_rate == 16000


def test_streaming_wav_with_placeholder_size_decodes() -> None:
    # espeak-ng and other streaming writers put 0x7FFFF000 in the data size: not a truncated file
    data = bytearray(encode(tone(0.5), "wav"))
    struct.pack_into("<I", data, 40, 0x7FFFF000)
    struct.pack_into("<I", data, 4, 0x7FFFF024)
    assert decode(bytes(data)).num_samples == 8000


def test_decode_file_reads_and_names(tmp_path) -> None:
    path = tmp_path / "a.flac"
    path.write_bytes(encode(tone(0.25), "flac"))
    assert decode_file(path).num_samples == 4000
    with pytest.raises(AudioError, match=r"cannot read audio file .*missing\.wav"):
        decode_file(tmp_path / "missing.wav")
    with pytest.raises(AudioError):
        decode_file(tmp_path)  # a directory


# --- bad input ---------------------------------------------------------------------------------


def _bad_inputs() -> dict[str, bytes]:
    wav = encode(tone(1.0), "wav")
    flac = encode(tone(1.0), "flac")
    mp4 = pyav_bytes(tone(1.0, 48000), "ipod", "aac")
    rng = np.random.default_rng(42)
    silent_header = sf_bytes(np.zeros(0, dtype=np.float32), 16000, "WAV", "PCM_16")
    return {
        "empty": b"",
        "random-short": rng.bytes(7),
        "random-4k": rng.bytes(4096),
        "text": b"this is not audio at all\n" * 20,
        "wav-truncated-data": wav[: len(wav) // 2],
        "wav-truncated-header": wav[:30],
        "wav-zero-samples": silent_header,
        "flac-truncated": flac[: len(flac) // 2],
        "flac-magic-only": flac[:4],
        "mp4-truncated": mp4[: len(mp4) // 2],
        "ogg-magic-garbage": b"OggS" + rng.bytes(500),
        "riff-garbage": b"RIFF\x10\x00\x00\x00WAVEjunk" + rng.bytes(40),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_raises_audio_error_naming_the_file(case: str) -> None:
    data = _bad_inputs()[case]
    with pytest.raises(AudioError) as info:
        decode(data, name=f"{case}.bin")
    assert f"{case}.bin" in info.value.message
    assert info.value.hint


def test_random_bytes_never_escape_as_other_exceptions() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        with pytest.raises(AudioError):
            decode(rng.bytes(int(rng.integers(1, 3000))))


def test_duration_limit_is_enforced_before_decoding() -> None:
    data = encode(tone(3.0), "flac")
    with pytest.raises(AudioError, match="longer than the 2 s limit"):
        decode(data, name="long.flac", max_duration_s=2.0)
    opus = encode(tone(3.0), "opus")
    with pytest.raises(AudioError, match="limit"):
        decode(opus, max_duration_s=2.0)
    assert decode(data, max_duration_s=3.5).duration_s == pytest.approx(3.0)


def test_nan_float_wav_is_refused() -> None:
    samples = np.zeros(100, dtype=np.float32)
    samples[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        decode(sf_bytes(samples, 16000, "WAV", "FLOAT"))


# --- probe_format ------------------------------------------------------------------------------


def test_probe_format_on_each_container() -> None:
    a = tone(0.3)
    assert probe_format(encode(a, "wav")) == "wav"
    assert probe_format(encode(a, "flac")) == "flac"
    assert probe_format(encode(a, "opus")) == "opus"
    assert probe_format(sf_bytes(a.samples, 16000, "OGG", "VORBIS")) == "ogg"
    assert probe_format(b"ID3\x04\x00" + bytes(20)) == "mp3"
    assert probe_format(bytes([0xFF, 0xFB, 0x90, 0x00])) == "mp3"  # MPEG-1 layer III frame
    assert probe_format(bytes([0xFF, 0xF1, 0x50, 0x80])) == "aac"  # ADTS
    assert probe_format(b"\x00\x00\x00\x20ftypM4A " + bytes(8)) == "mp4"
    assert probe_format(b"\x1a\x45\xdf\xa3" + bytes(8)) == "webm"
    for junk in (b"", b"RIFF", b"hello world", b"\xff\x00", b"RIFF\x00\x00\x00\x00AVI "):
        assert probe_format(junk) is None


def test_supported_extensions() -> None:
    assert {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm"} <= set(
        SUPPORTED_EXTENSIONS
    )
    assert all(ext.startswith(".") and ext == ext.lower() for ext in SUPPORTED_EXTENSIONS)


# --- resample / encode options -----------------------------------------------------------------


def test_resample_48k_to_16k() -> None:
    src = tone(2.0, 48000, freq=440.0)
    out = resample(src, 16000)
    assert out.sample_rate == 16000
    assert out.num_samples == 32000
    assert out.samples.dtype == np.float32
    assert dominant_freq(out) == pytest.approx(440.0, abs=1.0)
    assert resample(out, 16000) is out  # no-op returns the same object
    assert resample(src, 16000, quality="lq").num_samples == 32000


def test_resample_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        resample(tone(0.1), 0)
    with pytest.raises(UsageError, match="quality"):
        resample(tone(0.1), 8000, quality="best")


def test_unknown_encode_format_is_usage_error() -> None:
    with pytest.raises(UsageError, match="mp3"):
        encode(tone(0.1), "mp3")


def test_importing_codec_loads_no_codec_library() -> None:
    code = "import sys, voxperf.audio.codec; print(sorted({'av', 'soundfile', 'soxr'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_decompression_bomb_is_refused_with_bounded_memory() -> None:
    """A 343 KB, 8-channel, 655 kHz FLAC of silence would decode to ~1.4 GB of float32."""
    import resource

    buf = io.BytesIO()
    sf.write(buf, np.zeros((655_350 * 60, 8), dtype=np.int16), 655_350, format="FLAC")
    data = buf.getvalue()
    assert len(data) < 2_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(AudioError, match=r"sample rate|samples"):
        decode(data, max_duration_s=600)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, f"peak RSS grew {grown_mib:.0f} MiB while refusing the bomb"


def test_budget_bounds_high_rate_audio() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(192_000 * 3, dtype=np.float32), 192_000, format="WAV")  # 3 s at 192 kHz
    assert decode(buf.getvalue(), max_duration_s=60).duration_s == pytest.approx(3.0)
    with pytest.raises(AudioError, match="samples"):
        decode(buf.getvalue(), max_duration_s=10)  # 576k samples > 10 s x 48 kHz


def test_flac_of_unknown_length_decodes() -> None:
    """Streaming encoders leave STREAMINFO's total-samples field 0 (libsndfile then reports 2**63-1)."""
    buf = io.BytesIO()
    t = np.arange(32_000) / 16_000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000, format="FLAC")
    data = bytearray(buf.getvalue())
    assert data[:4] == b"fLaC"
    # STREAMINFO body starts at byte 8; total samples = low 4 bits of body[13] + body[14:18]
    data[8 + 13] &= 0xF0
    data[8 + 14 : 8 + 18] = b"\x00\x00\x00\x00"
    audio = decode(bytes(data), max_duration_s=60)
    assert audio.duration_s == pytest.approx(2.0, abs=0.01)


def test_a_streamed_wav_of_unknown_length_decodes_to_its_samples() -> None:
    from voxperf.audio.codec import wav_stream_header

    x = (np.sin(np.arange(8000) / 7) * 0.5).astype(np.float32)
    body = wav_stream_header(8000) + (x * 32767).astype("<i2").tobytes()
    assert body[4:8] == b"\xff\xff\xff\xff" and body[40:44] == b"\xff\xff\xff\xff"  # sizes unknown
    audio = decode(body)
    assert audio.sample_rate == 8000 and audio.num_samples == x.size
    assert np.abs(audio.samples - x).max() < 1e-4
