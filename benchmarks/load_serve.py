"""voxperf serve with the real engines under load: a scaling curve and two capacity searches.

    .venv/bin/python benchmarks/load_serve.py [--duration 60] [--workers 2]

Starts ``voxperf serve`` (faster-whisper tiny.en int8 and Piper en_US-joe-medium, embedded job
workers) on a free port, synthesises a 5-second utterance with Piper (its transcript kept for WER),
then runs, through the real CLI:

1. ``transcribe --concurrency 1,2,4,8``: the scaling curve (throughput, p50, scaling factor);
2. ``jobs --find-capacity --slo latency_p95=5s``: the highest arrival rate of 5 s utterances whose
   p95 job latency (intended start to the poll that saw it done, 50 ms polls) is within 5 s;
3. ``speech --concurrency N --find-capacity --slo ttfa_p95=800ms,stall_count_max=0``: the most
   concurrent real-time speech streams with TTFA p95 within 800 ms and no stall.

Writes benchmarks/results/load-serve.json. Run it alone: it measures the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"
VOXPERF = str(Path(sys.executable).parent / "voxperf")
TEXT = "Please schedule the quarterly review with the design team for next Thursday afternoon at three."


def utterance(directory: Path) -> float:
    """A Piper-spoken sentence of about 5 s as a WAV with its transcript; its duration."""
    import numpy as np

    from voxperf.audio.codec import encode
    from voxperf.audio.pcm import Audio
    from voxperf.engines.registry import create_engine, parse_spec

    tts = create_engine(parse_spec("tts", "piper"))
    chunks = list(tts.stream(TEXT))
    audio = Audio(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate)
    (directory / "utterance.wav").write_bytes(encode(audio, "wav"))
    (directory / "utterance.txt").write_text(TEXT + "\n")
    return audio.duration_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(*args: str, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run([VOXPERF, "load", *args, "-o", str(out)], capture_output=True, text=True)
    print(proc.stderr[-3000:], flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"voxperf load failed ({proc.returncode})")
    doc: dict[str, Any] = json.loads(out.read_text())
    doc["wallS"] = round(time.monotonic() - started, 1)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--workers", type=int, default=2, help="serve's embedded job workers")
    parser.add_argument("--only", choices=("scaling", "jobs", "speech"), default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voxperf-load-serve-"))
    fixtures = work / "fixtures"
    fixtures.mkdir()
    seconds = utterance(fixtures)
    print(f"utterance: {seconds:.2f} s", flush=True)
    port = free_port()
    log = (work / "serve.log").open("wb")
    serve = subprocess.Popen(
        [
            VOXPERF,
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--job-dir",
            str(work / "jobs"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    target = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{target}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        common = ("--target", target, "--fixtures", str(fixtures), "--duration", args.duration)
        out: dict[str, Any] = {"utteranceS": seconds, "serveWorkers": args.workers, "duration": args.duration}
        if args.only in (None, "scaling"):
            doc = load("transcribe", *common, "--concurrency", "1,2,4,8", out=work / "scaling.json")
            out["scaling"] = doc["scaling"]
        if args.only in (None, "jobs"):
            doc = load(
                "jobs",
                *common,
                "--rate",
                "0.25",
                "--find-capacity",
                "--slo",
                "latency_p95=5s",
                "--option",
                "poll_interval_s=0.05",
                "--tolerance",
                "0.15",
                "--max-load",
                "20",
                out=work / "jobs.json",
            )
            out["jobsCapacity"] = doc["capacity"]
        if args.only in (None, "speech"):
            doc = load(
                "speech",
                *common,
                "--concurrency",
                "1",
                "--find-capacity",
                "--slo",
                "ttfa_p95=800ms,stall_count_max=0",
                "--max-load",
                "32",
                out=work / "speech.json",
            )
            out["speechCapacity"] = doc["capacity"]
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load-serve.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in out.items() if k != "scaling"} | {"scaling": out.get("scaling")}, indent=1
        )[:4000]
    )


if __name__ == "__main__":
    main()
