"""The one in-memory audio type: float32 mono samples in [-1, 1] plus their sample rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Audio"]


@dataclass(frozen=True, slots=True)
class Audio:
    """Mono float32 PCM. ``samples`` is 1-D; ``sample_rate`` in Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"Audio.samples must be 1-D mono, got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def pcm16_bytes(self) -> bytes:
        """Little-endian signed 16-bit PCM (the 'original bytes' of an upload)."""
        clipped = np.clip(self.samples, -1.0, 1.0)
        pcm: np.ndarray = (clipped * 32767.0).astype("<i2")
        return pcm.tobytes()
