"""Decode, encode, resample and sniff audio: the one place voxperf turns bytes into :class:`Audio`.

The container is told from the bytes (magic numbers), never from a file name, so an upload named
``.wav`` that holds MP4 is still read correctly. WAV, FLAC, Ogg Vorbis and MP3 go through
soundfile (libsndfile); Opus, MP4/M4A, AAC, WebM and anything libsndfile refuses go through PyAV
(FFmpeg). Every failure (empty, truncated, corrupt, zero samples, too long) is an
:class:`~voxperf.errors.AudioError` naming the input and the problem.

Truncation is caught where the container makes it visible (a WAV data chunk shorter than its
header says, a FLAC stream that loses sync, an MP4 without its index); streamable containers
(Ogg, MP3, WebM, ADTS) carry no total length, so a cut file decodes up to the cut.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.errors import AudioError, UsageError
from voxperf.extras import load

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "ENCODE_FORMATS",
    "SUPPORTED_EXTENSIONS",
    "decode",
    "decode_file",
    "encode",
    "probe_format",
    "resample",
    "wav_stream_header",
]

DEFAULT_MAX_DURATION_S = 3600.0
MAX_SAMPLE_RATE = 384_000  # no real recording needs more
SAMPLE_BUDGET_PER_S = 48_000  # decoded samples allowed per second of max duration
_BLOCK_FRAMES = 1 << 16
_UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count for streams of unknown length

# File name endings that fixture discovery treats as audio (decoding itself ignores names).
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm"}
)

ENCODE_FORMATS: tuple[str, ...] = ("flac", "opus", "wav")

_SOUNDFILE_FORMATS = frozenset({"wav", "flac", "ogg", "mp3"})
_RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
_OPUS_RATE = 48000  # libopus encodes at 8/12/16/24/48 kHz; 48 kHz is what every decoder returns
_OPUS_FRAME = 960  # 20 ms at 48 kHz
# A WAV data size at or above this is a "length unknown" placeholder written by streaming
# encoders (espeak-ng writes 0x7FFFF000, others 0xFFFFFFFF), not a promise of 2 GiB of audio.
_WAV_STREAMING_SIZE = 0x7F000000
_REEXPORT_HINT = "re-export the file as WAV or FLAC (16-bit PCM) and try again"


def probe_format(data: bytes) -> str | None:
    """Name the container from its first bytes.

    Returns ``"wav" | "flac" | "ogg" | "opus" | "mp3" | "aac" | "mp4" | "webm"``, or ``None``
    when the bytes match none of them. ``"opus"`` is an Ogg stream whose first packet is
    ``OpusHead``; ``"aac"`` is a raw ADTS stream; ``"webm"`` covers any Matroska (EBML) file.
    """
    head = bytes(data[:64])
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "opus" if b"OpusHead" in head[28:64] else "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version = (head[1] >> 3) & 0x03
        layer = (head[1] >> 1) & 0x03
        if layer == 0 and (head[1] & 0xF0) == 0xF0:
            return "aac"  # ADTS: 12-bit sync, layer bits 00
        if layer != 0 and version != 0x01:  # 01 is a reserved MPEG version
            return "mp3"
    return None


def decode(data: bytes, *, name: str | None = None, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> Audio:
    """Decode audio bytes to float32 mono (channels averaged) at the file's own sample rate.

    ``name`` only labels error messages. Input that would decode to more than ``max_duration_s``
    seconds is refused before (or, for containers without a length, while) it is decoded.
    """
    label = name or "audio input"
    if len(data) == 0:
        raise AudioError(f"{label} is empty (0 bytes)", "record or export the audio again")
    fmt = probe_format(data)
    if fmt == "wav":
        _check_wav_complete(data, label)
    if fmt in _SOUNDFILE_FORMATS or fmt is None:
        audio = _decode_soundfile(data, label, max_duration_s)
        if audio is None:  # libsndfile cannot open this encoding: let FFmpeg try
            audio = _decode_pyav(data, label, max_duration_s, known=fmt is not None)
    else:
        audio = _decode_pyav(data, label, max_duration_s)
    if audio.num_samples == 0:
        raise AudioError(f"{label} contains no audio samples", _REEXPORT_HINT)
    if not np.isfinite(audio.samples).all():
        raise AudioError(f"{label} contains NaN or infinite samples (corrupt float PCM)", _REEXPORT_HINT)
    return audio


def decode_file(path: str | os.PathLike[str], *, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> Audio:
    """Read and decode one audio file; an unreadable file is an :class:`AudioError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise AudioError(
            f"cannot read audio file {os.fspath(path)}: {exc.strerror or exc}",
            "check that the path exists and is a readable file",
        ) from exc
    return decode(data, name=os.fspath(path), max_duration_s=max_duration_s)


def resample(audio: Audio, rate: int, *, quality: str = "HQ") -> Audio:
    """Resample with soxr; returns ``audio`` itself when it is already at ``rate``."""
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise UsageError(f"cannot resample to {rate!r} Hz", "give a positive integer sample rate")
    if quality.upper() not in _RESAMPLE_QUALITIES:
        raise UsageError(
            f"unknown resample quality {quality!r}", f"use one of {', '.join(_RESAMPLE_QUALITIES)}"
        )
    if audio.sample_rate == rate:
        return audio
    if audio.num_samples == 0:
        return Audio(np.zeros(0, dtype=np.float32), rate)
    soxr = load("soxr", "bench", "resampling audio")

    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    out = soxr.resample(samples, audio.sample_rate, rate, quality=quality.upper())
    return Audio(np.asarray(out, dtype=np.float32), rate)


def encode(audio: Audio, fmt: str, *, bitrate: int = 24000) -> bytes:
    """Encode to ``"wav"``/``"flac"`` (16-bit PCM) or ``"opus"`` (Ogg Opus at 48 kHz, ``bitrate`` bps)."""
    kind = fmt.lower().lstrip(".")
    if kind in ("wav", "flac"):
        sf = load("soundfile", "bench", "encoding audio")

        buf = io.BytesIO()
        samples = np.clip(audio.samples, -1.0, 1.0).astype(np.float32, copy=False)
        try:
            sf.write(buf, samples, audio.sample_rate, format=kind.upper(), subtype="PCM_16")
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(
                f"cannot encode {audio.duration_s:.2f} s at {audio.sample_rate} Hz as {kind}: {exc}",
                "resample to a standard rate (e.g. 16000 or 48000 Hz) first",
            ) from exc
        return buf.getvalue()
    if kind == "opus":
        if bitrate <= 0:
            raise UsageError(f"bad Opus bitrate {bitrate!r}", "use a positive bitrate in bit/s, e.g. 24000")
        return _encode_opus(audio, bitrate)
    raise UsageError(f"unknown audio encoding {fmt!r}", f"use one of {', '.join(ENCODE_FORMATS)}")


def wav_stream_header(sample_rate: int) -> bytes:
    """The header of a 16-bit mono WAV stream of unknown length (sizes 0xFFFFFFFF, as streaming
    servers send it): the first bytes of a streamed speech response."""
    unknown = struct.pack("<I", 0xFFFFFFFF)
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + unknown + b"WAVEfmt " + fmt + b"data" + unknown


# --- soundfile ---------------------------------------------------------------------------------


def _check_budget(samples: int, rate: int, label: str, max_duration_s: float) -> None:
    """Refuse audio longer than allowed, or that decodes to more samples than 48 kHz audio of the
    allowed length would (a tiny high-rate upload must not become gigabytes of float32)."""
    _check_duration(samples / rate, label, max_duration_s)
    budget = int(max_duration_s * SAMPLE_BUDGET_PER_S)
    if samples > budget:
        raise AudioError(
            f"{label} decodes to more than {budget} samples ({rate} Hz for over {budget / rate:.0f} s)",
            "resample to 48 kHz or less, or send a shorter recording",
        )


def _check_rate(rate: int, label: str) -> None:
    if not 0 < rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{label} declares an unsupported sample rate ({rate} Hz)", _REEXPORT_HINT)


def _decode_soundfile(data: bytes, label: str, max_duration_s: float) -> Audio | None:
    """Decode with libsndfile in blocks, down-mixed as it goes (peak memory stays mono-sized);
    ``None`` when libsndfile cannot open this format at all."""
    sf = load("soundfile", "bench", "decoding audio")

    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except Exception:  # libsndfile refused the format; the caller tries FFmpeg
        return None
    with handle:
        rate = int(handle.samplerate)
        frames = int(handle.frames)
        _check_rate(rate, label)
        if frames >= _UNKNOWN_FRAMES:  # a streamed file of unknown length: libsndfile cannot read it,
            return None  # FFmpeg can (and budgets it frame by frame)
        if frames > 0:
            _check_budget(frames, rate, label, max_duration_s)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            while True:
                block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                chunks.append(_mono(block.T))
                total += chunks[-1].shape[0]
                _check_budget(total, rate, label, max_duration_s)
        except AudioError:
            raise
        except Exception as exc:  # a read error on untrusted bytes is bad audio
            raise AudioError(f"{label} is corrupt or truncated: {_sf_reason(exc)}", _REEXPORT_HINT) from exc
    if not chunks:
        return Audio(np.zeros(0, dtype=np.float32), rate)
    return Audio(np.concatenate(chunks).astype(np.float32, copy=False), rate)


def _sf_reason(exc: BaseException) -> str:
    text = str(exc)
    # libsndfile prefixes "Error opening <_io.BytesIO object at 0x...>: "; keep the reason only.
    return text.split(": ", 1)[1] if text.startswith("Error") and ": " in text else text


def _check_wav_complete(data: bytes, label: str) -> None:
    """Refuse a WAV whose data chunk is shorter than its header declares (a cut-off file)."""
    if len(data) < 12 or data[:4] != b"RIFF":
        return  # RF64 keeps its sizes elsewhere; libsndfile checks it
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"data":
            available = len(data) - body
            if 0 < size < _WAV_STREAMING_SIZE and available < size:
                raise AudioError(
                    f"{label} is truncated: its WAV header declares {size} bytes of audio, "
                    f"only {available} are present",
                    _REEXPORT_HINT,
                )
            return
        pos = body + size + (size & 1)
    if pos != len(data):
        raise AudioError(f"{label} is truncated: the WAV header ends before its data chunk", _REEXPORT_HINT)
    raise AudioError(f"{label} is a WAV file without a data chunk", _REEXPORT_HINT)


# --- PyAV --------------------------------------------------------------------------------------


def _decode_pyav(data: bytes, label: str, max_duration_s: float, *, known: bool = True) -> Audio:
    """Decode with FFmpeg (PyAV): first audio stream, every channel, native rate.

    ``known`` says whether the bytes carried a recognised magic number (it shapes the message).
    Untrusted bytes can make FFmpeg and PyAV raise many exception types; all become AudioError.
    """
    av = load("av", "bench", "decoding audio")

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:  # any failure to open untrusted bytes is bad audio
        if not known:
            raise AudioError(
                f"{label} is not a recognised audio format ({len(data)} bytes)",
                "use WAV, FLAC, Ogg (Vorbis/Opus), MP3, M4A/AAC or WebM",
            ) from exc
        raise AudioError(f"{label} could not be opened as audio: {_av_reason(exc)}", _REEXPORT_HINT) from exc
    try:
        if not container.streams.audio:
            raise AudioError(f"{label} has no audio stream", "give a file that contains an audio track")
        stream = container.streams.audio[0]
        if container.duration is not None:
            _check_duration(container.duration / 1_000_000, label, max_duration_s)
        chunks: list[np.ndarray] = []
        rate = 0
        total = 0
        for frame_block in _pyav_frames(container, stream):
            if rate == 0:
                rate = int(frame_block[1])
                _check_rate(rate, label)
            chunks.append(_mono(frame_block[0]))
            total += chunks[-1].shape[0]
            _check_budget(total, rate, label, max_duration_s)
    except AudioError:
        raise
    except Exception as exc:  # see above
        raise AudioError(f"{label} is corrupt or truncated: {_av_reason(exc)}", _REEXPORT_HINT) from exc
    finally:
        container.close()
    if total == 0 or rate <= 0:
        raise AudioError(f"{label} contains no audio samples", _REEXPORT_HINT)
    return Audio(np.concatenate(chunks).astype(np.float32, copy=False), rate)


def _pyav_frames(container: Any, stream: Any) -> Iterator[tuple[np.ndarray, int]]:
    """Decoded frames as planar float32 ``(channels, samples)`` arrays with their rate."""
    av = load("av", "bench", "decoding audio")

    resampler = av.AudioResampler(format="fltp")  # keep layout and rate, normalise the sample format
    for frame in container.decode(stream):
        for converted in resampler.resample(frame):
            yield converted.to_ndarray(), converted.sample_rate
    for converted in resampler.resample(None):
        yield converted.to_ndarray(), converted.sample_rate


def _av_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(": ")


def _encode_opus(audio: Audio, bitrate: int) -> bytes:
    av = load("av", "bench", "encoding Opus")
    load("av.error", "bench", "encoding Opus")

    at48k = resample(audio, _OPUS_RATE)
    samples = np.clip(at48k.samples, -1.0, 1.0).astype(np.float32)
    buf = io.BytesIO()
    try:
        with av.open(buf, mode="w", format="ogg") as container:
            stream = container.add_stream("libopus", rate=_OPUS_RATE, layout="mono")
            stream.bit_rate = bitrate
            for start in range(0, len(samples), _OPUS_FRAME):
                chunk = samples[start : start + _OPUS_FRAME]
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                frame.sample_rate = _OPUS_RATE
                frame.pts = start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except av.error.FFmpegError as exc:
        raise AudioError(
            f"Opus encoding failed: {_av_reason(exc)}",
            "check that PyAV was built with libopus (pip install --force-reinstall av)",
        ) from exc
    return buf.getvalue()


# --- shared ------------------------------------------------------------------------------------


def _mono(channels: np.ndarray) -> np.ndarray:
    """Average a ``(channels, samples)`` array into 1-D float32."""
    if channels.ndim == 1:
        return channels.astype(np.float32, copy=False)
    if channels.shape[0] == 1:
        return np.ascontiguousarray(channels[0], dtype=np.float32)
    mono: np.ndarray = channels.mean(axis=0, dtype=np.float32)
    return mono


def _check_duration(duration_s: float, label: str, max_duration_s: float) -> None:
    if duration_s > max_duration_s:
        raise AudioError(
            f"{label} is longer than the {max_duration_s:g} s limit (at least {duration_s:.1f} s)",
            "cut the audio into shorter fixtures or raise max_duration_s",
        )
