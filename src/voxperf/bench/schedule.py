"""The schedule of a benchmark: which requests make up a round, and how many rounds run.

One definition shared by ``voxperf bench`` (each lane's requests in its own process), ``voxperf
ab`` and the paired gate (each request sent to base and head in turn): a round is every fixture ×
processing level through the dictation pipeline, then every fixture with a transcript through
the speech pipeline; warm-up rounds come first and are not measured; measured rounds continue
for ``iterations``, or while a stopping rule says so (a CI target, a time budget, a decision).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Job", "Round", "round_jobs", "rounds"]

Job = tuple[str, str, str | None]
"""One request of a round: (pipeline, fixture name, processing level or None for speech)."""


@dataclass(frozen=True, slots=True)
class Round:
    """One pass over the round's jobs: ``index`` counts warm-up rounds too; ``measured`` is how many
    measured rounds came before this one."""

    index: int
    warm: bool
    measured: int
    phase: str  # "warm-up" or "iteration k/n", for progress messages


def round_jobs(
    pipelines: Sequence[str], levels: Sequence[str], fixtures: Iterable[tuple[str, bool]]
) -> list[Job]:
    """The requests of one round, in order, for ``fixtures`` as (name, has a transcript)."""
    fixtures = list(fixtures)
    jobs: list[Job] = []
    if "dictation" in pipelines:
        jobs += [("dictation", name, level) for name, _ in fixtures for level in levels]
    if "speech" in pipelines:
        jobs += [("speech", name, None) for name, has_text in fixtures if has_text]  # text to speak
    return jobs


def rounds(*, warmup: int, iterations: int, more: Callable[[int], bool] | None = None) -> Iterator[Round]:
    """``warmup`` warm-up rounds, then measured rounds: ``iterations`` of them, or with ``more`` for
    as long as ``more(measured rounds so far)`` is true (it decides whether the next one runs)."""
    index = 0
    while True:
        measured = max(0, index - warmup)
        warm = index < warmup
        if not warm and not (more(measured) if more is not None else measured < iterations):
            return
        yield Round(index, warm, measured, "warm-up" if warm else f"iteration {measured + 1}/{iterations}")
        index += 1
