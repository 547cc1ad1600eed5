"""Capacity measured instead of assumed: what the ledger's own rows say about each deployment's speed,
and which deployments are self-hosted (priced by the GPU-hour).

Decode speed comes from streamed, successful rows with output tokens and a TTFT: the tokens arrive
between the first token and the end, so one stream's speed is `completion_tokens / (latency − ttft)`;
a deployment's figure is the token-weighted mean (all its tokens over all its decode time). Time waiting
in the gateway's queue (max_concurrency) is before the first token, so it is not counted as decoding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from typing import Any, Iterable, Mapping

from hedgeway import pricing
from hedgeway.economics import costmodel as cm
from hedgeway.ledger.base import Record
from hedgeway.types import Deployment, PriceCard, Usage


def _pct(values: list[float], q: int) -> float | None:
    s = sorted(values)
    return round(s[max(0, -(-q * len(s) // 100) - 1)], 1) if s else None


def measured_throughput(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """deployment id -> {"output_tokens_per_s", "requests", "output_tokens", "decode_seconds",
    "ttft_ms_p50", "ttft_ms_p95", "source": "ledger"} over the rows that qualify (see the module doc);
    deployments without any are left out."""
    tokens: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    ttfts: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if not (r.stream and r.status == 200 and r.error_type is None and r.deployment and r.completion_tokens
                and r.ttft_ms is not None and r.latency_ms > r.ttft_ms):
            continue
        tokens[r.deployment] += r.completion_tokens
        seconds[r.deployment] += (r.latency_ms - r.ttft_ms) / 1000
        ttfts[r.deployment].append(r.ttft_ms)
    return {dep: {"output_tokens_per_s": round(tokens[dep] / seconds[dep], 1), "requests": len(ttfts[dep]),
                  "output_tokens": tokens[dep], "decode_seconds": round(seconds[dep], 3),
                  "ttft_ms_p50": _pct(ttfts[dep], 50), "ttft_ms_p95": _pct(ttfts[dep], 95), "source": "ledger"}
            for dep in sorted(tokens)}


def self_hosted(deployments: Mapping[str, Deployment]) -> dict[str, Deployment]:
    """The deployments priced by the GPU-hour (`price: {gpu_hour, tokens_per_second}`): self-hosted."""
    return {d.id: d for d in deployments.values() if d.price.gpu_hour is not None}


def from_bench(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """deployment id -> the figure a `hedgeway deployments bench --json` result gives: its best aggregate
    output tokens/s over the concurrency levels (the capacity the deployment sustained)."""
    out: dict[str, dict[str, Any]] = {}
    for result in results:
        ok = [lv for lv in result["levels"] if lv["output_tokens"]]
        if not ok:
            continue
        best = max(ok, key=lambda lv: lv["output_tokens_per_s"])
        out[result["deployment"]] = {"output_tokens_per_s": best["output_tokens_per_s"],
                                     "requests": sum(lv["requests"] for lv in result["levels"]),
                                     "concurrency": best["concurrency"], "ttft_ms_p50": best["ttft_ms_p50"],
                                     "source": "bench"}
    return out


def figures(records: Iterable[Record], bench: Iterable[Mapping[str, Any]] = ()) -> dict[str, dict[str, Any]]:
    """The plan's `measured_throughput`: the ledger's figure per deployment; a bench result adds
    `bench_output_tokens_per_s` (and stands alone for a deployment the ledger has no streams of)."""
    out = measured_throughput(records)
    for dep, b in from_bench(bench).items():
        if dep in out:
            out[dep].update(bench_output_tokens_per_s=b["output_tokens_per_s"], bench_concurrency=b["concurrency"])
        else:
            out[dep] = b
    return out


def capacity(figure: Mapping[str, Any]) -> Decimal:
    """Output tokens/s a deployment sustains: the bench's (under concurrency) when there is one, else the
    ledger's one-stream decode speed (a lower bound for a server that batches)."""
    return Decimal(str(figure.get("bench_output_tokens_per_s") or figure["output_tokens_per_s"]))


def measured_spec(base: cm.SelfHost, dep: Deployment, figure: Mapping[str, Any]) -> cm.SelfHost:
    """`base` (utilisation, overhead, labour, billing) for the self-hosted `dep`: its GPU-hour price and its
    measured throughput, counted against all tokens (conservative: prefill is faster than decode)."""
    return replace(base, gpus=dep.price.gpus, gpu_hourly=dep.price.gpu_hour, tokens_per_s=capacity(figure),
                   name=dep.id, model=dep.model, gpu="self-hosted")


def at_api(records: Iterable[Record], self_ids: Mapping[str, Any], card: PriceCard) -> Decimal:
    """USD of the logged records with the self-hosted ones (`self_ids`) priced on the API `card` instead:
    the API baseline for traffic that was partly served by GPU-hour-priced deployments."""
    return sum((pricing.cost(Usage(r.prompt_tokens, r.completion_tokens, r.cached_tokens), card)
                if r.deployment in self_ids else r.cost for r in records), Decimal(0))


def self_hosted_rows(records: list[Record], days: Decimal, deployments: Mapping[str, Deployment],
                     measured: Mapping[str, Mapping[str, Any]], base: cm.SelfHost, api_name: str,
                     api_card: PriceCard) -> list[dict[str, Any]]:
    """Each self-hosted deployment in the ledger: its throughput (measured, else the config's assumed),
    what its traffic cost as logged, what replicas at that throughput would cost, and what the API would
    have cost for the same traffic (money as cents strings, per month)."""
    rows = []
    month = cm.DAYS_PER_MONTH / days
    for dep in self_hosted(deployments).values():
        mine = [r for r in records if r.deployment == dep.id]
        if not mine:
            continue
        figure = measured.get(dep.id)
        spec = measured_spec(base, dep, figure) if figure else replace(
            base, gpus=dep.price.gpus, gpu_hourly=dep.price.gpu_hour, tokens_per_s=dep.price.tokens_per_second,
            name=dep.id, model=dep.model, gpu="self-hosted")
        per_day = sum(r.prompt_tokens + r.completion_tokens for r in mine) / days
        rows.append({
            "deployment": dep.id, "requests": len(mine), "tokens_per_day": int(per_day),
            "gpu_hourly_usd": f"{dep.price.gpu_hour:f}", "gpus": dep.price.gpus,
            "tokens_per_s": float(spec.tokens_per_s), "tokens_per_s_source": "measured" if figure else "assumed",
            "deployments": cm.deployments_needed(per_day, cm.spec_capacity(spec)),
            "logged_monthly_usd": _cents(sum((r.cost for r in mine), Decimal(0)) * month),
            "self_host_monthly_usd": _cents(cm.self_host_monthly_cost(spec, per_day)),
            "api": api_name, "api_monthly_usd": _cents(at_api(mine, {dep.id: 1}, api_card) * month)})
    return rows


def _cents(x: Decimal) -> str:
    return f"{x.quantize(Decimal('0.01')):f}"
