"""Capacity measured instead of assumed: what the ledger's own rows say about each deployment's speed,
and which deployments are self-hosted (priced by the GPU-hour).

Decode speed comes from streamed, successful rows with output tokens and a TTFT: the tokens arrive
between the first token and the end, so one stream's speed is `completion_tokens / (latency − ttft)`;
a deployment's figure is the token-weighted mean (all its tokens over all its decode time). Time waiting
in the gateway's queue (max_concurrency) is before the first token, so it is not counted as decoding.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from hedgeway.ledger.base import Record
from hedgeway.types import Deployment

GPU_HOUR = "gpu-hour"  # how `pricing.gpu_hour_card` labels the cards it builds


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
    return {d.id: d for d in deployments.values() if d.price.source.startswith(GPU_HOUR)}


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
