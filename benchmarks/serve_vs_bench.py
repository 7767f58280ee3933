"""``voxperf serve`` and ``voxperf bench`` measure the same stages alike (one pipeline, two clients).

    .venv/bin/python benchmarks/serve_vs_bench.py        # ~6 min; writes results/serve-vs-bench.json

The same WAV (Piper speaking a sentence, 16 kHz) goes through bench's own request path — a
``voxperf bench-worker`` (the process ``voxperf ab`` drives) set up for the provider lane,
dictation, raw level, ``--vad none --encode none``: the stages the service runs — and through
``voxperf serve``'s ``/v1/audio/transcriptions`` (stages from its ``Server-Timing`` header),
request by request, the three sides (with a direct ``WhisperModel.transcribe`` process as the
independent instrument) in every order in turn, so that the machine's load meets all alike. For each
stage the ratio serve ÷ bench of the medians is reported per run and pooled over ``--runs`` runs of
fresh processes (a two-level bootstrap CI: which process a side got matters as much as which
request); "same" when the pooled CI holds 1. Minor page faults per request (``/proc/<pid>/stat``)
are reported per side: serve and bench run under the same C heap policy
(:mod:`voxperf.engines.alloc`; the direct process gets it through ``GLIBC_TUNABLES``), without which
one process could fault CTranslate2's per-layer buffers back in on every request and the other not
(78 k against 53 k faults, stt 6 % apart). Whole ``voxperf bench`` runs alternated with blocks of
serve requests gave bench 10-20 % slower in every block after the first: the comparison needs
requests interleaved one by one.
"""

from __future__ import annotations

import itertools
import json
import os
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
TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
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


class BenchWorker:
    """``voxperf bench-worker`` over its JSON-lines protocol (see ``voxperf.bench.worker``)."""

    def __init__(self, fixtures: Path) -> None:
        from voxperf.bench.runner import BenchConfig
        from voxperf.bench.worker import PROTOCOL, config_to_wire

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxperf", "bench-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        config = BenchConfig(
            lanes=("provider",), pipelines=("dictation",), fixtures=fixtures, levels=("raw",),
            vad="none", encode="none", iterations=1, warmup=0,
        )  # fmt: skip
        assert self.call({"type": "hello", "protocols": [PROTOCOL]})["type"] == "hello"
        ready = self.call({"type": "setup", "lane": "provider", "config": config_to_wire(config)})
        assert ready["type"] == "ready", ready

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def request(self) -> dict[str, float]:
        reply = self.call({"type": "run", "id": 0, "pipeline": "dictation", "fixture": "fox", "level": "raw"})
        assert reply["type"] == "result", reply
        return {s: float(reply["metrics"][f"{s}_ms"]) for s in STAGES}

    def close(self) -> None:
        self.call({"type": "bye"})
        self.proc.wait(30)


class DirectEngine:
    """The independent instrument: ``WhisperModel.transcribe`` called directly (faster-whisper's own
    API, the model directory voxperf resolves, int8, beam 1, English), in a process of its own."""

    SCRIPT = """
import sys, time, numpy as np, soundfile as sf
from faster_whisper import WhisperModel
from voxperf.engines.models import resolve_whisper_model
model = WhisperModel(str(resolve_whisper_model("tiny.en").path), device="cpu", compute_type="int8")
samples, _ = sf.read(sys.argv[1], dtype="float32")
for line in sys.stdin:
    t0 = time.perf_counter()
    segments, _info = model.transcribe(samples, beam_size=1, language="en")
    "".join(s.text for s in segments)
    print((time.perf_counter() - t0) * 1000, flush=True)
"""

    def __init__(self, wav_path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(wav_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "GLIBC_TUNABLES": TUNABLES},  # the same heap policy as voxperf's
        )

    def request(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def minor_faults(pid: int) -> int:
    """Minor page faults of a process so far, all threads (field 10 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[7])


def serve_request(url: str, wav: bytes) -> dict[str, float]:
    r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("fox.wav", wav)}, timeout=120)
    r.raise_for_status()
    stages = {}
    for part in r.headers["server-timing"].split(", "):
        name, _, dur = part.partition(";dur=")
        if name in STAGES:
            stages[name] = float(dur)
    return stages


def boot_median_ci(x: np.ndarray) -> tuple[float, float]:
    meds = np.median(rng.choice(x, size=(4000, x.size)), axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def boot_ratio_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ra = np.median(rng.choice(a, size=(4000, a.size)), axis=1)
    rb = np.median(rng.choice(b, size=(4000, b.size)), axis=1)
    ratios = ra / rb
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def pooled_ratio(runs: list[tuple[np.ndarray, np.ndarray]], n_boot: int = 4000) -> tuple[float, float, float]:
    """Ratio of medians over several fresh-process runs: the geometric mean of the runs' ratios,
    with a two-level bootstrap CI (runs resampled, then requests within each run), so that what
    differs from one process to the next counts as well as what differs between requests."""
    point = float(np.exp(np.mean([np.log(np.median(a) / np.median(b)) for a, b in runs])))
    logs = np.empty(n_boot)
    for i in range(n_boot):
        picked = rng.integers(0, len(runs), len(runs))
        logs[i] = np.mean(
            [
                np.log(np.median(rng.choice(runs[k][0], runs[k][0].size)))
                - np.log(np.median(rng.choice(runs[k][1], runs[k][1].size)))
                for k in picked
            ]
        )
    return point, float(np.exp(np.percentile(logs, 2.5))), float(np.exp(np.percentile(logs, 97.5)))


def one_run(work: Path, fixtures: Path, wav: bytes, requests: int) -> dict[str, Any]:
    """Fresh processes on every side, ``requests`` interleaved requests each."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [VOXPERF, "serve", "--port", str(port), "--tts", "none", "--job-dir", str(work / f"jobs-{port}")],
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
        worker = BenchWorker(fixtures)
        direct = DirectEngine(fixtures / "fox.wav")
        serve_request(url, wav)  # warm-up, every side
        worker.request()
        direct.request()
        samples: dict[str, dict[str, list[float]]] = {
            "serve": {s: [] for s in STAGES},
            "bench": {s: [] for s in STAGES},
        }
        raw: list[float] = []
        pids = {"serve": server.pid, "bench": worker.proc.pid, "direct": direct.proc.pid}
        faults: dict[str, list[int]] = {side: [] for side in pids}
        # every order of the three in turn: drift, load bursts and whatever one request leaves
        # behind for the next (engine threads still spinning) meet each side alike
        orders = list(itertools.permutations(("serve", "bench", "direct")))
        for i in range(requests):
            for side in orders[i % len(orders)]:
                before = minor_faults(pids[side])
                if side == "direct":
                    raw.append(direct.request())  # the independent instrument, in its own process
                else:
                    got = serve_request(url, wav) if side == "serve" else worker.request()
                    for stage, ms in got.items():
                        samples[side][stage].append(ms)
                faults[side].append(minor_faults(pids[side]) - before)
        worker.close()
        direct.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    return {"samples": samples, "direct": raw, "faults": faults}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes on every side, this many times")
    parser.add_argument("--requests", type=int, default=30, help="requests per side per run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vx-servebench-"))
    fixtures = work / "fixtures"
    fixtures.mkdir()
    wav = fixture(fixtures).read_bytes()
    runs = [one_run(work, fixtures, wav, args.requests) for _ in range(args.runs)]
    rows: dict[str, Any] = {}
    for stage in STAGES:
        pairs = [
            (np.asarray(r["samples"]["serve"][stage]), np.asarray(r["samples"]["bench"][stage])) for r in runs
        ]
        point, lo, hi = pooled_ratio(pairs)
        rows[stage] = {
            "serveMsMedianPerRun": [round(float(np.median(a)), 3) for a, _ in pairs],
            "benchMsMedianPerRun": [round(float(np.median(b)), 3) for _, b in pairs],
            "ratioPerRun": [
                {
                    "ratio": round(float(np.median(a) / np.median(b)), 4),
                    "ci95": [round(x, 4) for x in boot_ratio_ci(a, b)],
                }
                for a, b in pairs
            ],
            "ratio": round(point, 4),
            "ratioCi95": [round(lo, 4), round(hi, 4)],
            "same": lo <= 1.0 <= hi,
        }
    for side in ("serve", "bench"):
        pairs = [(np.asarray(r["samples"][side]["stt"]), np.asarray(r["direct"])) for r in runs]
        point, lo, hi = pooled_ratio(pairs)
        rows[f"stt {side} ÷ direct transcribe"] = {
            "directMsMedianPerRun": [round(float(np.median(r["direct"])), 3) for r in runs],
            "ratio": round(point, 4),
            "ratioCi95": [round(lo, 4), round(hi, 4)],
        }
    doc = {
        "experiment": "same WAV through a voxperf bench-worker (provider, dictation, raw, vad none, "
        "encode none), voxperf serve /v1/audio/transcriptions (Server-Timing) and a direct "
        f"WhisperModel.transcribe process; {args.runs} runs of fresh processes, {args.requests} requests "
        "per side per run, every order of the three in turn; ratios pooled over runs (two-level bootstrap)",
        "audioS": round(sf.info(fixtures / "fox.wav").duration, 2),
        "minorFaultsPerRequestMedian": {
            side: [int(np.median(r["faults"][side])) for r in runs] for side in ("serve", "bench", "direct")
        },
        "stages": rows,
    }
    out = HERE / "results" / "serve-vs-bench.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
