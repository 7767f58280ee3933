"""Held-out WER check: voxperf's corpus WER against an independent jiwer computation.

Real speech the project never trained or tuned on is kept outside the repository. Point this
script at a directory of audio + same-stem ``.txt`` transcripts, or let it make one with espeak-ng
(a different synthesiser from the Piper voice of the built-in fixtures; ``apt-get install
espeak-ng``). It runs ``voxperf bench`` (provider lane, dictation, no VAD, no encode, so the engine
hears exactly the file) and then, independently of voxperf, transcribes every file with a direct
``WhisperModel.transcribe`` call and scores it with jiwer after ``whisper_normalizer``'s English
normaliser. Per-utterance WERs and the corpus WER must agree (within 0.005).

Run: .venv/bin/python benchmarks/heldout_wer_check.py [DIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import soxr
from faster_whisper import WhisperModel
from whisper_normalizer.english import EnglishTextNormalizer

from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.engines.models import resolve_whisper_model

SENTENCES = (
    "Mr. Thompson said the meeting would start at nine o'clock sharp.",
    "Please remember to buy milk, eggs, and a loaf of whole wheat bread.",
    "The committee approved the budget after a long and heated discussion.",
    "Dr. Patel's clinic reopens on Monday with extended weekend hours.",
    "I can't believe how quickly the summer went by this year.",
    "Send the quarterly report to everyone on the finance team before Friday.",
    "The colour of the autumn leaves was more vivid than last season.",
    "Turn left at the second traffic light and park behind the old library.",
)
VOICES = ("en-us", "en", "en-us+m3", "en+f2")


def make_espeak_set(where: Path) -> Path:
    for i, text in enumerate(SENTENCES):
        voice = VOICES[i % len(VOICES)]
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "160", "-w", str(where / f"utt{i}.wav"), text], check=True
        )
        (where / f"utt{i}.txt").write_text(text + "\n")
    return where


def main(directory: Path) -> int:
    config = BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=directory,
        levels=("raw",),
        vad="none",
        encode="none",
        iterations=1,
        warmup=0,
        resamples=2000,
    )
    result = run_bench(config).result
    (record,) = result.lanes["provider"].wer
    norm = EnglishTextNormalizer()

    def n(text: str) -> str:
        return " ".join(norm(text).split())

    model = WhisperModel(str(resolve_whisper_model("tiny.en").path), device="cpu", compute_type="int8")
    refs, hyps = [], []
    worst = 0.0
    for fx in result.fixtures:
        if not fx.text or fx.path is None:
            continue
        audio, rate = sf.read(fx.path, dtype="float32", always_2d=True)
        audio16 = soxr.resample(audio.mean(axis=1), rate, 16_000, quality="HQ").astype(np.float32)
        segments, _ = model.transcribe(audio16, language="en", beam_size=1, condition_on_previous_text=False)
        hyp = " ".join(s.text.strip() for s in segments)
        ours = next(u for u in record.utterances if u.fixture == fx.name)
        theirs = jiwer.wer(n(fx.text), n(hyp))
        worst = max(worst, abs(ours.wer - theirs))
        refs.append(n(fx.text))
        hyps.append(n(hyp))
        print(f"{fx.name:<12} voxperf {ours.wer:7.2%}   direct + jiwer {theirs:7.2%}")
    corpus = jiwer.wer(refs, hyps)
    lo, hi = record.ci95
    print(
        f"corpus WER: voxperf {record.corpusWer:.2%} [{lo:.2%}, {hi:.2%}]   direct + jiwer {corpus:.2%}   "
        f"({len(refs)} utterances, {record.referenceWords} words, normaliser {record.normalizer})"
    )
    ok = abs(record.corpusWer - corpus) <= 0.005 and worst <= 0.005
    print("agree within 0.005" if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(make_espeak_set(Path(tmp))))
