"""The cache in Redis, shared by every replica.

Keys (all under `prefix`):
    {p}:e:{key}       the entry (JSON), with a Redis expiry = the entry's TTL
    {p}:b:{bucket}    hash: exact key -> float32 vector bytes (the bucket's vectors)
    {p}:v:{bucket}    the bucket's version: a fresh random token on every write to it (a counter could
                      restart at a value a replica has already seen once the key expired)
    {p}:lru           sorted set: exact key scored by last use (the size bound's eviction order)
    {p}:owner         hash: exact key -> its bucket (so eviction can remove the vector too)

Search: the Redis 7.0 server here has no vector search (that needs Redis Stack / 8.x query engine), so
each replica keeps a per-replica copy of the buckets it has searched (a `Bucket`) and syncs it from
Redis: a semantic lookup first reads the bucket's version (one small round trip); when another writer
changed it, the replica reads the bucket's keys (HKEYS) and fetches only the vectors it lacks, dropping
the ones gone (at 100k entries: 0.41 s instead of 1.39 s to re-read every vector; bench/cache_bench.py
redis-sync). Lookups on a quiet bucket cost one GET; a write from any replica is visible to every other
on its next lookup. A large copy gets its HNSW index (`cache.ann`) built on a worker thread and searches
exactly until then: at 100k entries a replica's first lookup loads the vectors in 1.6 s and the index is
ready about a minute later (on the request path, building it took 29 s). Expired entries leave their
vectors behind until a lookup finds the entry gone (then the vector is removed) or the bucket hash,
whose expiry is pushed to the newest entry's TTL, expires.
"""

from __future__ import annotations

import os
import time

import numpy as np
import redis.asyncio as aioredis

from hedgeway.cache.entry import Bucket, Entry


class RedisBackend:
    def __init__(self, url: str, prefix: str, max_entries: int, ann: bool = False):
        self.ann = ann
        self.redis = aioredis.Redis.from_url(url)
        self.p = prefix
        self.max_entries = max_entries
        self.local: dict[str, tuple[bytes | None, Bucket]] = {}  # bucket -> (version seen, vectors)

    async def get(self, key: str) -> Entry | None:
        data = await self.redis.get(f"{self.p}:e:{key}")
        if data is None:
            return None
        await self.redis.zadd(f"{self.p}:lru", {key: time.time()}, xx=True)
        return Entry.loads(data)

    async def _bucket(self, bucket: str) -> Bucket:
        version = await self.redis.get(f"{self.p}:v:{bucket}")
        seen = self.local.get(bucket)
        if seen is not None and seen[0] == version:
            return seen[1]
        b = seen[1] if seen is not None else Bucket(self.ann)
        bk = f"{self.p}:b:{bucket}"
        keys = {k.decode() for k in await self.redis.hkeys(bk)}
        for k in [k for k in b.vectors if k not in keys]:
            b.remove(k)
        new = [k for k in keys if k not in b.vectors]
        if new:  # a vector deleted since HKEYS is None: the next version change syncs it
            b.add_many({k: np.frombuffer(v, dtype=np.float32)
                        for k, v in zip(new, await self.redis.hmget(bk, new)) if v is not None})
        self.local[bucket] = (version, b)
        return b

    async def search(self, bucket: str, vec: np.ndarray, threshold: float) -> tuple[Entry, float] | None:
        b = await self._bucket(bucket)
        for key, sim in b.candidates(vec, threshold):
            data = await self.redis.get(f"{self.p}:e:{key}")
            if data is not None:
                await self.redis.zadd(f"{self.p}:lru", {key: time.time()}, xx=True)
                return Entry.loads(data), sim
            b.remove(key)  # expired or evicted: forget its vector everywhere
            await self.redis.hdel(f"{self.p}:b:{bucket}", key)
        return None

    async def put(self, key: str, entry: Entry, ttl: float, bucket: str | None, vec: np.ndarray | None) -> None:
        ms = max(int(ttl * 1000), 1)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{self.p}:e:{key}", entry.dumps(), px=ms)
        pipe.zadd(f"{self.p}:lru", {key: time.time()})
        if bucket is not None and vec is not None:
            bk = f"{self.p}:b:{bucket}"
            pipe.hset(f"{self.p}:owner", key, bucket)
            pipe.hset(bk, key, np.asarray(vec, dtype=np.float32).tobytes())
            pipe.pexpire(bk, ms, gt=True)
            pipe.pexpire(bk, ms, nx=True)
            vk = f"{self.p}:v:{bucket}"
            pipe.set(vk, os.urandom(8).hex(), keepttl=True)
            pipe.pexpire(vk, ms, gt=True)
            pipe.pexpire(vk, ms, nx=True)
        pipe.zcard(f"{self.p}:lru")
        size = (await pipe.execute())[-1]
        if size > self.max_entries:
            await self._evict(size - self.max_entries)

    async def _evict(self, n: int) -> None:
        keys = [k.decode() for k, _ in await self.redis.zpopmin(f"{self.p}:lru", n)]
        if not keys:
            return
        owners = await self.redis.hmget(f"{self.p}:owner", keys)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(f"{self.p}:owner", *keys)
        for key, bucket in zip(keys, owners):
            pipe.delete(f"{self.p}:e:{key}")
            if bucket is not None:
                bucket = bucket.decode()
                pipe.hdel(f"{self.p}:b:{bucket}", key)
                pipe.set(f"{self.p}:v:{bucket}", os.urandom(8).hex(), keepttl=True)
        await pipe.execute()

    async def clear(self) -> None:
        """Delete every key under the prefix (tests, `hedgeway cache clear`)."""
        async for k in self.redis.scan_iter(match=f"{self.p}:*", count=500):
            await self.redis.delete(k)
        self.local.clear()

    async def close(self) -> None:
        await self.redis.aclose()
