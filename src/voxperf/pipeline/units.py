"""Bounded synthesis units: long speech input is spoken piece by piece, never as one inference.

A TTS engine's memory and time to first audio grow with the text it is given at once: one
``/v1/audio/speech`` request of 4,096 unpunctuated characters made Piper phonemise and run a single
4,096-character sentence (6 GiB resident, first audio after 30-44 s). :func:`synthesis_units`
splits a sentence longer than ``max_chars`` where a reader would pause, in order of preference:
clause punctuation, then spaces, and only as a last resort inside a word; whole sentences are then
packed into units while they fit, so a text that fits is one unit, as before. The units, joined by
single spaces, are the text with its white space collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["DEFAULT_MAX_UNIT_CHARS", "synthesis_units"]

# about 8 s of speech. Measured with Piper (en_US-joe-medium) on 2 cores, 4 syntheses at once: 300
# characters took 1.3 GiB at peak and 3.9 s to the first chunk, 120 characters 0.6 GiB and 1.7 s
DEFAULT_MAX_UNIT_CHARS = 120
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–)\]、，；：])\s+")


def synthesis_units(text: str, max_chars: int = DEFAULT_MAX_UNIT_CHARS) -> Iterator[str]:
    """Yield the pieces of ``text`` to synthesise one after another, each at most ``max_chars`` long."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    pieces = [piece for s in _SENTENCE_END.split(text) for piece in _bounded(" ".join(s.split()), max_chars)]
    yield from _pack(pieces, max_chars)  # whole sentences share a unit while they fit


def _bounded(text: str, max_chars: int) -> Iterator[str]:
    if not text:
        return
    if len(text) <= max_chars:
        yield text
        return
    for splitter in (_CLAUSE_END, re.compile(r"\s+")):
        parts = splitter.split(text)
        if len(parts) > 1:
            yield from _pack(parts, max_chars)
            return
    for i in range(0, len(text), max_chars):  # one word longer than a unit: cut it
        yield text[i : i + max_chars]


def _pack(parts: list[str], max_chars: int) -> Iterator[str]:
    """Greedily join consecutive parts (with a space) while they fit; split any part that does not."""
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) <= max_chars:
            current = f"{current} {part}"
            continue
        if current:
            yield current
        current = ""
        if len(part) <= max_chars:
            current = part
        else:
            yield from _bounded(part, max_chars)
    if current:
        yield current
