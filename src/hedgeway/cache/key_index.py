"""The exact cache's keys, known to this replica without asking Redis: a miss costs no round trip.

Redis's client-side caching in broadcast mode tells a connection about every write to keys under a prefix
(`CLIENT TRACKING ON REDIRECT <itself> BCAST PREFIX {p}:e:`, RESP2: messages on `__redis__:invalidate`),
whoever wrote them. The index holds every entry key stored since it subscribed, plus those that existed
then (read from the LRU set with ZSCAN after subscribing, so no write falls between the two). A key the
index does not hold was not stored: the lookup is a miss without asking Redis. A key it holds is read from
Redis as before (a message says a key changed, not how: deleted and expired keys stay in the index and
cost a round trip, until it outgrows `max_keys` and is reloaded).

What this trades: a store by another replica reaches this one's index with Redis's next event-loop turn
(well under a millisecond on one host); a lookup for that key in between is a miss and the request goes
upstream (its answer is stored again). Never a wrong answer: only a hit that comes a moment late.
The index answers only while its connection is the one tracking was set up on, the subscription is
confirmed and the load finished; a broken or silent connection (a PING every `keepalive` seconds, bounded
by the timeout) turns it off until it has subscribed and loaded again: lookups ask Redis meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from hedgeway.redis_wire import RedisClient, ReplyError

log = logging.getLogger("hedgeway.cache")
CHANNEL = "__redis__:invalidate"
CHECK = 0.1  # seconds between checks that the connection is still open (it is off the request path)


class KeyIndex:
    def __init__(self, url: str, prefix: str, lru: str, reader: RedisClient, timeout: float, max_keys: int,
                 keepalive: float = 5.0):
        self.prefix = prefix.encode()  # the entry keys' prefix, "{p}:e:"
        self.lru = lru
        self.reader = reader  # the backend's client: the initial load reads through it
        self.max_keys = max_keys
        self.keepalive = keepalive
        self.client = RedisClient(url, timeout, timeout, on_push=self._push)
        self.keys: set[str] = set()
        self.skipped = 0  # lookups answered "absent" without Redis
        self._conn = None  # the connection the index is valid on (None: not answering)
        self.cid = 0  # its Redis client id
        self._task: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        conn = self._conn
        return conn is not None and conn.broken is None

    def absent(self, key: str) -> bool:
        """True: `key` was never stored (as far as this live index knows): a miss, no need to ask Redis."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        if key in self.keys or not self.ready:
            return False
        self.skipped += 1
        return True

    def add(self, key: str) -> None:
        """This replica stored `key` (its own message may still be on the way)."""
        self.keys.add(key)

    def _push(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHDB / FLUSHALL: nothing is stored any more
            self.keys.clear()
            return
        n = len(self.prefix)
        self.keys.update(k[n:].decode() for k in keys)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await self._subscribe()
                delay, quiet = 0.1, 0.0
                while conn.broken is None:  # a closed connection is noticed within CHECK seconds
                    await asyncio.sleep(CHECK)
                    quiet += CHECK
                    if len(self.keys) > self.max_keys:  # deleted and expired keys piled up: start afresh
                        self._conn = None
                        await self._load()
                        self._conn = conn
                    if quiet >= self.keepalive:  # a silent connection fails here, within the timeout
                        quiet = 0.0
                        await self.client.execute("PING")
            except (OSError, ReplyError) as exc:  # redis_wire: ConnectionError/TimeoutError are OSErrors
                if self._conn is not None:
                    log.warning("cache key index lost its Redis connection (%s); lookups ask Redis until it is back",
                                exc)
            self._conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _subscribe(self):
        self._conn = None
        conn = await self.client.connection()
        self.cid = cid = await self.client.execute("CLIENT", "ID")
        await self.client.execute("CLIENT", "TRACKING", "ON", "REDIRECT", cid, "BCAST", "PREFIX", self.prefix)
        await self.client.execute("SUBSCRIBE", CHANNEL)  # from here on, every write is messaged
        await self._load()
        self._conn = conn
        return conn

    async def _load(self) -> None:
        """Every key stored before the subscription, from the LRU set (ZSCAN returns every member present
        for the whole scan; one added meanwhile is messaged)."""
        self.keys = keys = set()  # messages arriving during the load land here too
        cursor = b"0"
        while True:
            cursor, items = await self.reader.execute("ZSCAN", self.lru, cursor, "COUNT", 5000)
            keys.update(k.decode() for k in items[::2])
            if cursor == b"0":
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()
