"""The response cache the pipeline talks to (the `Cache` protocol in hedgeway.cache).

A hit is served as a new response (`wire.restamp`: its own id and creation time).

lookup: bypass (caching off for the model, or `no_cache`) → exact key → semantic search in the
request's fingerprint bucket (only when the model allows it, the embedder is on, and the temperature is
within `max_temperature` unless `semantic_above_max_temperature`). Backend or embedder errors never fail
a request: they are logged and counted, and the request is a miss. Stores run as background tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from hedgeway.cache import CacheHit, Lookup
from hedgeway.cache.config import CacheIn, ModelPolicy
from hedgeway.cache.entry import Entry
from hedgeway.cache.keys import exact_key, semantic_parts, tenant
from hedgeway.cache.stream import assemble, replay
from hedgeway.types import ChatRequest, Principal, Usage
from hedgeway.wire import restamp

log = logging.getLogger("hedgeway.cache")
_BYPASS = Lookup("bypass")


@dataclass(slots=True)
class Handle:
    key: str
    ttl: float
    store: bool
    bucket: str | None = None
    vec: np.ndarray | None = None


class ResponseCache:
    def __init__(self, cfg: CacheIn, backend: Any, embedder: Any):
        self.cfg, self.backend, self.embedder = cfg, backend, embedder
        self._policies: dict[str, ModelPolicy] = {}
        self._tasks: set[asyncio.Task] = set()
        self.errors = 0

    def policy(self, model: str) -> ModelPolicy:
        pol = self._policies.get(model)
        if pol is None:
            pol = self._policies[model] = ModelPolicy(self.cfg, model)
        return pol

    def _semantic_ok(self, pol: ModelPolicy, body: dict) -> bool:
        if not pol.semantic or self.embedder is None:
            return False
        t = body.get("temperature")
        t = 1.0 if t is None else t  # OpenAI's default
        return t <= self.cfg.max_temperature or self.cfg.semantic_above_max_temperature

    async def lookup(self, principal: Principal, req: ChatRequest) -> Lookup:
        pol = self.policy(req.model)
        ctl = req.cache or {}
        if not pol.enabled or ctl.get("no_cache"):
            return _BYPASS
        ttl = ctl.get("ttl")
        ttl = ttl if type(ttl) in (int, float) and ttl > 0 else pol.ttl
        ns = tenant(principal)
        handle = Handle(exact_key(ns, req), ttl, not ctl.get("no_store"))
        try:
            entry = await self.backend.get(handle.key)
            if entry is not None:
                return Lookup("hit-exact", CacheHit(restamp(entry.body), "exact", None, entry.usage, entry.cost),
                              handle)
            if self._semantic_ok(pol, req.body):
                hit = await self._semantic(ns, req, pol.threshold, handle)
                if hit is not None:
                    return Lookup("hit-semantic", hit, handle)
        except Exception:  # a cache outage must not become a request failure
            self.errors += 1
            log.exception("cache lookup failed; serving the request uncached")
        return Lookup("miss", None, handle)

    async def _semantic(self, ns: str, req: ChatRequest, threshold: float, handle: Handle) -> CacheHit | None:
        """Search the request's fingerprint bucket, and give the handle that bucket and the vector so a
        miss is stored with them. A request with no semantic form, or too long for the embedder to read
        whole (a zero row), is cached exactly only."""
        parts = semantic_parts(ns, req)
        if parts is None:
            return None
        vec = (await self.embedder.embed([parts[1]], whole_only=True))[0]
        if not vec.any():
            return None
        handle.bucket, handle.vec = f"{self.embedder.name}:{parts[0]}", vec
        found = await self.backend.search(handle.bucket, vec, threshold)
        if found is None:
            return None
        entry, sim = found
        return CacheHit(restamp(entry.body), "semantic", sim, entry.usage, entry.cost)

    def replay(self, hit: CacheHit, req: ChatRequest) -> AsyncIterator[bytes]:
        return replay(hit.body, req.include_usage)

    def store(self, lookup: Lookup, body: bytes, usage: Usage, cost: Decimal) -> None:
        h: Handle | None = lookup.handle
        if h is None or not h.store:
            return
        try:
            ok = bool(orjson.loads(body).get("choices"))
        except (orjson.JSONDecodeError, AttributeError):
            ok = False
        if ok:
            self._spawn(self.backend.put(h.key, Entry(body, usage, cost), h.ttl, h.bucket, h.vec))

    def store_stream(self, lookup: Lookup, chunks: list[bytes], usage: Usage, cost: Decimal) -> None:
        h: Handle | None = lookup.handle
        if h is None or not h.store:
            return
        body = assemble(chunks)
        if body is not None:
            self._spawn(self.backend.put(h.key, Entry(body, usage, cost), h.ttl, h.bucket, h.vec))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            log.warning("cache store failed: %s", task.exception())

    async def drain(self) -> None:
        """Wait for pending stores (tests, benchmarks, shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def close(self) -> None:
        await self.drain()
        await self.backend.close()
