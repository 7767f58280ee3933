"""A self-contained HTML report: verdict table, per-stage distributions (base vs head) and a p50
timeline, as inline SVG (no scripts, no network, opens offline). The full comparison is embedded as
JSON (``<script type="application/json" id="voxperf-data">``) for machines."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from voxperf.bench.catalog import is_stage_metric
from voxperf.bench.schema import BenchResult
from voxperf.bench.table import format_value
from voxperf.report.compare import Comparison, samples_by_group
from voxperf.report.render import TrendPoint
from voxperf.report.verdict import value_with_unit

__all__ = ["render_html"]

_COLORS = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}
td,th{padding:3px 8px;border-bottom:1px solid #e5e5e5;text-align:right}td:first-child,th:first-child,
td.l,th.l{text-align:left}.regression{color:#c0392b;font-weight:600}.improvement{color:#1e8449}
.inconclusive{color:#b7950b}.unchanged{color:#888}.fail{color:#c0392b}.ok{color:#1e8449}
svg{background:#fafafa;border:1px solid #eee;margin:4px 0}.note{color:#666;font-size:12px}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _strip_chart(
    title: str, base: Sequence[float], head: Sequence[float], unit: str, width: int = 560
) -> str:
    """Dots of every raw sample on one axis, base above head, with each side's median marked."""
    values = [*base, *head]
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi), 1e-9)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def x(v: float) -> float:
        return 110 + (v - lo) / (hi - lo) * (width - 130)

    parts = [
        f'<svg class="dist" role="img" width="{width}" height="74" viewBox="0 0 {width} 74">'
        f"<title>{_esc(title)}</title>"
    ]
    for row, (label, vals, color) in enumerate((("base", base, "#888"), ("head", head, "#4269d0"))):
        y = 20 + row * 26
        parts.append(f'<text x="4" y="{y + 4}" font-size="11">{label} (n={len(vals)})</text>')
        for v in vals:
            parts.append(f'<circle cx="{x(v):.1f}" cy="{y}" r="3" fill="{color}" fill-opacity="0.6"/>')
        if vals:
            med = sorted(vals)[len(vals) // 2]
            parts.append(
                f'<line x1="{x(med):.1f}" x2="{x(med):.1f}" y1="{y - 8}" y2="{y + 8}" stroke="#000"/>'
            )
    parts.append(f'<text x="110" y="70" font-size="10">{_esc(format_value(lo, unit))}</text>')
    parts.append(
        f'<text x="{width - 10}" y="70" font-size="10" text-anchor="end">'
        f"{_esc(format_value(hi, unit))}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_chart(
    title: str,
    trend: Sequence[TrendPoint],
    keys: list[tuple[str, str, str | None, str]],
    width: int = 760,
    height: int = 220,
) -> str:
    """p50 of each stage across the trend window, one polyline per stage."""
    series = [[p.p50.get(k) for p in trend] for k in keys]
    values = [v for s in series for v in s if v is not None]
    if not values or len(trend) < 2:
        return ""
    top = max(values) * 1.05 or 1.0
    n = len(trend)

    def xy(i: int, v: float) -> str:
        return f"{50 + i / (n - 1) * (width - 70):.1f},{height - 30 - v / top * (height - 50):.1f}"

    parts = [
        f'<svg class="timeline" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{_esc(title)}</title>",
        f'<text x="4" y="14" font-size="10">{_esc(format_value(top, "ms"))}</text>',
        f'<line x1="50" x2="{width - 20}" y1="{height - 30}" y2="{height - 30}" stroke="#ccc"/>',
    ]
    for idx, (key, s) in enumerate(zip(keys, series, strict=True)):
        color = _COLORS[idx % len(_COLORS)]
        points = " ".join(xy(i, v) for i, v in enumerate(s) if v is not None)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
        parts.append(
            f'<text x="{width - 18}" y="{20 + idx * 12}" font-size="10" fill="{color}" '
            f'text-anchor="end">{_esc(key[3])}</text>'
        )
    parts.append(f'<text x="50" y="{height - 12}" font-size="10">{_esc(trend[0].commit[:8])}</text>')
    parts.append(
        f'<text x="{width - 20}" y="{height - 12}" font-size="10" text-anchor="end">'
        f"{_esc(trend[-1].commit[:8])}</text></svg>"
    )
    return "".join(parts)


def render_html(
    comparison: Comparison, base: BenchResult | None, head: BenchResult, trend: Sequence[TrendPoint] = ()
) -> str:
    """The whole report as one HTML document."""
    c = comparison
    mode = f" ({_esc(c.baseline_mode)})" if c.baseline_mode else ""
    decision = c.decision
    headline = decision.headline() if decision else "no decision"
    status = f'<span class="{"fail" if c.failed else "ok"}" id=verdict>{_esc(headline)}</span>'
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>voxperf report {_esc(c.head_label)}</title><style>{_CSS}</style></head><body>",
        f"<h1>voxperf report</h1><p>{status}</p><p>head <code>{_esc(c.head_label)}</code> vs base "
        f"<code>{_esc(c.base_label)}</code>{mode}</p>",
    ]
    if decision is not None and decision.rows:
        out.append(
            "<h2>Gated metrics</h2><table id=gate><tr><th class=l>verdict</th><th class=l>metric</th>"
            "<th class=l>where</th><th>base</th><th>head</th><th>change [95% CI]</th><th>tolerance</th>"
            "<th>p (Holm)</th></tr>"
        )
        for gate_row in decision.rows:
            ch = gate_row.change
            out.append(
                f'<tr><td class="l {gate_row.verdict}">{gate_row.verdict}</td>'
                f"<td class=l>{_esc(ch.metric)}</td>"
                f"<td class=l>{_esc(ch.where)}</td><td>{_esc(value_with_unit(ch.base, ch))}</td>"
                f"<td>{_esc(value_with_unit(ch.head, ch))}</td><td>{_esc(ch.change_text())}</td>"
                f"<td>{_esc(ch.tolerance_text())}</td><td>{gate_row.p_worse_adjusted:.3g}</td></tr>"
            )
        out.append("</table>")
    out += [
        "<details><summary>All metrics (information)</summary>",
        "<table id=summary><tr><th class=l>group</th><th class=l>fixture</th>"
        "<th class=l>metric</th><th>base</th><th>head</th><th>Δ</th><th>95% CI of Δ</th>"
        "<th class=l>verdict</th></tr>",
    ]
    for i, r in enumerate(c.rows):
        d = r.delta
        rel = f" ({d.rel * 100:+.1f}%)" if d.rel is not None else ""
        label = f"{r.lane} · {r.pipeline}" + (f" · {r.level}" if r.level else "")
        out.append(
            f'<tr data-row="{i}" data-base="{d.base!r}" data-head="{d.head!r}"><td>{_esc(label)}</td>'
            f"<td class=l>{_esc(r.fixture or 'all')}</td><td class=l>{_esc(r.metric)} {r.stat}</td>"
            f"<td>{_esc(format_value(d.base, r.unit))}</td><td>{_esc(format_value(d.head, r.unit))}</td>"
            f"<td>{_esc(format_value(d.abs, r.unit))}{rel}</td>"
            f"<td>[{_esc(format_value(d.abs_ci[0], r.unit))}, {_esc(format_value(d.abs_ci[1], r.unit))}]</td>"
            f'<td class="l {r.verdict}">{r.verdict}{" (" + r.severity + ")" if r.severity else ""}</td></tr>'
        )
    out.append("</table></details>")
    if c.skipped:
        out.append("<h2>Not compared</h2><ul>" + "".join(f"<li>{_esc(s)}</li>" for s in c.skipped) + "</ul>")
    if base is not None:
        out.append("<h2>Per-stage distributions (all raw samples, base vs head)</h2>")
        b_samples, h_samples = samples_by_group(base), samples_by_group(head)
        for group in sorted(set(b_samples) & set(h_samples), key=str):
            lane, pipeline, level = group
            out.append(f"<h3>{_esc(lane)} · {_esc(pipeline)}{' · ' + _esc(level) if level else ''}</h3>")
            metrics = sorted(
                {m for f in h_samples[group].values() for m in f if is_stage_metric(m) or m == "total_ms"}
            )
            for metric in metrics:
                bv = [v for f in b_samples[group].values() for v in f.get(metric, [])]
                hv = [v for f in h_samples[group].values() for v in f.get(metric, [])]
                if bv and hv:
                    out.append(f"<div>{_esc(metric)}<br>{_strip_chart(metric, bv, hv, 'ms')}</div>")
    if trend:
        out.append(f"<h2>Timeline: p50 per stage over the latest {len(trend)} runs</h2>")
        groups = sorted({k[:3] for p in trend for k in p.p50}, key=str)
        for g in groups:
            keys = sorted({k for p in trend for k in p.p50 if k[:3] == g and is_stage_metric(k[3])}, key=str)
            chart = _timeline_chart(" · ".join(x for x in g if x), trend, keys)
            if chart:
                out.append(f"<h3>{_esc(' · '.join(x for x in g if x))}</h3>{chart}")
    data = json.dumps(c.to_dict()).replace("</", "<\\/")
    out.append(f'<script type="application/json" id="voxperf-data">{data}</script>')
    out.append(
        '<p class="note">The gated metrics decide (Holm-controlled, tolerance shown); every other row '
        "is information: a regression there exceeds its threshold and its 95% CI excludes 0. "
        "Generated by voxperf.</p></body></html>"
    )
    return "\n".join(out)
