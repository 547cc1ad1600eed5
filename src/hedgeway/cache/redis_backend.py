"""The cache in Redis, shared by every replica.

Keys (all under `prefix`):
    {p}:e:{key}       the entry (JSON), with a Redis expiry = the entry's TTL
    {p}:b:{bucket}    hash: exact key -> float32 vector bytes (the bucket's vectors), and "t:" + exact key ->
                      the semantic text of an entry stored without a vector (a pending entry)
    {p}:v:{bucket}    the bucket's version: a fresh random token on every write to it (a counter could
                      restart at a value a replica has already seen once the key expired)
    {p}:lru           sorted set: exact key scored by last use (the size bound's eviction order)
    {p}:owner         hash: exact key -> its bucket (so eviction can remove the vector too)

Exact lookup: with the key index (key_index.py, `cache.key_index`), a key never stored is a miss without a
round trip; otherwise one GET. Semantic lookup: one MGET reads the entry and the bucket's version together; no
version means an empty bucket: a miss there embeds nothing. Pending entries: a miss in an empty bucket is
stored with its text instead of a vector (nobody has embedded it). The first replica whose lookup searches
that bucket embeds the pending texts along with its query and writes the vectors back (HSET the vector, HDEL
the text field, new version), so every other replica then reads the vector instead of embedding it again; two
replicas doing so at once both write the same vector. Hash fields starting "t:" never clash with an exact key
(hex), and living in the bucket's hash they share its expiry, HKEYS and eviction.

Search: the Redis 7.0 server here has no vector search (that needs Redis Stack / 8.x query engine), so
each replica keeps a per-replica copy of the buckets it has searched (a `Bucket`) and syncs it from
Redis: a semantic lookup reads the bucket's version (in the MGET above); when another writer changed
it, the replica reads the bucket's keys (HKEYS) and fetches only the vectors it lacks, dropping the ones
gone (at 100k entries: 0.41 s instead of 1.39 s to re-read every vector; bench/cache_bench.py
redis-sync). A replica's own stores and write-backs move its copy forward without that re-read (the
scripts return the version they replaced: `_advance`). Lookups on a quiet bucket cost one MGET; a write
from any replica is visible to every other on its next lookup. A large copy gets its HNSW index
(`cache.ann`) built on a worker thread and searches exactly until then: at 100k entries a replica's
first lookup loads the vectors in 1.6 s and the index is ready about a minute later (on the request
path, building it took 29 s). Expired entries leave their vectors behind until a lookup finds the entry
gone (then the vector is removed) or the bucket hash, whose expiry is pushed to the newest entry's TTL,
expires; a pending text is checked before it is embedded (`pending`).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np

from hedgeway.cache.entry import Bucket, Entry
from hedgeway.cache.key_index import KeyIndex
from hedgeway.redis_wire import RedisClient, ReplyError

TEXT = "t:"  # hash field prefix of a pending entry's text

# A semantic entry's store, one command (an exact-only entry is a plain SET and ZADD: put_many).
# KEYS: entry, lru, owner, bucket hash, version; ARGV: entry, ttl ms, now, exact key, bucket, hash field (the
# key: a vector; "t:" + key: a pending text), its value, new version. The bucket hash and version expire
# with their newest entry. Returns the LRU's size and the version replaced.
PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
local old = redis.call('SET', KEYS[5], ARGV[8], 'KEEPTTL', 'GET')
for i = 4, 5 do
  redis.call('PEXPIRE', KEYS[i], ARGV[2], 'GT')
  redis.call('PEXPIRE', KEYS[i], ARGV[2], 'NX')
end
return {redis.call('ZCARD', KEYS[2]), old}
"""

# KEYS: bucket hash, version; ARGV: new version, then (exact key, vector bytes or "") pairs. A vector is
# written only while its text field is still there: an entry evicted or expired meanwhile (field gone,
# or the whole hash) gets no orphan vector, and no hash is re-created without its expiry. Returns the
# version replaced (nil: nothing written).
FILL = """
local changed = 0
for i = 2, #ARGV, 2 do
  if redis.call('HDEL', KEYS[1], 't:' .. ARGV[i]) == 1 then
    changed = 1
    if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  end
end
if changed == 1 then return redis.call('SET', KEYS[2], ARGV[1], 'XX', 'KEEPTTL', 'GET') end
return false
"""


TIMEOUT = 1.0  # seconds without a reply byte while a command waits: then the lookup is a miss, not a hang


class RedisBackend:
    def __init__(self, url: str, prefix: str, max_entries: int, ann: bool = False, key_index: bool = True):
        self.ann = ann
        self.redis = RedisClient(url, TIMEOUT, TIMEOUT)  # the request path's client (redis_wire.py)
        self.index = (KeyIndex(url, f"{prefix}:e:", f"{prefix}:lru", self.redis, TIMEOUT, 4 * max_entries + 10_000)
                      if key_index else None)
        self.p = prefix
        self.max_entries = max_entries
        self.local: dict[str, tuple[bytes | None, Bucket]] = {}  # bucket -> (version seen, vectors)
        self._fill = self.redis.script(FILL)
        self._steps: dict[str, dict[bytes, tuple[bytes, Any]]] = {}  # bucket -> own writes (_advance)
        self._past: dict[str, set[bytes]] = {}  # bucket -> versions its copy has moved past (_advance)
        self._put = self.redis.script(PUT)

    async def get(self, key: str) -> Entry | None:
        if self.index is not None and self.index.absent(key):
            return None
        # The LRU touch rides along (XX: it only moves a key that is there), so a hit is one round trip.
        data, _ = await self.redis.execute_many([("GET", f"{self.p}:e:{key}"),
                                                 ("ZADD", f"{self.p}:lru", "XX", time.time(), key)])
        return None if data is None else Entry.loads(data)

    async def lookup(self, key: str, bucket: str | None) -> tuple[Entry | None, Bucket | None]:
        if bucket is None:
            return await self.get(key), None
        (data, version), _ = await self.redis.execute_many([
            ("MGET", f"{self.p}:e:{key}", f"{self.p}:v:{bucket}"), ("ZADD", f"{self.p}:lru", "XX", time.time(), key)])
        if data is not None:
            return Entry.loads(data), None
        return None, await self._sync(bucket, version)

    async def _bucket(self, bucket: str) -> Bucket | None:
        return await self._sync(bucket, await self.redis.execute("GET", f"{self.p}:v:{bucket}"))

    async def _sync(self, bucket: str, version: bytes | None) -> Bucket | None:
        """This replica's copy of the bucket at `version` (None: the bucket is gone or was never written)."""
        if version is None:
            self.local.pop(bucket, None)
            self._steps.pop(bucket, None)
            self._past.pop(bucket, None)
            return None
        seen = self.local.get(bucket)
        if seen is not None and (seen[0] == version or version in self._past.get(bucket, ())):
            return seen[1] or None
        b = seen[1] if seen is not None else Bucket(self.ann)
        bk = f"{self.p}:b:{bucket}"
        fields = {k.decode() for k in await self.redis.execute("HKEYS", bk)}
        texts = {k[len(TEXT):] for k in fields if k.startswith(TEXT)}
        keys = fields - {TEXT + k for k in texts}
        texts -= keys  # a vector written back while its text field was still there
        for k in [k for k in b.vectors if k not in keys] + [k for k in b.pending if k not in texts]:
            b.remove(k)
        new = [k for k in keys if k not in b.vectors]
        new_texts = [k for k in texts if k not in b.pending]
        if new or new_texts:  # a field deleted since HKEYS is None: the next version change syncs it
            got = await self.redis.execute("HMGET", bk, *new, *[TEXT + k for k in new_texts])
            b.add_many({k: np.frombuffer(v, dtype=np.float32) for k, v in zip(new, got) if v is not None})
            b.pending.update({k: v.decode() for k, v in zip(new_texts, got[len(new):]) if v is not None})
        self.local[bucket] = (version, b)
        return b or None

    async def pending(self, bucket: str, b: Bucket, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` pending entries whose entry still exists (one round trip); the others leave this
        copy and the bucket's hash (entries expire without a version change)."""
        keys = list(b.pending)[:limit]
        if not keys:
            return []
        live = await self.redis.execute_many([("EXISTS", f"{self.p}:e:{k}") for k in keys])
        gone = [k for k, n in zip(keys, live) if not n]
        if gone:
            for k in gone:
                b.remove(k)
            await self.redis.execute("HDEL", f"{self.p}:b:{bucket}", *[TEXT + k for k in gone])
        return [(k, b.pending[k]) for k, n in zip(keys, live) if n and k in b.pending]

    async def fill(self, bucket: str, b: Bucket, vectors: dict[str, np.ndarray]) -> None:
        """Write the vectors computed here back for every replica (a zero row: the entry leaves the
        bucket). The new version makes the others (and this one) re-sync: HKEYS, then only new fields."""
        vectors = {k: v for k, v in vectors.items() if k in b.pending}
        if not vectors:
            return
        b.fill(vectors)
        args: list[bytes | str] = [os.urandom(8).hex()]
        for k, v in vectors.items():
            args += [k, np.asarray(v, dtype=np.float32).tobytes() if v.any() else b""]
        old = await self._fill(*args, keys=(f"{self.p}:b:{bucket}", f"{self.p}:v:{bucket}"))
        self._advance(bucket, old, args[0], None)

    def _advance(self, bucket: str, old: bytes | None, new: str, change) -> None:
        """This replica's own write took the bucket from version `old` to `new`. A copy at `old` plus the
        change is the bucket at `new`, so the next lookup needs no re-sync. Writes of this replica finish
        in any order (several connections), so each is kept as a step old -> new (tokens are unique) and
        the copy follows the steps it can; another replica's write breaks the chain, and the next lookup
        re-syncs as usual. The versions the copy has moved past are kept too: a lookup that read one of
        them (sent before this replica's write finished) is answered from the newer copy."""
        seen = self.local.get(bucket)
        if old is None or seen is None:
            return
        steps = self._steps.setdefault(bucket, {})
        if len(steps) >= 64:  # steps another replica's write made unreachable
            steps.clear()
        steps[old] = (new.encode(), change)
        version, copy = seen
        past = self._past.setdefault(bucket, set())
        while version in steps:
            past.add(version)
            version, step = steps.pop(version)
            if step is not None:
                step(copy)
        if len(past) > 64:
            past.clear()
        self.local[bucket] = (version, copy)

    async def best(self, bucket: str, b: Bucket, vec: np.ndarray, threshold: float) -> tuple[Entry, float] | None:
        for key, sim in b.candidates(vec, threshold):
            data = await self.get(key)
            if data is not None:
                return data, sim
            b.remove(key)  # expired or evicted: forget its vector everywhere
            await self.redis.execute("HDEL", f"{self.p}:b:{bucket}", key, TEXT + key)
        return None

    async def search(self, bucket: str, vec: np.ndarray, threshold: float) -> tuple[Entry, float] | None:
        b = await self._bucket(bucket)
        return None if b is None else await self.best(bucket, b, vec, threshold)

    async def put(self, key: str, entry: Entry, ttl: float, bucket: str | None, vec: np.ndarray | None,
                  text: str | None = None) -> None:
        await self.put_many([(key, entry, ttl, bucket, vec, text)])

    async def put_many(self, items: list[tuple]) -> None:
        """Store several entries in one write: each exact-only one as a plain SET, with one ZADD for all of them
        (they have no bucket, owner or version to keep in step, so no script), each semantic one by the PUT
        script; then evict past the bound once."""
        if not items:
            return
        now, lru = time.time(), f"{self.p}:lru"
        plain: list[tuple] = []
        ranks: list[Any] = []  # one ZADD for every plain entry: (score, member) pairs
        semantic = []
        for key, entry, ttl, bucket, vec, text in items:
            ms = max(int(ttl * 1000), 1)
            if bucket is None or (vec is None and text is None):
                plain.append(("SET", f"{self.p}:e:{key}", entry.dumps(), "PX", ms))
                ranks += (now, key)
            else:
                semantic.append(self._put_semantic(key, entry, ms, now, bucket, vec, text))
        if plain:
            plain += (("ZADD", lru, *ranks), ("ZCARD", lru))
            semantic.append(self._send(plain))
        sizes = await (semantic[0] if len(semantic) == 1 else asyncio.gather(*semantic))
        if self.index is not None:
            for item in items:
                self.index.add(item[0])
        size = sizes if type(sizes) is int else max(sizes)
        if size > self.max_entries:  # a twentieth more than needed: a full cache evicts once per many stores
            await self._evict(size - self.max_entries + self.max_entries // 20)

    async def _send(self, commands: list[tuple]) -> int:
        """The plain stores; the last command's reply (the LRU's size). Raises the first error reply."""
        replies = await self.redis.execute_many(commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies[-1]

    async def _put_semantic(self, key: str, entry: Entry, ms: int, now: float, bucket: str,
                            vec: np.ndarray | None, text: str | None) -> int:
        if vec is not None:
            vec32 = np.asarray(vec, dtype=np.float32)
            field, value = key, vec32.tobytes()
        else:
            vec32, field, value = None, TEXT + key, text
        version = os.urandom(8).hex()
        size, old = await self._put(entry.dumps(), ms, now, key, bucket, field, value, version,
                                    keys=(f"{self.p}:e:{key}", f"{self.p}:lru", f"{self.p}:owner",
                                          f"{self.p}:b:{bucket}", f"{self.p}:v:{bucket}"))
        self._advance(bucket, old, version, lambda copy: copy.add(key, vec32) if vec32 is not None
                      else copy.pending.__setitem__(key, text))
        return size

    async def _evict(self, n: int) -> None:
        keys = [k.decode() for k in (await self.redis.execute("ZPOPMIN", f"{self.p}:lru", n))[::2]]
        if not keys:
            return
        owners = await self.redis.execute("HMGET", f"{self.p}:owner", *keys)
        cmds: list[tuple] = [("HDEL", f"{self.p}:owner", *keys)]
        for key, bucket in zip(keys, owners):
            cmds.append(("DEL", f"{self.p}:e:{key}"))
            if bucket is not None:
                bucket = bucket.decode()
                cmds.append(("HDEL", f"{self.p}:b:{bucket}", key, TEXT + key))
                cmds.append(("SET", f"{self.p}:v:{bucket}", os.urandom(8).hex(), "KEEPTTL", "XX"))
        await self.redis.execute_many(cmds)

    async def clear(self) -> None:
        """Delete every key under the prefix (tests, `hedgeway cache clear`)."""
        cursor = b"0"
        while True:
            cursor, keys = await self.redis.execute("SCAN", cursor, "MATCH", f"{self.p}:*", "COUNT", 500)
            if keys:
                await self.redis.execute("DEL", *keys)
            if cursor == b"0":
                break
        self.local.clear()

    async def close(self) -> None:
        if self.index is not None:
            await self.index.close()
        await self.redis.close()
