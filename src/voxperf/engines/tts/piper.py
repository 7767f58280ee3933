"""Piper text to speech (piper-tts, ONNX VITS voices), streamed one sentence at a time.

Piper phonemises the whole text, then synthesises sentence by sentence; :meth:`PiperTTS.stream`
hands each sentence's audio on as soon as it exists, so time to first audio is the time of the
first sentence, not of the whole text.

Deterministic by default: Piper's VITS voices draw random noise for prosody (``noise_scale``) and
phoneme durations (``noise_w``), so with the voice's own values two runs give different waveforms
*and different lengths*, which moves real-time factors and makes cached fixtures irreproducible.
voxperf sets both to 0 unless asked otherwise; pass ``noise_scale=0.667,noise_w=0.8`` (the usual
voice defaults) or ``noise_scale=voice,noise_w=voice`` to get the voice's own sampling back.

ONNX Runtime threads: the session is the one ``PiperVoice.load`` makes (it accepts no options),
built here so that ``threads`` (intra-op threads; 0 = ONNX Runtime's default, one per physical
core) and ``spinning`` (intra-op threads busy-wait after each run; ONNX Runtime's default, on) can be
set and are recorded in :attr:`PiperTTS.info`. The spin keeps about 30 ms of a core busy after
every sentence, which only the work that starts within those 30 ms feels. Measured on 2 shared
vCPUs: an stt call started ~15 ms after a Piper sentence took 3.0 % [2.1, 4.3] longer than one
started 250 ms later at load 2.9 (0.6 % [-0.3, 2.1] at load 1.7), none with ``spinning=false``;
in the bench's own order (speech requests, then the speech analysis and the next request's
decode and VAD before any stt) no difference was measurable. Piper itself gains from spinning on
an idle machine (first chunk 0.92× the time of ``spinning=false``) and loses on a busy one
(1.25×), so the default stays ONNX Runtime's, as a direct ``PiperVoice`` would run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo
from voxperf.engines.models import DEFAULT_PIPER_VOICE, resolve_piper_voice
from voxperf.engines.options import package_version, parse_bool
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.errors import DependencyMissingError, EngineError, ModelNotFoundError, UsageError

__all__ = ["PiperTTS"]

_WARMUP_TEXT = "Warming up."


class PiperTTS:
    """A Piper voice as a :class:`~voxperf.engines.base.TTSEngine` (registry name ``piper``).

    Options (strings from an engine spec, or typed values): ``voice`` (name or ``.onnx`` path),
    ``length_scale`` (> 0; < 1 speaks faster; default: the voice's), ``noise_scale`` and
    ``noise_w`` (>= 0 or ``voice``; default 0 = deterministic), ``speaker`` (id or name, for
    multi-speaker voices), ``use_cuda``, ``threads`` (ONNX Runtime intra-op threads, 0 = its
    default) and ``spinning`` (let those threads busy-wait after each run; default true, as ONNX
    Runtime's default; ``false`` keeps them off the cores the next engine in the process needs).
    """

    def __init__(
        self,
        voice: str | os.PathLike[str] = DEFAULT_PIPER_VOICE,
        length_scale: str | float | None = None,
        noise_scale: str | float | None = 0.0,
        noise_w: str | float | None = 0.0,
        speaker: str | int | None = None,
        use_cuda: str | bool = False,
        threads: str | int = 0,
        spinning: str | bool = True,
    ) -> None:
        length = _parse_float("length_scale", length_scale, minimum=0.0, inclusive=False)
        noise = _parse_float("noise_scale", noise_scale, minimum=0.0)
        noise_width = _parse_float("noise_w", noise_w, minimum=0.0)
        cuda = parse_bool("piper", "use_cuda", use_cuda)
        intra_threads = _parse_threads(threads)
        spin = parse_bool("piper", "spinning", spinning)
        resolved = resolve_piper_voice(voice)
        # Check the speaker against the voice's config before paying for the ONNX session.
        voice_config = _read_voice_config(resolved.path)
        speaker_id = _speaker_id(
            speaker,
            int(voice_config.get("num_speakers", 1)),
            dict(voice_config.get("speaker_id_map") or {}),
            resolved.name,
        )
        try:
            from piper import SynthesisConfig
        except ImportError as exc:
            raise DependencyMissingError(
                f"the piper engine needs the piper-tts package ({exc})", "pip install 'voxperf[piper]'"
            ) from exc
        try:
            self._voice = _load_voice(
                resolved.path, voice_config, cuda=cuda, threads=intra_threads, spinning=spin
            )
        except Exception as exc:  # onnxruntime and JSON errors vary; all mean the voice did not load
            raise EngineError(
                f"Piper could not load voice {resolved.path}: {exc}",
                "check that the .onnx file and its .onnx.json are complete and of the same voice",
            ) from exc
        config = self._voice.config
        self._syn_config = SynthesisConfig(
            speaker_id=speaker_id, length_scale=length, noise_scale=noise, noise_w_scale=noise_width
        )
        self.sample_rate: int = int(config.sample_rate)
        self.info = EngineInfo(
            role="tts",
            name="piper",
            version=package_version("piper-tts"),
            model=resolved.name,
            model_path=str(resolved.path),
            model_source=resolved.source,
            weights=(str(resolved.path), f"{resolved.path}.json"),
            settings={
                "length_scale": config.length_scale if length is None else length,
                "noise_scale": config.noise_scale if noise is None else noise,
                "noise_w": config.noise_w_scale if noise_width is None else noise_width,
                "speaker": speaker_id,
                "use_cuda": cuda,
                "threads": intra_threads,
                "spinning": spin,
                "sample_rate": self.sample_rate,
                "deterministic": noise == 0.0 and noise_width == 0.0,
            },
        )

    def stream(self, text: str) -> Iterator[Audio]:
        """Yield one chunk per sentence as Piper finishes it (lazy: nothing runs until iterated)."""
        if not isinstance(text, str) or not text.strip():
            raise UsageError("Piper was given no text to speak", "pass a non-empty text")
        return self._chunks(text)

    def _chunks(self, text: str) -> Iterator[Audio]:
        chunks = iter(self._voice.synthesize(text, self._syn_config))
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as exc:  # onnxruntime / phonemizer failures surface here
                raise EngineError(
                    f"Piper failed while synthesising: {exc}", "check the voice and text"
                ) from exc
            samples = np.atleast_1d(np.asarray(chunk.audio_float_array, dtype=np.float32))
            yield Audio(samples, int(chunk.sample_rate))

    def warmup(self) -> None:
        """Synthesise one short sentence so the first measured call pays no session start-up."""
        for _ in self.stream(_WARMUP_TEXT):
            pass


def _load_voice(model: Path, config: dict[str, Any], *, cuda: bool, threads: int, spinning: bool) -> Any:
    """``PiperVoice.load`` with our ONNX Runtime session options (``load`` accepts none)."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    providers: list[Any] = (
        [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]  # as PiperVoice.load
        if cuda
        else ["CPUExecutionProvider"]
    )
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers)
    return PiperVoice(
        session=_ReleasingSession(session), config=PiperConfig.from_dict(config), download_dir=Path.cwd()
    )


class _ReleasingSession:
    """The ONNX session, run with arena shrinkage: memory a synthesis took goes back after it.

    ONNX Runtime's CPU arena keeps the peak of every run for good; VITS activations grow with the
    audio produced, so a server's RSS ratcheted up to its worst request (4 syntheses at once: 665 MiB
    kept after the load; with shrinkage 212 MiB, at the same speed)."""

    def __init__(self, session: Any) -> None:
        import onnxruntime

        self._session = session
        self._options = onnxruntime.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._options)


def _parse_threads(value: str | int) -> int:
    """ONNX Runtime intra-op threads: a whole number >= 0 (0 = its default)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if isinstance(value, bool) or number < 0:
        raise UsageError(
            f"piper option threads={value!r} is not a whole number >= 0", "e.g. threads=1 (0 = default)"
        )
    return number


def _read_voice_config(model: Path) -> dict[str, Any]:
    config_path = Path(f"{model}.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot read Piper voice config {config_path}: {exc}",
            "download the voice's .onnx.json together with the .onnx file",
        ) from exc
    if not isinstance(config, dict):
        raise ModelNotFoundError(
            f"Piper voice config {config_path} is not a JSON object", "download it again"
        )
    return config


def _parse_float(
    option: str, value: str | float | None, *, minimum: float, inclusive: bool = True
) -> float | None:
    """A number from an option value; ``None``, ``""`` or ``"voice"`` mean "the voice's own value"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "voice", "default")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"piper option {option}={value!r} is not a number", f"e.g. {option}=1.0") from None
    bad = not np.isfinite(number) or number < minimum or (not inclusive and number == minimum)
    if bad:
        bound = f"> {minimum:g}" if not inclusive else f">= {minimum:g}"
        raise UsageError(f"piper option {option}={value!r} is out of range", f"use a number {bound}")
    return number


def _speaker_id(speaker: Any, num_speakers: int, names: dict[str, int], voice: str) -> int | None:
    """Speaker id from a number or a name in the voice's speaker map."""
    if speaker is None or (isinstance(speaker, str) and not speaker.strip()):
        return None
    if num_speakers <= 1:
        raise UsageError(f"Piper voice {voice} has a single speaker", "drop the speaker option")
    text = str(speaker).strip()
    if text in names:
        return names[text]
    try:
        number = int(text)
    except ValueError:
        known = ", ".join(sorted(names)[:10]) or "none"
        raise UsageError(
            f"Piper voice {voice} has no speaker {text!r}",
            f"use an id below {num_speakers} or a name ({known})",
        ) from None
    if not 0 <= number < num_speakers:
        raise UsageError(
            f"Piper voice {voice} has no speaker id {number}", f"use an id from 0 to {num_speakers - 1}"
        )
    return number


PLUGIN = EnginePlugin(
    role="tts",
    name="piper",
    factory=PiperTTS,
    summary="Piper neural TTS on ONNX Runtime (bundled en_US-joe-medium, or any .onnx voice)",
    requires=("piper",),
    install="voxperf[piper]",
    options=(
        EngineOption(
            "voice", "str", DEFAULT_PIPER_VOICE, "voice name (en_US-joe-medium bundled) or .onnx path"
        ),
        EngineOption("length_scale", "float", None, "> 0; below 1 speaks faster (default: the voice's)"),
        EngineOption("noise_scale", "str", 0.0, ">= 0, or voice for the voice's own (0 = deterministic)"),
        EngineOption("noise_w", "str", 0.0, ">= 0, or voice for the voice's own (0 = deterministic)"),
        EngineOption("speaker", "str", None, "speaker id or name of a multi-speaker voice"),
        EngineOption("use_cuda", "bool", False, "run on CUDA"),
        EngineOption("threads", "int", 0, "ONNX Runtime intra-op threads (0 = its default)"),
        EngineOption("spinning", "bool", True, "let ONNX Runtime threads busy-wait between runs"),
    ),
)
