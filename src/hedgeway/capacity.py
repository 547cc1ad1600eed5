"""A deployment's throughput curve, measured: `hedgeway deployments bench NAME --concurrency 1,2,4,8`.

For each concurrency level, `requests` streamed chat requests go straight to the deployment (its provider,
not through the gateway's queue: this measures the server), `concurrency` at a time. Per level:

    concurrency, requests, errors, error_types {type: n}, seconds (wall), output_tokens,
    output_tokens_per_s (all output tokens / wall time: what the server sustained),
    stream_tokens_per_s_p50 (one stream's decode speed, tokens / (end − first token)),
    ttft_ms_p50, ttft_ms_p95

Output tokens are the stream's usage when the server reports it, else one per content event (llama.cpp
and vLLM send one token per event). A stream with no output is an error (`EmptyStream`): it is what
llama.cpp's server sends past its slots. `bench()` returns {"schema", "deployment", "model", "max_tokens",
"levels": [...]}, the JSON `--json` prints and `hedgeway plan --bench FILE` reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Callable

import orjson

from hedgeway.errors import HedgewayError
from hedgeway.providers import PROVIDERS, Provider
from hedgeway.sse_frames import Frames, data_of
from hedgeway.types import ChatRequest, Deployment

SCHEMA = "hedgeway.bench/1"
PROMPT = "Tell a short story about a lighthouse keeper and a storm."


def _pct(values: list[float], q: int) -> float | None:
    s = sorted(values)
    return round(s[max(0, -(-q * len(s) // 100) - 1)], 1) if s else None


async def one_stream(provider: Provider, request: ChatRequest) -> tuple[float, int, float]:
    """(seconds to the first event, output tokens, seconds to the end) of one streamed request."""
    started = time.perf_counter()
    stream = await provider.stream(request)
    ttft = time.perf_counter() - started
    frames, events, reported = Frames(), 0, None
    try:
        async for chunk in stream.chunks():
            for event in frames.feed(chunk):
                payload = data_of(event)
                if not payload or not payload.lstrip().startswith(b"{"):
                    continue
                data = orjson.loads(payload)
                usage = data.get("usage")
                if usage and usage.get("completion_tokens") is not None:
                    reported = usage["completion_tokens"]
                events += sum(bool((c.get("delta") or {}).get("content")) for c in data.get("choices") or ())
    except BaseException:
        stream.close()
        raise
    return ttft, reported if reported is not None else events, time.perf_counter() - started


async def _level(provider: Provider, request: ChatRequest, concurrency: int, requests: int,
                 tick: Callable[[], None]) -> dict[str, Any]:
    todo = iter(range(requests))
    ttfts, speeds, errors, tokens = [], [], Counter(), 0

    async def worker():
        nonlocal tokens
        for _ in todo:
            try:
                ttft, n, total = await one_stream(provider, request)
            except HedgewayError as exc:
                errors[type(exc).__name__] += 1
            else:
                if not n:  # what llama.cpp sends a request beyond its slots: a 200 with nothing in it
                    errors["EmptyStream"] += 1
                ttfts.append(ttft * 1000)
                tokens += n
                if n and total > ttft:
                    speeds.append(n / (total - ttft))
            tick()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": requests, "errors": sum(errors.values()),
            "error_types": dict(errors), "seconds": round(wall, 3), "output_tokens": tokens,
            "output_tokens_per_s": round(tokens / wall, 1) if wall else 0.0,
            "stream_tokens_per_s_p50": _pct(speeds, 50), "ttft_ms_p50": _pct(ttfts, 50),
            "ttft_ms_p95": _pct(ttfts, 95)}


async def bench(dep: Deployment, levels: list[int], requests: int | None = None, max_tokens: int = 64,
                tick: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Measure `dep` at each concurrency in `levels`; `requests` per level (default 2 × concurrency, at
    least 4). `tick()` is called after each request (the progress bar)."""
    provider = PROVIDERS[dep.provider](dep)
    body = {"model": dep.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    request = ChatRequest(dep.model_name, body, stream=True)
    try:
        out = [await _level(provider, request, c, requests or max(4, 2 * c), tick) for c in levels]
    finally:
        provider.close()
    return {"schema": SCHEMA, "deployment": dep.id, "model": dep.model, "max_tokens": max_tokens, "levels": out}


def render(result: dict[str, Any]) -> str:
    """The curve as a plain table."""
    head = ["concurrency", "requests", "errors", "output tok/s", "stream tok/s p50", "TTFT p50 ms", "TTFT p95 ms"]
    rows = [[str(x if x is not None else "-") for x in (lv["concurrency"], lv["requests"], lv["errors"],
             lv["output_tokens_per_s"], lv["stream_tokens_per_s_p50"], lv["ttft_ms_p50"], lv["ttft_ms_p95"])]
            for lv in result["levels"]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"{result['deployment']} (max_tokens {result['max_tokens']})"]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head, *rows]]
    return "\n".join(lines)
