"""Embedding only when a lookup has something to compare with: a miss in an empty bucket embeds nothing and
is stored with its text; the first lookup that searches the bucket embeds the pending texts with its query
(memory backend here; two Redis replicas in test_cache_redis.py). Also the MiniLM worker: coalesced
batches on one lower-priority thread, and remembered texts."""

from __future__ import annotations

import asyncio
import os
import threading
from decimal import Decimal

import numpy as np
import pytest

from hedgeway.cache import service as service_mod
from hedgeway.cache.backends import MemoryBackend
from hedgeway.cache.config import CacheIn
from hedgeway.cache.service import ResponseCache
from hedgeway.cache.embed_worker import EMBED_NICE, Worker
from hedgeway.types import ChatRequest, Principal, Usage

P = Principal("k1", team="t")
BODY = b'{"choices":[{"message":{"content":"answer"}}]}'


class FakeEmbedder:
    """Vectors from a table (unknown text: its own axis, similar to nothing); records every call; LONG
    texts are too long to read whole (a zero row)."""

    name = "fake"

    def __init__(self, table: dict[str, list[float]], dim: int = 8):
        self.table, self.dim, self.calls = table, dim, []

    def vec(self, text: str) -> np.ndarray:
        if text.startswith("LONG"):
            return np.zeros(self.dim, np.float32)
        v = np.array(self.table.get(text) or np.eye(self.dim)[hash(text) % self.dim], np.float32)
        return v / np.linalg.norm(v)

    async def embed(self, texts, whole_only=False):
        self.calls.append(list(texts))
        return np.stack([self.vec(t) for t in texts])


def req(text, model="m", system="S"):
    return ChatRequest(model=model, body={"model": model, "temperature": 0, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": text}]})


SIMILAR = {"reset my password": [1, 0.1, 0, 0, 0, 0, 0, 0], "how to reset my password": [1, 0.12, 0, 0, 0, 0, 0, 0],
           "password reset please": [1, 0.15, 0, 0, 0, 0, 0, 0], "where is my parcel": [0, 0, 1, 0, 0, 0, 0, 0]}


def cache_with(embedder, backend=None, **cfg):
    section = CacheIn(enabled=True, threshold=0.95, **cfg)
    return ResponseCache(section, MemoryBackend(100) if backend is None else backend, embedder)


async def ask(cache, r):
    lk = await cache.lookup(P, r)
    if lk.hit is None:
        cache.store(lk, BODY.replace(b"answer", r.body["messages"][-1]["content"].encode()), Usage(1, 1),
                    Decimal("0.01"))
        await cache.drain()
    return lk


def answer_of(lk):
    import orjson
    return orjson.loads(lk.hit.body)["choices"][0]["message"]["content"]


def test_a_miss_in_an_empty_bucket_embeds_nothing_and_the_next_search_embeds_it():
    async def go():
        emb = FakeEmbedder(SIMILAR)
        cache = cache_with(emb)
        assert (await ask(cache, req("reset my password"))).status == "miss"
        assert emb.calls == []  # nothing to compare with: no embedding
        (bucket,) = cache.backend.buckets.values()
        assert list(bucket.pending.values()) == ["reset my password"] and not bucket.vectors
        # other numbers, other system prompt: other (empty) buckets, still nothing embedded
        assert (await ask(cache, req("reset my password for account 7"))).status == "miss"
        assert (await ask(cache, req("reset my password", system="T"))).status == "miss"
        assert emb.calls == [] and len(cache.backend.buckets) == 3
        # a paraphrase searches the bucket: its query and the pending text in one call, then a hit
        lk = await ask(cache, req("how to reset my password"))
        assert lk.status == "hit-semantic" and answer_of(lk) == "reset my password"
        assert emb.calls == [["how to reset my password", "reset my password"]]
        assert not bucket.pending and len(bucket.vectors) == 1
        # the entry keeps its vector: the next search embeds only its own query
        lk = await ask(cache, req("password reset please"))
        assert lk.status == "hit-semantic" and emb.calls[-1] == ["password reset please"]
        # a miss whose query was embedded is stored with that vector, not as pending
        assert (await ask(cache, req("where is my parcel"))).status == "miss"
        assert not bucket.pending and len(bucket.vectors) == 2
        assert (await ask(cache, req("reset my password"))).status == "hit-exact"
    asyncio.run(go())


def test_a_pending_text_too_long_to_embed_whole_stays_an_exact_entry_only():
    async def go():
        emb = FakeEmbedder(SIMILAR)
        cache = cache_with(emb)
        await ask(cache, req("LONG fixed instructions … question one"))
        assert (await ask(cache, req("reset my password"))).status == "miss"  # embeds both: the LONG row is zero
        assert emb.calls == [["reset my password", "LONG fixed instructions … question one"]]
        (bucket,) = cache.backend.buckets.values()
        assert not bucket.pending and len(bucket.vectors) == 1  # only "reset my password"
        assert cache.backend.entries[next(iter(cache.backend.entries))][2] is None  # exact only
        assert (await ask(cache, req("LONG fixed instructions … question one"))).status == "hit-exact"
        # a long query is a miss stored exactly only (not pending)
        assert (await ask(cache, req("LONG question two"))).status == "miss"
        assert not bucket.pending and len(bucket.vectors) == 1
    asyncio.run(go())


def test_remembered_vectors_are_not_embedded_again_and_one_lookup_embeds_at_most_lazy_max(monkeypatch):
    async def go():
        emb = FakeEmbedder(SIMILAR)
        emb.recall = lambda texts, whole_only=False: [emb.vec(t) if t == "reset my password" else None
                                                      for t in texts]
        cache = cache_with(emb)
        await ask(cache, req("reset my password"))
        lk = await ask(cache, req("how to reset my password"))
        assert lk.status == "hit-semantic" and emb.calls == [["how to reset my password"]]

        monkeypatch.setattr(service_mod, "LAZY_MAX", 2)
        emb2 = FakeEmbedder({})
        cache2 = cache_with(emb2)
        # a burst of first questions: all see the bucket empty, all are stored pending
        await asyncio.gather(*(cache2.lookup(P, req(f"question {c}")) for c in "abcde"))
        for c in "abcde":
            cache2.store(await cache2.lookup(P, req(f"question {c}")), BODY, Usage(1, 1), Decimal(0))
        await cache2.drain()
        (bucket,) = cache2.backend.buckets.values()
        assert len(bucket.pending) == 5
        await ask(cache2, req("another"))
        assert emb2.calls[-1] == ["another", "question a", "question b"] and len(bucket.pending) == 3
    asyncio.run(go())


def test_pending_entries_survive_a_snapshot_restart(tmp_path):
    path = str(tmp_path / "c.db")

    async def go():
        emb = FakeEmbedder(SIMILAR)
        cache = cache_with(emb, MemoryBackend(10, path))
        await ask(cache, req("reset my password"))
        await cache.close()
        again = cache_with(emb, MemoryBackend(10, path))
        lk = await ask(again, req("how to reset my password"))
        assert lk.status == "hit-semantic" and emb.calls == [["how to reset my password", "reset my password"]]
    asyncio.run(go())


def test_worker_coalesces_waiting_texts_of_similar_length_into_one_batch():
    gate, batches = threading.Event(), []

    def embed_many(texts):
        batches.append(list(texts))
        gate.wait(5)
        return [(np.full(2, len(t), np.float32), False) for t in texts]

    w = Worker(embed_many)
    first = w.embed(["a"])
    while not batches:  # the worker is busy with the first batch …
        threading.Event().wait(0.001)
    later = [w.embed(["bb", "ccc"]), w.embed(["dddd"])]  # … so these wait, and run together
    long = w.embed(["e" * 200])  # but not with a much longer text: the batch would be padded to it
    gate.set()
    assert first.result(5)[0][0][0] == 1
    assert [v[0] for v, _ in later[0].result(5)] == [2, 3] and later[1].result(5)[0][0][0] == 4
    assert long.result(5)[0][0][0] == 200
    assert batches == [["a"], ["bb", "ccc", "dddd"], ["e" * 200]]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")
def test_worker_runs_at_idle_priority_and_a_starved_caller_boosts_it_until_its_queue_is_empty():
    def policy():
        tid = threading.get_native_id()
        return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)

    gate = threading.Event()
    w = Worker(lambda texts: [])
    assert w.call(policy).result(5)[0] == os.SCHED_IDLE
    blocked = w.call(gate.wait, 5)
    w.boost()  # a caller starved while the worker is busy …
    boosted = w.call(policy)
    gate.set()
    blocked.result(5)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert boosted.result(5) == (os.SCHED_OTHER, min(base + EMBED_NICE, 19))  # … what is queued runs boosted
    for _ in range(5000):  # the worker finds its queue empty and goes back to idle
        if not w._boosted:
            break
        threading.Event().wait(0.001)
    assert w.call(policy).result(5)[0] == os.SCHED_IDLE


def test_minilm_remembers_what_it_embedded():
    pytest.importorskip("onnxruntime")
    from hedgeway.embedders import MAX_TOKENS, MiniLM

    m = MiniLM()

    async def go():
        long = " ".join(["word"] * (MAX_TOKENS + 10))
        assert m.recall(["How do I reset my password?"]) == [None]
        a = await m.embed(["How do I reset my password?", long, "How do I reset my password?"])
        assert m.computed == 2  # a text twice in one call is run once
        got = m.recall(["How do I reset my password?", long, "never seen"], whole_only=True)
        assert np.allclose(got[0], a[0]) and not got[1].any() and got[2] is None
        assert m.recall([long])[0].any()  # without whole_only: the prefix's vector
        await m.embed(["How do I reset my password?"])
        assert m.computed == 2  # remembered: not run again
        assert np.allclose(m.embed_sync(["How do I reset my password?"])[0], a[0], atol=1e-5)
    asyncio.run(go())


def test_a_snapshot_written_before_pending_entries_existed_still_loads(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE cache_entries (key TEXT PRIMARY KEY, entry BLOB NOT NULL, expires REAL NOT NULL, "
               "bucket TEXT, used INTEGER NOT NULL, vec BLOB)")
    from hedgeway.cache.entry import Entry
    e = Entry(BODY, Usage(1, 1), Decimal("0.01"))
    db.execute("INSERT INTO cache_entries VALUES ('k', ?, 9e12, 'B', 0, ?)",
               (e.dumps(), np.array([1, 0], np.float32).tobytes()))
    db.commit()
    db.close()

    async def go():
        be = MemoryBackend(10, path)
        assert (await be.search("B", np.array([1, 0], np.float32), 0.9))[0] == e
        await be.put("p", e, 60, "B", None, "a pending text")
        await be.close()
        assert MemoryBackend(10, path).buckets["B"].pending == {"p": "a pending text"}
    asyncio.run(go())


def test_an_expired_pending_entry_is_never_embedded():
    async def go():
        emb = FakeEmbedder(SIMILAR)
        cache = cache_with(emb, ttl=0.05)
        await ask(cache, req("reset my password"))
        await asyncio.sleep(0.08)
        assert (await ask(cache, req("how to reset my password"))).status == "miss"
        assert emb.calls == []  # the bucket held only an expired entry: nothing to compare with
    asyncio.run(go())
