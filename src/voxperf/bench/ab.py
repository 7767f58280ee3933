"""A/B in one run: two engine configurations, interleaved, compared by paired ratios.

``voxperf bench --vs "stt=faster-whisper:compute_type=float32"`` runs configuration A (the bench
options) and B (A with the given overrides) in the provider lane, in one process, alternating the
order every iteration (A B, B A, ...) so drift on a noisy machine hits both alike. Each request of B
is paired with the same fixture, level and iteration of A; the reported figure is the median of the
paired ratios B/A with a bootstrap 95 % CI. A CI that excludes 1 is a real difference.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from voxperf.bench import stats
from voxperf.bench.catalog import METRIC_BETTER, METRIC_UNITS
from voxperf.bench.runner import (
    BenchConfig,
    Progress,
    _dictation_run,
    _Engines,
    _lane_engines,
    _prepare_fixtures,
    _speech_run,
    lane_pipelines,
)
from voxperf.engines.registry import redact_spec
from voxperf.errors import UsageError, VoxperfError
from voxperf.trace.metrics import word_errors

__all__ = ["AB_KEYS", "ABRow", "parse_vs", "run_ab"]

AB_KEYS = ("stt", "tts", "vad", "rewrite", "encode")


def parse_vs(text: str) -> dict[str, str]:
    """``stt=SPEC;vad=SPEC`` or a TOML file with those keys -> overrides for configuration B."""
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(
                f"cannot read --vs file {path}: {exc}", 'give key = "spec" lines, e.g. stt = "..."'
            ) from exc
        items = {str(k): str(v) for k, v in data.items()}
    else:
        items = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(
                    f"bad --vs entry {part.strip()!r}",
                    'write role=spec;role=spec, e.g. --vs "stt=pocketsphinx"',
                )
            items[key.strip()] = value.strip()
    unknown = sorted(set(items) - set(AB_KEYS))
    if unknown or not items:
        raise UsageError(
            f"--vs can override {', '.join(AB_KEYS)}; got {', '.join(unknown) or 'nothing'}",
            'e.g. --vs "stt=faster-whisper:compute_type=float32"',
        )
    return items


@dataclass(frozen=True, slots=True)
class ABRow:
    """One metric in one pipeline/level: A and B medians and the paired ratio B/A with its CI."""

    pipeline: str
    level: str | None
    metric: str
    unit: str
    pairs: int
    a_p50: float
    b_p50: float
    ratio_p50: float  # median paired B/A, or for kind "difference" the median paired B − A
    ratio_ci: tuple[float, float]
    kind: str = "ratio"  # "difference" for metrics that can be 0 (WER), where a ratio is undefined

    @property
    def verdict(self) -> str:
        lo, hi = self.ratio_ci
        neutral = 1.0 if self.kind == "ratio" else 0.0
        exact = lo == hi  # deterministic WER: the change on these utterances is exact, not estimated
        if (self.pairs < 3 and not exact) or lo <= neutral <= hi:
            return "no significant difference"
        lower_in_b = hi < neutral
        return "B better" if lower_in_b == (METRIC_BETTER[self.metric] == "lower") else "B worse"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "level": self.level,
            "metric": self.metric,
            "unit": self.unit,
            "pairs": self.pairs,
            "aP50": self.a_p50,
            "bP50": self.b_p50,
            "ratioP50": self.ratio_p50,
            "ratioCi": list(self.ratio_ci),
            "kind": self.kind,
            "verdict": self.verdict,
        }


def _wer_rows(
    said: dict[tuple[str, str, str], list[str]],
    fixtures: list[Any],
    config: BenchConfig,
    failed: dict[str, str],
) -> list[ABRow]:
    """Corpus WER of A and B per level and B − A on the same utterances: exact when every iteration
    transcribed alike on both sides, else a paired bootstrap CI over utterances."""
    rows = []
    for level in config.levels:
        names = [
            f.name
            for f in fixtures
            if f.text
            and f.name not in failed
            and ("A", level, f.name) in said
            and ("B", level, f.name) in said
        ]
        if not names:
            continue
        texts = {f.name: f.text for f in fixtures}
        norm = config.normalizer
        edits = {
            side: np.array(
                [word_errors(texts[n], said[(side, level, n)][0], norm).edits for n in names], float
            )
            for side in ("A", "B")
        }
        words = np.array([word_errors(texts[n], "", norm).reference_words for n in names], float)
        a, b = float(edits["A"].sum() / words.sum()), float(edits["B"].sum() / words.sum())
        if all(len(set(said[(side, level, n)])) == 1 for side in ("A", "B") for n in names):
            ci = (b - a, b - a)
        else:
            _, ci = stats.paired_ratio_delta_ci(edits["A"], edits["B"], words)
        rows.append(ABRow("dictation", level, "wer", "ratio", len(names), a, b, b - a, ci, "difference"))
    return rows


def run_ab(
    config: BenchConfig, overrides: dict[str, str], *, progress: Progress | None = None
) -> tuple[list[ABRow], dict[str, Any]]:
    """Run A (``config``) and B (``config`` with ``overrides``) interleaved; paired ratios per metric."""
    config_b = replace(config, **cast(dict[str, Any], overrides))
    config.validate()
    config_b.validate()
    engines = _Engines()
    fixtures = _prepare_fixtures(config, engines, [])
    payloads = {f.name: f.path.read_bytes() for f in fixtures}
    sides = {}
    for name, cfg in (("A", config), ("B", config_b)):
        made, records = _lane_engines("provider", cfg, engines)
        dictation, speech = lane_pipelines(made, cfg)
        sides[name] = (dictation, speech, [r.model_dump() for r in records])
    samples: dict[tuple[str, str | None, str], dict[str, list[float]]] = {}
    failed: dict[str, str] = {}  # fixture -> why it was skipped
    said: dict[tuple[str, str, str], list[str]] = {}  # (side, level, fixture) -> delivered texts
    total = (
        (config.warmup + config.iterations)
        * 2
        * (
            len(fixtures) * len(config.levels) * ("dictation" in config.pipelines)
            + sum(1 for f in fixtures if f.text) * ("speech" in config.pipelines)
        )
    )
    if progress:
        progress("A/B", 0, total)
    for it in range(config.warmup + config.iterations):
        warm = it < config.warmup
        order = ("A", "B") if it % 2 == 0 else ("B", "A")
        jobs: list[tuple[str, Any, str | None]] = []
        if "dictation" in config.pipelines:
            jobs += [("dictation", fx, level) for fx in fixtures for level in config.levels]
        if "speech" in config.pipelines:
            jobs += [("speech", fx, None) for fx in fixtures if fx.text]
        for pipeline, fx, level in jobs:
            if fx.name in failed:
                continue
            measured: dict[str, dict[str, float | None]] = {}
            try:
                for side in order:
                    dictation, speech, _ = sides[side]
                    if pipeline == "dictation":
                        assert dictation is not None
                        rec, res = _dictation_run(
                            dictation, payloads[fx.name], fx, level or "raw", it, warm, "provider"
                        )
                        if not warm and fx.text:
                            said.setdefault((side, level or "raw", fx.name), []).append(res.text)
                    else:
                        assert speech is not None
                        rec, _ = _speech_run(speech, fx, it, warm, "provider")
                    measured[side] = rec.metrics
                    if progress:
                        progress(f"A/B · {pipeline} · {fx.name} · {side}", 1)
            except Exception as exc:  # one bad fixture: skipped on both sides, the others go on
                failed[fx.name] = (
                    exc.message if isinstance(exc, VoxperfError) else f"{type(exc).__name__}: {exc}"
                )
                continue
            if warm:
                continue
            for metric in METRIC_UNITS:
                a, b = measured["A"].get(metric), measured["B"].get(metric)
                if a is None or b is None:
                    continue
                slot = samples.setdefault(
                    (pipeline, level, metric), {"a": [], "b": [], "ratio": [], "diff": []}
                )
                slot["a"].append(a)
                slot["b"].append(b)
                slot["diff"].append(b - a)
                if a > 0 and b > 0:
                    slot["ratio"].append(b / a)
    rows = []
    for (pipeline, level, metric), s in samples.items():
        # ratios when every pair has two positive values; else (WER of 0 ...) the paired difference
        kind = "ratio" if len(s["ratio"]) == len(s["a"]) else "difference"
        paired = s["ratio"] if kind == "ratio" else s["diff"]
        ci = stats.bootstrap_quantile_cis(paired, (0.5,), resamples=2000)[0.5]
        rows.append(
            ABRow(
                pipeline,
                level,
                metric,
                METRIC_UNITS[metric],
                len(paired),
                stats.quantile(s["a"], 0.5),
                stats.quantile(s["b"], 0.5),
                stats.quantile(paired, 0.5),
                ci,
                kind,
            )
        )
    rows.extend(_wer_rows(said, fixtures, config, failed))
    meta = {
        "a": {k: redact_spec(str(getattr(config, k))) for k in AB_KEYS},
        "b": {k: redact_spec(str(getattr(config_b, k))) for k in AB_KEYS},
        "engines": {k: v[2] for k, v in sides.items()},
        "iterations": config.iterations,
        "warmup": config.warmup,
        "fixtures": [f.to_dict() for f in fixtures],
        "failures": [{"fixture": k, "message": v} for k, v in failed.items()],
    }
    return rows, meta
