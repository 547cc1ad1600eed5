"""Price cards and pure cost functions. The shipped catalogue (`data/prices.yaml`) is dated data; a
deployment's own `price:` overrides it. Self-hosted deployments priced per GPU-hour are converted once, at
config load, into an amortised per-token card (see `gpu_hour_card`)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from importlib.resources import files

import yaml

from hedgeway.types import MILLION, PriceCard, Usage

SECONDS_PER_HOUR = Decimal(3600)


@lru_cache(maxsize=1)
def catalogue() -> tuple[str, dict[str, PriceCard]]:
    """(as_of date, {"provider/model": PriceCard}) from the shipped catalogue."""
    raw = yaml.safe_load(files("hedgeway.data").joinpath("prices.yaml").read_text())
    as_of = str(raw["as_of"])
    cards = {}
    for name, p in raw["models"].items():
        opt = {k: Decimal(p[k]) for k in ("cached_input", "cache_write") if k in p}
        cards[name] = PriceCard(input=Decimal(p["input"]), output=Decimal(p["output"]),
                                source=f"catalogue {as_of}", **opt)
    return as_of, cards


def lookup(provider: str, model: str) -> PriceCard | None:
    """The catalogue card for `provider/model`, matching dated snapshots by the longest known prefix."""
    cards = catalogue()[1]
    key = f"{provider}/{model}"
    if key in cards:
        return cards[key]
    best = max((k for k in cards if key.startswith(k + "-")), key=len, default=None)
    return cards[best] if best else None


def gpu_hour_card(gpu_hour: Decimal, gpus: int, tokens_per_second: Decimal) -> PriceCard:
    """Amortise a GPU-hour rate over the deployment's sustained throughput: every token (input or
    output) costs gpus × $/h ÷ (tokens/s × 3600). Idle time is not charged to requests; the planner
    accounts for it."""
    per_token = Decimal(gpu_hour) * gpus / (Decimal(tokens_per_second) * SECONDS_PER_HOUR)
    per_m = per_token * MILLION
    return PriceCard(input=per_m, output=per_m, source=f"gpu-hour {gpu_hour}×{gpus}", gpu_hour=Decimal(gpu_hour),
                     gpus=gpus, tokens_per_second=Decimal(tokens_per_second))


def cost(usage: Usage, card: PriceCard) -> Decimal:
    """USD for one request: uncached input, cache reads, cache writes and output at their own rates."""
    cached = usage.cached_tokens
    written = usage.cache_write_tokens
    plain = max(usage.prompt_tokens - cached - written, 0)
    total = plain * card.input + usage.completion_tokens * card.output
    if cached:
        total += cached * (card.input if card.cached_input is None else card.cached_input)
    if written:
        total += written * (card.input if card.cache_write is None else card.cache_write)
    return total / MILLION
