"""Shared test helpers: the real CLI as a subprocess, small audio fixtures on disk, and a real
``voxperf serve`` app on loopback (uvicorn in a thread) with fake engines."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

if TYPE_CHECKING:
    from voxperf.service.app import ServiceEngines, ServiceSettings

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_app(settings: ServiceSettings, engines: ServiceEngines, app: object = None) -> Iterator[str]:
    """Serve the app (or ``create_app(settings, engines)``) on a free loopback port; yields its URL
    (``for url in serve_app(...):`` runs the body once, then the server stops)."""
    import uvicorn

    from voxperf.service.app import create_app

    port = free_port()
    app = app if app is not None else create_app(settings, engines)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def tone() -> bytes:
    """One second of a 220 Hz tone as 16 kHz WAV bytes (an upload)."""
    buf = io.BytesIO()
    t = np.arange(16000) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def fake_engines(latency: str = "0") -> ServiceEngines:
    """The service's engines as codepath fakes, ready (no model loads)."""
    from voxperf.engines.fakes import FakeSTT, FakeTTS
    from voxperf.engines.rewrite.local import LocalRewriter
    from voxperf.service.runtime import ServiceEngines

    return ServiceEngines(
        stt=FakeSTT(latency=latency, text="um hello there"),
        tts=FakeTTS(),
        rewriter=LocalRewriter(),
        ready=True,
    )
