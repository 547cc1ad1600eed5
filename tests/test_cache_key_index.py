"""The Redis cache's key index (cache/key_index.py) against the real server on 127.0.0.1:6379 (own prefix,
deleted after), with two backends standing for two replicas: exact misses answered without Redis, other
replicas' stores seen, keys stored before the index started loaded, and a lost or silent connection
turning the index off (lookups ask Redis) until it has subscribed and loaded again."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import redis

from hedgeway.cache.key_index import KeyIndex
from hedgeway.cache.redis_backend import RedisBackend
from hedgeway.redis_wire import RedisClient
from test_cache_redis import URL, entry, prefix  # noqa: F401 - the prefix fixture


async def ready(backend: RedisBackend, seconds: float = 5.0) -> None:
    backend.index.absent("warm-up")  # the first lookup starts the index
    deadline = time.monotonic() + seconds
    while not backend.index.ready:
        assert time.monotonic() < deadline, "the key index did not come up"
        await asyncio.sleep(0.01)


async def until(check, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


def test_a_miss_needs_no_round_trip_and_other_replicas_stores_are_seen(prefix):  # noqa: F811
    async def go():
        early = RedisBackend(URL, prefix, 100, key_index=False)
        await early.put("before", entry(1), 60, None, None)  # stored before any index exists
        a, b = RedisBackend(URL, prefix, 100), RedisBackend(URL, prefix, 100)
        await ready(a)
        assert (await a.get("before")) == entry(1)  # loaded from the LRU set
        skipped = a.index.skipped
        assert await a.get("never-stored") is None
        assert a.index.skipped == skipped + 1  # answered by the index, not by Redis
        await b.put("k1", entry(2), 60, None, None)
        await until(lambda: "k1" in a.index.keys)  # b's store reached a's index
        assert (await a.get("k1")) == entry(2)
        r = redis.Redis.from_url(URL)
        r.delete(f"{prefix}:e:k1")  # gone (expired, evicted): the index keeps the key, Redis says miss
        assert await a.get("k1") is None
        r.close()
        for x in (early, a, b):
            await x.close()
    asyncio.run(go())


def test_a_lost_index_connection_sends_lookups_to_redis_until_it_is_back(prefix):  # noqa: F811
    async def go():
        a, b = RedisBackend(URL, prefix, 100), RedisBackend(URL, prefix, 100)
        await ready(a)
        r = redis.Redis.from_url(URL)
        r.execute_command("CLIENT", "KILL", "ID", a.index.cid)
        await until(lambda: not a.index.ready)
        await b.put("during", entry(3), 60, None, None)
        assert (await a.get("during")) == entry(3)  # not ready: asked Redis, found it
        await until(lambda: a.index.ready, 10)  # subscribed and loaded again
        assert "during" in a.index.keys
        r.close()
        await a.close()
        await b.close()
    asyncio.run(go())


def test_a_silent_redis_turns_the_index_off_within_its_keepalive_and_timeout(private_redis):
    url, proc = private_redis

    async def go():
        reader = RedisClient(url, 0.2, 0.2)
        index = KeyIndex(url, "p:e:", "p:lru", reader, 0.2, 1000, keepalive=0.1)
        index.absent("x")
        await until(lambda: index.ready, 5)
        os.kill(proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        await until(lambda: not index.ready, 2)  # the keepalive PING found no answer
        assert time.monotonic() - started < 1.0
        assert not index.absent("x")  # off: the lookup would ask Redis
        os.kill(proc.pid, signal.SIGCONT)
        await until(lambda: index.ready, 10)
        await index.close()
        await reader.close()
    asyncio.run(go())


def test_an_index_grown_past_its_bound_reloads_from_the_lru_set(prefix):  # noqa: F811
    async def go():
        a = RedisBackend(URL, prefix, 100)
        a.index.max_keys, a.index.keepalive = 5, 0.05
        await ready(a)
        for i in range(8):
            await a.put(f"k{i}", entry(i), 60, None, None)
        r = redis.Redis.from_url(URL)
        r.zrem(f"{prefix}:lru", "k0", "k1", "k2", "k3")  # as eviction leaves them: gone from the LRU set
        r.delete(*[f"{prefix}:e:k{i}" for i in range(4)])
        await until(lambda: "k0" not in a.index.keys and a.index.ready)  # reloaded: 4 keys
        assert a.index.keys == {"k4", "k5", "k6", "k7"}
        assert await a.get("k0") is None and (await a.get("k5")) == entry(5)
        r.close()
        await a.close()
    asyncio.run(go())
