"""A long-lived bench worker that runs one request at a time for an orchestrator (``voxperf ab``).

``voxperf bench-worker`` speaks a small, versioned protocol of JSON lines over stdio, so the base
and head of a pull request (two checkouts, two environments, two versions of voxperf) can be
driven by one orchestrator and interleaved request by request. Messages (one JSON object a line;
``type`` names the message):

* ``hello`` → ``hello`` with ``protocol`` (the version answered), ``protocols`` (all versions this
  worker speaks), ``voxperf`` (its version);
* ``setup`` {``config``, ``lane``, ``instrument``, ``dumpDir``} → ``ready`` {``fixtures``,
  ``engines``, ``machine``}: engines are loaded and warmed once;
* ``run`` {``id``, ``pipeline``, ``fixture``, ``level``} → ``result`` {``id``, ``metrics``,
  ``text``} or ``error`` {``id``, ``error``, ``message``, ``hint``};
* ``bye`` → the worker exits 0.

The protocol owns the worker's stdout: anything an engine prints goes to stderr instead.
Version 1 is the only version so far; a later orchestrator keeps speaking it to older workers.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from voxperf import __version__
from voxperf.bench.instructions import DUMP_NAME, dumped_count, mark
from voxperf.bench.runner import (
    BenchConfig,
    EngineCache,
    dictation_request,
    lane_engines,
    lane_pipelines,
    on_request_thread,
    prepare_fixtures,
    run_requests_inline,
    speech_request,
)
from voxperf.engines.alloc import fix_malloc_thresholds
from voxperf.errors import UsageError, VoxperfError

__all__ = ["PROTOCOL", "PROTOCOLS", "config_from_wire", "config_to_wire", "serve_worker"]

PROTOCOL = 1
PROTOCOLS = (1,)


def config_to_wire(config: BenchConfig) -> dict[str, Any]:
    """A bench configuration as plain JSON (engine specs unredacted: the wire stays on this host)."""
    return {
        "lanes": list(config.lanes),
        "pipelines": list(config.pipelines),
        "fixtures": str(config.fixtures) if config.fixtures else None,
        "variants": list(config.variants),
        "levels": list(config.levels),
        "stt": config.stt,
        "tts": config.tts,
        "vad": config.vad,
        "rewrite": config.rewrite,
        "fake_latency": dict(config.fake_latency),
        "encode": config.encode,
        "paste": config.paste,
        "audio_sink": config.audio_sink,
        "cache_dir": str(config.cache_dir) if config.cache_dir else None,
        "normalizer": config.normalizer,
    }


def config_from_wire(data: dict[str, Any]) -> BenchConfig:
    """The inverse of :func:`config_to_wire`; unknown keys are ignored (a newer orchestrator)."""
    kw: dict[str, Any] = {}
    for key in ("lanes", "pipelines", "variants", "levels"):
        if key in data:
            kw[key] = tuple(data[key])
    for key in ("stt", "tts", "vad", "rewrite", "encode", "paste", "audio_sink", "normalizer"):
        if key in data:
            kw[key] = str(data[key])
    for key in ("fixtures", "cache_dir"):
        if data.get(key):
            kw[key] = Path(data[key])
    if "fake_latency" in data:
        kw["fake_latency"] = {str(k): float(v) for k, v in data["fake_latency"].items()}
    return BenchConfig(**kw)


class _Session:
    """The state between messages: one lane's pipelines and fixtures."""

    def __init__(self) -> None:
        self.engines = EngineCache()
        self.lane = "provider"
        self.dictation: Any = None
        self.speech: Any = None
        self.fixtures: dict[str, Any] = {}
        self.payloads: dict[str, bytes] = {}
        self.dump_dir: Path | None = None
        self.requests = 0

    def setup(self, msg: dict[str, Any]) -> dict[str, Any]:
        config = config_from_wire(msg.get("config", {}))
        self.lane = str(msg.get("lane", "provider"))
        config.lanes = (self.lane,)
        config.validate()
        if msg.get("instrument") == "instructions":
            self.dump_dir = Path(str(msg["dumpDir"]))
            run_requests_inline()
        fixtures = prepare_fixtures(config, self.engines, [])
        made, records = on_request_thread(lambda: lane_engines(self.lane, config, self.engines))
        self.dictation, self.speech = lane_pipelines(made, config)
        self.fixtures = {f.name: f for f in fixtures}
        self.payloads = {f.name: f.path.read_bytes() for f in fixtures}
        from voxperf.bench.environment import machine_info

        return {
            "type": "ready",
            "fixtures": [
                {
                    "name": f.name,
                    "path": str(f.path),
                    "sha256": f.sha256,
                    "durationS": f.duration_s,
                    "variant": f.variant,
                    "text": f.text,
                }
                for f in fixtures
            ],
            "engines": [r.model_dump() for r in records],
            "machine": machine_info(),
        }

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:
        name = str(msg.get("fixture"))
        fx = self.fixtures.get(name)
        if fx is None:
            raise UsageError(f"unknown fixture {name!r}", "send a name from the ready message")
        pipeline = msg.get("pipeline")
        if pipeline not in ("dictation", "speech"):
            raise UsageError(f"unknown pipeline {pipeline!r}", "dictation or speech")
        counting = self.dump_dir is not None
        if counting:
            gc.collect()  # every request starts from the same heap state
            mark()
        text = None
        if pipeline == "dictation":
            if self.dictation is None:
                raise UsageError("this worker was set up without the dictation pipeline", "send setup")
            level = str(msg.get("level") or "raw")
            rec, res = dictation_request(self.dictation, self.payloads[name], fx, level, 0, False, self.lane)
            text = res.text
        else:
            if self.speech is None or fx.text is None:
                raise UsageError("no speech pipeline or no text for this fixture", "send setup")
            rec, _ = speech_request(self.speech, fx, 0, False, self.lane)
        metrics = {k: v for k, v in rec.metrics.items() if v is None or math.isfinite(v)}
        if counting:
            mark()
            assert self.dump_dir is not None
            self.requests += 1
            # dump 1 is start-up; request k (from 1) is dump 2k, between its two marks
            count = dumped_count(self.dump_dir / f"{DUMP_NAME}.{2 * self.requests}")
            metrics = {"instructions": float(count)}
        return {"type": "result", "id": msg.get("id"), "metrics": metrics, "text": text}


def _handle(session: _Session, msg: dict[str, Any]) -> dict[str, Any]:
    kind = msg.get("type")
    if kind == "hello":
        return {
            "type": "hello",
            "protocol": PROTOCOL if PROTOCOL in msg.get("protocols", [PROTOCOL]) else None,
            "protocols": list(PROTOCOLS),
            "voxperf": __version__,
            "pid": os.getpid(),
        }
    if kind == "setup":
        return session.setup(msg)
    if kind == "run":
        return session.run(msg)
    raise UsageError(f"unknown message type {kind!r}", "send hello, setup, run or bye")


def serve_worker(
    stdin: IO[str] | None = None, stdout: IO[str] | None = None, *, clock: Callable[[], float] = time.time
) -> int:
    """Answer messages until ``bye`` or end of input; returns the exit status."""
    fix_malloc_thresholds()  # as bench lanes and voxperf serve: see voxperf.engines.alloc
    if stdout is None:  # the protocol keeps the real stdout; stray prints (C or Python) go to stderr
        proto_fd = os.dup(1)
        os.dup2(2, 1)
        stdout = os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8")
        sys.stdout = sys.stderr
    source = stdin if stdin is not None else sys.stdin
    if stdin is None:  # Ctrl-C reaches the whole process group: the orchestrator decides, then says bye
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    session = _Session()

    def send(obj: dict[str, Any]) -> None:
        assert stdout is not None
        stdout.write(json.dumps(obj, allow_nan=False, separators=(",", ":")) + "\n")
        stdout.flush()

    for line in source:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a message is a JSON object")
        except ValueError as exc:
            send({"type": "error", "id": None, "error": "ProtocolError", "message": f"bad message: {exc}"})
            continue
        if msg.get("type") == "bye":
            send({"type": "bye", "at": clock()})
            return 0
        try:
            send(_handle(session, msg))
        except Exception as exc:  # one failed request is reported; the worker stays up
            send(
                {
                    "type": "error",
                    "id": msg.get("id"),
                    "error": type(exc).__name__,
                    "message": exc.message if isinstance(exc, VoxperfError) else str(exc),
                    "hint": exc.hint if isinstance(exc, VoxperfError) else None,
                }
            )
    return 0
