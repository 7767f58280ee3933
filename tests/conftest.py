"""Shared test helpers: the real CLI as a subprocess, and small audio fixtures on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

VOXPERF = Path(sys.executable).parent / "voxperf"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed ``voxperf`` console script."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [str(VOXPERF), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env, check=False
    )


def write_tone(path: Path, seconds: float = 1.0, rate: int = 48_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture
def tone_dir(tmp_path: Path) -> Path:
    """A fixture directory: two tones with transcripts and one without."""
    d = tmp_path / "fixtures"
    d.mkdir()
    write_tone(d / "a.wav", 1.0)
    (d / "a.txt").write_text("hello world\n")
    write_tone(d / "b.wav", 0.5, 16_000)
    (d / "b.txt").write_text("second fixture\n")
    write_tone(d / "c.wav", 0.3)
    return d
