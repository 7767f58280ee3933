"""An STT engine of your own, measured by voxperf: PocketSphinx decoding plus a ``punctuate`` stage.

Only voxperf's public API is used. The engine opens a sub-span on the request's ambient trace
(``voxperf.span``), so its punctuation step is reported as ``stt.punctuate_ms`` and can be compared
and gated like a built-in stage. ``PLUGIN`` is what the ``voxperf.engines`` entry point names.
"""

from __future__ import annotations

import re
import threading
from importlib.metadata import version

import numpy as np

import voxperf
from voxperf import Audio, EngineInfo, EngineOption, EnginePlugin, Transcript

__all__ = ["PLUGIN", "ExampleSTT", "punctuate"]

_SENTENCE_WORDS = 12  # a full stop after this many words when the recogniser gives no pauses


def punctuate(text: str) -> str:
    """Capitalise the first word and "i", and end sentences with a full stop."""
    words = text.split()
    if not words:
        return ""
    out = []
    for n, word in enumerate(words):
        word = "I" if word == "i" else word
        if n == 0 or out[-1].endswith("."):
            word = word[:1].upper() + word[1:]
        if (n + 1) % _SENTENCE_WORDS == 0 or n == len(words) - 1:
            word += "."
        out.append(word)
    return re.sub(r"\s+", " ", " ".join(out))


class ExampleSTT:
    """PocketSphinx with its bundled US English model; ``punctuate`` adds the punctuation stage."""

    sample_rate = 16000

    def __init__(self, punctuate: bool = True) -> None:
        import pocketsphinx  # imported here, not at module level: `voxperf engines` loads no engine

        self.punctuate = punctuate
        self.decoder = pocketsphinx.Decoder(samprate=self.sample_rate, loglevel="FATAL")
        self._initial_cmn = self.decoder.get_cmn()
        self._lock = threading.Lock()
        self.info = EngineInfo(
            role="stt",
            name="example-engine",
            version=version("voxperf-example-engine"),
            model="en-us",
            model_path=str(self.decoder.config["hmm"]),
            model_source="bundled:pocketsphinx",
            settings={"punctuate": punctuate, "pocketsphinx": version("pocketsphinx")},
        )

    def transcribe(self, audio: Audio) -> Transcript:
        with voxperf.span("decode"), self._lock:  # reported as stt.decode_ms
            self.decoder.set_cmn(self._initial_cmn)  # every utterance from the same start
            self.decoder.start_utt()
            self.decoder.process_raw(audio.pcm16_bytes(), full_utt=True)
            self.decoder.end_utt()
            hyp = self.decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if self.punctuate:
            with voxperf.span("punctuate"):  # reported as stt.punctuate_ms
                text = punctuate(text)
        return Transcript(text=text, language="en")

    def warmup(self) -> None:
        self.transcribe(Audio(samples=np.zeros(self.sample_rate // 2, dtype=np.float32), sample_rate=16000))


PLUGIN = EnginePlugin(
    role="stt",
    name="example-engine",
    factory=ExampleSTT,
    summary="example third-party engine: PocketSphinx plus a punctuate stage",
    requires=("pocketsphinx",),
    install="voxperf-example-engine",
    options=(EngineOption("punctuate", "bool", True, "add capitals and full stops (the punctuate stage)"),),
)
