"""The Redis cache backend against the real server on 127.0.0.1:6379 (own key prefix, deleted after):
entries, TTL via Redis expiry, the LRU bound, per-replica index sync, and two gateways sharing hits."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import numpy as np
import openai
import pytest
import redis
from conftest import MASTER, gateway_config, require_service

from hedgeway.cache.entry import Entry
from hedgeway.cache.redis_backend import RedisBackend
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.types import Usage

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture()
def prefix():
    try:
        redis.Redis.from_url(URL, socket_timeout=1).ping()
    except redis.RedisError as exc:
        require_service("Redis", str(exc))
    p = f"hw-test-cache-{uuid.uuid4().hex[:10]}"
    yield p
    r = redis.Redis.from_url(URL)
    keys = list(r.scan_iter(match=f"{p}:*"))
    if keys:
        r.delete(*keys)
    r.close()


def entry(n):
    return Entry(b'{"choices":[{"message":{"content":"a%d"}}]}' % n, Usage(10, n), Decimal("0.5"))


def test_replicas_share_entries_vectors_and_evictions(prefix):
    async def go():
        a, b = RedisBackend(URL, prefix, 3), RedisBackend(URL, prefix, 3)
        v = [np.eye(4, dtype=np.float32)[i] for i in range(4)]
        assert await b.search("B", v[0], 0.9) is None  # b has now seen the (empty) bucket
        await a.put("k0", entry(0), 60, "B", v[0])
        got, sim = await b.search("B", v[0], 0.9)  # b re-syncs: the version changed
        assert got == entry(0) and sim == pytest.approx(1.0)
        assert (await b.get("k0")).cost == Decimal("0.5")
        for i in (1, 2):
            await a.put(f"k{i}", entry(i), 60, "B", v[i])
        await b.get("k0")  # k0 used: k1 is now least recently used
        await a.put("k3", entry(3), 60, "B", v[3])  # over the bound of 3: evicts k1, its vector too
        assert await b.get("k1") is None and await b.search("B", v[1], 0.9) is None
        assert (await b.search("B", v[3], 0.9))[0] == entry(3)
        r = redis.Redis.from_url(URL)
        assert r.zcard(f"{prefix}:lru") == 3 and r.hlen(f"{prefix}:b:B") == 3
        await a.put("short", entry(9), 0.1, "S", v[0])
        assert 0 < r.pttl(f"{prefix}:e:short") <= 100
        await asyncio.sleep(0.15)
        assert await b.get("short") is None and await b.search("S", v[0], 0.9) is None
        assert r.hlen(f"{prefix}:b:S") == 0  # the stale vector was removed when its entry was gone
        r.close()
        await a.close()
        await b.close()
    asyncio.run(go())


def test_a_replica_updates_its_bucket_copy_instead_of_rebuilding_it(prefix):
    async def go():
        a, b = RedisBackend(URL, prefix, 100), RedisBackend(URL, prefix, 100)
        rng = np.random.default_rng(3)
        v = rng.standard_normal((6, 8)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        for i in range(4):
            await a.put(f"k{i}", entry(i), 60, "B", v[i])
        assert (await b.search("B", v[2], 0.99))[0] == entry(2)
        copy = b.local["B"][1]
        await a.put("k4", entry(4), 60, "B", v[4])
        await a._evict(1)  # the least recently used, k0, leaves Redis and the bucket
        assert (await b.search("B", v[4], 0.99))[0] == entry(4)
        assert b.local["B"][1] is copy and sorted(copy.vectors) == ["k1", "k2", "k3", "k4"]
        assert np.array_equal(copy.vectors["k4"], v[4]) and await b.search("B", v[0], 0.99) is None
        await a.close()
        await b.close()
    asyncio.run(go())


def test_two_gateways_sharing_redis_serve_each_others_hits(upstream, tmp_path, prefix):
    pytest.importorskip("onnxruntime")
    cache = {"enabled": True, "backend": "redis", "redis_url": URL, "prefix": prefix, "threshold": 0.9}
    gws = [BackgroundGateway(from_dict(gateway_config(upstream.base_url, f"sqlite:///{tmp_path}/l{i}.db",
                                                      cache=cache))) for i in (1, 2)]
    with gws[0] as g1, gws[1] as g2:
        c1, c2 = (openai.OpenAI(base_url=g.base_url, api_key=MASTER, max_retries=0, timeout=20) for g in (g1, g2))
        before = upstream.calls["ok-mini"]

        def ask(c, text):
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", temperature=0, messages=[{"role": "user", "content": text}])
            return raw.headers["x-hedgeway-cache"], raw.parse().choices[0].message.content

        assert ask(c1, "How do I cancel my subscription?") == ("miss", "echo: How do I cancel my subscription?")
        time.sleep(0.2)
        assert ask(c2, "How do I cancel my subscription?") == ("hit-exact", "echo: How do I cancel my subscription?")
        assert ask(c2, "How can I cancel my subscription?") == ("hit-semantic", "echo: How do I cancel my subscription?")
        assert ask(c2, "Where is my parcel?")[0] == "miss"
        time.sleep(0.2)
        assert ask(c1, "Where is my parcel?") == ("hit-exact", "echo: Where is my parcel?")
        assert upstream.calls["ok-mini"] - before == 2


def test_replicas_embed_a_pending_entry_once_and_share_its_vector(prefix):
    """A miss in an empty bucket is stored with its text; the first replica to search the bucket embeds
    it and writes the vector back; the other replica then reads that vector instead of embedding it."""
    from test_cache_lazy import SIMILAR, FakeEmbedder, answer_of, ask, cache_with, req

    async def go():
        ea, eb = FakeEmbedder(SIMILAR), FakeEmbedder(SIMILAR)
        a, b = cache_with(ea, RedisBackend(URL, prefix, 100)), cache_with(eb, RedisBackend(URL, prefix, 100))
        assert (await ask(a, req("reset my password"))).status == "miss"
        assert ea.calls == []  # an empty bucket: nothing embedded, stored with its text
        r = redis.Redis.from_url(URL)
        (bk,) = [k.decode() for k in r.scan_iter(match=f"{prefix}:b:*")]
        assert [f.decode()[:2] for f in r.hkeys(bk)] == ["t:"] and 0 < r.pttl(bk) <= 3600_000
        lk = await ask(b, req("how to reset my password"))  # b embeds its query and the pending text
        assert lk.status == "hit-semantic" and answer_of(lk) == "reset my password"
        assert eb.calls == [["how to reset my password", "reset my password"]]
        (field,) = r.hkeys(bk)  # written back: the vector, and no text field
        assert not field.startswith(b"t:") and len(r.hget(bk, field)) == 8 * 4
        lk = await ask(a, req("password reset please"))  # a reads b's vector: only its own query embedded
        assert lk.status == "hit-semantic" and ea.calls == [["password reset please"]]
        assert (await ask(b, req("reset my password"))).status == "hit-exact"
        # a request that differs in its numbers: its own empty bucket, nothing embedded on either replica
        assert (await ask(b, req("reset my password for account 7"))).status == "miss" and len(eb.calls) == 1
        r.close()
        for c in (a, b):
            await c.close()
    asyncio.run(go())


def test_a_pending_entry_evicted_or_expired_before_its_vector_is_written_leaves_no_vector(prefix):
    from test_cache_lazy import SIMILAR, FakeEmbedder, ask, cache_with, req

    async def go():
        emb = FakeEmbedder(SIMILAR)
        a, b = RedisBackend(URL, prefix, 100), RedisBackend(URL, prefix, 100)
        ca = cache_with(emb, a)
        await ask(ca, req("reset my password"))
        r = redis.Redis.from_url(URL)
        (bk,) = [k.decode() for k in r.scan_iter(match=f"{prefix}:b:*")]
        bucket = bk[len(f"{prefix}:b:"):]
        _, copy = await b.lookup("no-such-key", bucket)
        (key,) = copy.pending
        await a._evict(1)  # gone from Redis while b holds it as pending
        await b.fill(bucket, copy, {key: np.ones(8, np.float32) / np.sqrt(8)})
        assert r.hlen(f"{prefix}:b:{bucket}") == 0  # no orphan vector
        # expiry: a pending entry whose TTL ran out takes its bucket with it, so a lookup embeds nothing
        ca2 = cache_with(emb, a, ttl=0.1)
        await ask(ca2, req("where is my parcel"))
        await asyncio.sleep(0.15)
        n = len(emb.calls)
        assert (await ask(ca2, req("where is my parcel, please"))).status == "miss" and len(emb.calls) == n
        r.close()
        await ca.close()
        await b.close()
    asyncio.run(go())


def test_the_stores_of_one_loop_iteration_leave_as_one_batch(private_redis):
    """Answers stored in the same loop iteration (requests that ended together) reach Redis as one batch: a
    SET each, one ZADD and one ZCARD for all of them, in one write. Every one is then a hit."""
    from hedgeway.cache.config import CacheIn
    from hedgeway.cache.service import ResponseCache
    from hedgeway.types import ChatRequest, Principal

    url, _ = private_redis
    server = redis.Redis.from_url(url)

    def stats() -> tuple[int, dict[str, int]]:
        calls = {k[len("cmdstat_"):]: v["calls"] for k, v in server.info("commandstats").items()}
        return server.info("stats")["total_reads_processed"], calls

    async def go():
        be = RedisBackend(url, "hw-batch", 100, key_index=False)
        cache = ResponseCache(CacheIn(enabled=True), be, None)
        principal = Principal("k1")
        asks = [ChatRequest("m", {"model": "m", "temperature": 0,
                                  "messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(10)]
        lookups = [await cache.lookup(principal, r) for r in asks]  # misses: one read each
        assert all(lk.status == "miss" for lk in lookups)
        server.config_resetstat()
        reads = stats()[0]
        for i, lk in enumerate(lookups):
            cache.store(lk, entry(i).body, Usage(1, 1), Decimal("0.01"))
        await cache.drain()
        after, calls = stats()
        assert after - reads == 3  # the stores' write, and the two INFO calls asking for the counts
        assert (calls["set"], calls["zadd"], calls["zcard"]) == (10, 1, 1)
        hits = [await cache.lookup(principal, r) for r in asks]
        assert [lk.status for lk in hits] == ["hit-exact"] * 10
        assert server.zcard("hw-batch:lru") == 10
        await cache.close()

    asyncio.run(go())
    server.close()
