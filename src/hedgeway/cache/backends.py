"""Where cached answers live, from a registry (BACKENDS: name -> factory(cache config)).

Contract (all async, may raise; the cache service turns errors into misses):
    get(key) -> Entry | None                        an exact lookup; refreshes the entry's LRU position
    lookup(key, bucket) -> (Entry | None, Bucket | None)   the exact lookup and, when it misses, the bucket
                                                    (its current copy) — None when the bucket is empty or
                                                    absent, so the caller embeds nothing; one round trip
    pending(bucket, b, limit) -> [(key, text)]      up to `limit` of b's pending entries still live (the
                                                    expired ones leave b, so they are never embedded)
    fill(bucket, b, vectors)                        vectors computed for b's pending entries (key -> vec)
    best(bucket, b, vec, threshold) -> (Entry, sim) | None   the best live entry of that copy ≥ threshold
    search(bucket, vec, threshold) -> (Entry, sim) | None   the same, fetching the bucket first
    put(key, entry, ttl, bucket, vec, text=None)    store (bucket None: exact only; vec None with text: a
                                                    pending entry, embedded when a lookup searches its
                                                    bucket); evicts LRU past the bound
    put_many([(key, entry, ttl, bucket, vec, text)])   several puts at once (one round trip for Redis)
    close()
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import closing
from typing import Any

import numpy as np

from hedgeway.cache.entry import Bucket, Entry

SCHEMA = ("CREATE TABLE IF NOT EXISTS cache_entries (key TEXT PRIMARY KEY, entry BLOB NOT NULL, "
          "expires REAL NOT NULL, bucket TEXT, used INTEGER NOT NULL, vec BLOB, text TEXT)")


def _schema(db: sqlite3.Connection) -> None:
    db.execute(SCHEMA)
    if "text" not in {row[1] for row in db.execute("PRAGMA table_info(cache_entries)")}:
        db.execute("ALTER TABLE cache_entries ADD COLUMN text TEXT")  # a snapshot from before pending entries


class MemoryBackend:
    """In-process: an LRU OrderedDict of entries with per-entry expiry, and one exact-search Bucket per
    fingerprint. Not shared between processes (use `redis` for replicas). With `path`, the live entries
    are saved to that SQLite file at close and loaded at start (a snapshot: survives restarts and
    deploys, not a crash)."""

    def __init__(self, max_entries: int, path: str | None = None, ann: bool = False):
        self.max_entries = max_entries
        self.ann = ann
        self.path = path
        self.entries: OrderedDict[str, tuple[Entry, float, str | None]] = OrderedDict()  # key -> (entry, expires, bucket)
        self.buckets: dict[str, Bucket] = {}
        self.vectors: dict[str, np.ndarray] = {}  # key -> vector, for the snapshot
        if path:
            self._load()

    def _load(self) -> None:
        with closing(sqlite3.connect(self.path)) as db, db:
            _schema(db)
            rows = db.execute("SELECT key, entry, expires, bucket, vec, text FROM cache_entries "
                              "WHERE expires > ? ORDER BY used", (time.time(),)).fetchall()
        now_wall, now = time.time(), time.monotonic()
        for key, data, expires, bucket, vec, text in rows[-self.max_entries:]:
            v = np.frombuffer(vec, dtype=np.float32) if vec is not None else None
            self._put(key, Entry.loads(data), expires - now_wall, now, bucket, v, text)

    def _save(self) -> None:
        now_wall, now = time.time(), time.monotonic()
        rows = [(key, e.dumps(), now_wall + (exp - now), bucket, i,
                 self.vectors[key].tobytes() if key in self.vectors else None,
                 self.buckets[bucket].pending.get(key) if bucket in self.buckets else None)
                for i, (key, (e, exp, bucket)) in enumerate(self.entries.items()) if exp > now]
        with closing(sqlite3.connect(self.path)) as db, db:
            _schema(db)
            db.execute("DELETE FROM cache_entries")
            db.executemany("INSERT INTO cache_entries (key, entry, expires, bucket, used, vec, text) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def _drop(self, key: str) -> None:
        _, _, bucket = self.entries.pop(key)
        self.vectors.pop(key, None)
        if bucket is not None and bucket in self.buckets:
            b = self.buckets[bucket]
            b.remove(key)
            if not b:
                del self.buckets[bucket]

    def _live(self, key: str) -> Entry | None:
        item = self.entries.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return item[0]

    async def get(self, key: str) -> Entry | None:
        return self._live(key)

    async def lookup(self, key: str, bucket: str | None) -> tuple[Entry | None, Bucket | None]:
        entry = self._live(key)
        if entry is not None or bucket is None:
            return entry, None
        return None, self.buckets.get(bucket)  # only non-empty buckets are kept (_drop)

    async def pending(self, bucket: str, b: Bucket, limit: int) -> list[tuple[str, str]]:
        now, out = time.monotonic(), []
        for key in list(b.pending):
            if self.entries[key][1] <= now:
                self._drop(key)
            elif len(out) < limit:
                out.append((key, b.pending[key]))
        return out

    async def fill(self, bucket: str, b: Bucket, vectors: dict[str, np.ndarray]) -> None:
        vectors = {k: v for k, v in vectors.items() if k in b.pending}  # not dropped meanwhile
        b.fill(vectors)
        self.vectors.update({k: v for k, v in vectors.items() if v.any()})
        for k, v in vectors.items():
            if not v.any():  # too long to embed whole: the entry stays, exact only
                entry, exp, _ = self.entries[k]
                self.entries[k] = (entry, exp, None)
        if not b and self.buckets.get(bucket) is b:
            del self.buckets[bucket]

    async def best(self, bucket: str, b: Bucket, vec: np.ndarray, threshold: float) -> tuple[Entry, float] | None:
        for key, sim in b.candidates(vec, threshold):
            entry = self._live(key)
            if entry is not None:
                return entry, sim
        return None

    async def search(self, bucket: str, vec: np.ndarray, threshold: float) -> tuple[Entry, float] | None:
        b = self.buckets.get(bucket)
        return None if b is None else await self.best(bucket, b, vec, threshold)

    async def put(self, key: str, entry: Entry, ttl: float, bucket: str | None, vec: np.ndarray | None,
                  text: str | None = None) -> None:
        self._put(key, entry, ttl, time.monotonic(), bucket, vec, text)

    async def put_many(self, items: list[tuple]) -> None:
        now = time.monotonic()
        for key, entry, ttl, bucket, vec, text in items:
            self._put(key, entry, ttl, now, bucket, vec, text)

    def _put(self, key: str, entry: Entry, ttl: float, now: float, bucket: str | None,
             vec: np.ndarray | None, text: str | None = None) -> None:
        if key in self.entries:
            self._drop(key)
        semantic = bucket is not None and (vec is not None or text is not None)
        self.entries[key] = (entry, now + ttl, bucket if semantic else None)
        if semantic:
            b = self.buckets.setdefault(bucket, Bucket(self.ann))
            if vec is not None:
                b.add(key, vec)
                self.vectors[key] = vec
            else:
                b.pending[key] = text
        while len(self.entries) > self.max_entries:
            self._drop(next(iter(self.entries)))

    def __len__(self) -> int:
        return len(self.entries)

    async def close(self) -> None:
        if self.path:
            self._save()


def _memory(cfg: Any) -> MemoryBackend:
    return MemoryBackend(cfg.max_entries, cfg.sqlite_path, cfg.ann)


def _redis(cfg: Any):
    from hedgeway.cache.redis_backend import RedisBackend
    return RedisBackend(cfg.redis_url, cfg.prefix, cfg.max_entries, cfg.ann, cfg.key_index)


BACKENDS: dict[str, Callable[[Any], Any]] = {"memory": _memory, "redis": _redis}
