"""A load run's plan: everything every generator process needs, as one JSON document.

The plan is written by ``voxperf load`` before any process starts and read by the Locust master
and each worker (``VOXPERF_LOAD_PLAN`` names the file), so all of them run the same schedule: the
open-model arrivals are drawn once from the seed, and generator ``i`` of ``n`` runs every
``n``-th arrival from ``i`` (the aggregate rate is exact).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voxperf.load.arrivals import Arrivals
from voxperf.load.scenarios import FixtureRef

__all__ = ["PLAN_ENV", "LoadPlan"]

PLAN_ENV = "VOXPERF_LOAD_PLAN"


@dataclass
class LoadPlan:
    """What to run: a scenario against a target, open-model (``arrivals``) or closed-model
    (``concurrency`` users looping), bounded in time and count."""

    target: str  # base URL, e.g. http://127.0.0.1:8000
    scenario: str
    options: dict[str, Any] = field(default_factory=dict)
    arrivals: dict[str, Any] | None = None  # Arrivals fields (open model)
    concurrency: int | None = None  # closed model: this many users, each one request at a time
    duration_s: float = 10.0
    max_requests: int | None = None
    generators: int = 1  # processes the load is split over
    max_in_flight: int = 256  # per generator: more waiting requests start late (or are dropped)
    drop_when_busy: bool = False  # k6-like: a request with no free slot at its time is dropped
    timeout_s: float = 60.0  # per request
    fixtures: list[dict[str, Any]] = field(default_factory=list)
    samples_path: str = ""  # where the master (or the single process) writes raw samples (NDJSON)

    def schedule_arrivals(self) -> Arrivals | None:
        return None if self.arrivals is None else Arrivals(**self.arrivals)

    def fixture_refs(self) -> list[FixtureRef]:
        return [
            FixtureRef(
                name=f["name"],
                audio=base64.b64decode(f["audio"]) if f.get("audio") else None,
                filename=f["filename"],
                duration_s=f.get("duration_s"),
                text=f.get("text"),
            )
            for f in self.fixtures
        ]

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LoadPlan:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_env(cls) -> LoadPlan:
        path = os.environ.get(PLAN_ENV)
        if not path:
            raise RuntimeError(f"{PLAN_ENV} is not set: run this locustfile through `voxperf load`")
        return cls.load(path)
