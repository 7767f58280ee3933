"""The Locust side of ``voxperf load``: user classes and event hooks, run by ``locust -f`` in the
master and in every worker (started by ``voxperf load``, or by hand to join a remote master).

* :class:`OpenModelUser` (one per generator process) runs its share of the open-model schedule:
  it sleeps until each request's intended start and hands the request to a bounded pool of
  greenlets; when every slot is busy the request starts late (or is dropped, k6-style), and the
  sample says so.
* :class:`ClosedModelUser` is the classic Locust user: one request at a time, ``concurrency`` of them.

Requests go through Locust's ``FastHttpSession``, so Locust's own statistics, CSV and web UI see
them. Raw samples travel to the master in batches (``voxperf_samples`` messages) and are appended
to the plan's samples file as they arrive, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import gevent
from gevent.pool import Pool
from locust import FastHttpUser, events, task
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from voxperf.load.arrivals import share
from voxperf.load.plan import LoadPlan
from voxperf.load.sample import LoadSample
from voxperf.load.scenarios import SCENARIOS

PLAN = LoadPlan.from_env()
_SEND_EVERY_S = 0.5
SPIN_NS = 1_500_000  # the last 1.5 ms before an intended start are spent yielding, not sleeping
_state: dict[str, Any] = {"t0_epoch": None, "done": set(), "samples": 0}
_outbox: list[dict[str, Any]] = []
_lock = threading.Lock()


def _write(samples: list[dict[str, Any]]) -> None:
    """Append raw samples to the plan's samples file (master or single process)."""
    with _lock, open(PLAN.samples_path, "a", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps(s, separators=(",", ":")) + "\n")
        _state["samples"] += len(samples)


def _flush(environment: Any) -> None:
    with _lock:
        batch = _outbox[:]
        _outbox.clear()
    if not batch:
        return
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message("voxperf_samples", {"samples": batch})
    else:
        _write(batch)


def _record(environment: Any, sample: LoadSample) -> None:
    with _lock:
        _outbox.append(sample.to_dict())


def _sender(environment: Any) -> None:
    while True:
        gevent.sleep(_SEND_EVERY_S)
        _flush(environment)


def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message("voxperf_samples", lambda msg, **kw: _write(msg.data["samples"]))
        runner.register_message(
            "voxperf_done", lambda msg, **kw: _generator_done(environment, msg.data["index"])
        )
    if isinstance(runner, WorkerRunner):
        runner.register_message(
            "voxperf_t0", lambda msg, **kw: _state.__setitem__("t0_epoch", msg.data["t0"])
        )
    if not isinstance(runner, MasterRunner):
        gevent.spawn(_sender, environment)


def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    t0 = time.time() + 0.5  # every generator starts the schedule at the same instant
    if isinstance(runner, MasterRunner):
        runner.send_message("voxperf_t0", {"t0": t0})
    elif isinstance(runner, LocalRunner):
        _state["t0_epoch"] = t0


events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]


def _generator_done(environment: Any, index: int) -> None:
    _state["done"].add(index)
    if len(_state["done"]) >= PLAN.generators:  # the whole schedule has run: stop now, not at --run-time
        gevent.spawn_later(0.2, environment.runner.quit)


def _generator(environment: Any) -> tuple[int, int]:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return runner.worker_index, PLAN.generators
    return 0, 1


class _VoxperfUser(FastHttpUser):
    abstract = True
    host = PLAN.target
    concurrency = PLAN.max_in_flight  # connections of this user's pool
    network_timeout = PLAN.timeout_s
    connection_timeout = min(PLAN.timeout_s, 10.0)
    insecure = False

    def on_start(self) -> None:
        self.scenario = SCENARIOS[PLAN.scenario](PLAN.options, PLAN.fixture_refs())
        while _state["t0_epoch"] is None:
            gevent.sleep(0.005)
        # the shared epoch start mapped onto this process's monotonic clock
        self.t0_ns = time.perf_counter_ns() + int((_state["t0_epoch"] - time.time()) * 1e9)

    def clock(self) -> int:
        return time.perf_counter_ns() - self.t0_ns

    def _one(self, sample: LoadSample) -> None:
        sample.actual_ns = self.clock()
        try:
            self.scenario.run(self.client, sample, self.clock)
        except Exception as exc:  # a scenario bug or a broken connection: a failed request, not a dead user
            sample.error = sample.error or (
                "timeout" if "timeout" in type(exc).__name__.lower() else "connect"
            )
            sample.detail = sample.detail or f"{type(exc).__name__}: {str(exc)[:120]}"
            sample.last_byte_ns = sample.last_byte_ns or self.clock()
        _record(self.environment, sample)


class OpenModelUser(_VoxperfUser):
    """Runs this generator's share of the arrival schedule (one such user per generator)."""

    @task
    def run_schedule(self) -> None:
        index, count = _generator(self.environment)
        arrivals = PLAN.schedule_arrivals()
        assert arrivals is not None
        whole = arrivals.schedule()
        if PLAN.max_requests is not None:
            whole = whole[: PLAN.max_requests]
        mine = share(whole, index, count)
        seqs = range(index, len(whole), count)
        pool = Pool(PLAN.max_in_flight)
        for seq, offset in zip(seqs, mine, strict=True):
            intended = int(offset * 1e9)
            # the event loop's timers are coarse (about 1 ms): sleep until just before the
            # intended start, then yield in a tight loop (in-flight requests keep running)
            wait = (intended - SPIN_NS - self.clock()) / 1e9
            if wait > 0:
                gevent.sleep(wait)
            while self.clock() < intended:
                gevent.sleep(0)
            sample = LoadSample(PLAN.scenario, seq, index, intended)
            if pool.full():
                if PLAN.drop_when_busy:
                    sample.error = "dropped"
                    _record(self.environment, sample)
                    continue
                pool.wait_available()  # starts late: the lag is in the sample
            pool.spawn(self._one, sample)
        pool.join(timeout=PLAN.timeout_s + 5)
        pool.kill()
        _flush(self.environment)
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message("voxperf_done", {"index": index})
        else:
            _generator_done(self.environment, index)
        raise StopUser()


class ClosedModelUser(_VoxperfUser):
    """One request at a time, back to back (closed model: ``concurrency`` of these users)."""

    _seq = 0

    def on_start(self) -> None:
        super().on_start()
        index, _ = _generator(self.environment)
        self.generator = index

    @task
    def one(self) -> None:
        if self.clock() >= PLAN.duration_s * 1e9:
            raise StopUser()
        ClosedModelUser._seq += 1
        seq = ClosedModelUser._seq * 1000 + self.generator  # unique across generators
        if PLAN.max_requests is not None and ClosedModelUser._seq > PLAN.max_requests:
            raise StopUser()
        now = self.clock()
        self._one(LoadSample(PLAN.scenario, seq, self.generator, now))
