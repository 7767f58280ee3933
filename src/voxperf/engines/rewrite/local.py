"""The local rewriter: processing levels ``raw`` (identity) and ``clean`` (deterministic clean-up).

``clean`` is what a dictation tool does without a language model: drop fillers, collapse stutters,
fix spacing, capitalisation and the final full stop. It is a pure function (:func:`clean_text`),
so the codepath lane and the tests get the same text every time. ``polish`` needs a language
model and is served by :class:`~voxperf.engines.rewrite.openai_chat.OpenAIChatRewriter`.
"""

from __future__ import annotations

import re

import voxperf
from voxperf.engines.base import LEVELS, EngineInfo
from voxperf.engines.registry import EnginePlugin
from voxperf.errors import UsageError

__all__ = ["LEVELS", "LocalRewriter", "clean_text", "normalize_level"]


# Hesitation sounds, as whole words only ("um" but not "umbrella", "er" but not "her" or "error").
_FILLER_WORDS = r"(?:u+m+|u+h+|e+r+m+|e+r+|a+h+|h+m+|m+h+m+)"
_FILLER = re.compile(rf"(?<![\w'-]){_FILLER_WORDS}(?![\w'-])[.…]*(?:\s*,)?", re.IGNORECASE)
# Discourse fillers, only at a clause start and only when a comma follows ("I mean it" survives).
_CLAUSE_FILLER = re.compile(r"(^|[.!?;:,…]\s*)(?:you know|i mean),\s*", re.IGNORECASE)
# A word (letters and inner apostrophes) repeated right after itself: "the the", "I I".
_REPEAT = re.compile(r"(?<![\w'])([^\W\d_]+(?:'[^\W\d_]+)*)(?:\s+\1)+(?![\w'])", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:…])")
_COMMA_RUN = re.compile(r"[,;:](?:\s*[,;:])+")
_COMMA_BEFORE_END = re.compile(r"[,;:]\s*([.!?…])")
_NO_SPACE_AFTER = re.compile(r"([,;:!?])(?=[^\W\d_])")
_LEADING_PUNCT = re.compile(r"^[\s,;:.!?…]+")
# A sentence starts the text or follows ". ", "! " or "? " (an ellipsis "..." does not end one).
_SENTENCE_START = re.compile(r"(^|(?:(?<!\.)\.|[!?])\s+)([\"'(\[]*)([^\W\d_])")
_LONE_I = re.compile(r"(?<![\w'-])i(?=$|[^\w.-]|'[a-z])")
_TERMINAL = ".!?…"
_CLOSERS = "\"')]»”’"


def _clean_once(text: str) -> str:
    text = _SPACE.sub(" ", text).strip()
    text = _FILLER.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    text = _CLAUSE_FILLER.sub(r"\1", text)
    text = _REPEAT.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _COMMA_RUN.sub(lambda m: m.group(0)[0], text)
    text = _COMMA_BEFORE_END.sub(r"\1", text)
    text = _NO_SPACE_AFTER.sub(r"\1 ", text)
    text = _LEADING_PUNCT.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    if not any(ch.isalnum() for ch in text):
        return ""
    text = _LONE_I.sub("I", text)
    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2) + m.group(3).upper(), text)
    body = text.rstrip(_CLOSERS)
    if body and body[-1] in ",;:":
        text = body[:-1] + "." + text[len(body) :]
    elif body and body[-1] not in _TERMINAL:
        text = body + "." + text[len(body) :]
    return text


def clean_text(text: str) -> str:
    """Deterministic clean-up of a raw transcript (the ``clean`` processing level).

    Removes hesitation fillers (um, uh, er, ah, hmm) and clause-initial "you know," / "I mean,",
    collapses immediately repeated words, normalises whitespace and spacing around punctuation,
    capitalises sentence starts and a standalone "i", and ends the text with terminal punctuation.
    The rules are applied until nothing changes, so ``clean_text(clean_text(x)) == clean_text(x)``.
    Text without any letter or digit comes back as "".
    """
    current = text
    for _ in range(16):
        cleaned = _clean_once(current)
        if cleaned == current:
            break
        current = cleaned
    return current


def normalize_level(level: str) -> str:
    """Lower-case and check a processing level; an unknown one is a usage error listing the levels."""
    name = str(level).strip().lower()
    if name not in LEVELS:
        raise UsageError(f"unknown processing level {level!r}", f"use one of: {', '.join(LEVELS)}")
    return name


class LocalRewriter:
    """Rewriter for ``raw`` and ``clean``; ``polish`` needs an OpenAI-compatible endpoint."""

    def __init__(self) -> None:
        self.info = EngineInfo(role="rewrite", name="local", version=voxperf.__version__, settings={})

    def rewrite(self, text: str, level: str) -> str:
        """Return ``text`` processed at ``level`` (raw: unchanged; clean: :func:`clean_text`)."""
        name = normalize_level(level)
        if name == "raw":
            return text
        if name == "clean":
            return clean_text(text)
        raise UsageError(
            "processing level 'polish' needs an OpenAI-compatible endpoint",
            "pass --rewrite openai:base_url=...,model=... or set OPENAI_BASE_URL",
        )


PLUGIN = EnginePlugin(
    role="rewrite",
    name="local",
    factory=LocalRewriter,
    summary="rule-based clean-up in process (raw and clean levels)",
)
