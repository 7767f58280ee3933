"""Every derived metric, defined once. Each docstring says where its clock starts and stops.

Reports, the service and telemetry import these; nobody re-derives them. Units are in the names
(``_ns``, ``_ms``, ``_s``); ratios are plain floats (1.0 = 100 %).
"""

from __future__ import annotations

import re
import unicodedata

from voxperf.trace.core import NO_PARENT, Trace

__all__ = [
    "NS_PER_MS",
    "NS_PER_S",
    "normalize_transcript",
    "overhead_ns",
    "rtfx",
    "stage_ns",
    "stage_totals_ns",
    "streaming_efficiency",
    "total_ns",
    "total_stage_ns",
    "ttfa_ns",
    "wer",
]

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def stage_ns(trace: Trace, stage: str) -> int:
    """Time spent in one stage: the sum of the durations of every span with that name.

    Clock: each span starts when its ``with`` block is entered and stops when it exits. A stage
    that runs several times in one request (TTS ``synthesize`` once per chunk) is summed.
    """
    return sum(s.end_ns - s.start_ns for s in trace.spans if s.name == stage)


def stage_totals_ns(trace: Trace) -> dict[str, int]:
    """:func:`stage_ns` for every stage present, in first-seen order."""
    out: dict[str, int] = {}
    for s in trace.spans:
        out[s.name] = out.get(s.name, 0) + (s.end_ns - s.start_ns)
    return out


def total_ns(trace: Trace) -> int:
    """Seed 000's ``total_ms`` (in ns): request start → request end, wall clock.

    Starts when the :class:`Trace` is created (request start) and stops at :meth:`Trace.finish`.
    """
    if not trace.finished:
        raise ValueError("total_ns needs a finished trace (call trace.finish())")
    return trace.end_ns - trace.start_ns


def total_stage_ns(trace: Trace) -> int:
    """Seed 000's ``total_stage_ms`` (in ns): the sum of the top-level stage spans.

    Nested spans are not added again. ``total_ns - total_stage_ns`` is time spent between stages
    (orchestration overhead, see :func:`overhead_ns`).
    """
    return sum(s.end_ns - s.start_ns for s in trace.spans if s.parent == NO_PARENT)


def overhead_ns(trace: Trace) -> int:
    """Orchestration overhead: total (request start → end) minus the sum of top-level stages."""
    return total_ns(trace) - total_stage_ns(trace)


def ttfa_ns(request_start_ns: int, first_audible_delivered_ns: int) -> int:
    """Time to first audio: request start → first non-silent sample handed to the sink.

    Starts at request start (the client's ``REQUEST_START``, before any text processing), not at
    chunk processing start and not at response headers (seed 004's bug). Stops when the chunk that
    holds the first non-silent sample has been delivered to the sink; leading silence in the audio
    therefore counts, as a listener would hear it.
    """
    if first_audible_delivered_ns < request_start_ns:
        raise ValueError("first audio cannot be delivered before the request started")
    return first_audible_delivered_ns - request_start_ns


def rtfx(audio_s: float, processing_s: float) -> float:
    """Inverse real-time factor: seconds of audio processed per second of processing.

    ``audio_s`` is the duration of the audio in (STT) or out (TTS); ``processing_s`` is the wall
    time of the stage that did the work (STT span; TTS request start → last chunk generated).
    RTFx 10 means ten times faster than real time. Undefined (ValueError) for zero processing time.
    """
    if processing_s <= 0:
        raise ValueError(f"processing time must be positive to compute RTFx, got {processing_s}")
    if audio_s < 0:
        raise ValueError(f"audio duration cannot be negative, got {audio_s}")
    return audio_s / processing_s


def streaming_efficiency(audio_s: float, streaming_s: float) -> float:
    """Seed 004's streaming efficiency: audio duration / streaming time.

    Streaming time starts at request start and stops when the last audio sample has been handed to
    the sink. 1.0 (100 %) means audio arrived exactly as fast as it plays; below 1.0 a real-time
    player would starve (seed 004's 6.89 s / 27.39 s = 25.2 %). With a sink that does not play in
    real time (null/file) the value can exceed 1.0: it is then a speed ratio, reported as is.
    """
    if streaming_s <= 0:
        raise ValueError(f"streaming time must be positive, got {streaming_s}")
    return audio_s / streaming_s


_PUNCT = re.compile(r"[^\w\s']|_")
_SPACES = re.compile(r"\s+")


def normalize_transcript(text: str) -> str:
    """The WER normaliser: NFKC, lower case, hyphens to spaces, punctuation (but apostrophes)
    removed, whitespace collapsed. Numbers are not spelled out: fixtures avoid digits."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = text.replace("-", " ")
    text = _PUNCT.sub(" ", text)
    text = text.replace(" '", " ").replace("' ", " ")
    return _SPACES.sub(" ", text).strip()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after :func:`normalize_transcript`.

    (substitutions + deletions + insertions) / reference words, via jiwer. An empty reference is an
    error (WER undefined); an empty hypothesis against a non-empty reference is 1.0.
    """
    ref = normalize_transcript(reference)
    hyp = normalize_transcript(hypothesis)
    if not ref:
        raise ValueError("WER is undefined for an empty reference transcript")
    if not hyp:
        return 1.0
    import jiwer

    return float(jiwer.wer(ref, hyp))
