"""voxperf serve over real HTTP (uvicorn), real engines, and the official openai client."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from voxperf.audio.codec import decode
from voxperf.service.app import ServiceEngines, ServiceSettings
from voxperf.trace.metrics import wer

from .conftest import serve_app

pytestmark = pytest.mark.engines
TEXT = "The quick brown fox jumps over the lazy dog."
TOKEN = "s3cret-token"


def _wav_lying_about_size(declared: int) -> bytes:
    """A 16 kHz mono 16-bit WAV header declaring ``declared`` data bytes, followed by only 64."""
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("01000100803e0000007d000002001000")
    riff = (min(declared + 36, 0xFFFFFFFF)).to_bytes(4, "little")
    return b"RIFF" + riff + b"WAVE" + fmt + b"data" + declared.to_bytes(4, "little") + b"\x00" * 64


@pytest.fixture(scope="module")
def engines() -> ServiceEngines:
    eng = ServiceEngines()
    eng.load(ServiceSettings())
    return eng


@pytest.fixture(scope="module")
def url(engines: ServiceEngines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    jobs = str(tmp_path_factory.mktemp("jobs"))
    yield from serve_app(
        ServiceSettings(max_upload_bytes=2_000_000, max_duration_s=60, job_dir=jobs), engines
    )


@pytest.fixture(scope="module")
def speech_wav(engines: ServiceEngines) -> bytes:
    chunks = [c.samples for c in engines.tts.stream(TEXT)]
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(chunks), engines.tts.sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_openai_client_transcribes(url: str, speech_wav: bytes) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    result = client.audio.transcriptions.create(model="tiny.en", file=("speech.wav", speech_wav, "audio/wav"))
    assert wer(TEXT, result.text) < 0.2
    verbose = client.audio.transcriptions.create(
        model="tiny.en", file=("s.wav", speech_wav), response_format="verbose_json"
    )
    assert verbose.segments and verbose.duration > 1.0
    srt = client.audio.transcriptions.create(
        model="tiny.en", file=("s.wav", speech_wav), response_format="srt"
    )
    assert "-->" in srt and "00:00:00," in srt


def test_server_timing_header(url: str, speech_wav: bytes) -> None:
    r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("a.bin", speech_wav)}, timeout=60)
    assert r.status_code == 200
    names = [part.split(";")[0] for part in r.headers["server-timing"].split(", ")]
    assert names == ["decode", "resample", "stt", "rewrite", "paste"]  # the library's dictation stages


def test_openai_client_streams_speech(url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
        model="piper", voice="default", input=TEXT + " " + TEXT, response_format="wav"
    ) as response:
        assert "first_chunk" in response.headers["server-timing"]
        data = b"".join(response.iter_bytes())
    audio = decode(data)
    assert audio.duration_s > 2.0 and float(np.abs(audio.samples).max()) > 0.1


def test_models_and_health(url: str) -> None:
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
    ids = {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert {"tiny.en", "en_US-joe-medium"} <= ids


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"", 422),  # zero length
        (b"\x00" * 1000, 415),  # random bytes
        (b"not audio at all, just text", 415),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 10, 422),  # truncated header
        (_wav_lying_about_size(100_000), 422),  # lying sizes: 100,000 bytes declared, 64 present
        (_wav_lying_about_size(0x7FFFFFFF), 422),  # streaming-size sentinel, 2 ms: too short
    ],
)
def test_malformed_uploads_are_4xx(url: str, payload: bytes, status: int) -> None:
    r = httpx.post(
        f"{url}/v1/audio/transcriptions", files={"file": ("x.wav", payload, "audio/wav")}, timeout=30
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert httpx.get(f"{url}/healthz").status_code == 200  # still alive


def test_too_long_and_too_large(url: str) -> None:
    long = io.BytesIO()
    sf.write(long, np.zeros(16000 * 61, dtype=np.float32), 16000, format="FLAC")  # 61 s > 60 s limit
    r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("l.flac", long.getvalue())}, timeout=30)
    assert r.status_code == 422
    big = b"RIFF" + b"\x00" * 3_000_000
    r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("b.wav", big)}, timeout=30)
    assert r.status_code == 413

    def chunked() -> Iterator[bytes]:  # valid multipart without Content-Length: the counter must stop it
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
        for _ in range(40):
            yield b"\x00" * 100_000
        yield b"\r\n--x--\r\n"

    r = httpx.post(
        f"{url}/v1/audio/transcriptions",
        content=chunked(),
        timeout=30,
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413


def test_bad_requests(url: str, speech_wav: bytes) -> None:
    r = httpx.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("a.wav", speech_wav)},
        data={"response_format": "docx"},
    )
    assert r.status_code == 400
    assert httpx.post(f"{url}/v1/audio/speech", json={"input": ""}).status_code == 422
    assert (
        httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "response_format": "mp3"}).status_code
        == 400
    )


def test_job_round_trip_real_engine(url: str, speech_wav: bytes) -> None:
    r = httpx.post(f"{url}/v1/jobs", files={"file": ("s.wav", speech_wav)}, data={"level": "clean"})
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{url}{r.headers['location']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "done" and job["attempts"] == 1
    assert wer(TEXT, job["text"]) < 0.2 and job["text"][0].isupper()  # clean level rewrote it
    assert set(job["timings_ms"]) == {"decode", "resample", "stt", "rewrite", "paste"}
    assert job["completed_at"] >= job["started_at"] >= job["created_at"]
    assert job["processing_ms"] > 0 and job["queue_wait_ms"] >= 0


def test_bearer_token(engines: ServiceEngines, speech_wav: bytes, tmp_path) -> None:
    for base in serve_app(ServiceSettings(api_token=TOKEN, job_dir=str(tmp_path)), engines):
        r = httpx.get(f"{base}/v1/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(f"{base}/healthz").status_code == 200  # probes stay open
