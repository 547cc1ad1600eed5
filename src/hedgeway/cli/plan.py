"""`hedgeway plan`: the build-vs-buy planner from flags, a scenario file, or the ledger's traffic.

    hedgeway plan --daily-input-tokens 10000000 --daily-output-tokens 2000000 --api-model claude-3-5-sonnet \\
                  --gpu-hourly 2.10 --gpus 2 [--naive] [--json] [--report plan.html]
    hedgeway plan --from-ledger [sqlite:///hedgeway.db] --since 7d [--what-if "simple=self:llama3-8b-1xa10,rest=logged"]
                  [--config hedgeway.yaml] [--bench bench.json]

With the gateway's `--config`, its GPU-hour-priced (self-hosted) deployments are planned at their measured
throughput (the ledger's streams, or a `hedgeway deployments bench --json` result) and their traffic is
compared with what the API would have cost for it.

Flags override the scenario file (`--scenario FILE`, format in hedgeway.economics.scenario); `--json`
prints the plan (schema in hedgeway.economics.planner). Exit status: 0 ok, 1 ledger unavailable, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any

DEFAULT_LEDGER = "sqlite:///hedgeway.db"

# flag dest -> (scenario section, field): flags are merged over the scenario file, then validated once
FLAG_PATHS: dict[str, tuple[str, str]] = {
    "daily_input_tokens": ("traffic", "daily_input_tokens"),
    "daily_output_tokens": ("traffic", "daily_output_tokens"),
    "daily_cached_input_tokens": ("traffic", "daily_cached_input_tokens"),
    "output_ratio": ("traffic", "output_ratio"),
    "api_model": ("api", "model"), "input_price": ("api", "input_price"), "output_price": ("api", "output_price"),
    "cached_input_price": ("api", "cached_input_price"), "compare": ("api", "compare"),
    "profile": ("self_host", "profile"), "gpu": ("self_host", "gpu"), "gpus": ("self_host", "gpus"),
    "gpu_hourly": ("self_host", "gpu_hourly"), "tokens_per_s": ("self_host", "tokens_per_s"),
    "billing": ("self_host", "billing"), "utilisation": ("self_host", "utilisation"),
    "overhead": ("self_host", "overhead"), "fte": ("self_host", "fte"), "fte_cost": ("self_host", "fte_annual_cost"),
    "naive": ("plan", "naive"), "cap": ("plan", "cap_tokens_per_day"), "simple_share": ("plan", "simple_share"),
    "what_if": ("plan", "what_if"),
    "on_prem": ("constraints", "on_prem"), "mlops_team": ("constraints", "mlops_team"),
    "evals_mature": ("constraints", "evals_mature"), "latency_sla_ms": ("constraints", "latency_sla_ms"),
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plan", help="build vs buy: API cost, self-host cost, break-even, tier",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("inputs")
    src.add_argument("--scenario", metavar="FILE", help="YAML scenario file (flags override it)")
    src.add_argument("--from-ledger", nargs="?", const=DEFAULT_LEDGER, metavar="URL",
                     help=f"plan from logged traffic (default URL {DEFAULT_LEDGER})")
    src.add_argument("--since", default=None, metavar="AGE", help="ledger window: 7d, 24h, 90m or an ISO date")
    src.add_argument("--config", metavar="FILE", help="the gateway's config: which deployments are self-hosted")
    src.add_argument("--bench", action="append", default=[], metavar="FILE.json",
                     help="a `hedgeway deployments bench --json` result (repeatable)")
    for flag, meta, text in (("--daily-input-tokens", "N", "input tokens per day"),
                             ("--daily-output-tokens", "N", "output tokens per day"),
                             ("--daily-cached-input-tokens", "N", "of the input, tokens read from a prompt cache"),
                             ("--output-ratio", "R", "output share of tokens (default: the traffic's; naive: 0.2)"),
                             ("--api-model", "NAME", "API price card: claude-3-5-sonnet or provider/model"),
                             ("--input-price", "P", "API input USD per M tokens (with --output-price)"),
                             ("--output-price", "P", "API output USD per M tokens"),
                             ("--cached-input-price", "P", "API cached-input USD per M tokens"),
                             ("--profile", "NAME", "self-host profile (see --list)"),
                             ("--gpu", "NAME", "GPU type from the catalogue"), ("--gpus", "N", "GPUs per deployment"),
                             ("--gpu-hourly", "R", "USD per GPU-hour"),
                             ("--tokens-per-s", "N", "deployment throughput"),
                             ("--utilisation", "U", "target utilisation (default 0.7)"),
                             ("--overhead", "F", "overhead on GPU cost (default 0.2)"),
                             ("--fte", "N", "engineering FTE (default 0)"),
                             ("--fte-cost", "USD", "loaded cost per FTE-year (default 200000)"),
                             ("--cap", "N", "break-even search cap, tokens/day (default 10B)"),
                             ("--simple-share", "S", "share of simple traffic for the hybrid tier"),
                             ("--latency-sla-ms", "MS", "TTFT SLA (derives the latency factor)")):
        src.add_argument(flag, metavar=meta, help=text)
    src.add_argument("--billing", choices=("reserved", "on-demand"), help="GPU billing (default reserved)")
    src.add_argument("--compare", action="append", metavar="MODEL", help="more API options (repeatable)")
    src.add_argument("--what-if", action="append", metavar="POLICY", help="e.g. all=gpt-4o-mini (repeatable)")
    src.add_argument("--factor", action="append", default=[], metavar="NAME=0|1|2",
                     help="7-factor points: volume latency privacy customisation team budget freshness")
    src.add_argument("--on-prem", action="store_true", default=None, help="data must stay on the premises")
    src.add_argument("--mlops-team", action=argparse.BooleanOptionalAction, default=None, help="MLOps team in place")
    src.add_argument("--evals-mature", action=argparse.BooleanOptionalAction, default=None, help="automated evals")
    out = p.add_argument_group("outputs")
    out.add_argument("--naive", action="store_true", default=None, help="headline figures on the article's formulas")
    out.add_argument("--json", action="store_true", help="print the plan as JSON")
    out.add_argument("--report", metavar="FILE.html", help="write the HTML report")
    out.add_argument("--list", action="store_true", help="list GPUs and self-host profiles, then exit")
    p.set_defaults(func=run)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds for "7d", "36h", "90m", "2w", "30s" before `now`, or an ISO date/time (UTC if naive).
    Raises ValueError naming the flag."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"--since: expected e.g. 7d, 24h, 30m or an ISO date, got {text!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _raw(args: argparse.Namespace) -> dict:
    from hedgeway.economics.catalog import merge
    from hedgeway.economics.scenario import load_scenario_file

    over: dict[str, dict] = {}
    for dest, (section, key) in FLAG_PATHS.items():
        value = getattr(args, dest, None)
        if value is not None:
            over.setdefault(section, {})[key] = value
    for item in args.factor:
        name, sep, points = item.partition("=")
        if not sep:
            raise ValueError(f"--factor: expected NAME=POINTS, got {item!r}")
        over.setdefault("factors", {})[name.strip()] = points.strip()
    base = load_scenario_file(args.scenario) if args.scenario else {}
    return merge(base, over)


def _records(url: str, since: float | None) -> list:
    """Ledger rows since `since`. LookupError (exit 1) when the ledger cannot be read; ConfigError (exit 2)
    for a bad URL. The URL is never echoed beyond its redacted form."""
    from hedgeway.ledger import open_store, redact_url, sqlite_path

    if url.lower().startswith("sqlite://"):
        path = sqlite_path(url)
        if path != ":memory:" and not os.path.exists(path):
            raise LookupError(f"no ledger database at {path} (run `hedgeway demo` or `hedgeway serve` first, "
                              "or pass --from-ledger URL)")
    store = open_store(url)
    try:
        return list(store.records(since))
    except Exception as exc:  # any backend's error: report it, never a traceback
        raise LookupError(f"cannot read the ledger at {redact_url(url)}: {type(exc).__name__}: {exc}") from exc
    finally:
        store.close()


def _bench(path: str) -> dict:
    """A bench result file; ValueError (exit 2) when it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--bench {path}: {exc}") from None
    if not isinstance(result, dict) or result.get("schema") != "hedgeway.bench/1":
        raise ValueError(f"--bench {path}: not a `hedgeway deployments bench --json` result")
    return result


def run(args: argparse.Namespace) -> int:
    from hedgeway.config import load
    from hedgeway.economics import planner
    from hedgeway.economics import scenario as scenarios
    from hedgeway.errors import ConfigError

    try:
        scenario = scenarios.build_scenario(_raw(args))
        if args.list:
            print(render_catalogue(scenario))
            return 0
        records = None
        if args.since and not args.from_ledger:
            raise ValueError("--since applies to --from-ledger only")
        if args.from_ledger:
            since = parse_since(args.since) if args.since else None
            records = _records(args.from_ledger, since)
        deployments = load(args.config).deployments if args.config else None
        plan = planner.build_plan(scenario, records, deployments, [_bench(path) for path in args.bench])
    except (ConfigError, ValueError) as exc:
        print(f"hedgeway plan: error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"hedgeway plan: {exc}", file=sys.stderr)
        return 1
    if args.report:
        from hedgeway.economics.report import render_html

        with open(args.report, "w", encoding="utf-8") as fh:
            fh.write(render_html(plan))
    print(json.dumps(plan, indent=2, ensure_ascii=False) if args.json else render_text(plan))
    if args.report and not args.json:
        print(f"\nreport written to {args.report}")
    return 0


def _grid(headers: list[str], rows: list[list[Any]]) -> str:
    """Plain aligned columns: text left, numbers (and $ amounts) right."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = [all(_numeric(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if rj else c.ljust(w) for c, w, rj in zip(row, widths, right, strict=True))

    return "\n".join(line(r).rstrip() for r in cells)


def _numeric(text: str) -> bool:
    t = text.lstrip("-$").replace(",", "").replace(".", "").rstrip("KMB%")
    return t.isdigit() or text in ("never", "n/a", "-")


def render_text(plan: dict[str, Any]) -> str:
    """The plan as terminal text."""
    from hedgeway.economics.costmodel import tokens
    from hedgeway.economics.report import _pct, _usd, _window, verdict_text

    t, sh, a = plan["traffic"], plan["self_host"], plan["assessment"]
    lines = [f"Build vs buy ({plan['mode']}; API prices as of {plan['prices_as_of']})"]
    if t["tokens_per_day"]:
        lines.append(f"Traffic: {tokens(t['daily_input_tokens'])} input + {tokens(t['daily_output_tokens'])} "
                     f"output = {tokens(t['tokens_per_day'])} tokens/day (output {_pct(t['output_ratio'])}; "
                     f"from {t['source']})")
    options = [[o["name"], o["input_per_m"] or "-", o["output_per_m"] or "-", _usd(o["monthly_usd"]),
                tokens(o["capacity_break_even"]), tokens(o["naive_break_even"])] for o in plan["api_options"]]
    lines += ["", _grid(["API option", "$/M in", "$/M out", "monthly", "break-even", "naive"], options)]
    lines += [f"  {o['name']}: {o['reason']}" for o in plan["api_options"]]
    cap = plan["capacity_tokens_per_day"]
    lines += ["", f"Self-host {sh['profile']}: {sh['model']} on {sh['gpus']}× {sh['gpu']} at ${sh['gpu_hourly_usd']}/h "
                  f"({sh['billing']}), +{sh['overhead']:.0%} overhead = {_usd(sh['deployment_monthly_usd'])}/month per "
                  f"deployment" + (f"; {sh['tokens_per_s']} tokens/s ({sh['tokens_per_s_source']}) at "
                                   f"{sh['utilisation']:.0%} = {tokens(cap)} tokens/day each" if cap
                                   else "; throughput unknown"),
              f"  at this volume: {plan['deployments']} deployment(s), {_usd(plan['self_host_monthly_usd'])}/month; "
              f"break-even {tokens(plan['break_even_tokens_per_day'])}/day — {plan['break_even_reason']}", "",
              f"Self-host profiles (vs {plan['api_options'][0]['name']}):",
              _grid(["profile", "GPUs", "per deployment", "capacity/day", "deployments", "monthly", "break-even"],
                    [[p["profile"], f"{p['gpus']}× {p['gpu']}", _usd(p["deployment_monthly_usd"]),
                      tokens(p["capacity_tokens_per_day"]), p["deployments"], _usd(p["monthly_usd"]),
                      tokens(p["break_even_tokens_per_day"])] for p in plan["profiles"]])]
    if plan["by_tier"]:
        lines += ["", "Cost by tier: " + " | ".join(f"{b['tier']} {_usd(b['monthly_usd'])}" for b in plan["by_tier"])]
    led = plan["ledger"]
    if led:
        ttft = " / ".join("-" if v is None else f"{v:.0f}" for v in led["ttft_ms"].values())
        classes = (f"router classed {_pct(led['simple_share'])} of {led['classified']:,} classified requests simple"
                   if led["classified"] else "no request carries a router class")
        lines += ["", f"Ledger: {led['requests']:,} requests ({led['errors']} errors) over "
                      f"{_window(led)}; "
                      f"{tokens(led['tokens_per_day_mean'])} tokens/day (peak {tokens(led['tokens_per_day_peak'])}); "
                      f"run-rate {_usd(led['monthly_run_rate_usd'])}/month; TTFT p50/p95/p99 {ttft} ms; "
                      f"{classes}",
                  _grid(["model", "deployment", "requests", "tokens", "share", "spend"],
                        [[m["model"], m["deployment"], m["requests"], tokens(m["tokens"]), _pct(m["share"]),
                          _usd(m["spend_usd"])] for m in led["mix"]])]
    if plan["measured_throughput"]:
        lines += ["", "Throughput measured (output tokens/s per stream from the ledger; bench: under concurrency):",
                  _grid(["deployment", "tokens/s", "from", "requests", "TTFT p50 ms"],
                        [[d, f"{f['output_tokens_per_s']} measured", f["source"], f["requests"],
                          f.get("ttft_ms_p50") or "-"] for d, f in plan["measured_throughput"].items()])]
    if plan["self_hosted"]:
        lines += ["", "Self-hosted deployments against the API (monthly, at this traffic):",
                  _grid(["deployment", "tokens/s", "replicas", "logged", "at this throughput", "on the API"],
                        [[r["deployment"], f"{r['tokens_per_s']:g} {r['tokens_per_s_source']}", r["deployments"],
                          _usd(r["logged_monthly_usd"]), _usd(r["self_host_monthly_usd"]),
                          f"{_usd(r['api_monthly_usd'])} ({r['api']})"] for r in plan["self_hosted"]])]
    if plan["what_if"]:
        lines += ["", "What-if re-pricing of the logged requests:",
                  _grid(["policy", "monthly", "deployments", "routed", "saving"],
                        [[w["policy"], _usd(w["monthly_usd"]), w["deployments"], _pct(w["routed_share"]),
                          _usd(w["savings_usd"])] for w in plan["what_if"]])]
    lines += ["", f"7-factor score {a['score']}/14 → {a['tier']} (by score: {a['tier_by_score']})",
              _grid(["factor", "points", "source", "reason"],
                    [[f["title"], f["points"], f["source"], f["reason"]] for f in a["factors"]])]
    lines += [f"  override: {o}" for o in a["overrides"]]
    lines += ["  flowchart: " + " → ".join(s.replace(" → ", ": ") for s in a["flowchart"]), "",
              "Verdict: " + verdict_text(plan)]
    lines += [f"note: {n}" for n in plan["notes"]]
    return "\n".join(lines)


def render_catalogue(scenario: Any) -> str:
    """GPUs and self-host profiles known to `scenario` (shipped + overrides)."""
    from hedgeway.economics.costmodel import capacity_tokens_per_day, tokens

    gpus = _grid(["GPU", "label", "on-demand $/h", "reserved $/h", "source"],
                 [[g.name, g.label, g.rates.get("on_demand", "-"), g.rates.get("reserved", "-"), g.source]
                  for g in scenario.gpus.values()])
    profiles = _grid(["profile", "model", "GPUs", "tokens/s", "capacity/day at 100%", "source"],
                     [[p.name, p.model, f"{p.gpus}× {p.gpu}", p.tokens_per_s,
                       tokens(capacity_tokens_per_day(p.tokens_per_s)), p.source] for p in scenario.profiles.values()])
    return f"{gpus}\n\n{profiles}"
