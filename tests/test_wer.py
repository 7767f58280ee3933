"""WER as the field computes it: corpus WER against jiwer, Whisper's normaliser, stored hypotheses."""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from whisper_normalizer.english import EnglishTextNormalizer

from tests.conftest import write_tone
from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.bench.schema import SCHEMA_VERSION
from voxperf.errors import UsageError
from voxperf.trace.metrics import WordErrors, corpus_wer, normalize_transcript, wer, word_errors

WORDS = st.sampled_from(["the", "a", "cat", "sat", "on", "mat", "dog", "ran", "far", "away"])
SENTENCE = st.lists(WORDS, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(SENTENCE, st.lists(WORDS, max_size=12).map(" ".join)), min_size=1, max_size=6))
def test_corpus_wer_equals_jiwer_over_the_corpus(pairs: list[tuple[str, str]]) -> None:
    refs = [r for r, _ in pairs]
    hyps = [h for _, h in pairs]
    counts = [word_errors(r, h, "none") for r, h in pairs]
    # jiwer's own corpus WER over lists (an empty hypothesis is every word deleted)
    expected = jiwer.process_words(refs, [h or "<empty>" for h in hyps])
    if all(hyps):
        assert corpus_wer(counts) == pytest.approx(expected.wer)
    total = sum(counts, WordErrors(0, 0, 0, 0))
    assert total.reference_words == sum(len(r.split()) for r in refs)
    for (r, h), c in zip(pairs, counts, strict=True):
        if h:
            one = jiwer.process_words(r, h)
            assert (c.substitutions, c.deletions, c.insertions, c.hits) == (
                one.substitutions,
                one.deletions,
                one.insertions,
                one.hits,
            )


def test_corpus_wer_is_not_a_mean_of_utterance_wers() -> None:
    # a 2-word utterance fully wrong and a 20-word one right: 2 / 22, not (100 % + 0 %) / 2
    long = " ".join(["word"] * 20)
    counts = [word_errors("one two", "three four", "none"), word_errors(long, long, "none")]
    assert corpus_wer(counts) == pytest.approx(2 / 22)


def test_default_normaliser_is_whispers_english_normaliser() -> None:
    reference = "Mr. Smith didn't pay $20 for the colour TV."
    assert normalize_transcript(reference) == " ".join(EnglishTextNormalizer()(reference).split())
    assert wer("Mr. Smith arrived.", "mister smith arrived") == 0.0
    assert wer("Mr. Smith arrived.", "mister smith arrived", "basic") > 0  # basic keeps "mr"
    assert wer("Hello world", "hello world", "none") == 0.5  # none compares words as written
    with pytest.raises(ValueError, match="normalizer"):
        normalize_transcript("x", "klingon")


def test_empty_reference_is_an_error_and_empty_hypothesis_deletes_everything() -> None:
    with pytest.raises(ValueError):
        wer(" ?! , ", "anything")
    assert word_errors("the cat sat", "") == WordErrors(0, 3, 0, 0)


def _fixture_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fx"
    d.mkdir()
    texts = {
        "one": "Mr. Brown reads the news every morning.",
        "two": "The quick brown fox jumps over the lazy dog near the river bank today.",
        "three": "Please call me back.",
    }
    for i, (name, text) in enumerate(texts.items()):
        write_tone(d / f"{name}.wav", 0.4 + 0.2 * i, 16_000)
        (d / f"{name}.txt").write_text(text + "\n")
    return d


@pytest.mark.parametrize("normalizer", ["whisper-english", "basic", "none"])
def test_bench_reports_corpus_wer_with_counts_and_hypotheses(tmp_path: Path, normalizer: str) -> None:
    said = "mister brown reads the news every morning"
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=_fixture_dir(tmp_path),
        stt=f"fake:text={said}",
        vad="none",
        levels=("raw",),
        iterations=2,
        warmup=0,
        resamples=200,
        normalizer=normalizer,
    )
    result = run_bench(config, isolate=False).result
    (record,) = result.lanes["provider"].wer
    refs = {f.name: f.text for f in result.fixtures}
    names = sorted(refs)
    norm = EnglishTextNormalizer() if normalizer == "whisper-english" else None
    if normalizer == "basic":
        from whisper_normalizer.basic import BasicTextNormalizer

        norm = BasicTextNormalizer()

    def n(text: str) -> str:
        return " ".join((norm(text) if norm else text).split())

    expected = jiwer.process_words([n(refs[k] or "") for k in names], [n(said)] * len(names))
    assert record.normalizer == normalizer
    assert record.corpusWer == pytest.approx(expected.wer, abs=1e-12)
    assert (record.substitutions, record.deletions, record.insertions) == (
        expected.substitutions,
        expected.deletions,
        expected.insertions,
    )
    assert record.ci95[0] <= record.corpusWer <= record.ci95[1]
    by_name = {u.fixture: u for u in record.utterances}
    assert set(by_name) == set(names)
    assert all(
        u.hypothesis == said and u.iterations == 2 and u.distinctHypotheses == 1 for u in by_name.values()
    )
    # WER is a per-configuration record, not a per-request distribution
    assert not any("wer" in r.metrics for r in result.lanes["provider"].runs)
    assert "wer" not in next(g for g in result.lanes["provider"].summaries if g.fixture is None).metrics
    if normalizer == "whisper-english":
        assert by_name["one"].wer == 0.0  # "Mr." is "mister"


def test_no_text_keeps_transcripts_out_of_the_result(tmp_path: Path) -> None:
    canary = "zebra quartz nebula"  # private words in the reference transcripts
    d = tmp_path / "private"
    d.mkdir()
    for i in range(2):
        write_tone(d / f"p{i}.wav", 0.5, 16_000)
        (d / f"p{i}.txt").write_text(f"{canary} number {i}\n")
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=d,
        stt="fake",  # says words of its own word list: the hypotheses
        vad="none",
        levels=("raw",),
        iterations=1,
        warmup=0,
        resamples=50,
        keep_text=False,
    )
    result = run_bench(config, isolate=False).result
    text = result.model_dump_json()
    assert "zebra" not in text and "quartz" not in text
    (record,) = result.lanes["provider"].wer
    assert all(u.hypothesis is None for u in record.utterances)
    assert record.corpusWer > 0 and record.referenceWords == 2 * 5  # still scored


def test_unknown_normaliser_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="normalizer"):
        BenchConfig(normalizer="klingon").validate()


def test_result_json_records_normaliser(tmp_path: Path) -> None:
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=_fixture_dir(tmp_path),
        stt="fake:text=hello",
        vad="none",
        levels=("raw",),
        iterations=1,
        warmup=0,
        resamples=50,
        normalizer="basic",
    )
    data = json.loads(run_bench(config, isolate=False).result.model_dump_json())
    assert data["config"]["normalizer"] == "basic"
    assert data["schemaVersion"] == SCHEMA_VERSION
