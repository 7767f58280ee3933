"""Cancelling a request: the library's check points, faster-whisper between windows, and
``voxperf serve`` stopping a transcription whose client went away.

Nothing here waits on a timer to decide: events say when the engine is inside a request, and the
client's disconnect is a real closed socket."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from voxperf.audio.pcm import Audio
from voxperf.engines.base import Transcript, check_cancelled, run_cancellable
from voxperf.engines.fakes import FakeSTT
from voxperf.engines.rewrite.local import LocalRewriter
from voxperf.errors import Cancelled
from voxperf.pipeline.dictation import DictationPipeline
from voxperf.service.app import ServiceSettings
from voxperf.service.runtime import ServiceEngines

from .conftest import serve_app, tone


class CountingSTT(FakeSTT):
    def __init__(self) -> None:
        super().__init__(text="hello")
        self.calls = 0

    def transcribe(self, audio: Audio) -> Transcript:
        self.calls += 1
        return super().transcribe(audio)


def test_check_cancelled_is_free_outside_a_cancellable_run_and_stops_inside_one() -> None:
    check_cancelled()  # no request: nothing to stop
    cancel = threading.Event()
    assert run_cancellable(cancel, lambda: 42) == 42
    cancel.set()
    with pytest.raises(Cancelled):
        run_cancellable(cancel, check_cancelled)
    check_cancelled()  # the cancel belonged to that run only


def test_a_cancelled_dictation_stops_before_the_engine() -> None:
    stt = CountingSTT()
    pipeline = DictationPipeline(stt, LocalRewriter(), encode_format="none")
    cancel = threading.Event()
    assert run_cancellable(cancel, lambda: pipeline.run(tone(), "raw")).text
    assert stt.calls == 1
    cancel.set()
    with pytest.raises(Cancelled):
        run_cancellable(cancel, lambda: pipeline.run(tone(), "raw"))
    assert stt.calls == 1  # stopped between stages: the engine never ran


def test_faster_whisper_stops_between_windows() -> None:
    from voxperf.engines.stt.faster_whisper import FasterWhisperSTT

    cancel = threading.Event()
    produced: list[int] = []

    def windows() -> Any:  # faster-whisper's lazy segments, one per 30 s window
        for i in range(5):
            produced.append(i)
            if i == 1:
                cancel.set()  # the client leaves while the second window is decoded
            yield SimpleNamespace(start=30.0 * i, end=30.0 * (i + 1), text=f" window {i}")

    engine = FasterWhisperSTT.__new__(FasterWhisperSTT)  # no model load: the model is the stand-in
    engine.language, engine.beam_size, engine.vad_filter = "en", 1, False
    engine.model = SimpleNamespace(transcribe=lambda *a, **k: (windows(), SimpleNamespace(language="en")))
    audio = Audio(np.zeros(16000, dtype=np.float32), 16000)
    assert engine.transcribe(audio).text.startswith("window 0")  # not cancelled: every window
    produced.clear()
    cancel.clear()
    with pytest.raises(Cancelled):
        run_cancellable(cancel, lambda: engine.transcribe(audio))
    assert produced == [0, 1]  # the windows after the cancel were never decoded


class BlockingSTT(FakeSTT):
    """An engine that runs until its request is cancelled (a long recording, in miniature)."""

    def __init__(self) -> None:
        super().__init__(text="never")
        self.inside = threading.Event()
        self.stopped = threading.Event()

    def transcribe(self, audio: Audio) -> Transcript:
        self.inside.set()
        try:
            while True:
                check_cancelled()
                threading.Event().wait(0.01)
        except Cancelled:
            self.stopped.set()
            raise


def test_serve_cancels_a_transcription_whose_client_disconnects(tmp_path: Path) -> None:
    stt = BlockingSTT()
    engines = ServiceEngines(stt=stt, tts=None, rewriter=LocalRewriter(), ready=True)
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), engines):
        host, port = url.removeprefix("http://").split(":")
        body = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n" + tone() + b"\r\n--b--\r\n"
        )
        head = (
            f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection((host, int(port))) as client:
            client.sendall(head + body)
            assert stt.inside.wait(30), "the transcription never started"
        # the socket is closed: the server notices and the engine's next check stops it
        assert stt.stopped.wait(30), "the transcription went on after its client left"
