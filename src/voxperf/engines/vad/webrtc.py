"""The WebRTC VAD (``webrtcvad``): a fast classic GMM detector with a yes/no answer per frame.

Frames are 10, 20 or 30 ms of 16-bit PCM at 8, 16, 32 or 48 kHz. ``speech_prob`` is 1.0 or 0.0.
"""

from __future__ import annotations

import importlib.metadata
import threading

import numpy as np

from voxperf.engines.base import EngineInfo
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.errors import DependencyMissingError, UsageError

__all__ = ["WebRTCVAD"]

AGGRESSIVENESS = (0, 1, 2, 3)
FRAME_MS = (10, 20, 30)
SAMPLE_RATES = (8000, 16000, 32000, 48000)


def _int_choice(option: str, value: object, allowed: tuple[int, ...]) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if isinstance(value, bool) or number not in allowed:
        raise UsageError(
            f"bad {option}={value!r} for webrtc VAD",
            f"{option} must be one of: {', '.join(map(str, allowed))}",
        )
    return number


class WebRTCVAD:
    """WebRTC VAD: ``aggressiveness`` 0-3 (default 2), ``frame_ms`` 10/20/30, ``sample_rate``."""

    def __init__(
        self, aggressiveness: str | int = 2, frame_ms: str | int = 30, sample_rate: str | int = 16000
    ) -> None:
        self.aggressiveness = _int_choice("aggressiveness", aggressiveness, AGGRESSIVENESS)
        self.frame_ms = _int_choice("frame_ms", frame_ms, FRAME_MS)
        self.sample_rate = _int_choice("sample_rate", sample_rate, SAMPLE_RATES)
        self.frame_samples = self.sample_rate * self.frame_ms // 1000
        self.threshold = 0.5
        try:
            import webrtcvad
        except ImportError as exc:
            raise DependencyMissingError(
                "the webrtc VAD needs the webrtcvad package", "pip install 'voxperf[vad]'"
            ) from exc
        self._webrtcvad = webrtcvad
        self._vad = webrtcvad.Vad(self.aggressiveness)
        self._lock = threading.Lock()
        version = "unknown"
        for dist in ("webrtcvad-wheels", "webrtcvad"):
            try:
                version = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        self.info = EngineInfo(
            role="vad",
            name="webrtc",
            version=version,
            settings={
                "aggressiveness": self.aggressiveness,
                "frame_ms": self.frame_ms,
                "sample_rate": self.sample_rate,
                "threshold": self.threshold,
            },
        )

    def speech_prob(self, frame: np.ndarray) -> float:
        """1.0 if the frame (``frame_samples`` float samples in [-1, 1]) is speech, else 0.0."""
        if len(frame) != self.frame_samples:
            raise UsageError(
                f"webrtc frames must have {self.frame_samples} samples, got {len(frame)}",
                "split audio into frames of vad.frame_samples (voxperf.engines.vad.util does this)",
            )
        pcm = (np.clip(np.asarray(frame, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        with self._lock:
            return 1.0 if self._vad.is_speech(pcm, self.sample_rate) else 0.0

    def reset(self) -> None:
        """Start a fresh detector (the WebRTC VAD adapts to the noise floor of what it has seen)."""
        with self._lock:
            self._vad = self._webrtcvad.Vad(self.aggressiveness)


PLUGIN = EnginePlugin(
    role="vad",
    name="webrtc",
    factory=WebRTCVAD,
    summary="WebRTC's GMM voice activity detector",
    requires=("webrtcvad",),
    install="voxperf[vad]",
    options=(
        EngineOption(
            "aggressiveness", "int", 2, "0 (least) to 3 (most aggressive)", choices=("0", "1", "2", "3")
        ),
        EngineOption("frame_ms", "int", 30, "frame length in ms", choices=("10", "20", "30")),
        EngineOption("sample_rate", "int", 16000, "8000, 16000, 32000 or 48000 Hz"),
    ),
)
