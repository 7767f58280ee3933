"""PocketSphinx speech-to-text with the US English model bundled in the ``pocketsphinx`` package.

A small, fast, classic (HMM + n-gram) recogniser: a useful lower bound next to Whisper. The
decoder takes 16 kHz signed 16-bit PCM; one utterance per :meth:`PocketSphinxSTT.transcribe`.
"""

from __future__ import annotations

import importlib.metadata
import threading
from pathlib import Path

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo, Transcript
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.errors import DependencyMissingError, EngineError, ModelNotFoundError, UsageError

__all__ = ["PocketSphinxSTT"]


def _existing(option: str, value: str | None) -> str | None:
    if value is None or not str(value).strip():
        return None
    path = Path(str(value).strip()).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"pocketsphinx {option}={value} does not exist",
            f"point {option}= at an existing file or directory, or leave it out for the bundled en-us model",
        )
    return str(path)


class PocketSphinxSTT:
    """PocketSphinx on 16 kHz audio; ``hmm``, ``lm`` and ``dict`` override the bundled en-us model.

    ``hmm`` is the acoustic model directory, ``lm`` the n-gram language model and ``dict`` the
    pronunciation dictionary. The decoder is stateful, so calls are serialised with a lock.
    """

    sample_rate = 16000

    def __init__(
        self, hmm: str | None = None, lm: str | None = None, dict: str | None = None
    ) -> None:  # `dict` is pocketsphinx's own name
        overrides = {
            key: path
            for key, path in (
                ("hmm", _existing("hmm", hmm)),
                ("lm", _existing("lm", lm)),
                ("dict", _existing("dict", dict)),
            )
            if path is not None
        }
        try:
            import pocketsphinx
        except ImportError as exc:
            raise DependencyMissingError(
                "the pocketsphinx engine needs the pocketsphinx package",
                "pip install 'voxperf[pocketsphinx]'",
            ) from exc
        try:
            # loglevel FATAL: the decoder otherwise writes its configuration to stderr.
            self.decoder = pocketsphinx.Decoder(samprate=self.sample_rate, loglevel="FATAL", **overrides)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(
                f"pocketsphinx could not load its model ({', '.join(overrides) or 'bundled en-us'}): {exc}",
                "hmm= must be an acoustic model directory, lm= an ARPA/binary LM, dict= a dictionary file",
            ) from exc
        self._lock = threading.Lock()
        # PocketSphinx adapts its cepstral mean (CMN) across utterances, so a transcript would depend
        # on what was decoded before; every utterance starts from the model's initial CMN instead.
        self._initial_cmn = self.decoder.get_cmn()
        config = self.decoder.config
        hmm_path = str(config["hmm"])
        bundled = "hmm" not in overrides and "lm" not in overrides and "dict" not in overrides
        try:
            version = importlib.metadata.version("pocketsphinx")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        self.info = EngineInfo(
            role="stt",
            name="pocketsphinx",
            version=version,
            model=Path(hmm_path).name,
            model_path=hmm_path,
            model_source="bundled:pocketsphinx" if bundled else "path",
            settings={"lm": str(config["lm"]), "dict": str(config["dict"])},
            weights=(hmm_path, str(config["lm"]), str(config["dict"])),
        )

    def transcribe(self, audio: Audio) -> Transcript:
        """Decode one utterance of 16 kHz mono audio."""
        if audio.sample_rate != self.sample_rate:
            raise UsageError(
                f"pocketsphinx needs {self.sample_rate} Hz audio, got {audio.sample_rate} Hz",
                "resample to the engine's sample_rate first (the voxperf pipeline does this)",
            )
        pcm = audio.pcm16_bytes()
        with self._lock:
            try:
                self.decoder.set_cmn(self._initial_cmn)
                self.decoder.start_utt()
                if pcm:
                    self.decoder.process_raw(pcm, full_utt=True)
                self.decoder.end_utt()
                hyp = self.decoder.hyp()
            except RuntimeError as exc:
                raise EngineError(
                    f"pocketsphinx failed while decoding {audio.duration_s:.2f} s of audio: {exc}",
                    "check the audio; PocketSphinx needs 16 kHz mono speech",
                ) from exc
        return Transcript(text=hyp.hypstr.strip() if hyp is not None else "", language="en")

    def warmup(self) -> None:
        """Decode half a second of silence (first-call allocations happen here, not in the timing)."""
        self.transcribe(
            Audio(samples=np.zeros(self.sample_rate // 2, dtype=np.float32), sample_rate=self.sample_rate)
        )


PLUGIN = EnginePlugin(
    role="stt",
    name="pocketsphinx",
    factory=PocketSphinxSTT,
    summary="CMU PocketSphinx (HMM + n-gram) with the bundled US English model",
    requires=("pocketsphinx",),
    install="voxperf[pocketsphinx]",
    options=(
        EngineOption("hmm", "path", None, "acoustic model directory (default: bundled en-us)"),
        EngineOption("lm", "path", None, "n-gram language model file"),
        EngineOption("dict", "path", None, "pronunciation dictionary file"),
    ),
)
