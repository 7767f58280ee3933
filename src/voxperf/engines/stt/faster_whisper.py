"""faster-whisper (CTranslate2 Whisper) speech-to-text.

Weights come from :func:`~voxperf.engines.models.resolve_whisper_model` (a path, the bundled
``tiny.en`` or the local Hugging Face cache); nothing is downloaded. ``WhisperModel.transcribe``
returns a *lazy* segment generator and decoding happens while it is iterated, so
:meth:`FasterWhisperSTT.transcribe` consumes it before returning: the time of the call is the
time of the transcription.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo, Segment, Transcript, check_cancelled
from voxperf.engines.models import DEFAULT_WHISPER_MODEL, resolve_whisper_model
from voxperf.engines.options import package_version, parse_bool
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.errors import Cancelled, DependencyMissingError, EngineError, UsageError

__all__ = ["COMPUTE_TYPES", "DEVICES", "FasterWhisperSTT"]

# CTranslate2's compute types; which ones a device supports efficiently is checked when loading.
COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
DEVICES = ("cpu", "cuda", "auto")


def _choice(option: str, value: object, allowed: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise UsageError(
            f"bad {option}={value!r} for faster-whisper", f"{option} must be one of: {', '.join(allowed)}"
        )
    return text


def _int(option: str, value: object, minimum: int, meaning: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = minimum - 1
    if isinstance(value, bool) or number < minimum:
        raise UsageError(f"bad {option}={value!r} for faster-whisper", f"{option} must be {meaning}")
    return number


class FasterWhisperSTT:
    """Whisper via faster-whisper/CTranslate2 on 16 kHz audio; ``.model`` is the ``WhisperModel``.

    Options (strings from an engine spec are accepted): ``model`` (name or path, default
    ``tiny.en``), ``compute_type`` (default ``int8``), ``threads`` (CPU threads, 0 = CTranslate2's
    default), ``beam_size`` (default 1, greedy), ``language`` (default ``en``; ``auto`` detects),
    ``device`` (``cpu``, ``cuda``, ``auto``) and ``vad_filter`` (faster-whisper's Silero filter).
    """

    sample_rate = 16000

    def __init__(
        self,
        model: str = DEFAULT_WHISPER_MODEL,
        compute_type: str = "int8",
        threads: str | int = 0,
        beam_size: str | int = 1,
        language: str | None = "en",
        device: str = "cpu",
        vad_filter: str | bool = False,
        num_workers: str | int = 1,
    ) -> None:
        self.num_workers = _int("num_workers", num_workers, 1, "a whole number >= 1 (parallel calls)")
        self.compute_type = _choice("compute_type", compute_type, COMPUTE_TYPES)
        self.device = _choice("device", device, DEVICES)
        self.threads = _int("threads", threads, 0, "a whole number >= 0 (0 = CTranslate2's default)")
        self.beam_size = _int("beam_size", beam_size, 1, "a whole number >= 1 (1 = greedy decoding)")
        lang = (language or "").strip().lower()
        self.language: str | None = None if lang in ("", "auto", "none") else lang
        self.vad_filter = parse_bool("faster-whisper", "vad_filter", vad_filter)

        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise DependencyMissingError(
                "the faster-whisper engine needs the faster-whisper package", "pip install 'voxperf[whisper]'"
            ) from exc

        self._check_compute_type()
        self.resolved = resolve_whisper_model(model)
        try:
            self.model = WhisperModel(
                str(self.resolved.path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
                num_workers=self.num_workers,  # >1: concurrent transcribe() calls run in parallel
                local_files_only=True,
            )
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError for device, type, weights
            raise EngineError(
                f"faster-whisper could not load {self.resolved.name!r} from {self.resolved.path} "
                f"(device={self.device}, compute_type={self.compute_type}): {exc}",
                self._load_hint(),
            ) from exc

        ctranslate2_version = package_version("ctranslate2")
        settings: dict[str, Any] = {
            "compute_type": self.compute_type,
            "threads": self.threads,
            "num_workers": self.num_workers,
            "beam_size": self.beam_size,
            "language": self.language or "auto",
            "device": self.device,
            "vad_filter": self.vad_filter,
            "ctranslate2": ctranslate2_version,
        }
        self.info = EngineInfo(
            role="stt",
            name="faster-whisper",
            version=package_version("faster-whisper"),
            model=self.resolved.name,
            model_path=str(self.resolved.path),
            model_source=self.resolved.source,
            settings=settings,
        )

    def _check_compute_type(self) -> None:
        """A compute type the device cannot run efficiently is the user's option to change."""
        if self.compute_type in ("default", "auto") or self.device == "cuda":
            return  # without a usable driver ctranslate2 misreports CUDA types; the load will tell
        supported = self._supported_compute_types()
        if supported and self.compute_type not in supported:
            raise UsageError(
                f"compute_type={self.compute_type} is not supported on device={self.device} here",
                f"use one of: {', '.join(supported)}",
            )

    def _supported_compute_types(self) -> list[str]:
        try:
            import ctranslate2

            return sorted(ctranslate2.get_supported_compute_types(self.device))
        except Exception:  # no CUDA driver, or an old ctranslate2: let the load report it
            return []

    def _load_hint(self) -> str:
        if self.device != "cpu":
            return (
                f"check that device={self.device} has a working driver here (device=cpu always works), "
                "and that the model was converted by a compatible CTranslate2"
            )
        supported = self._supported_compute_types()
        return (
            f"the model directory must be converted by a compatible CTranslate2 (ct2-transformers-converter);"
            f" device=cpu supports compute_type {', '.join(supported) or 'int8, float32'}"
        )

    def transcribe(self, audio: Audio) -> Transcript:
        """Transcribe 16 kHz mono audio; all decoding happens before this returns."""
        if audio.sample_rate != self.sample_rate:
            raise UsageError(
                f"faster-whisper needs {self.sample_rate} Hz audio, got {audio.sample_rate} Hz",
                "resample to the engine's sample_rate first (the voxperf pipeline does this)",
            )
        samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
        try:
            segments, info = self.model.transcribe(
                samples,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=self.vad_filter,
                condition_on_previous_text=False,
            )
            # The generator is lazy: decoding happens here, inside the call being timed.
            timed = []
            for seg in segments:
                timed.append(Segment(float(seg.start), float(seg.end), seg.text.strip()))
                check_cancelled()  # between windows: a long recording stops when its request does
        except Cancelled:
            raise
        except Exception as exc:
            raise EngineError(
                f"faster-whisper failed while transcribing {audio.duration_s:.2f} s of audio: {exc}",
                "check the audio (finite float32 samples) and the compute_type/device settings",
            ) from exc
        return Transcript(
            text=" ".join(t.text for t in timed if t.text), language=info.language, segments=tuple(timed)
        )

    def warmup(self) -> None:
        """Transcribe one second of quiet noise so first-call costs are not in the measurements."""
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(self.sample_rate) * 1e-3).astype(np.float32)
        self.transcribe(Audio(samples=noise, sample_rate=self.sample_rate))


PLUGIN = EnginePlugin(
    role="stt",
    name="faster-whisper",
    factory=FasterWhisperSTT,
    summary="Whisper on CTranslate2 (bundled tiny.en, or any CTranslate2 Whisper model directory)",
    requires=("faster_whisper",),
    install="voxperf[whisper]",
    options=(
        EngineOption(
            "model", "str", DEFAULT_WHISPER_MODEL, "model name (tiny.en bundled) or CTranslate2 directory"
        ),
        EngineOption("compute_type", "str", "int8", "CTranslate2 compute type", choices=COMPUTE_TYPES),
        EngineOption("threads", "int", 0, "CPU threads (0 = CTranslate2's default)"),
        EngineOption("beam_size", "int", 1, "beam size (1 = greedy decoding)"),
        EngineOption("language", "str", "en", "language code, or auto to detect"),
        EngineOption("device", "str", "cpu", "where the model runs", choices=DEVICES),
        EngineOption("vad_filter", "bool", False, "faster-whisper's own Silero filter"),
        EngineOption("num_workers", "int", 1, "parallel transcribe() calls the model serves"),
    ),
)
