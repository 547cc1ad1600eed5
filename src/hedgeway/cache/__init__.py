"""The response cache, between admission and the router.

The pipeline calls, per chat request:

    lookup = await cache.lookup(principal, req)       # Lookup(status, hit, handle); never raises
    if lookup.hit: reply with lookup.hit.body (or cache.replay(lookup.hit) for a stream)
    else after a successful upstream answer:
        cache.store(lookup, body, usage, cost)         # non-streaming; never blocks, never raises
        cache.store_stream(lookup, chunks, usage, cost)  # the relayed OpenAI SSE chunks of a stream

`status` is what the `x-hedgeway-cache` header says: "hit-exact" | "hit-semantic" | "miss" | "bypass".
`build_cache(config, gateway)` returns None when caching is off (the pipeline then skips the step).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from hedgeway.types import ChatRequest, Principal, Usage


@dataclass(slots=True)
class CacheHit:
    body: bytes  # an OpenAI chat.completion body
    kind: str  # "exact" | "semantic"
    similarity: float | None
    usage: Usage  # the usage of the original answer (what the hit did not spend)
    saved: Decimal  # what the original answer cost


@dataclass(slots=True)
class Lookup:
    status: str
    hit: CacheHit | None = None
    handle: Any = None  # what store() needs (keys, embedding), so a miss is never hashed twice


class Cache(Protocol):
    async def lookup(self, principal: Principal, req: ChatRequest) -> Lookup: ...

    def replay(self, hit: CacheHit, req: ChatRequest) -> AsyncIterator[bytes]: ...

    def store(self, lookup: Lookup, body: bytes, usage: Usage, cost: Decimal) -> None: ...

    def store_stream(self, lookup: Lookup, chunks: list[bytes], usage: Usage, cost: Decimal) -> None: ...

    async def close(self) -> None: ...


def build_cache(config: Any, gateway: Any = None) -> Cache | None:
    """The configured cache (backend and embedder from their registries), or None when `cache.enabled`
    is false and no model turns it on."""
    cfg = config.cache
    if not cfg.enabled and not any(m.enabled for m in cfg.models.values()):
        return None
    from hedgeway.cache.backends import BACKENDS
    from hedgeway.cache.service import ResponseCache
    from hedgeway.embedders import build_embedder

    return ResponseCache(cfg, BACKENDS[cfg.backend](cfg), build_embedder(cfg, gateway))
