"""Every derived metric, defined once. Each docstring says where its clock starts and stops.

Reports, the service and telemetry import these; nobody re-derives them. Units are in the names
(``_ns``, ``_ms``, ``_s``); ratios are plain floats (1.0 = 100 %).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from voxperf.extras import load
from voxperf.trace.core import NO_PARENT, Trace

__all__ = [
    "DEFAULT_NORMALIZER",
    "NORMALIZERS",
    "NS_PER_MS",
    "NS_PER_S",
    "Playout",
    "WordErrors",
    "corpus_wer",
    "normalize_transcript",
    "overhead_ns",
    "playout",
    "rtfx",
    "stage_ns",
    "stage_totals_ms",
    "stage_totals_ns",
    "streaming_efficiency",
    "total_ns",
    "total_stage_ns",
    "ttfa_ns",
    "wer",
    "word_errors",
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
    """Time per stage for every span name present, in first-seen order: a top-level span under its
    name, a span nested in another under its path (``stt.encode`` for an ``encode`` sub-span an
    engine opened inside ``stt``), so sub-spans never count twice in a decomposition of the total."""
    out: dict[str, int] = {}
    paths: list[str] = []
    for s in trace.spans:
        path = s.name if s.parent == NO_PARENT else f"{paths[s.parent]}.{s.name}"
        paths.append(path)
        out[path] = out.get(path, 0) + (s.end_ns - s.start_ns)
    return out


def stage_totals_ms(trace: Trace) -> dict[str, float]:
    """:func:`stage_totals_ns` in milliseconds (``Server-Timing``, job records, Prometheus)."""
    return {name: ns / NS_PER_MS for name, ns in stage_totals_ns(trace).items()}


def total_ns(trace: Trace) -> int:
    """The dictation audit's ``total_ms`` (in ns): request start → request end, wall clock.

    Starts when the :class:`Trace` is created (request start) and stops at :meth:`Trace.finish`.
    """
    if not trace.finished:
        raise ValueError("total_ns needs a finished trace (call trace.finish())")
    return trace.end_ns - trace.start_ns


def total_stage_ns(trace: Trace) -> int:
    """The dictation audit's ``total_stage_ms`` (in ns): the sum of the top-level stage spans.

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
    chunk processing start and not at response headers (a bug the TTS logging plan had). Stops when
    the chunk that holds the first non-silent sample has been delivered to the sink; leading silence
    in the audio therefore counts, as a listener would hear it.
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


def streaming_efficiency(audible_s: float, playout_s: float) -> float:
    """Streaming efficiency under a real-time player: audible audio ÷ the time it took to play it.

    ``audible_s`` runs from the first audible sample to the end of the audio; ``playout_s`` from the
    moment that sample is played to the end of playout (see :func:`playout`). 1.0 (100 %) means the
    player never stalled; 0.5 means playback took twice the audio's length. This is what the
    request-flow logging plan's efficiency is for ("does playback keep up?"); throughput is RTFx.
    """
    if playout_s <= 0:
        raise ValueError(f"playout time must be positive, got {playout_s}")
    if audible_s < 0:
        raise ValueError(f"audible duration cannot be negative, got {audible_s}")
    return min(audible_s / playout_s, 1.0)


@dataclass(frozen=True, slots=True)
class Playout:
    """A simulated real-time player fed by the chunks as they were delivered (all times ns).

    The player starts at the first delivery plus ``prebuffer_ns`` and plays chunks back to back;
    when the next chunk has not been delivered by the time the previous one finished playing, it
    stalls until it arrives. ``stall_count``/``stall_ns`` count those gaps; ``prebuffer_needed_ns``
    is the smallest start delay after the first delivery that gives gap-free playback.
    """

    start_ns: int  # playback of the first chunk starts (first delivery + prebuffer)
    audible_ns: int  # the first audible sample is played
    end_ns: int  # the last sample has been played
    audio_ns: int  # duration of all delivered audio
    audible_audio_ns: int  # duration from the first audible sample to the end of the audio
    stall_count: int
    stall_ns: int
    prebuffer_needed_ns: int

    @property
    def efficiency(self) -> float:
        """:func:`streaming_efficiency` of this playout (1.0 when there was no stall)."""
        played = self.end_ns - self.audible_ns
        if played <= 0:
            return 1.0
        return streaming_efficiency(self.audible_audio_ns / NS_PER_S, played / NS_PER_S)


def playout(
    delivered_ns: Sequence[int],
    durations_ns: Sequence[int],
    *,
    first_audible_offset_ns: int = 0,
    prebuffer_ns: int = 0,
) -> Playout:
    """Play chunks in real time as they are delivered; see :class:`Playout` for the model.

    ``delivered_ns[i]`` is when chunk ``i`` was handed to the sink, ``durations_ns[i]`` its audio
    duration; ``first_audible_offset_ns`` is where the first audible sample sits in the whole audio
    (leading silence). Chunk ``i`` starts at ``max(delivered_i, end_{i-1})``: a stall is a chunk
    delivered after the previous one ran out.
    """
    if len(delivered_ns) != len(durations_ns) or not delivered_ns:
        raise ValueError("playout needs one delivery time per chunk and at least one chunk")
    if any(d < 0 for d in durations_ns) or prebuffer_ns < 0 or first_audible_offset_ns < 0:
        raise ValueError("durations, prebuffer and offset must be >= 0")
    if any(b < a for a, b in itertools.pairwise(delivered_ns)):
        raise ValueError("chunks must be delivered in order")
    first = delivered_ns[0]
    end = first + prebuffer_ns
    start = end
    stalls = stall = needed = played_before = 0
    audible = None
    for delivered, duration in zip(delivered_ns, durations_ns, strict=True):
        if delivered > end:
            stalls += 1 if played_before else 0  # waiting for the first chunk is not a stall
            stall += (delivered - end) if played_before else 0
            end = delivered
        needed = max(needed, delivered - first - played_before)
        if audible is None and played_before + duration > first_audible_offset_ns:
            audible = end + (first_audible_offset_ns - played_before)
        end += duration
        played_before += duration
    total = played_before
    offset = min(first_audible_offset_ns, total)
    return Playout(
        start_ns=start,
        audible_ns=audible if audible is not None else end,
        end_ns=end,
        audio_ns=total,
        audible_audio_ns=total - offset,
        stall_count=stalls,
        stall_ns=stall,
        prebuffer_needed_ns=needed,
    )


NORMALIZERS = ("whisper-english", "basic", "none")
DEFAULT_NORMALIZER = "whisper-english"


@functools.cache
def _normalizer(name: str) -> Callable[[str], str]:
    """The text normaliser applied to both sides before WER (built once per process)."""
    if name == "whisper-english":
        # Whisper's English normaliser, as the Open ASR leaderboard scores: spelling, numbers,
        # contractions and titles ("Mr." = "mister") are standardised.
        english = load("whisper_normalizer.english", "bench", "WER's Whisper normaliser")
        return english.EnglishTextNormalizer()  # type: ignore[no-any-return]
    if name == "basic":
        basic = load("whisper_normalizer.basic", "bench", "WER's basic normaliser")  # any language
        return basic.BasicTextNormalizer()  # type: ignore[no-any-return]
    if name == "none":
        return lambda text: text
    raise ValueError(f"unknown WER normalizer {name!r}; use one of {', '.join(NORMALIZERS)}")


def normalize_transcript(text: str, normalizer: str = DEFAULT_NORMALIZER) -> str:
    """``text`` as WER sees it: the named normaliser (see :data:`NORMALIZERS`), then whitespace
    collapsed. ``none`` compares the words exactly as written."""
    return " ".join(_normalizer(normalizer)(text).split())


@dataclass(frozen=True, slots=True)
class WordErrors:
    """Word alignment counts of one hypothesis (or, summed, of a corpus) against its reference."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def reference_words(self) -> int:
        """Words in the reference: S + D + H."""
        return self.substitutions + self.deletions + self.hits

    @property
    def edits(self) -> int:
        """S + D + I: the numerator of WER."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """edits ÷ reference words (undefined, ValueError, for an empty reference)."""
        if self.reference_words == 0:
            raise ValueError("WER is undefined for an empty reference transcript")
        return self.edits / self.reference_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )


def word_errors(reference: str, hypothesis: str, normalizer: str = DEFAULT_NORMALIZER) -> WordErrors:
    """Levenshtein word alignment (via jiwer) of ``hypothesis`` against ``reference``, both normalised.

    An empty reference (after normalisation) is an error; an empty hypothesis deletes every word."""
    ref = normalize_transcript(reference, normalizer)
    hyp = normalize_transcript(hypothesis, normalizer)
    if not ref:
        raise ValueError("WER is undefined for an empty reference transcript")
    if not hyp:
        return WordErrors(0, len(ref.split()), 0, 0)
    jiwer = load("jiwer", "bench", "WER")

    out = jiwer.process_words(ref, hyp)
    return WordErrors(int(out.substitutions), int(out.deletions), int(out.insertions), int(out.hits))


def wer(reference: str, hypothesis: str, normalizer: str = DEFAULT_NORMALIZER) -> float:
    """Word error rate of one utterance: (S + D + I) ÷ reference words after normalisation."""
    return word_errors(reference, hypothesis, normalizer).wer


def corpus_wer(errors: Iterable[WordErrors]) -> float:
    """Corpus WER as the field computes it: Σ edits ÷ Σ reference words over all utterances.

    Never a mean or median of per-utterance WERs: long utterances count by their words."""
    total = sum(errors, WordErrors(0, 0, 0, 0))
    return total.wer
