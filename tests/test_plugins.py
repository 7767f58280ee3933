"""Engines as plugins: entry-point discovery, declared options (checked before anything loads),
availability, in-process registration, and engines given to run_bench and the pipelines as
factories or instances instead of specs."""

from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from voxperf.bench.runner import BenchConfig, run_bench
from voxperf.engines import registry
from voxperf.engines.fakes import FakeRewriter, FakeSTT
from voxperf.engines.registry import (
    ROLES,
    EngineOption,
    EnginePlugin,
    create_engine,
    describe_engines,
    engine_plugin,
    engine_plugins,
    parse_spec,
    registered,
)
from voxperf.errors import DependencyMissingError, UnknownEngineError, UsageError
from voxperf.pipeline.dictation import DictationPipeline


def test_the_built_in_engines_come_through_the_entry_point_group() -> None:
    for role in ROLES:
        plugins = engine_plugins(role)
        assert "fake" in plugins and plugins["fake"].is_fake
        assert all(p.distribution == "voxperf" and p.role == role for p in plugins.values())
    assert set(engine_plugins("stt")) >= {"faster-whisper", "pocketsphinx"}
    assert registry.plugin_problems() == []


def _parameters(factory: Any) -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


@pytest.mark.parametrize("role", ROLES)
def test_declared_options_are_the_constructors_parameters_with_the_same_defaults(role: str) -> None:
    """A declaration that drifted from its engine would list options that fail or hide ones that exist."""
    for plugin in engine_plugins(role).values():
        params = _parameters(plugin.load_factory())
        declared = {o.name: o.default for o in plugin.options}
        assert declared.keys() == params.keys(), plugin.name
        for name, default in declared.items():
            assert str(default) == str(params[name]), f"{plugin.name}.{name}"


def test_options_are_typed_and_bad_ones_are_one_line_errors_naming_the_valid_ones() -> None:
    spec = parse_spec("stt", "faster-whisper:threads=2,vad-filter=yes,compute_type=INT8")
    plugin = engine_plugin("stt", "faster-whisper")
    assert plugin.parse_options(spec.options) == {"threads": 2, "vad_filter": True, "compute_type": "int8"}
    with pytest.raises(UsageError) as unknown:
        parse_spec("stt", "faster-whisper:thread=2")
    assert "unknown option 'thread'" in unknown.value.message
    assert unknown.value.hint is not None and "threads" in unknown.value.hint
    with pytest.raises(UsageError, match="not an integer"):
        parse_spec("stt", "faster-whisper:beam_size=wide")
    with pytest.raises(UsageError, match="not a boolean"):
        parse_spec("stt", "faster-whisper:vad_filter=maybe")
    with pytest.raises(UsageError) as choice:
        parse_spec("vad", "webrtc:frame_ms=25")
    assert choice.value.hint == "frame_ms must be one of: 10, 20, 30"
    with pytest.raises(UnknownEngineError, match="unknown stt engine 'whisperx'"):
        parse_spec("stt", "whisperx")


def test_a_missing_package_is_reported_with_what_to_install() -> None:
    plugin = EnginePlugin(
        role="stt",
        name="needs-something",
        factory="voxperf_no_such_module:Engine",
        requires=("voxperf_no_such_module",),
        install="voxperf-no-such-module",
    )
    with registered(plugin):
        (row,) = [e for e in describe_engines() if e["name"] == "needs-something"]
        assert not row["available"] and row["missing"] == "voxperf_no_such_module"
        assert row["install"] == "pip install 'voxperf-no-such-module'"
        with pytest.raises(DependencyMissingError) as err:
            create_engine(parse_spec("stt", "needs-something"))
        assert err.value.hint == "pip install 'voxperf-no-such-module'"
    assert "needs-something" not in engine_plugins("stt")  # registration undone


def test_a_missing_program_is_reported_and_the_listing_says_so() -> None:
    plugin = EnginePlugin(role="tts", name="ghost", factory=FakeSTT, binaries=("voxperf-no-such-program",))
    assert plugin.missing() == "the voxperf-no-such-program program"
    assert plugin.install_hint().startswith("install voxperf-no-such-program")


def test_a_broken_third_party_entry_point_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[voxperf.engines]\nstt.broken = voxperf_no_such_module:PLUGIN\n"
        "stt.clash = voxperf.engines.fakes:PLUGINS\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = registry._Plugins()
    stt = plugins.all("stt")
    assert "faster-whisper" in stt and stt["fake"].distribution == "voxperf"  # the built-in kept
    assert any("'stt.broken' of broken-plugin" in p and "ModuleNotFoundError" in p for p in plugins.problems)
    assert any("'fake' of broken-plugin ignored: voxperf already provides it" in p for p in plugins.problems)


def test_voxperf_engines_lists_availability_and_options() -> None:
    listing = run_cli("engines")
    assert listing.returncode == 0, listing.stderr
    assert "stt      faster-whisper  ready" in listing.stdout
    espeak = next(line for line in listing.stdout.splitlines() if " espeak-ng " in line)
    import shutil

    assert ("ready" in espeak) == (shutil.which("espeak-ng") is not None)
    one = run_cli("engines", "piper")
    assert "length_scale" in one.stdout and "float" in one.stdout
    missing = run_cli("engines", "nope")
    assert missing.returncode == 2 and "no engine named 'nope'" in missing.stderr


def _config(tone_dir: Path, **engines: Any) -> BenchConfig:
    return BenchConfig(
        lanes=("provider",),
        pipelines=("dictation",),
        fixtures=tone_dir,
        vad="none",
        levels=("raw",),
        iterations=2,
        warmup=0,
        resamples=50,
        **engines,
    )


def test_run_bench_takes_a_factory_into_its_lane_process(tone_dir: Path) -> None:
    outcome = run_bench(_config(tone_dir, stt=FakeSTT, rewrite=FakeRewriter))
    lane = outcome.result.lanes["provider"]
    specs = {e.role: e.spec for e in lane.engines}
    assert specs["stt"] == "voxperf.engines.fakes:FakeSTT"
    assert outcome.result.config["stt"] == "voxperf.engines.fakes:FakeSTT"
    assert lane.process == "worker"  # created from the factory inside the lane's own process
    assert len(lane.runs) == 3 * 2  # three fixtures, two iterations


def test_run_bench_takes_an_instance_in_process_and_refuses_what_cannot_cross(tone_dir: Path) -> None:
    engine = FakeSTT(text="hello world")
    outcome = run_bench(_config(tone_dir, stt=engine), isolate=False)
    lane = outcome.result.lanes["provider"]
    assert (
        next(e for e in lane.engines if e.role == "stt").spec == "instance of voxperf.engines.fakes:FakeSTT"
    )
    with pytest.raises(UsageError, match="is an instance"):
        run_bench(_config(tone_dir, stt=engine))
    with pytest.raises(UsageError, match="cannot be sent"):
        run_bench(_config(tone_dir, stt=lambda: FakeSTT()))


def test_pipelines_take_specs_factories_and_instances(tone_dir: Path) -> None:
    from voxperf.audio.codec import decode

    payload = (tone_dir / "a.wav").read_bytes()
    for stt in ("fake:text=hi", functools.partial(FakeSTT, text="hi"), FakeSTT(text="hi")):
        result = DictationPipeline(stt, "fake").run(payload, level="raw")
        assert result.text == "hi"
    assert decode(payload).duration_s == pytest.approx(1.0)


def test_a_plugin_registered_in_process_takes_options_like_a_built_in() -> None:
    calls: list[dict[str, Any]] = []

    def factory(**options: Any) -> FakeSTT:
        calls.append(options)
        return FakeSTT(text="x")

    plugin = EnginePlugin(role="stt", name="mine", factory=factory, options=(EngineOption("beam", "int", 1),))
    with registered(plugin):
        create_engine(parse_spec("stt", "mine:beam=4"))
    assert calls == [{"beam": 4}]
    assert sys.modules.get("voxperf_no_such_module") is None
