"""What a request may cost at most, before it is sent: the amount a budget reservation holds.

    max cost = est. prompt tokens × input price + n × max output tokens × output price

- Prompt tokens: UTF-8 bytes of the message text / `bytes_per_token` (default 3; English averages about
  4 bytes per token, so this over-estimates, which is safe: settlement replaces the estimate by the
  actual cost; `bytes_per_token: 1` is a hard upper bound for byte-level BPE tokenizers), plus the chat
  template's tokens (tokens.py: 5 per message, 3 per request, 19 more without a system message, which
  some templates fill with their own). An image part counts 1,600 tokens (more than OpenAI's largest
  high-detail image), tools and tool calls count their JSON bytes.
- Output tokens: `max_completion_tokens`, else `max_tokens`, else the configured default; × `n`.
- Prices: the highest input (incl. cache-write) and output price per token over every deployment the
  request could reach — its model's deployments and its fallback chain's — precomputed at start-up.
- Then `limits.reserve_margin` (default 10 %) on top (admission.py), for tokenizers that count more.

Amounts are integer nano-USD ("units", 1e-9 USD), rounded up, so counters are exact integers in Redis.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal
from typing import Any, Mapping, Sequence

import orjson

from hedgeway.tokens import template_tokens
from hedgeway.types import MILLION, Deployment

UNITS = Decimal(1_000_000_000)  # units per USD
IMAGE_TOKENS = 1600


def to_units(usd: Decimal) -> int:
    return int((usd * UNITS).to_integral_value(ROUND_CEILING))


def to_usd(units: int | float) -> Decimal:
    return Decimal(int(units)) / UNITS


def fmt_usd(usd: Decimal) -> str:
    """Dollars with cents, and up to 6 decimals when a small amount needs them ($0.40017, $1.00)."""
    whole, _, frac = f"{usd:.6f}".partition(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def max_prices(models: Mapping[str, Sequence[Deployment]],
               fallbacks: Mapping[str, Sequence[str]]) -> dict[str, tuple[Decimal, Decimal]]:
    """Per model name: (max input, max output) USD per token over everything the request could reach."""
    out = {}
    for name in models:
        deps = [d for m in (name, *fallbacks.get(name, ())) for d in models.get(m, ())]
        inp = max((max(d.price.input, d.price.cache_write or 0, d.price.cached_input or 0) for d in deps),
                  default=Decimal(0))
        outp = max((d.price.output for d in deps), default=Decimal(0))
        out[name] = (inp / MILLION, outp / MILLION)
    return out


def _text_bytes(content: Any) -> tuple[int, int]:
    """(bytes of text, extra tokens) of one message's content."""
    if isinstance(content, str):
        return len(content.encode()), 0
    if content is None:
        return 0, 0
    if isinstance(content, list):
        size, extra = 0, 0
        for part in content:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind == "text":
                    size += len(str(part.get("text", "")).encode())
                elif kind in ("image_url", "image"):
                    extra += IMAGE_TOKENS
                else:
                    size += len(orjson.dumps(part))
            else:
                size += len(str(part).encode())
        return size, extra
    return len(orjson.dumps(content)), 0


class Estimator:
    def __init__(self, bytes_per_token: float, default_max_tokens: int):
        self.bpt = bytes_per_token
        self.default_max = default_max_tokens

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        messages = body.get("messages")
        if messages is None:
            return self._embedding_tokens(body.get("input"))
        size, tokens = 0, template_tokens(messages)
        for m in messages if isinstance(messages, list) else ():
            if not isinstance(m, dict):
                continue
            b, extra = _text_bytes(m.get("content"))
            size += b
            tokens += extra
            if m.get("tool_calls"):
                size += len(orjson.dumps(m["tool_calls"]))
        if body.get("tools"):
            size += len(orjson.dumps(body["tools"]))
        return tokens + math.ceil(size / self.bpt)

    def _embedding_tokens(self, inp: Any) -> int:
        if isinstance(inp, str):
            return math.ceil(len(inp.encode()) / self.bpt) + 1
        if isinstance(inp, list):
            if inp and isinstance(inp[0], int):
                return len(inp)  # already tokens
            return sum(self._embedding_tokens(x) for x in inp)
        return 0

    def output_tokens(self, body: Mapping[str, Any]) -> tuple[int, bool]:
        """(max output tokens, whether the client gave a limit)."""
        if body.get("messages") is None:
            return 0, True  # embeddings have no output tokens
        given = body.get("max_completion_tokens") or body.get("max_tokens")
        n = body.get("n") or 1
        n = n if isinstance(n, int) and n > 0 else 1
        if isinstance(given, int) and given > 0:
            return given * n, True
        return self.default_max * n, False
