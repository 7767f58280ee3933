"""Bounded synthesis units: long speech input reaches the engine in pieces of bounded size."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxperf.audio.pcm import Audio
from voxperf.engines.fakes import FakeTTS
from voxperf.errors import UsageError
from voxperf.pipeline.speech import SpeechPipeline
from voxperf.pipeline.units import synthesis_units

words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)


@given(st.lists(words, max_size=60), st.integers(1, 120))
def test_units_are_bounded_and_lose_nothing(parts: list[str], max_chars: int) -> None:
    text = " ".join(parts)
    units = list(synthesis_units(text, max_chars))
    assert all(0 < len(u) <= max_chars for u in units)
    assert all(u == u.strip() for u in units)
    # the units are the text, white space collapsed; a word longer than a unit is cut, not lost
    assert "".join("".join(units).split()) == "".join(text.split())


def test_units_prefer_sentence_then_clause_then_word_boundaries() -> None:
    assert list(synthesis_units("One two. Three four.", 100)) == ["One two. Three four."]  # fits: one unit
    assert list(synthesis_units("One two. Three four.", 12)) == ["One two.", "Three four."]
    assert list(synthesis_units("alpha beta, gamma delta", 14)) == ["alpha beta,", "gamma delta"]
    assert list(synthesis_units("alpha beta gamma", 11)) == ["alpha beta", "gamma"]
    assert list(synthesis_units("abcdefghij", 4)) == ["abcd", "efgh", "ij"]
    assert [len(u) for u in synthesis_units("word " * 1000, 300)] == [299] * 16 + [199]
    with pytest.raises(ValueError):
        list(synthesis_units("x", 0))


class RecordingTTS:
    """A TTS that remembers what it was asked to speak, one short chunk per call."""

    def __init__(self) -> None:
        self.inner = FakeTTS()
        self.info, self.sample_rate = self.inner.info, self.inner.sample_rate
        self.calls: list[str] = []

    def stream(self, text: str) -> Iterator[Audio]:
        self.calls.append(text)
        yield Audio(np.full(220, 0.3, dtype=np.float32), self.sample_rate)

    def warmup(self) -> None:
        pass


def test_the_speech_pipeline_speaks_long_input_in_bounded_units() -> None:
    tts = RecordingTTS()
    text = "x" + " unpunctuated" * 400  # 5,201 characters, no sentence end
    result = SpeechPipeline(tts, max_unit_chars=300).run(text)
    assert len(tts.calls) == result.chunks == 18 and max(map(len, tts.calls)) <= 300
    assert " ".join(tts.calls) == text
    assert result.ttfa_ns is not None  # measured to the first unit's audio
    with pytest.raises(UsageError, match="no text"):
        SpeechPipeline(tts).run("  \n")
