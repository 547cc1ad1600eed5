"""Telling a plan (the dict from `planner.build_plan`): the one-paragraph verdict and a self-contained HTML
report whose charts are SVG images embedded as data URIs (no network, no plotting library), so the file
reads offline and can be forwarded as is. Everything here reads the plan only; nothing is recomputed
except chart points from the plan's own rates and step sizes.
"""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from decimal import Decimal
from html import escape
from typing import Any

from hedgeway.economics import costmodel as cm
from hedgeway.types import PriceCard

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
SELF_COLOUR, TIER_COLOURS = "#ff7f0e", {"api-first": "#1f77b4", "hybrid": "#9467bd", "self-host": "#ff7f0e"}


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _usd(value: Any) -> str:
    return "n/a" if value is None else cm.usd(Decimal(str(value)))


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _days(n: float) -> str:
    return "1 day" if n == 1 else f"{n:.1f} days"


def _window(led: dict[str, Any]) -> str:
    """"7.0 days", or for a window under a day "12 min of traffic (counted as one day)"."""
    span = led.get("span_seconds", 86_400)
    if span >= 86_400:
        return _days(led["window_days"])
    text = f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min" if span < 7200 else f"{span / 3600:.1f} h"
    return f"{text} of traffic (counted as one day)"


def verdict_text(plan: dict[str, Any]) -> str:
    """The plan in one paragraph: traffic and spend, tier, break-even (or never, and why), best what-if."""
    led, t, sh, a = plan.get("ledger"), plan["traffic"], plan["self_host"], plan["assessment"]
    base = plan["api_options"][0]
    parts = []
    if led:
        parts.append(f"Over {_window(led)} the gateway logged {led['requests']:,} requests: "
                     f"{cm.tokens(led['tokens_per_day_mean'])} tokens/day (peak day "
                     f"{cm.tokens(led['tokens_per_day_peak'])}), {_pct(led['output_ratio'])} output, a run-rate "
                     f"of {_usd(led['monthly_run_rate_usd'])}/month.")
    elif t["tokens_per_day"]:
        parts.append(f"At {cm.tokens(t['tokens_per_day'])} tokens/day ({_pct(t['output_ratio'])} output), "
                     f"{base['name']} costs {_usd(base['monthly_usd'])}/month.")
    elif plan["notes"] and "no requests" in plan["notes"][0]:
        return "The ledger holds no requests in this window, so there is nothing to plan from yet."
    over = f" ({a['overrides'][0]})" if a["overrides"] else ""
    parts.append(f"The 7-factor score is {a['score']}/14, so the tier is {a['tier']}{over}.")
    who = f"{sh['model']} on {sh['gpus']}× {sh['gpu']} at ${sh['gpu_hourly_usd']}/h ({sh['billing']})"
    against = "your logged prices" if led else base["name"]
    cost = f" would cost {_usd(plan['self_host_monthly_usd'])}/month"
    cost += " at this volume" if t["tokens_per_day"] else ""
    be = plan["break_even_tokens_per_day"]
    if be is None:
        parts.append(f"Self-hosting {who}{cost} and never breaks even against {against}: "
                     f"{plan['break_even_reason']}.")
    else:
        mode = "on the article's naive formula" if plan["mode"] == "naive" else "with capacity steps"
        parts.append(f"Self-hosting {who}{cost} and breaks even against {against} at {cm.tokens(be)} tokens/day "
                     f"({mode}).")
    if plan["what_if"]:
        best = min(plan["what_if"], key=lambda w: Decimal(w["monthly_usd"]))
        delta = Decimal(best["savings_usd"])
        change = f"saving {_usd(delta)}/month" if delta > 0 else f"{_usd(-delta)}/month more"
        parts.append(f"The cheapest what-if, {best['policy']}, would cost {_usd(best['monthly_usd'])}/month "
                     f"({change}).")
    if plan["self_host"]["fte"] == 0:
        parts.append("Engineering time is not included.")
    return " ".join(parts)


# ---- SVG charts ---------------------------------------------------------------------------------------

def _ticks(top: float, n: int = 5) -> list[float]:
    """Round tick values from 0 up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(top / step + 0.999) + 1)]


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _frame(title: str, w: int, h: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
            f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
            f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>']


def line_chart(title: str, series: list[dict[str, Any]], x_max: float, marks: list[tuple[float, float, str]],
               vline: tuple[float, str] | None = None, w: int = 760, h: int = 420) -> str:
    """SVG: monthly USD (y) against tokens/day (x). `series`: {label, colour, points [(x, y)], dashed};
    `marks`: labelled points (break-evens); `vline`: (x, label) for the current volume."""
    left, right, top, bottom = 80, 240, 40, 50
    pw, ph = w - left - right, h - top - bottom
    y_top = max([y for s in series for x, y in s["points"] if x <= x_max] + [1.0]) * 1.05
    xt, yt = _ticks(x_max), _ticks(y_top)
    x_max, y_top = xt[-1], yt[-1]
    sx = lambda x: left + pw * x / x_max  # noqa: E731
    sy = lambda y: top + ph - ph * min(y, y_top) / y_top  # noqa: E731
    out = _frame(title, w, h)
    for v in xt:
        out.append(f'<line x1="{sx(v):.1f}" y1="{top}" x2="{sx(v):.1f}" y2="{top + ph}" stroke="#eee"/>'
                   f'<text x="{sx(v):.1f}" y="{top + ph + 16}" text-anchor="middle">{cm.tokens(round(v))}</text>')
    for v in yt:
        out.append(f'<line x1="{left}" y1="{sy(v):.1f}" x2="{left + pw}" y2="{sy(v):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">${v:,.0f}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">tokens per day</text>'
               f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" '
               f'text-anchor="middle">USD per month</text>')
    if vline:
        out.append(f'<line x1="{sx(vline[0]):.1f}" y1="{top}" x2="{sx(vline[0]):.1f}" y2="{top + ph}" '
                   f'stroke="#555" stroke-dasharray="2,3"/><text x="{sx(vline[0]) + 4:.1f}" y="{top + 12}" '
                   f'fill="#555">{escape(vline[1])}</text>')
    for i, s in enumerate(series):
        pts = " ".join(f"{sx(min(x, x_max)):.1f},{sy(y):.1f}" for x, y in s["points"] if x <= x_max * 1.0001)
        dash = ' stroke-dasharray="6,4"' if s.get("dashed") else ""
        out.append(f'<polyline fill="none" stroke="{s["colour"]}" stroke-width="2"{dash} points="{pts}"/>'
                   f'<line x1="{left + pw + 12}" y1="{top + 10 + 18 * i}" x2="{left + pw + 32}" '
                   f'y2="{top + 10 + 18 * i}" stroke="{s["colour"]}" stroke-width="2"{dash}/>'
                   f'<text x="{left + pw + 36}" y="{top + 14 + 18 * i}">{escape(s["label"][:32])}</text>')
    for x, y, label in marks:
        if x <= x_max:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="none" stroke="black" stroke-width="2"/>'
                       f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 7:.1f}">{escape(label)}</text>')
    return "\n".join(out + ["</svg>"])


def bar_chart(title: str, bars: list[tuple[str, float, str]], w: int = 760) -> str:
    """SVG: horizontal bars of monthly USD, one per (label, value, colour), each labelled above its bar."""
    left, right, top, bar_h, row = 20, 110, 40, 22, 46
    top_v = max([v for _, v, _ in bars] + [1.0])
    out = _frame(title, w, top + row * len(bars) + 10)
    for i, (label, value, colour) in enumerate(bars):
        y = top + i * row + 16
        width = max(1.0, (w - left - right) * value / top_v)
        out.append(f'<text x="{left}" y="{y - 4}">{escape(label[:110])}</text>'
                   f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar_h}" fill="{colour}"/>'
                   f'<text x="{left + width + 6:.1f}" y="{y + bar_h / 2 + 4}">'
                   f'{escape(cm.usd(Decimal(str(value))))}</text>')
    return "\n".join(out + ["</svg>"])


def _rate(opt: dict[str, Any], plan: dict[str, Any]) -> Decimal:
    """USD/month per token/day of an API option, from the plan (observed when priced on traffic)."""
    volume = plan["traffic"]["tokens_per_day"]
    if volume and opt["monthly_usd"] is not None:
        return Decimal(opt["monthly_usd"]) / volume
    card = PriceCard(Decimal(opt["input_per_m"]), Decimal(opt["output_per_m"]))
    return cm.api_rate(card, Decimal(str(plan["traffic"]["output_ratio_used"])))


def cost_curve_svg(plan: dict[str, Any]) -> str:
    """Monthly cost against tokens/day: each API option (line), the self-host step curve and the naive
    fixed bill, break-evens circled, the current volume dashed."""
    sh, volume = plan["self_host"], plan["traffic"]["tokens_per_day"]
    g, lab, cap = _d(sh["deployment_monthly_usd"]), _d(sh["labour_monthly_usd"]), plan["capacity_tokens_per_day"]
    be = plan["break_even_tokens_per_day"]
    # wide enough for the current volume, the break-even and a couple of capacity steps
    x_max = _ticks(float(max(2 * (volume or 0), 1.3 * (be or 0), 2.5 * (cap or 0), 1e6)))[-1]
    series, marks = [], []
    for i, opt in enumerate(plan["api_options"]):
        r = float(_rate(opt, plan))
        series.append({"label": opt["name"], "colour": PALETTE[i % len(PALETTE)],
                       "points": [(0, 0), (x_max, r * x_max)]})
        v = opt["capacity_break_even"]
        if v is not None:
            marks.append((v, r * v, cm.tokens(v)))
    steps, k = [], 1
    while cap and (k - 1) * cap <= x_max and k < 500:
        y = float(k * g + lab)
        steps += [((k - 1) * cap, y), (min(k * cap, x_max), y)]
        k += 1
    fixed = float(g + lab)
    series.append({"label": f"self-host {sh['gpus']}× {sh['gpu']} (steps)", "colour": SELF_COLOUR,
                   "points": steps or [(0, fixed), (x_max, fixed)]})
    series.append({"label": "naive: fixed bill, no capacity", "colour": "#999", "dashed": True,
                   "points": [(0, fixed), (x_max, fixed)]})
    vline = (float(volume), f"you: {cm.tokens(volume)}/day") if volume else None
    return line_chart("Monthly cost vs tokens/day", series, x_max, marks, vline)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.45}"
       "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:4px 8px;"
       "text-align:left;font-size:14px}th{background:#f4f4f4}.kpi{display:inline-block;border:1px solid #ddd;"
       "border-radius:6px;padding:8px 14px;margin:0 8px 8px 0}.kpi b{display:block;font-size:20px}"
       ".verdict{background:#f6f8fa;border-left:4px solid #ff7f0e;padding:10px 14px}img{max-width:100%}")


def _section_options(plan: dict[str, Any]) -> list[str]:
    options = [[o["name"], o["input_per_m"] or "-", o["output_per_m"] or "-", _usd(o["monthly_usd"]),
                cm.tokens(o["capacity_break_even"]), cm.tokens(o["naive_break_even"]), o["reason"]]
               for o in plan["api_options"]]
    profiles = [[p["profile"], p["model"], f"{p['gpus']}× {p['gpu']}", _usd(p["deployment_monthly_usd"]),
                 cm.tokens(p["capacity_tokens_per_day"]), p["deployments"], _usd(p["monthly_usd"]),
                 cm.tokens(p["break_even_tokens_per_day"]), p["reason"]] for p in plan["profiles"]]
    return ["<h2>API options</h2>",
            _table(["option", "$/M in", "$/M out", "monthly", "break-even (capacity)", "break-even (naive)", "why"],
                   options),
            f"<h2>Self-host profiles (against {escape(plan['api_options'][0]['name'])})</h2>",
            _table(["profile", "model", "GPUs", "per deployment", "capacity/day", "deployments", "monthly",
                    "break-even", "why"], profiles)]


def _section_what_if(plan: dict[str, Any]) -> list[str]:
    if not plan["what_if"]:
        return []
    bars = [("as logged", float(plan["api_monthly_usd"]), PALETTE[0])]
    bars += [(w["policy"], float(w["monthly_usd"]), PALETTE[2 + i % 3]) for i, w in enumerate(plan["what_if"])]
    rows = [[w["policy"], _usd(w["monthly_usd"]), _usd(w["api_monthly_usd"]), _usd(w["self_host_monthly_usd"]),
             w["deployments"], _pct(w["routed_share"]), f"{_usd(w['savings_usd'])} ({_pct(w['savings_pct'])})"]
            for w in plan["what_if"]]
    return ["<h2>What-if re-pricing of the logged requests</h2>",
            _img(bar_chart("What-if: monthly cost", bars), "what-if costs"),
            _table(["policy", "monthly", "API part", "self-host part", "deployments", "routed", "saving"], rows)]


def _section_ledger(plan: dict[str, Any]) -> list[str]:
    led = plan["ledger"]
    if not led:
        return []
    ttft = " / ".join("-" if v is None else f"{v:.0f}" for v in led["ttft_ms"].values())
    summary = [[led["requests"], led["errors"], _days(led["window_days"]), cm.tokens(led["tokens_per_day_mean"]),
                cm.tokens(led["tokens_per_day_peak"]), _pct(led["output_ratio"]), ttft, _pct(led["simple_share"])]]
    mix = [[m["model"], m["deployment"], m["requests"], cm.tokens(m["tokens"]), _pct(m["share"]),
            _usd(m["spend_usd"])] for m in led["mix"]]
    return ["<h2>Traffic in the ledger</h2>",
            _table(["requests", "errors", "window", "tokens/day", "peak day", "output ratio",
                    "TTFT p50/p95/p99 ms", "simple share"], summary),
            _table(["model", "deployment", "requests", "tokens", "share", "spend"], mix)]


def _section_score(plan: dict[str, Any]) -> list[str]:
    a = plan["assessment"]
    return [f"<h2>7-factor score: {a['score']}/14 → {escape(a['tier'])}</h2><p>{escape(a['advice'])}</p>",
            _table(["factor", "points", "source", "reason"],
                   [[f["title"], f["points"], f["source"], f["reason"]] for f in a["factors"]]),
            "".join(f"<p><b>Override:</b> {escape(o)}</p>" for o in a["overrides"]),
            "<h3>Decision flowchart</h3><ol>" + "".join(f"<li>{escape(s)}</li>" for s in a["flowchart"]) + "</ol>",
            "<h3>Checklist</h3>",
            _table(["question", "answer", "recommendation"],
                   [[c["question"], c["answer"], c["recommendation"]] for c in a["checklist"]])]


def _section_assumptions(plan: dict[str, Any]) -> list[str]:
    t, sh = plan["traffic"], plan["self_host"]
    used = _pct(t["output_ratio_used"])
    rows = [["traffic", f"{cm.tokens(t['tokens_per_day'])} tokens/day; output ratio used {used}"],
            ["self-host", f"{sh['profile']}: {sh['gpus']}× {sh['gpu']} at ${sh['gpu_hourly_usd']}/h ({sh['billing']}), "
                          f"{sh['tokens_per_s']} tokens/s per deployment ({sh.get('tokens_per_s_source', 'assumed')}), target utilisation {sh['utilisation']:.0%}, "
                          f"overhead {sh['overhead']:.0%}, {sh['fte']:g} FTE"],
            ["month", "30 days, 720 hours"]] + [["note", n] for n in plan["notes"]]
    return ["<h2>Assumptions</h2>", _table(["", ""], rows)]


def render_html(plan: dict[str, Any]) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    a, be = plan["assessment"], plan["break_even_tokens_per_day"]
    kpis = [("API monthly", _usd(plan["api_monthly_usd"])),
            ("Self-host monthly", _usd(plan["self_host_monthly_usd"])),
            ("Break-even", cm.tokens(be) + ("" if be is None else "/day")), ("Tier", f"{a['tier']} ({a['score']}/14)")]
    bars = [(f"{b['tier']}: {b['how']}", float(b["monthly_usd"]), TIER_COLOURS[b["tier"]]) for b in plan["by_tier"]]
    html = ["<!doctype html><html><head><meta charset='utf-8'><title>Hedgeway build-vs-buy plan</title>"
            f"<style>{CSS}</style></head><body><h1>Build vs buy: the plan</h1>",
            f"<p>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · API prices as of "
            f"{plan['prices_as_of']} · mode: {plan['mode']}</p><p class='verdict'>{escape(verdict_text(plan))}</p>",
            "".join(f"<span class='kpi'>{escape(k)}<b>{escape(v)}</b></span>" for k, v in kpis),
            "<h2>Cost against volume</h2>", _img(cost_curve_svg(plan), "monthly cost vs tokens per day")]
    if bars:
        html += ["<h2>Cost by tier at your volume</h2>", _img(bar_chart("Monthly cost by tier", bars), "cost by tier")]
    from hedgeway.economics.report_capacity import section as _section_capacity  # it builds on this module

    for section in (_section_options, _section_what_if, _section_ledger, _section_capacity, _section_score,
                    _section_assumptions):
        html += section(plan)
    return "\n".join(html + ["</body></html>"])
