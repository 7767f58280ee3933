"""Pipelines: stage order, nesting, derived metrics on an injected clock, sinks, and exporters."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from voxperf.audio.codec import encode
from voxperf.audio.pcm import Audio
from voxperf.engines.base import EngineInfo
from voxperf.engines.fakes import FakeRewriter, FakeSTT, FakeTTS, FakeVAD
from voxperf.errors import AudioError, UsageError
from voxperf.pipeline.dictation import DictationPipeline
from voxperf.pipeline.sinks import (
    FileSink,
    NullAudioSink,
    NullSink,
    WavFileSink,
    parse_audio_sink,
    parse_text_sink,
)
from voxperf.pipeline.speech import SpeechPipeline
from voxperf.trace.core import NO_PARENT
from voxperf.trace.export import PIPELINE_TIMING_FIELDS, chrome_trace, pipeline_timing_event
from voxperf.trace.metrics import overhead_ns, stage_ns, total_ns, total_stage_ns
from voxperf.trace.stages import ClientEvent, ServerEvent, Stage


class TickClock:
    """Each read advances time by ``step`` ns: durations become counts of clock reads."""

    def __init__(self, step: int = 1_000) -> None:
        self.now = 0
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def tone(seconds: float, rate: int = 48_000, *, lead_silence_s: float = 0.0) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    lead = np.zeros(int(lead_silence_s * rate), dtype=np.float32)
    return Audio(np.concatenate([lead, voiced]), rate)


SECRET = "the secret words of the user"


def test_dictation_stage_order_and_flat_nesting() -> None:
    clock = TickClock()
    sink = NullSink()
    pipe = DictationPipeline(FakeSTT(text=SECRET), FakeRewriter(), vad=FakeVAD(), sink=sink, clock=clock)
    res = pipe.run(encode(tone(1.0), "wav"), "clean")
    names = [s.name for s in res.trace.spans]
    assert names == ["decode", "resample", "vad", "encode", "stt", "rewrite", "paste"]
    assert all(s.parent == NO_PARENT for s in res.trace.spans)
    # with a tick clock each stage is exactly one tick; everything else is orchestration
    assert all(s.duration_ns == 1_000 for s in res.trace.spans)
    assert total_stage_ns(res.trace) == 7_000
    assert total_ns(res.trace) - total_stage_ns(res.trace) == overhead_ns(res.trace)
    assert overhead_ns(res.trace) == 8_000  # 15 reads after start: 7 stages x 2 + finish
    assert res.text.startswith("The secret words")  # clean level capitalised
    assert sink.delivered_chars == len(res.text)
    assert res.original_bytes == int(res.audio_s * 16_000) * 2
    assert 0 < res.encoded_bytes < res.original_bytes  # FLAC compresses a tone


def test_dictation_without_vad_or_encode_skips_stages() -> None:
    pipe = DictationPipeline(FakeSTT(), FakeRewriter(), vad=None, encode_format="none", clock=TickClock())
    res = pipe.run(encode(tone(0.5), "wav"), "raw")
    assert [s.name for s in res.trace.spans] == ["decode", "resample", "stt", "rewrite", "paste"]
    assert res.encoded_bytes == 0


def test_dictation_resamples_to_engine_rate() -> None:
    seen: list[int] = []

    class Spy(FakeSTT):
        def transcribe(self, audio: Audio):  # type: ignore[override]
            seen.append(audio.sample_rate)
            return super().transcribe(audio)

    DictationPipeline(Spy(), FakeRewriter()).run(encode(tone(0.5, 44_100), "flac"), "raw")
    assert seen == [16_000]


def test_dictation_corrupt_audio_raises_audio_error() -> None:
    pipe = DictationPipeline(FakeSTT(), FakeRewriter())
    with pytest.raises(AudioError):
        pipe.run(b"RIFF\x00\x00\x00\x00WAVEgarbage", "raw", name="broken.wav")


def test_bad_encode_format() -> None:
    with pytest.raises(UsageError, match="encode"):
        DictationPipeline(FakeSTT(), FakeRewriter(), encode_format="mp9")


class ScriptedTTS:
    """A TTS whose chunks take a known number of clock ticks, with silence up front."""

    def __init__(self, clock: TickClock, chunks: list[Audio], ticks_per_chunk: int) -> None:
        self.info = EngineInfo(role="tts", name="scripted", version="0", is_fake=True)
        self.sample_rate = chunks[0].sample_rate
        self.clock = clock
        self.chunks = chunks
        self.ticks = ticks_per_chunk

    def stream(self, text: str) -> Iterator[Audio]:
        for c in self.chunks:
            for _ in range(self.ticks):
                self.clock()
            yield c

    def warmup(self) -> None:
        return None


def test_speech_ttfa_counts_from_request_start_to_first_audible_chunk() -> None:
    clock = TickClock(step=1_000_000)  # 1 ms per read
    rate = 16_000
    silent = Audio(np.zeros(rate // 2, dtype=np.float32), rate)  # 0.5 s of silence: not audible
    voiced = tone(0.5, rate)
    tts = ScriptedTTS(clock, [silent, voiced, voiced], ticks_per_chunk=10)
    res = SpeechPipeline(tts, clock=clock).run("anything")
    trace = res.trace
    start = trace.start_ns
    first_chunk = trace.first_event(ServerEvent.FIRST_CHUNK_GENERATED)
    first_audio = trace.first_event(ClientEvent.FIRST_AUDIO_CHUNK)
    assert first_chunk is not None and first_audio is not None
    # the first chunk is silent, so TTFA is the delivery of the second chunk, not the first
    assert first_audio.attrs == {"chunk": 1}
    assert res.ttfa_ns == first_audio.t_ns - start
    assert res.ttfa_ns > res.first_chunk_ns > 0
    assert res.leading_silence_s == pytest.approx(0.5, abs=0.01)
    assert res.chunks == 3
    assert res.audio_s == pytest.approx(1.5)
    # the TTS is far faster than real time: a real-time player never stalls
    assert res.playout is not None and res.playout.stall_count == 0
    assert res.streaming_efficiency == 1.0
    assert res.rtfx == pytest.approx(res.audio_s / (res.generation_ns / 1e9))
    assert stage_ns(trace, Stage.SYNTHESIZE) >= 30 * 1_000_000  # 10 ticks per chunk inside the engine
    assert [s.name for s in trace.spans] == ["synthesize", "sink"] * 3
    events = [e.name for e in trace.events]
    assert events[0] == ClientEvent.REQUEST_START
    assert events[-1] == ClientEvent.REQUEST_COMPLETE


def test_speech_all_silent_has_no_ttfa() -> None:
    clock = TickClock()
    silent = Audio(np.zeros(8_000, dtype=np.float32), 16_000)
    res = SpeechPipeline(ScriptedTTS(clock, [silent], 1), clock=clock).run("x")
    assert res.ttfa_ns is None
    assert res.trace.first_event(ClientEvent.FIRST_AUDIO_CHUNK) is None


def test_speech_with_fake_tts_and_vad(tmp_path) -> None:
    sink = WavFileSink(tmp_path / "out.wav")
    res = SpeechPipeline(FakeTTS(), sink=sink, vad=FakeVAD()).run("One sentence. Two sentences.")
    assert res.chunks == 2
    assert res.ttfa_ns is not None and res.leading_silence_s is not None
    assert res.leading_silence_s == pytest.approx(0.05, abs=0.04)  # FakeTTS leads with 50 ms silence
    import soundfile as sf

    data, rate = sf.read(tmp_path / "out.wav")
    assert len(data) / rate == pytest.approx(res.audio_s, abs=1e-3)


def test_sinks(tmp_path) -> None:
    assert isinstance(parse_text_sink("null"), NullSink)
    f = parse_text_sink(f"file:{tmp_path / 'out.txt'}")
    assert isinstance(f, FileSink)
    f.deliver("one")
    f.deliver("two")
    assert (tmp_path / "out.txt").read_text() == "one\ntwo\n"
    cmd = parse_text_sink(f"cmd:sh -c 'printf %s \"$0\" > {tmp_path / 'cmd.txt'}'")
    cmd.deliver("typed text")
    assert (tmp_path / "cmd.txt").read_text() == "typed text"
    assert isinstance(parse_audio_sink("null"), NullAudioSink)
    for bad in ("nowhere", "file:", "cmd:"):
        with pytest.raises(UsageError):
            parse_text_sink(bad)
    with pytest.raises(UsageError):
        parse_audio_sink("mp3:x")


def test_pipeline_timing_event_has_exactly_seed_fields_and_no_text() -> None:
    pipe = DictationPipeline(FakeSTT(text=SECRET), FakeRewriter(), clock=TickClock(1_000_000))
    res = pipe.run(encode(tone(1.0), "wav"), "clean")
    ev = pipeline_timing_event(
        res.trace,
        processing_level="clean",
        original_bytes=res.original_bytes,
        encoded_bytes=res.encoded_bytes,
        app_version="0.1.0",
        session_id="s",
    )
    assert set(ev) == {"schemaVersion", "appVersion", "appBuild", "osVersion", "event"}
    assert ev["schemaVersion"] == 1
    assert set(ev["event"]) == {"timestamp", "name", "sessionID", "fields"}
    assert ev["event"]["name"] == "pipeline_timing"
    fields = ev["event"]["fields"]
    assert tuple(fields) == PIPELINE_TIMING_FIELDS
    # the pipeline_timing event: total_stage_ms = encode + stt + rewrite + paste, integers
    assert (
        fields["total_stage_ms"]
        == fields["encode_ms"] + fields["stt_ms"] + fields["rewrite_ms"] + fields["paste_ms"]
    )
    assert all(isinstance(v, int) for k, v in fields.items() if k != "processing_level")
    assert fields["stt_ms"] == 1 and fields["total_ms"] > fields["total_stage_ms"]
    assert "secret" not in json.dumps(ev).lower()


def test_chrome_trace_is_valid_and_relative() -> None:
    clock = TickClock()
    res = DictationPipeline(FakeSTT(text=SECRET), FakeRewriter(), clock=clock).run(
        encode(tone(0.5), "wav"), "raw"
    )
    doc = chrome_trace(
        [(res.trace, {"lane": "codepath", "pipeline": "dictation", "fixture": "f", "level": "raw"})]
    )
    events = doc["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert {e["name"] for e in complete} >= {"dictation", "decode", "stt", "paste"}
    assert min(e["ts"] for e in complete) == 0
    assert all(e["dur"] >= 0 for e in complete)
    json.dumps(doc)  # serialisable
    assert "secret" not in json.dumps(doc).lower()
    assert chrome_trace([]) == {"traceEvents": [], "displayTimeUnit": "ms"}


def test_speech_cpu_time_excludes_the_output_analysis() -> None:
    """The VAD scan that finds the first audible sample runs after the request: not its CPU time."""
    import time

    class BusyVAD(FakeVAD):
        calls = 0

        def speech_prob(self, frame):  # type: ignore[no-untyped-def, override]
            BusyVAD.calls += 1
            end = time.process_time_ns() + 5_000_000  # burn 5 ms of CPU per frame
            while time.process_time_ns() < end:
                pass
            return super().speech_prob(frame)

    res = SpeechPipeline(FakeTTS(), vad=BusyVAD()).run("A sentence long enough to have many frames.")
    burned_ns = BusyVAD.calls * 5_000_000
    assert BusyVAD.calls > 20 and res.ttfa_ns is not None
    assert res.cpu_ns < burned_ns / 2, (res.cpu_ns, burned_ns)


def test_subtitles_from_the_engines_segments() -> None:
    from voxperf.engines.base import Segment
    from voxperf.errors import UsageError
    from voxperf.pipeline.dictation import DictationResult
    from voxperf.trace.core import Trace

    segments = (Segment(0.0, 1.5, "Hello there."), Segment(3661.25, 3662.0, "An hour later."))
    result = DictationResult(Trace(), "raw", "", "", 0.0, 0.0, 0, 0, segments=segments)
    assert result.subtitles("srt") == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:01:01,250 --> 01:01:02,000\nAn hour later.\n"
    )
    assert result.subtitles("vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n")
    with pytest.raises(UsageError):
        result.subtitles("ass")
