"""`hedgeway cache bench`: replay an insert set and a query set through the gateway's own cache code.

Every request goes through `ResponseCache.lookup`/`store` (same keys, fingerprint, threshold, per-model
policy, in-memory backend) with one difference: texts are embedded up front in batches, and the lookup
reads the vector from that table — so the reported latency is the lookup after embedding, and a large
replay does not pay per-prompt inference.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any, TextIO

import numpy as np
import orjson

from hedgeway.cache.backends import MemoryBackend
from hedgeway.cache.keys import last_user_index, user_text
from hedgeway.cache.service import ResponseCache
from hedgeway.types import ChatRequest, Principal, Usage

PRINCIPAL = Principal("cache-bench")


class Precomputed:
    """An embedder answering from a table filled in batches by the real one (same name: same space)."""

    def __init__(self, inner: Any):
        self.name, self.inner, self.table = inner.name, inner, {}

    def fill(self, texts: list[str], batch: int = 16) -> None:
        todo = sorted({t for t in texts if t not in self.table}, key=len)  # similar lengths pad less
        for i in range(0, len(todo), batch):
            for t, v in zip(todo[i:i + batch], self.inner.embed_sync(todo[i:i + batch], whole_only=True)):
                self.table[t] = v

    async def embed(self, texts: list[str], whole_only: bool = True) -> np.ndarray:  # filled whole_only
        return np.stack([self.table[t] for t in texts])


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def request(model: str, prompt: Any) -> ChatRequest:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return ChatRequest(model=model, body={"model": model, "messages": messages})


def _last_text(req: ChatRequest) -> str | None:
    msgs = req.body["messages"]
    i = last_user_index(msgs)
    return user_text(msgs[i]) if i >= 0 else None


def _answer(id_: Any) -> bytes:
    return orjson.dumps({"id": "bench", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": orjson.dumps(id_).decode()},
         "finish_reason": "stop"}]})


async def _run(inserts, queries, cache: ResponseCache, model: str) -> tuple[list[dict], list[float]]:
    for row in inserts:
        req = request(model, row["prompt"])
        lookup = await cache.lookup(PRINCIPAL, req)
        # Every line is inserted, a near-duplicate of an earlier line too (its own entry and vector); only
        # an identical request (an exact hit) keeps the earlier line's entry.
        if lookup.status != "hit-exact":
            cache.store(lookup, _answer(row["id"]), Usage(), Decimal(0))
            await cache.drain()
    results, lat = [], []
    for row in queries:
        req = request(model, row["prompt"])
        t = time.perf_counter()
        lookup = await cache.lookup(PRINCIPAL, req)
        lat.append(time.perf_counter() - t)
        hit = lookup.hit
        matched = orjson.loads(orjson.loads(hit.body)["choices"][0]["message"]["content"]) if hit else None
        results.append({"id": row["id"], "hit": hit is not None, "matched_id": matched,
                        "similarity": None if hit is None else (1.0 if hit.similarity is None else round(hit.similarity, 4))})
    return results, lat


def run(args: Any, cfg: Any, section: Any, embedder: Any, out: TextIO) -> int:
    inserts, queries = read(args.insert), read(args.query)
    model = next(iter(cfg.models)) if cfg is not None else "default"
    emb = None
    if embedder is not None:
        emb = Precomputed(embedder)
        t = time.perf_counter()
        emb.fill([x for r in inserts + queries if (x := _last_text(request(model, r["prompt"])))])
        print(f"embedded {len(emb.table)} texts in {time.perf_counter() - t:.1f} s", file=out)
    section = section.model_copy(update={"max_entries": max(section.max_entries, len(inserts) + 1)})
    cache = ResponseCache(section, MemoryBackend(section.max_entries, ann=section.ann), emb)
    results, lat = asyncio.run(_run(inserts, queries, cache, model))
    if args.output:
        with open(args.output, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
    hits = sum(r["hit"] for r in results)
    ms = np.array(lat) * 1000
    print(f"inserted {len(inserts)}, queried {len(queries)}: hit rate {hits / max(len(results), 1):.4f} "
          f"({hits}); threshold {section.threshold}", file=out)
    if len(ms):
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"lookup latency after embedding: p50 {p50:.3f} ms, p90 {p90:.3f} ms, p99 {p99:.3f} ms", file=out)
    return 0
