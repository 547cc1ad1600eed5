"""The HTML report's measured-capacity section: throughput per deployment (the ledger's, a bench's), the
self-hosted deployments against the API, and each bench's curve (output tokens/s and TTFT by concurrency)."""

from __future__ import annotations

from html import escape
from typing import Any

from hedgeway.economics.report import _frame, _img, _table, _ticks, _usd

COLOURS = ("#1f77b4", "#d62728")


def curve_svg(result: dict[str, Any], w: int = 760, h: int = 360) -> str:
    """One bench result: aggregate output tokens/s (left axis) and TTFT p50 ms (right axis) against
    concurrency (x, one column per level)."""
    levels = result["levels"]
    left, right, top, bottom = 70, 70, 40, 50
    pw, ph = w - left - right, h - top - bottom
    x = lambda i: left + pw * (i + 0.5) / len(levels)  # noqa: E731
    out = _frame(f"Measured: {result['deployment']}", w, h)
    for key, colour, side, label in (("output_tokens_per_s", COLOURS[0], left, "output tokens/s"),
                                     ("ttft_ms_p50", COLOURS[1], left + pw, "TTFT p50 (ms)")):
        ticks = _ticks(max([lv[key] or 0 for lv in levels] + [1.0]))
        y = lambda v: top + ph - ph * v / ticks[-1]  # noqa: E731
        anchor, dx = ("end", -6) if side == left else ("start", 6)
        out += [f'<text x="{side + dx}" y="{y(t) + 4:.1f}" text-anchor="{anchor}" fill="{colour}">{t:,.0f}</text>'
                for t in ticks]
        pts = " ".join(f"{x(i):.1f},{y(lv[key]):.1f}" for i, lv in enumerate(levels) if lv[key] is not None)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>'
                   f'<text x="{side}" y="{top - 8}" text-anchor="middle" fill="{colour}">{escape(label)}</text>')
    out += [f'<text x="{x(i):.1f}" y="{top + ph + 16}" text-anchor="middle">{lv["concurrency"]}</text>'
            for i, lv in enumerate(levels)]
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">concurrent streams</text>')
    return "\n".join(out + ["</svg>"])


def section(plan: dict[str, Any]) -> list[str]:
    measured, rows = plan.get("measured_throughput") or {}, plan.get("self_hosted") or []
    html: list[str] = []
    if measured:
        html += ["<h2>Throughput measured</h2>", _table(
            ["deployment", "output tokens/s", "from", "requests", "TTFT p50 ms"],
            [[d, f["output_tokens_per_s"], f["source"], f["requests"], f.get("ttft_ms_p50") or "-"]
             for d, f in measured.items()])]
    if rows:
        html += ["<h2>Self-hosted deployments against the API</h2>", _table(
            ["deployment", "tokens/s", "replicas", "logged", "at this throughput", "on the API"],
            [[r["deployment"], f"{r['tokens_per_s']:g} ({r['tokens_per_s_source']})", r["deployments"],
              _usd(r["logged_monthly_usd"]), _usd(r["self_host_monthly_usd"]),
              f"{_usd(r['api_monthly_usd'])} ({r['api']})"] for r in rows])]
    for result in plan.get("bench") or []:
        html.append(_img(curve_svg(result), f"throughput curve of {result['deployment']}"))
    return html
