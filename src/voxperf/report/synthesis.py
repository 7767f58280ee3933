"""Optional synthesis: a short paragraph from an OpenAI-compatible chat endpoint. Fails open.

Only numbers, stage names, verdicts and file paths are sent (never transcripts). Any failure —
no endpoint, timeout, HTTP error, garbage — returns no paragraph and a note; the report is intact.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from voxperf.report.compare import Comparison

__all__ = ["Synthesis", "synthesize"]

SYSTEM_PROMPT = (
    "You are a performance engineer reviewing a voice pipeline benchmark comparison. In at most three "
    "sentences: state the most likely cause of the main regression (if any) from the stage deltas and "
    "touched files, and name one concrete next step to validate it. Do not invent numbers."
)


@dataclass(frozen=True, slots=True)
class Synthesis:
    text: str | None
    note: str | None  # why there is no text, when there is none


def _facts(c: Comparison) -> str:
    lines = [f"base {c.base_label} vs head {c.head_label}"]
    for r in c.rows[:25]:
        if r.verdict in ("regression", "improvement") and r.fixture is None:
            rel = f"{r.delta.rel * 100:+.1f}%" if r.delta.rel is not None else ""
            lines.append(
                f"{r.verdict} ({r.severity}): {r.lane}/{r.pipeline}/{r.level or '-'} {r.metric} {r.stat} "
                f"{r.delta.base:.4g} -> {r.delta.head:.4g} {r.unit} {rel}"
            )
    for a in c.attributions:
        if a.dominant:
            parts = ", ".join(f"{k} {v:+.1f}ms" for k, v in a.stage_deltas_ms.items())
            where = f"{a.lane}/{a.pipeline}/{a.level or '-'}"
            lines.append(f"attribution {where}: total {a.total_delta_ms:+.1f}ms ({parts})")
            for stage, files in a.files.items():
                lines.append(f"touched for {stage}: {', '.join(files[:10])}")
    lines += [f"hint: {h}" for h in c.hints]
    return "\n".join(lines)


def synthesize(
    comparison: Comparison,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    timeout_s: float = 20.0,
) -> Synthesis:
    """Ask the endpoint for a paragraph; never raises."""
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not url:
        return Synthesis(None, "synthesis skipped: no OPENAI_BASE_URL configured")
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
    body = {
        "model": model or os.environ.get("VOXPERF_SYNTH_MODEL", "gpt-4o-mini"),
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _facts(comparison)},
        ],
        "temperature": 0,
    }
    req = urllib.request.Request(
        f"{url.rstrip('/')}/chat/completions", data=json.dumps(body).encode(), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = json.loads(resp.read())
        text = data["choices"][0]["message"]["content"].strip()
    except urllib.error.HTTPError as exc:
        return Synthesis(None, f"synthesis unavailable: the endpoint returned {exc.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return Synthesis(None, f"synthesis unavailable: {type(exc).__name__}")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return Synthesis(None, "synthesis unavailable: unexpected answer from the endpoint")
    if not text:
        return Synthesis(None, "synthesis unavailable: empty answer")
    return Synthesis(text[:1200], None)
