"""``voxperf serve`` and ``voxperf bench`` measure the same stages alike (one pipeline, two clients).

    .venv/bin/python benchmarks/serve_vs_bench.py        # ~3 min; writes results/serve-vs-bench.json

The same WAV (Piper speaking a sentence, 16 kHz) goes through ``voxperf bench`` (provider lane,
dictation, raw level, ``--vad none --encode none``: the stages the service runs) and through
``voxperf serve``'s ``/v1/audio/transcriptions`` (stages from its ``Server-Timing`` header), in
alternating blocks so that the machine's load meets both alike. For each stage the medians, their
bootstrap 95 % CIs and the CI of serve ÷ bench are reported; "same" when that CI holds 1.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
VOXPERF = str(Path(sys.executable).parent / "voxperf")
TEXT = "The quick brown fox jumps over the lazy dog. Then it runs far away into the quiet woods."
STAGES = ("decode", "resample", "stt")
rng = np.random.default_rng(7)


def fixture(directory: Path) -> Path:
    from voxperf.audio.codec import resample
    from voxperf.audio.pcm import Audio
    from voxperf.engines.registry import create_engine, parse_spec

    tts = create_engine(parse_spec("tts", "piper"))
    chunks = [c.samples for c in tts.stream(TEXT)]
    audio = resample(Audio(np.concatenate(chunks), tts.sample_rate), 16000)
    path = directory / "fox.wav"
    sf.write(path, audio.samples, 16000, subtype="PCM_16")
    (directory / "fox.txt").write_text(TEXT)
    return path


def bench_block(fixtures: Path, iterations: int) -> dict[str, list[float]]:
    out = fixtures.parent / f"bench-{time.monotonic_ns()}.json"
    subprocess.run(
        [
            VOXPERF, "bench", "--lane", "provider", "--pipeline", "dictation", "--fixtures", str(fixtures),
            "--levels", "raw", "--vad", "none", "--encode", "none", "--iterations", str(iterations),
            "--warmup", "1", "-o", str(out),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    doc = json.loads(out.read_text())
    runs = [r for r in doc["lanes"]["provider"]["runs"] if not r["warmup"]]
    return {s: [r["stagesNs"][s] / 1e6 for r in runs if s in r["stagesNs"]] for s in STAGES}


def serve_block(url: str, wav: bytes, requests: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for _ in range(requests):
        r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("fox.wav", wav)}, timeout=120)
        r.raise_for_status()
        for part in r.headers["server-timing"].split(", "):
            name, _, dur = part.partition(";dur=")
            if name in samples:
                samples[name].append(float(dur))
    return samples


def boot_median_ci(x: np.ndarray) -> tuple[float, float]:
    meds = np.median(rng.choice(x, size=(4000, x.size)), axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def boot_ratio_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ra = np.median(rng.choice(a, size=(4000, a.size)), axis=1)
    rb = np.median(rng.choice(b, size=(4000, b.size)), axis=1)
    ratios = ra / rb
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vx-servebench-"))
    fixtures = work / "fixtures"
    fixtures.mkdir()
    wav = fixture(fixtures).read_bytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [VOXPERF, "serve", "--port", str(port), "--tts", "none", "--job-dir", str(work / "jobs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        serve_block(url, wav, 1)  # warm-up, as bench's
        bench: dict[str, list[float]] = {s: [] for s in STAGES}
        served: dict[str, list[float]] = {s: [] for s in STAGES}
        for _ in range(3):  # alternating blocks: load drift meets both
            for s, v in bench_block(fixtures, 10).items():
                bench[s] += v
            for s, v in serve_block(url, wav, 10).items():
                served[s] += v
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    rows: dict[str, Any] = {}
    for s in STAGES:
        a, b = np.asarray(served[s]), np.asarray(bench[s])
        lo, hi = boot_ratio_ci(a, b)
        rows[s] = {
            "serveMs": {"n": a.size, "median": round(float(np.median(a)), 3), "ci95": boot_median_ci(a)},
            "benchMs": {"n": b.size, "median": round(float(np.median(b)), 3), "ci95": boot_median_ci(b)},
            "ratio": round(float(np.median(a) / np.median(b)), 4),
            "ratioCi95": (round(lo, 4), round(hi, 4)),
            "same": lo <= 1.0 <= hi,
        }
    doc = {
        "experiment": "same WAV through voxperf bench (provider, dictation, raw, --vad none --encode none) "
        "and voxperf serve /v1/audio/transcriptions (Server-Timing), 3 alternating blocks of 10",
        "audioS": round(sf.info(fixtures / "fox.wav").duration, 2),
        "stages": rows,
    }
    out = HERE / "results" / "serve-vs-bench.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
