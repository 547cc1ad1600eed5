"""The response cache the pipeline talks to (the `Cache` protocol in hedgeway.cache).

A hit is served as a new response (`wire.restamp`: its own id and creation time).

lookup: bypass (caching off for the model, or `no_cache`) → exact key → semantic search in the
request's fingerprint bucket (only when the model allows it, the embedder is on, and the temperature is
within `max_temperature` unless `semantic_above_max_temperature`). Backend or embedder errors never fail
a request: they are logged and counted, and the request is a miss. Stores run in batches, in the background.

Embedding only when there is something to compare with: the exact key and the bucket are looked up
together (`backend.lookup`, one round trip), and a request whose bucket is empty — every first question
in its context, every request whose numbers are new — is a miss without any embedding. Such a miss is
stored with its text, not a vector ("pending"); the first lookup that searches that bucket embeds the
pending texts in the same batch as its own query (at most LAZY_MAX of them per lookup, oldest first; the
rest by the lookups after it) and hands the vectors to the backend (for Redis: written back for every
replica). An entry nobody searches near never costs an embedding. A miss whose query was embedded (a
non-empty bucket) is stored with its vector, as before. Texts the embedder still remembers (`recall`:
e.g. the router embedded that request) are not embedded again.
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
from hedgeway.cache.entry import Bucket, Entry
from hedgeway.cache.keys import exact_key, semantic_parts, tenant
from hedgeway.cache.stream import assemble, replay
from hedgeway.types import ChatRequest, Principal, Usage
from hedgeway.wire import restamp

log = logging.getLogger("hedgeway.cache")
_BYPASS = Lookup("bypass")
LAZY_MAX = 32  # pending texts embedded per lookup: bounds one lookup's work after a burst of first questions


def _answers(body: bytes) -> bool:
    """An answer worth caching: a JSON object with choices (not an error or an empty reply)."""
    try:
        return bool(orjson.loads(body).get("choices"))
    except (orjson.JSONDecodeError, AttributeError):
        return False


@dataclass(slots=True)
class Handle:
    key: str
    ttl: float
    store: bool
    bucket: str | None = None
    vec: np.ndarray | None = None
    text: str | None = None  # the semantic text, stored when no vector was computed


class ResponseCache:
    def __init__(self, cfg: CacheIn, backend: Any, embedder: Any):
        self.cfg, self.backend, self.embedder = cfg, backend, embedder
        self._policies: dict[str, ModelPolicy] = {}
        self._tasks: set[asyncio.Task] = set()
        self._batch: list[tuple[Handle, Entry, bool]] = []  # this loop iteration's stores (_queue)
        self._sending: asyncio.Handle | None = None
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
            # A request with no semantic form is cached exactly only.
            parts = semantic_parts(ns, req) if self._semantic_ok(pol, req.body) else None
            if parts is not None:
                handle.bucket, handle.text = f"{self.embedder.name}:{parts[0]}", parts[1]
            entry, bucket = await self.backend.lookup(handle.key, handle.bucket)
            if entry is not None:
                return Lookup("hit-exact", CacheHit(restamp(entry.body), "exact", None, entry.usage, entry.cost),
                              handle)
            if bucket is not None:
                hit = await self._semantic(bucket, pol.threshold, handle)
                if hit is not None:
                    return Lookup("hit-semantic", hit, handle)
        except Exception:  # a cache outage must not become a request failure
            self.errors += 1
            log.exception("cache lookup failed; serving the request uncached")
        return Lookup("miss", None, handle)

    async def _semantic(self, bucket: Bucket, threshold: float, handle: Handle) -> CacheHit | None:
        """Embed the query (and up to LAZY_MAX of the bucket's pending entries) and search the bucket;
        the handle keeps the vector so a miss is stored with it. A query too long for the embedder to
        read whole (a zero row) is cached exactly only."""
        pending = await self.backend.pending(handle.bucket, bucket, LAZY_MAX)
        if not pending and not bucket.vectors:
            return None  # what the bucket held has expired
        vecs = await self._vectors(handle.text, [t for _, t in pending])
        if pending:
            await self.backend.fill(handle.bucket, bucket, {k: v for (k, _), v in zip(pending, vecs[1:])})
        vec = vecs[0]
        if not vec.any():
            handle.bucket = handle.text = None
            return None
        handle.vec = vec
        found = await self.backend.best(handle.bucket, bucket, vec, threshold)
        if found is None:
            return None
        entry, sim = found
        return CacheHit(restamp(entry.body), "semantic", sim, entry.usage, entry.cost)

    async def _vectors(self, query: str, pending: list[str]) -> list[np.ndarray]:
        """whole_only vectors of the query and the pending texts, in one embed call: pending texts the
        embedder remembers (`recall`: e.g. the router embedded that request) are not asked for. The query
        always is: `embed` is the one place an embedding is counted and remembered (MiniLM answers a
        remembered text without running the model)."""
        recall = getattr(self.embedder, "recall", None)
        known = [None, *(recall(pending, whole_only=True) if recall is not None else [None] * len(pending))]
        texts = [query, *pending]
        fresh = iter(await self.embedder.embed([t for t, v in zip(texts, known) if v is None], whole_only=True))
        return [next(fresh) if v is None else v for v in known]

    def replay(self, hit: CacheHit, req: ChatRequest) -> AsyncIterator[bytes]:
        return replay(hit.body, req.include_usage)

    def store(self, lookup: Lookup, body: bytes, usage: Usage, cost: Decimal) -> None:
        """Queue an answer for the next batch of stores (the body is checked for choices then: after the
        client has it, not before)."""
        h: Handle | None = lookup.handle
        if h is not None and h.store:
            self._queue(h, Entry(body, usage, cost), True)

    def store_stream(self, lookup: Lookup, chunks: list[bytes], usage: Usage, cost: Decimal) -> None:
        h: Handle | None = lookup.handle
        if h is None or not h.store:
            return
        body = assemble(chunks)
        if body is not None:
            self._queue(h, Entry(body, usage, cost), False)

    def _queue(self, h: Handle, entry: Entry, check: bool) -> None:
        """The stores of one loop iteration leave together, on the next: one task and one `put_many` (for
        Redis, one write and one ZADD) for all of them instead of one each. Under load, an iteration ends
        many requests. Holding stores for a few ms to gather more was measured slower: its timer wakes an
        idle loop, and at concurrency 16 it cost a quarter of the throughput."""
        if not self._batch:
            self._sending = asyncio.get_running_loop().call_soon(self._send)
        self._batch.append((h, entry, check))

    def _send(self) -> None:
        batch, self._batch, self._sending = self._batch, [], None
        self._spawn(self._put(batch))

    async def _put(self, batch: list[tuple[Handle, Entry, bool]]) -> None:
        items = [self._put_args(h, entry) for h, entry, check in batch if not check or _answers(entry.body)]
        if items:
            await self.backend.put_many(items)

    @staticmethod
    def _put_args(h: Handle, entry: Entry) -> tuple:
        text = h.text if h.vec is None else None  # no vector computed: pending, embedded when searched
        return h.key, entry, h.ttl, h.bucket, h.vec, text

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
        if self._sending is not None:
            self._sending.cancel()
            self._send()
        while self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def close(self) -> None:
        await self.drain()
        await self.backend.close()
