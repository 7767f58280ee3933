"""Paired A/B of two versions in one job: two long-lived workers, requests interleaved A B B A.

The base and the head each run in a worker process of their own (``voxperf bench-worker``, see
:mod:`voxperf.bench.worker`), started from any command: the current environment, another
checkout's virtualenv, or a ``git worktree`` of the base commit. Each worker loads its engines
once; then every round sends each request (pipeline × fixture × level) to both, the order
alternating between jobs and rounds (A B, B A, …) so drift and load bursts hit both sides alike.
The figure of merit is the per-request ratio head/base: what the two requests shared (load at that
moment, the fixture, the cache state) cancels out, which is why a paired comparison stays quiet on
a noisy CI runner where two separate runs do not.

Rounds continue for ``iterations``. With a time budget or a CI target they go on from there until
the answer is known, looking every :data:`LOOK_EVERY` rounds: the gate decides (every gated
metric is a regression, an improvement or shown unchanged), or every gated metric's 95 % CI is
narrower than ``target_ci`` (relative half-width), or the budget is spent ("inconclusive within
budget"). Looking repeatedly is a sequential test; simulated with the gate's own functions
(``benchmarks/gate_sequential.py``, 300 decisions a row), looks every 5 rounds from 20 to 80 kept
failures of a change exactly at the tolerance at 2-5 % (one look: 0.3-1.3 %), never failed an A/A
comparison, and raised the power against +10 % at a per-request spread of 8 % from 48 % to 100 %.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from voxperf import __version__
from voxperf.bench.catalog import catalogue_order, is_stage_metric
from voxperf.bench.instructions import callgrind_command
from voxperf.bench.runner import BenchConfig, EngineCache, Progress, prepare_fixtures
from voxperf.bench.schedule import round_jobs, rounds
from voxperf.bench.worker import PROTOCOL, config_to_wire
from voxperf.engines.registry import redact_spec
from voxperf.errors import UsageError, WorkerError
from voxperf.report.gate import (
    DETERMINISTIC,
    Change,
    GateConfig,
    GateDecision,
    decide,
    paired_change,
    paired_difference,
)
from voxperf.trace.metrics import word_errors

__all__ = [
    "AB_KEYS",
    "PairedRun",
    "Side",
    "gated_changes",
    "parse_overrides",
    "run_paired",
    "worktree_side",
]

AB_KEYS = ("stt", "tts", "vad", "rewrite", "encode", "fake_latency")
Group = tuple[str, str, str | None]  # lane, pipeline, level
LOOK_EVERY = 5  # rounds between looks at the decision once the minimum is measured


@dataclass(frozen=True, slots=True)
class Side:
    """How to start one version's worker, and what it changes in the configuration."""

    label: str  # "base" or "head"
    command: tuple[str, ...] = (sys.executable, "-m", "voxperf")  # ``bench-worker`` is appended
    env: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # BenchConfig fields replaced on this side

    def describe(self) -> str:
        cmd = " ".join(shlex.quote(c) for c in self.command)
        extra = "".join(f" {k}={v}" for k, v in self.env.items() if k == "PYTHONPATH")
        sets = "; ".join(f"{k}={redact_spec(str(v))}" for k, v in self.overrides.items())
        return cmd + (f" ({extra.strip()})" if extra else "") + (f" with {sets}" if sets else "")


def parse_overrides(text: str) -> dict[str, Any]:
    """``stt=SPEC;fake_latency=stt=66ms`` (or a TOML file with those keys) -> BenchConfig fields."""
    import tomllib

    from voxperf.bench.runner import parse_fake_latency

    path = Path(text)
    items: dict[str, str] = {}
    if text.endswith(".toml") or path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(
                f"cannot read overrides file {path}: {exc}", 'give key = "spec" lines, e.g. stt = "..."'
            ) from exc
        items = {str(k): str(v) for k, v in data.items()}
    else:
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(
                    f"bad override {part.strip()!r}", 'write role=spec;role=spec, e.g. "stt=pocketsphinx"'
                )
            items[key.strip().replace("-", "_")] = value.strip()
    unknown = sorted(set(items) - set(AB_KEYS))
    if unknown or not items:
        raise UsageError(
            f"overrides can set {', '.join(AB_KEYS)}; got {', '.join(unknown) or 'nothing'}",
            'e.g. "stt=faster-whisper:compute_type=float32" or "fake_latency=stt=66ms"',
        )
    out: dict[str, Any] = dict(items)
    if "fake_latency" in out:
        out["fake_latency"] = parse_fake_latency(items["fake_latency"])
    return out


def worktree_side(label: str, ref: str, repo: Path, root: Path | None = None) -> Side:
    """A side that runs ``ref``'s source (a ``git worktree``) with the current environment's packages.

    Dependencies must be compatible; when they are not, give that checkout's own environment with
    ``--base-cmd path/to/venv/bin/voxperf`` instead."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    sha = proc.stdout.strip()
    if proc.returncode != 0 or not sha:
        raise UsageError(f"{ref!r} is not a commit in {repo}", "give a branch, tag or SHA (e.g. origin/main)")
    where = ((root or repo / ".voxperf" / "worktrees") / sha[:12]).resolve()
    if not (where / "src" / "voxperf").is_dir():
        where.parent.mkdir(parents=True, exist_ok=True)
        added = subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", "--force", str(where), sha],
            capture_output=True,
            text=True,
            check=False,
        )
        if added.returncode != 0 or not (where / "src" / "voxperf").is_dir():
            raise UsageError(
                f"cannot check out {ref} ({sha[:12]}) as a worktree: {added.stderr.strip()[:200]}",
                "check the repository, or give --base-cmd with that version's voxperf",
            )
    return Side(label, (sys.executable, "-m", "voxperf"), env={"PYTHONPATH": str(where / "src")})


class _Worker:
    """One side's worker process: a line reader thread, requests with a timeout."""

    def __init__(self, side: Side, log: IO[str], *, prefix: list[str], env: dict[str, str]) -> None:
        self.side = side
        self.log = log
        argv = [*prefix, *side.command, "bench-worker"]
        full_env = {**os.environ, **side.env, **env}
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
                env=full_env,
                bufsize=1,
            )
        except OSError as exc:
            raise WorkerError(
                f"cannot start the {side.label} worker ({argv[len(prefix)]}): {exc.strerror or exc}",
                f"check --{side.label}-cmd",
            ) from exc
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def call(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise WorkerError(
                    f"the {self.side.label} worker did not answer {msg.get('type')} within {timeout:.0f} s",
                    "see its log; raise --request-timeout for very slow engines",
                ) from None
            if line is None:
                raise self._died()
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue  # not protocol: a stray line (old worker printing to stdout)
            if isinstance(reply, dict):
                return reply

    def _died(self) -> WorkerError:
        try:
            code: int | None = self.proc.wait(timeout=5)  # its stdout closed: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        self.log.flush()
        tail = ""
        with contextlib.suppress(OSError):
            tail = Path(self.log.name).read_text(encoding="utf-8", errors="replace").strip()[-600:]
        if "No such command 'bench-worker'" in tail or "No such command" in tail:
            return WorkerError(
                f"the {self.side.label} voxperf has no bench worker (it predates paired runs)",
                "compare against a stored baseline instead (voxperf gate --base-commit)",
            )
        last = tail.splitlines()[-1] if tail else "no output"
        return WorkerError(
            f"the {self.side.label} worker exited (code {code}): {last}", f"log: {self.log.name}"
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call({"type": "bye"}, timeout=10)
        with contextlib.suppress(Exception):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class PairedRun:
    """Everything a paired A/B run measured and decided."""

    config: BenchConfig
    base: Side
    head: Side
    pairs: dict[Group, dict[str, list[tuple[float, float]]]]
    texts: dict[tuple[str, str, str], dict[str, list[str]]]  # (lane, level, fixture) -> side -> texts
    references: dict[str, str]  # fixture -> transcript
    workers: dict[str, dict[str, Any]]  # side -> hello + engines + fixtures, per lane
    rounds: dict[str, int]
    stopped_by: str  # "iterations" | "decided" | "target" | "budget" | "interrupted" | "worker failed"
    elapsed_s: float
    failures: list[dict[str, Any]]
    decision: GateDecision
    rows: list[Change]  # every metric, for information (not gated)
    attribution: dict[str, dict[str, float]]
    target_ci: float | None = None
    max_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "voxperf-ab",
            "version": 2,
            "protocol": PROTOCOL,
            "voxperf": __version__,
            "config": self.config.to_dict(),
            "base": {"command": self.base.describe(), **self.workers.get("base", {})},
            "head": {"command": self.head.describe(), **self.workers.get("head", {})},
            "rounds": self.rounds,
            "stoppedBy": self.stopped_by,
            "timeToVerdictS": self.elapsed_s,
            "targetCi": self.target_ci,
            "maxTimeS": self.max_time_s,
            "decision": self.decision.to_dict(),
            "rows": [c.to_dict() for c in self.rows],
            "attributionMs": self.attribution,
            "failures": self.failures,
            "pairs": {
                "/".join(str(g) for g in group if g): {m: [list(p) for p in v] for m, v in metrics.items()}
                for group, metrics in self.pairs.items()
            },
        }


@contextlib.contextmanager
def _shared_fixtures(config: BenchConfig) -> Iterator[BenchConfig]:
    """Both sides measure the same audio files: built-in fixtures are made (or found in the cache)
    here, once, and handed to both workers as a manifest of links named after the variants."""
    if config.fixtures is not None:
        yield config
        return
    fixtures = prepare_fixtures(config, EngineCache(), [])
    with tempfile.TemporaryDirectory(prefix="voxperf-ab-fixtures-") as tmp:
        lines = []
        for f in fixtures:
            link = Path(tmp) / f"{f.name}{f.path.suffix}"
            link.symlink_to(f.path.resolve())
            lines.append(json.dumps({"audio": link.name, "text": f.text}))
        manifest = Path(tmp) / "fixtures.jsonl"
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield replace(config, fixtures=manifest)


def gated_changes(
    pairs: dict[Group, dict[str, list[tuple[float, float]]]],
    texts: dict[tuple[str, str, str], dict[str, list[str]]],
    references: dict[str, str],
    gate: GateConfig,
    normalizer: str,
    *,
    metrics: tuple[str, ...] | None = None,
) -> list[Change]:
    """Paired changes of the gated metrics (or of ``metrics``), one per group that measured them."""
    wanted = gate.metrics if metrics is None else metrics
    out: list[Change] = []
    for group in sorted(pairs, key=str):
        for metric in wanted:
            values = [(a, b) for a, b in pairs[group].get(metric, []) if a > 0 and b > 0]
            if len(values) < (1 if metric in DETERMINISTIC else 3):  # a count needs no repeats
                continue
            a, b = zip(*values, strict=True)
            out.append(paired_change(a, b, metric=metric, tolerance=gate.tolerance_for(metric), where=group))
    if "wer" in wanted:
        out.extend(_wer_changes(texts, references, gate, normalizer))
    return out


def _wer_changes(
    texts: dict[tuple[str, str, str], dict[str, list[str]]],
    references: dict[str, str],
    gate: GateConfig,
    normalizer: str,
) -> list[Change]:
    by_level: dict[tuple[str, str], list[str]] = {}
    for lane, level, fixture in texts:
        sides = texts[(lane, level, fixture)]
        if sides.get("base") and sides.get("head") and references.get(fixture):
            by_level.setdefault((lane, level), []).append(fixture)
    out = []
    for (lane, level), names in sorted(by_level.items()):
        base_e, head_e, words = [], [], []
        exact = True
        for n in sorted(names):
            said = texts[(lane, level, n)]
            ref = references[n]
            base_e.append(word_errors(ref, said["base"][0], normalizer).edits)
            head_e.append(word_errors(ref, said["head"][0], normalizer).edits)
            words.append(word_errors(ref, "", normalizer).reference_words)
            exact = exact and len(set(said["base"])) == 1 and len(set(said["head"])) == 1
        if sum(words) == 0:
            continue
        out.append(
            paired_difference(
                base_e,
                head_e,
                words,
                tolerance=gate.tolerance_for("wer"),
                where=(lane, "dictation", level),
                exact=exact,
            )
        )
    return out


def _attribution(pairs: dict[Group, dict[str, list[tuple[float, float]]]]) -> dict[str, dict[str, float]]:
    """Mean paired head − base per stage and overhead, per group: they add up to the total's."""
    out: dict[str, dict[str, float]] = {}
    for group, metrics in sorted(pairs.items(), key=str):
        names = [m for m in metrics if is_stage_metric(m)] + ["overhead_ms", "total_ms"]
        deltas = {
            m.removesuffix("_ms"): float(np.mean([b - a for a, b in metrics[m]]))
            for m in names
            if metrics.get(m)
        }
        if deltas:
            out["/".join(str(g) for g in group if g)] = deltas
    return out


def run_paired(
    config: BenchConfig,
    base: Side,
    head: Side,
    *,
    gate: GateConfig | None = None,
    target_ci: float | None = None,
    max_time_s: float | None = None,
    progress: Progress | None = None,
    log_dir: Path | None = None,
    request_timeout_s: float = 900.0,
    clock: Callable[[], float] = time.monotonic,
) -> PairedRun:
    """Run base and head interleaved per request; decide on the gated metrics (see module docstring)."""
    gate = gate or GateConfig()
    config.validate()
    for side in (base, head):
        replace(config, **side.overrides).validate()
    if config.instrument == "instructions" and target_ci is not None:
        target_ci = None  # counts are exact: one round decides
    started = clock()
    pairs: dict[Group, dict[str, list[tuple[float, float]]]] = {}
    texts: dict[tuple[str, str, str], dict[str, list[str]]] = {}
    references: dict[str, str] = {}
    workers: dict[str, dict[str, Any]] = {"base": {"lanes": {}}, "head": {"lanes": {}}}
    failures: list[dict[str, Any]] = []
    rounds: dict[str, int] = {}
    stopped_by = "iterations"
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="voxperf-ab-"))
    logs.mkdir(parents=True, exist_ok=True)
    with _shared_fixtures(config) as shared:
        for index, lane in enumerate(config.lanes):
            deadline = None
            if max_time_s:  # what is left of the budget, shared evenly by the lanes still to run
                deadline = clock() + (started + max_time_s - clock()) / (len(config.lanes) - index)
            try:
                lane_stop = _run_lane(
                    lane,
                    shared,
                    (base, head),
                    gate=gate,
                    target_ci=target_ci,
                    deadline=deadline,
                    progress=progress,
                    logs=logs,
                    timeout=request_timeout_s,
                    clock=clock,
                    out=(pairs, texts, references, workers, failures, rounds),
                )
            except KeyboardInterrupt:  # Ctrl-C: decide on the pairs measured so far, say so
                stopped_by = "interrupted"
                break
            except WorkerError as exc:
                if not any(g[0] == lane for g in pairs):
                    raise  # nothing measured yet: the error is the whole answer
                failures.append(
                    {"lane": lane, "side": "worker", "pipeline": "-", "fixture": "-", "message": exc.message}
                )
                stopped_by = "worker failed"
                break
            if lane_stop != "iterations":
                stopped_by = lane_stop
    elapsed = clock() - started
    changes = gated_changes(pairs, texts, references, gate, config.normalizer)
    if not changes:
        decision = GateDecision("nothing compared", [], ["no gated metric was measured on both sides"])
    else:
        decision = decide(changes, alpha=gate.alpha)
    info_metrics = tuple(catalogue_order({m for v in pairs.values() for m in v}))
    rows = gated_changes(pairs, texts, references, gate, config.normalizer, metrics=(*info_metrics, "wer"))
    return PairedRun(
        config=config,
        base=base,
        head=head,
        pairs=pairs,
        texts=texts,
        references=references,
        workers=workers,
        rounds=rounds,
        stopped_by=stopped_by,
        elapsed_s=elapsed,
        failures=failures,
        decision=decision,
        rows=rows,
        attribution=_attribution(pairs),
        target_ci=target_ci,
        max_time_s=max_time_s,
    )


def _run_lane(
    lane: str,
    config: BenchConfig,
    sides: tuple[Side, Side],
    *,
    gate: GateConfig,
    target_ci: float | None,
    deadline: float | None,
    progress: Progress | None,
    logs: Path,
    timeout: float,
    clock: Callable[[], float],
    out: tuple[Any, ...],
) -> str:
    pairs, texts, references, workers, failures, rounds_done = out
    counting = config.instrument == "instructions"
    started: dict[str, _Worker] = {}
    try:
        ready: dict[str, dict[str, Any]] = {}
        for side in sides:
            dump = logs / f"{lane}-{side.label}-callgrind"
            prefix: list[str] = []
            env: dict[str, str] = {}
            if counting:
                dump.mkdir(parents=True, exist_ok=True)
                prefix, env = callgrind_command(dump)
            log = (logs / f"{lane}-{side.label}.log").open("w", encoding="utf-8")
            worker = _Worker(side, log, prefix=prefix, env=env)
            started[side.label] = worker
            hello = worker.call({"type": "hello", "protocols": [PROTOCOL]}, timeout=timeout)
            if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL:
                raise WorkerError(
                    f"the {side.label} worker speaks protocol(s) {hello.get('protocols')}, "
                    f"this voxperf speaks {PROTOCOL}",
                    "use matching voxperf versions, or compare against a stored baseline",
                )
            side_config = replace(config, **side.overrides)
            reply = worker.call(
                {
                    "type": "setup",
                    "lane": lane,
                    "config": config_to_wire(side_config),
                    "instrument": config.instrument,
                    "dumpDir": str(dump),
                },
                timeout=timeout,
            )
            if reply.get("type") != "ready":
                raise WorkerError(
                    f"the {side.label} worker could not set up the {lane} lane: {reply.get('message')}",
                    reply.get("hint") or "check the engine specs",
                )
            ready[side.label] = reply
            workers[side.label]["voxperf"] = hello.get("voxperf")
            workers[side.label]["lanes"][lane] = {
                "engines": reply.get("engines", []),
                "machine": reply.get("machine", {}),
            }
        fixtures = ready["head"]["fixtures"]
        by_sha = {f["sha256"]: f["name"] for f in ready["base"]["fixtures"]}
        missing = [f["name"] for f in fixtures if f["sha256"] not in by_sha]
        if missing:
            raise WorkerError(
                f"base and head did not load the same audio for {', '.join(missing)}",
                "give both the same --fixtures",
            )
        for f in fixtures:
            if f.get("text"):
                references[f["name"]] = f["text"]
        base_name = {f["name"]: by_sha[f["sha256"]] for f in fixtures}
        jobs = round_jobs(
            config.pipelines, config.levels, [(f["name"], bool(f.get("text"))) for f in fixtures]
        )
        failed: set[tuple[str, str]] = set()
        per_round = 2 * len(jobs)
        if progress:
            progress(f"{lane} lane · paired", 0, per_round * (config.warmup + config.iterations))
        stop = ["iterations"]

        def more(measured: int) -> bool:
            """Whether another measured round runs: the fixed count, then the looks of the sequential rule."""
            rounds_done[lane] = measured
            if measured == 0:
                return True
            if counting:
                return False  # counts repeat exactly: one round decides
            if deadline is not None and clock() >= deadline:
                stop[0] = "budget"
                return False
            if measured < config.iterations:
                return True
            if target_ci is None and deadline is None:
                return False  # a fixed number of rounds
            if (measured - config.iterations) % LOOK_EVERY:
                return True
            lane_pairs = {g: v for g, v in pairs.items() if g[0] == lane}
            changes = gated_changes(lane_pairs, texts, references, gate, config.normalizer)
            if not changes:
                return True
            if decide(changes, alpha=gate.alpha).status in ("pass", "fail"):
                stop[0] = "decided"
                return False
            if target_ci is not None and all(c.half_width <= target_ci for c in changes if c.kind == "ratio"):
                stop[0] = "target"
                return False
            return True

        for rnd in rounds(warmup=config.warmup, iterations=config.iterations, more=more):
            r, warm = rnd.index, rnd.warm
            for j, (pipeline, fixture, level) in enumerate(jobs):
                if (pipeline, fixture) in failed:
                    continue
                order = sides if (r + j) % 2 == 0 else sides[::-1]
                got: dict[str, dict[str, Any]] = {}
                for side in order:
                    name = fixture if side.label == "head" else base_name[fixture]
                    reply = started[side.label].call(
                        {"type": "run", "id": r, "pipeline": pipeline, "fixture": name, "level": level},
                        timeout=timeout,
                    )
                    if progress:
                        progress(f"{lane} lane · {pipeline} · {fixture} · {side.label}", 1)
                    if reply.get("type") != "result":
                        failed.add((pipeline, fixture))
                        failures.append(
                            {
                                "lane": lane,
                                "side": side.label,
                                "pipeline": pipeline,
                                "fixture": fixture,
                                "message": str(reply.get("message")),
                            }
                        )
                        break
                    got[side.label] = reply
                if warm or len(got) < 2:
                    continue
                group = (lane, pipeline, level)
                slot = pairs.setdefault(group, {})
                a, b = got["base"]["metrics"], got["head"]["metrics"]
                for metric in catalogue_order(set(a) & set(b)):
                    if a.get(metric) is not None and b.get(metric) is not None:
                        slot.setdefault(metric, []).append((float(a[metric]), float(b[metric])))
                if pipeline == "dictation" and lane == "provider" and level is not None:
                    said = texts.setdefault((lane, level, fixture), {"base": [], "head": []})
                    for label in ("base", "head"):
                        if got[label].get("text") is not None:
                            said[label].append(str(got[label]["text"]))
        return stop[0]
    finally:
        for worker in started.values():
            worker.close()
            worker.log.close()
