"""Long speech input on ``voxperf serve``: memory and time to first audio stay bounded.

    .venv/bin/python benchmarks/serve_speech.py            # ~5 min; writes results/serve-speech.json

A ``voxperf serve --stt none`` process (Piper, en_US-joe-medium) gets 20 ``/v1/audio/speech``
requests of 4,096 unpunctuated characters (the documented limit), 4 at a time. Measured:

* the server process's peak RSS (sampled every 50 ms) and its RSS before and after;
* TTFA at the client: request sent → first non-silent sample (|x| > -50 dBFS) read from the
  socket, against the engine's own first-unit time (Piper called directly, in this process, on
  the first synthesis unit the server would speak) measured alone and in the same 4-way contention;
* a fuzz of speech bodies (NaN, surrogates, NUL, huge numbers, wrong types): every status code.
"""

from __future__ import annotations

import asyncio
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
import psutil

HERE = Path(__file__).resolve().parent
VOXPERF = str(Path(sys.executable).parent / "voxperf")
WORDS = "the quick brown fox jumps over the lazy dog while seven bright birds sing near quiet water "
TEXT = (WORDS * 50)[:4096].strip()
AUDIBLE = int(32768 * 10 ** (-50 / 20))  # -50 dBFS in 16-bit samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def speak(client: httpx.AsyncClient, url: str, text: str) -> dict[str, float]:
    """One streamed request: seconds to the first body byte, to the first audible sample, to the end."""
    t0 = time.perf_counter()
    first_byte = first_audible = None
    header = b""
    total = 0
    async with client.stream("POST", f"{url}/v1/audio/speech", json={"input": text}) as r:
        r.raise_for_status()
        async for piece in r.aiter_raw():
            now = time.perf_counter()
            if first_byte is None:
                first_byte = now - t0
            if len(header) < 44:  # the WAV header rides with the first audio
                need = 44 - len(header)
                header, piece = header + piece[:need], piece[need:]
            total += len(piece)
            if first_audible is None and piece:
                samples = np.frombuffer(piece[: len(piece) // 2 * 2], dtype="<i2")
                if samples.size and int(np.abs(samples.astype(np.int32)).max()) > AUDIBLE:
                    first_audible = now - t0
    return {
        "firstByteS": first_byte or float("nan"),
        "ttfaS": first_audible or float("nan"),
        "totalS": time.perf_counter() - t0,
        "audioS": total / 2 / 22050,
    }


def engine_first_unit_s(concurrent: int) -> float:
    """Piper alone, in this process: time to the first chunk of the first synthesis unit, with
    ``concurrent`` syntheses running at once (threads), median over 3 tries."""
    from concurrent.futures import ThreadPoolExecutor

    from voxperf.engines.registry import create_engine, parse_spec
    from voxperf.pipeline.units import synthesis_units

    tts = create_engine(parse_spec("tts", "piper"))
    tts.warmup()
    unit = next(synthesis_units(TEXT))

    def first() -> float:
        t0 = time.perf_counter()
        next(iter(tts.stream(unit)))
        return time.perf_counter() - t0

    times = []
    with ThreadPoolExecutor(concurrent) as pool:
        for _ in range(3):
            times += list(pool.map(lambda _i: first(), range(concurrent)))
    return float(np.median(times))


FUZZ: list[bytes] = [
    b'{"input": "hi", "speed": NaN}',
    b'{"input": "hi", "speed": Infinity}',
    b'{"input": "hi", "speed": -Infinity}',
    b'{"input": "hi", "speed": 1e999}',
    b'{"input": "\\ud800"}',
    b'{"input": "a\\udfffb"}',
    b'{"input": "nul\\u0000"}',
    b'{"input": "hi", "speed": 123456789012345678901234567890}',
    b'{"input": 1}',
    b'{"input": null}',
    b'{"input": {"a": 1}}',
    b'{"input": "hi", "voice": []}',
    b'{"input": "hi", "response_format": 7}',
    b"[]",
    b"null",
    b'"just a string"',
    b"{",
    b"\x00\x01\x02",
    b'{"input": "' + b"y" * 4097 + b'"}',
]


async def main_async() -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="vx-speech-")) / "server.log"
    with log.open("ab") as out:
        server = subprocess.Popen(
            [VOXPERF, "serve", "--port", str(port), "--stt", "none", "--job-dir", str(log.parent)],
            stdout=out,
            stderr=out,
        )
    proc = psutil.Process(server.pid)
    async with httpx.AsyncClient(timeout=600) as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"server did not start: {log.read_text()[-2000:]}"
            await asyncio.sleep(0.1)
        rss_ready = proc.memory_info().rss
        peak = rss_ready
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, proc.memory_info().rss)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        sem = asyncio.Semaphore(4)

        async def one(i: int) -> dict[str, float]:
            async with sem:
                return await speak(client, url, (f"number {i} " + TEXT)[:4096])  # each unique: no cache hit

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(20)))
        wall = time.perf_counter() - t0
        stop.set()
        await sampler
        await asyncio.sleep(2.0)
        rss_after = proc.memory_info().rss
        fuzz: dict[str, int] = {}
        for body in FUZZ:
            r = await client.post(
                f"{url}/v1/audio/speech", content=body, headers={"Content-Type": "application/json"}
            )
            fuzz[str(r.status_code)] = fuzz.get(str(r.status_code), 0) + 1
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    ttfa = [r["ttfaS"] for r in results]
    return {
        "requests": len(results),
        "concurrency": 4,
        "inputChars": len(TEXT),
        "wallS": round(wall, 1),
        "audioSPerRequest": round(float(np.median([r["audioS"] for r in results])), 1),
        "rssMiB": {
            "ready": round(rss_ready / 2**20, 1),
            "peak": round(peak / 2**20, 1),
            "after": round(rss_after / 2**20, 1),
        },
        "clientTtfaS": {
            "median": round(float(np.median(ttfa)), 3),
            "p95": round(float(np.percentile(ttfa, 95)), 3),
            "max": round(max(ttfa), 3),
        },
        "clientFirstByteS": round(float(np.median([r["firstByteS"] for r in results])), 3),
        "fuzzStatuses": fuzz,
    }


def main() -> None:
    alone = engine_first_unit_s(1)
    contended = engine_first_unit_s(4)
    doc = {
        "experiment": "20 speech requests of 4,096 unpunctuated characters, 4 at a time, "
        "on voxperf serve --stt none",
        "machine": {"cores": os.cpu_count()},
        "engineFirstUnitS": {"alone": round(alone, 3), "fourAtOnce": round(contended, 3)},
        **asyncio.run(main_async()),
    }
    out = HERE / "results" / "serve-speech.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
