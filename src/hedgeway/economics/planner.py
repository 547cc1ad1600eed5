"""The planner: from ledger records to traffic statistics, what-if re-pricing, and the plan itself.

`build_plan(scenario, records=None)` returns the plan as plain JSON types; `hedgeway plan --json` prints it.
Schema "hedgeway.plan/1" (stable; fields are only ever added). Money is a decimal string rounded to the
cent ("1800.00"), prices per million tokens are exact decimal strings, token counts are integers, ratios
are numbers; null means unknown or never:

    schema, mode ("capacity" | "naive": which figures the top-level fields hold), prices_as_of, notes[]
    api_monthly_usd, self_host_monthly_usd, deployments, capacity_tokens_per_day (one deployment),
    break_even_tokens_per_day, break_even_reason, tier, score
    traffic   {source ("scenario" | "ledger" | null), daily_input_tokens, daily_output_tokens,
               daily_cached_input_tokens, tokens_per_day, output_ratio, output_ratio_used}
    self_host {profile, model, gpu, gpus, billing, gpu_hourly_usd, tokens_per_s, utilisation, overhead, fte,
               deployment_monthly_usd, labour_monthly_usd}
    capacity  {self_host_monthly_usd, deployments, break_even_tokens_per_day, sustained_from, reason}
    naive     {self_host_monthly_usd, output_ratio, break_even_tokens_per_day}
    api_options[] {name, input_per_m, output_per_m, monthly_usd, capacity_break_even, naive_break_even, reason}
    profiles[]    {profile, model, gpu, gpus, deployment_monthly_usd, capacity_tokens_per_day, deployments,
                   monthly_usd, break_even_tokens_per_day, sustained_from, reason}   (vs the first API option)
    by_tier[]     {tier, monthly_usd, how}
    assessment    {score, tier, tier_by_score, advice, factors[], overrides[], flowchart[], checklist[]}
    ledger        null | {requests, errors, window_days, span_seconds, tokens_per_day_mean, tokens_per_day_peak,
                   output_ratio, spend_usd, monthly_run_rate_usd, ttft_ms {p50, p95, p99}, classified,
                   simple_share, mix[] {model, deployment, requests, tokens, share, spend_usd}}
    what_if[]     {policy, monthly_usd, api_monthly_usd, self_host_monthly_usd, deployments, routed_share,
                   savings_usd, savings_pct}          (vs the logged run-rate; ledger mode only)
    bench[]       the `hedgeway deployments bench --json` results given (hedgeway.capacity)
    measured_throughput  {deployment: {output_tokens_per_s, requests, output_tokens, decode_seconds, ttft_ms_p50,
                   ttft_ms_p95, source ("ledger" | "bench"), bench_output_tokens_per_s?, bench_concurrency?}}
    self_hosted[] {deployment, requests, tokens_per_day, gpu_hourly_usd, gpus, tokens_per_s, tokens_per_s_source
                   ("measured" | "assumed"), deployments, logged_monthly_usd, self_host_monthly_usd, api,
                   api_monthly_usd}       (GPU-hour-priced deployments of the gateway config, ledger mode only)

With the gateway's deployments (`hedgeway plan --config`), the self-hosted (GPU-hour-priced) ones are
told apart: their logged spend is not an API price, so the "as logged" baseline prices their traffic on
the API option instead, and the self-host option becomes the most-used one at its measured throughput
(`self_host.tokens_per_s_source` says "measured"; "assumed" is the profile's figure).

`verdict(records)` is the same plan told in one paragraph (the demo ends with it).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from hedgeway import pricing
from hedgeway.economics import costmodel as cm
from hedgeway.economics import measured as ms
from hedgeway.economics.report import verdict_text
from hedgeway.economics.scenario import Scenario, build_scenario
from hedgeway.economics.scoring import assess, assessment_json
from hedgeway.economics.whatif import complexity_of, default_policies, reprice, small_target
from hedgeway.ledger.base import Record
from hedgeway.types import Deployment, PriceCard

SCHEMA = "hedgeway.plan/1"
ASSUMED_SIMPLE_SHARE = Decimal("0.6")  # the article: a small model meets the bar for 60–70% of queries


def _pct(values: list[float], q: int) -> float | None:
    """Nearest-rank percentile `q` (0–100) of `values`."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, -(-q * len(s) // 100) - 1)]


@dataclass(frozen=True)
class TrafficStats:
    """What the ledger says about a window of traffic. Daily figures divide by `window_days`: the span
    from the first to the last record, but at least one day (a short window is not extrapolated)."""

    requests: int
    errors: int
    window_days: Decimal
    span_seconds: float
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    peak_day_tokens: int
    spend: Decimal
    ttft_ms: dict[str, float | None]
    classified: int
    simple: int
    mix: list[dict[str, Any]]

    @property
    def traffic(self) -> cm.Traffic:
        d = self.window_days
        return cm.Traffic(self.prompt_tokens / d, self.completion_tokens / d, self.cached_tokens / d)

    @property
    def monthly_run_rate(self) -> Decimal:
        return self.spend / self.window_days * cm.DAYS_PER_MONTH

    @property
    def simple_share(self) -> Decimal | None:
        """Share of classified requests the router classed simple (None when none were classified)."""
        return Decimal(self.simple) / self.classified if self.classified else None


def summarise(records: Iterable[Record]) -> TrafficStats:
    """Aggregate ledger records (any order) into `TrafficStats`."""
    recs = list(records)
    stamps = [r.ts for r in recs] or [0.0]
    span = max(stamps) - min(stamps)
    per_day: Counter[str] = Counter()
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in recs:
        day = datetime.fromtimestamp(r.ts, timezone.utc).date().isoformat()
        per_day[day] += r.prompt_tokens + r.completion_tokens
        groups[(r.model_name, r.deployment or "-")].append(r)
    total = sum(per_day.values())
    mix = []
    for (model, deployment), g in groups.items():
        n = sum(r.prompt_tokens + r.completion_tokens for r in g)
        mix.append({"model": model, "deployment": deployment, "requests": len(g), "tokens": n,
                    "share": round(n / total, 4) if total else 0.0,
                    "spend_usd": _money(sum((r.cost for r in g), Decimal(0)))})
    classes = [c for c in map(complexity_of, recs) if c]
    ttfts = [r.ttft_ms for r in recs if r.ttft_ms is not None]
    return TrafficStats(
        requests=len(recs), errors=sum(r.status >= 400 for r in recs),
        window_days=max(Decimal(1), Decimal(str(span)) / cm.SECONDS_PER_DAY), span_seconds=span,
        prompt_tokens=sum(r.prompt_tokens for r in recs), completion_tokens=sum(r.completion_tokens for r in recs),
        cached_tokens=sum(r.cached_tokens for r in recs), peak_day_tokens=max(per_day.values(), default=0),
        spend=sum((r.cost for r in recs), Decimal(0)), ttft_ms={f"p{q}": _pct(ttfts, q) for q in (50, 95, 99)},
        classified=len(classes), simple=classes.count("simple"),
        mix=sorted(mix, key=lambda row: -row["tokens"]))


def _money(x: Decimal | None) -> str | None:
    return None if x is None else f"{Decimal(x).quantize(Decimal('0.01'), ROUND_HALF_UP):f}"


def _int(x: Decimal | None) -> int | None:
    return None if x is None else int(Decimal(x).to_integral_value())


@dataclass(frozen=True)
class _Option:
    name: str
    card: PriceCard | None  # None: the logged spend
    monthly: Decimal | None
    rate: Decimal  # USD/month per token/day


def _options(sc: Scenario, recs: list[Record] | None, stats: TrafficStats | None, traffic: cm.Traffic | None,
             ratio: Decimal, selfd: dict[str, Deployment]) -> list[_Option]:
    """API baselines: in ledger mode the logged spend first (self-hosted traffic in it priced on the API
    option), then each API option re-priced request by request; otherwise each option priced on the
    scenario's traffic (or rate only, without traffic)."""
    volume = traffic.total if traffic else Decimal(0)
    out = []
    if stats and recs:
        name, logged = "as logged", stats.monthly_run_rate
        if any(r.deployment in selfd for r in recs):
            name = f"as logged (self-hosted traffic at {sc.api.name})"
            logged = ms.at_api(recs, selfd, sc.api.card) / stats.window_days * cm.DAYS_PER_MONTH
        out.append(_Option(name, None, logged, cm.rate_from_spend(logged, volume)))
    for opt in (sc.api, *sc.compare):
        if stats and recs:
            monthly = reprice(recs, {"rest": opt.name}, stats, sc)["api_monthly"]
            out.append(_Option(opt.name, opt.card, monthly, cm.rate_from_spend(monthly, volume)))
        else:
            cached = traffic.cached_share if traffic else Decimal(0)
            monthly = cm.api_monthly_cost(traffic, opt.card) if traffic else None
            out.append(_Option(opt.name, opt.card, monthly, cm.api_rate(opt.card, ratio, cached)))
    return out


def _profile_row(spec: cm.SelfHost, rate: Decimal, volume: Decimal | None, cap: Decimal) -> dict[str, Any]:
    be, capacity = cm.break_even(spec, rate, cap), cm.spec_capacity(spec)
    return {"profile": spec.name, "model": spec.model, "gpu": spec.gpu, "gpus": spec.gpus,
            "deployment_monthly_usd": _money(cm.deployment_monthly_cost(spec)),
            "capacity_tokens_per_day": _int(capacity),
            "deployments": cm.deployments_needed(volume or Decimal(0), capacity),
            "monthly_usd": _money(cm.self_host_monthly_cost(spec, volume)),
            "break_even_tokens_per_day": be.tokens_per_day, "sustained_from": be.sustained_from,
            "reason": be.reason}


def _ledger_json(s: TrafficStats) -> dict[str, Any]:
    return {"requests": s.requests, "errors": s.errors, "window_days": float(round(s.window_days, 3)),
            "span_seconds": round(s.span_seconds, 1),
            "tokens_per_day_mean": _int(s.traffic.total), "tokens_per_day_peak": s.peak_day_tokens,
            "output_ratio": round(float(s.traffic.output_ratio), 4), "spend_usd": _money(s.spend),
            "monthly_run_rate_usd": _money(s.monthly_run_rate), "ttft_ms": s.ttft_ms,
            "classified": s.classified,
            "simple_share": None if s.simple_share is None else round(float(s.simple_share), 4),
            "mix": s.mix}


def build_plan(scenario: Scenario, records: Iterable[Record] | None = None,
               deployments: dict[str, Deployment] | None = None, bench: Iterable[dict] = ()) -> dict[str, Any]:
    """The plan for `scenario` as JSON types (schema in this module's docstring). With `records` (ledger
    mode) traffic comes from the ledger, the logged spend is the first API baseline and what-ifs re-price
    the logged requests; otherwise traffic is the scenario's (optional). `deployments` (the gateway's)
    tell the self-hosted ones apart; `bench` results (`hedgeway deployments bench --json`) add measures."""
    sc, notes = scenario, []
    recs = None if records is None else list(records)
    stats = summarise(recs) if recs else None
    bench = list(bench)
    measured, selfd = ms.figures(recs or (), bench), ms.self_hosted(deployments or {})
    top = max((d for d in selfd if d in measured), key=lambda d: measured[d]["requests"], default=None)
    if top is not None:
        sc = replace(sc, self_host=ms.measured_spec(sc.self_host, selfd[top], measured[top]))
        notes.append(f"self-host option: {top} at its measured {ms.capacity(measured[top])} output tokens/s")
    spec = sc.self_host
    if recs is not None and not recs:
        notes.append("the ledger has no requests in this window")
    if stats and sc.traffic:
        notes.append("the traffic given in flags or the scenario is ignored: the ledger's is used")
    traffic = stats.traffic if stats else sc.traffic
    volume = traffic.total if traffic and traffic.total else None
    naive_ratio = cm.ARTICLE_OUTPUT_RATIO if sc.output_ratio is None else sc.output_ratio
    ratio = traffic.output_ratio if volume and (stats or sc.output_ratio is None) else naive_ratio
    options = _options(sc, recs, stats, traffic, ratio, selfd)
    fixed, capacity = cm.self_host_monthly_cost(spec), cm.spec_capacity(spec)
    api_rows = []
    for o in options:
        be = cm.break_even(spec, o.rate, sc.cap)
        naive = cm.naive_break_even(fixed, cm.api_rate(o.card, naive_ratio) if o.card else o.rate)
        api_rows.append({"name": o.name, "input_per_m": o.card and f"{o.card.input:f}",
                         "output_per_m": o.card and f"{o.card.output:f}", "monthly_usd": _money(o.monthly),
                         "capacity_break_even": be.tokens_per_day, "naive_break_even": naive, "reason": be.reason})
    be = cm.break_even(spec, options[0].rate, sc.cap)
    at_volume = cm.self_host_monthly_cost(spec, volume)
    n_at_volume = cm.deployments_needed(volume or Decimal(0), capacity)
    by_mode = {"capacity": (be.tokens_per_day, be.reason, at_volume, n_at_volume),
               "naive": (api_rows[0]["naive_break_even"], "the article's formula: a fixed GPU bill, no capacity "
                         "limit", fixed, 1)}
    mode = "naive" if sc.naive else "capacity"
    be_top, reason_top, self_top, n_top = by_mode[mode]
    api_monthly = options[0].monthly
    constraints = dict(sc.constraints)
    a = assess(sc.factors, tokens_per_day=volume, latency_sla_ms=constraints.pop("latency_sla_ms", None),
               ttft_p95_ms=stats.ttft_ms["p95"] if stats else None, api_monthly=api_monthly, constraints=constraints)
    if volume and not stats and ratio != naive_ratio:
        notes.append(f"the article's naive formula assumes {float(naive_ratio):.0%} output tokens; this traffic's "
                     f"{float(ratio):.1%} is used for the capacity-aware figures (--output-ratio to change)")
    if spec.fte == 0:
        notes.append("engineering labour excluded; --fte 1 adds "
                     f"{cm.usd(cm.labour_monthly_cost(Decimal(1), spec.fte_annual_cost))}/month")
    if stats and stats.span_seconds < 86_400:
        notes.append(f"the ledger window spans {stats.span_seconds / 3600:.1f} h; its traffic is counted as "
                     "one day's volume (not extrapolated)")
    return {
        "schema": SCHEMA, "mode": mode, "prices_as_of": pricing.catalogue()[0], "notes": notes,
        "api_monthly_usd": _money(api_monthly), "self_host_monthly_usd": _money(self_top), "deployments": n_top,
        "capacity_tokens_per_day": _int(capacity), "break_even_tokens_per_day": be_top,
        "break_even_reason": reason_top, "tier": a.tier, "score": a.score,
        "traffic": {"source": "ledger" if stats else "scenario" if sc.traffic else None,
                    "daily_input_tokens": _int(traffic and traffic.daily_input),
                    "daily_output_tokens": _int(traffic and traffic.daily_output),
                    "daily_cached_input_tokens": _int(traffic and traffic.daily_cached_input),
                    "tokens_per_day": _int(volume),
                    "output_ratio": round(float(traffic.output_ratio), 4) if volume else None,
                    "output_ratio_used": round(float(ratio), 4)},
        "self_host": {"profile": spec.name, "model": spec.model, "gpu": spec.gpu, "gpus": spec.gpus,
                      "billing": spec.billing, "gpu_hourly_usd": f"{spec.gpu_hourly:f}",
                      "tokens_per_s": _int(spec.tokens_per_s), "utilisation": float(spec.utilisation),
                      "tokens_per_s_source": "measured" if top else "assumed",
                      "overhead": float(spec.overhead), "fte": float(spec.fte),
                      "deployment_monthly_usd": _money(cm.deployment_monthly_cost(spec)),
                      "labour_monthly_usd": _money(cm.labour_monthly_cost(spec.fte, spec.fte_annual_cost))},
        "capacity": {"self_host_monthly_usd": _money(at_volume), "deployments": n_at_volume,
                     "break_even_tokens_per_day": be.tokens_per_day, "sustained_from": be.sustained_from,
                     "reason": be.reason},
        "naive": {"self_host_monthly_usd": _money(fixed), "output_ratio": float(naive_ratio),
                  "break_even_tokens_per_day": api_rows[0]["naive_break_even"]},
        "api_options": api_rows,
        "profiles": [_profile_row(s, options[0].rate, volume, sc.cap) for s in (spec, *sc.candidates())],
        "by_tier": _by_tier(sc, recs, stats, options[0], volume, at_volume),
        "assessment": assessment_json(a), "ledger": _ledger_json(stats) if stats else None,
        "what_if": _what_ifs(sc, recs, stats) if stats and recs else [],
        "measured_throughput": measured, "bench": list(bench),
        "self_hosted": ms.self_hosted_rows(recs, stats.window_days, selfd, measured, scenario.self_host,
                                           sc.api.name, sc.api.card) if stats and recs else [],
    }


def _by_tier(sc: Scenario, recs: list[Record] | None, stats: TrafficStats | None, base: _Option,
             volume: Decimal | None, self_all: Decimal) -> list[dict[str, Any]]:
    """Monthly cost at this volume for each tier: all on the API baseline; hybrid, simple traffic on the
    cheapest profile and the rest on the baseline (the logged requests re-priced when the router classed
    them, else a share: the scenario's or an assumed 60%); all on the scenario's self-host option."""
    if not volume or base.monthly is None:
        return []
    target, small = small_target(sc)
    if stats and recs and stats.classified:
        hybrid = reprice(recs, {"simple": target, "rest": "logged"}, stats, sc)["monthly"]
        how = f"requests classed simple on {small.name}, the rest as logged"
    else:
        share = sc.simple_share if sc.simple_share is not None else ASSUMED_SIMPLE_SHARE
        hybrid = (1 - share) * base.monthly + cm.self_host_monthly_cost(small, share * volume)
        how = f"{float(share):.0%} of tokens (simple) on {small.name}, the rest on {base.name}"
    return [{"tier": "api-first", "monthly_usd": _money(base.monthly), "how": f"all on {base.name}"},
            {"tier": "hybrid", "monthly_usd": _money(hybrid), "how": how},
            {"tier": "self-host", "monthly_usd": _money(self_all), "how": f"all on {sc.self_host.name}"}]


def _what_ifs(sc: Scenario, recs: list[Record], stats: TrafficStats) -> list[dict[str, Any]]:
    baseline, rows = stats.monthly_run_rate, []
    for i, policy in enumerate(sc.what_if or default_policies(sc)):
        w = reprice(recs, policy, stats, sc, path=f"plan.what_if[{i}]")
        saving = baseline - w["monthly"]
        rows.append({"policy": w["policy"], "monthly_usd": _money(w["monthly"]),
                     "api_monthly_usd": _money(w["api_monthly"]),
                     "self_host_monthly_usd": _money(w["self_host_monthly"]),
                     "deployments": w["deployments"], "routed_share": w["routed_share"], "savings_usd": _money(saving),
                     "savings_pct": round(float(saving / baseline), 4) if baseline else None})
    return rows


def verdict(records: Iterable[Record], scenario: Scenario | None = None,
            deployments: dict[str, Deployment] | None = None) -> str:
    """One paragraph on `records` (ledger rows, e.g. the demo's traffic): volume, run-rate, tier, the
    break-even of the default self-host profile against the logged prices, and the best what-if.
    `scenario` defaults to the shipped catalogues and defaults (`build_scenario({})`)."""
    return verdict_text(build_plan(scenario or build_scenario({}), list(records), deployments))
