"""A lean Redis client for the request path: one multiplexed connection, commands coalesced per loop tick.

    client = RedisClient("redis://:secret@127.0.0.1:6379/0", timeout=0.25, connect_timeout=1.0)
    await client.execute("GET", key)                 # the reply (bytes, int, list, None)
    await client.execute_many([("GET", a), ("GET", b)])   # replies in order (sent in one write)
    script = client.script(LUA); await script(*args) # EVALSHA, loading the script on NOSCRIPT
    await client.close()

Why not redis-py on this path: its asyncio client spends most of a round trip's CPU on a per-command
connection checkout, an `asyncio.timeout`, stream writes and reply bookkeeping (about half of the production
gateway's CPU per request, bench/production.py). Here every concurrent command shares one connection (Redis
answers in order, so a FIFO of futures matches replies), commands issued in the same loop iteration leave in
one write, replies are parsed by hiredis (the reference C parser that redis-py also uses), and one watchdog
timer per connection enforces the timeout instead of one timer per command.

Contract: a Redis error reply raises `ReplyError` (an error nested in an array is returned in place, as
hiredis gives it); a connection that cannot be made, breaks, or receives nothing for `timeout` seconds
while its oldest command has waited that long (a large reply still arriving is not a timeout) fails every
command in flight with `ConnectionError`, and the next command reconnects.
No command is retried here: the caller decides (a script that may have run must not run twice).
RESP2, no Redis Cluster. Pub/sub only as far as a client-side-caching connection needs it: with `on_push`,
a connection's published messages (["message", channel, payload]) go to `on_push(payload)` instead of a
waiting command (cache/key_index.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

ReplyError = hiredis.ReplyError


class _Many:
    """The waiter of several replies in a row: a future's interface, resolved with all of them."""
    __slots__ = ("future", "n", "replies")

    def __init__(self, future: asyncio.Future, n: int):
        self.future, self.n, self.replies = future, n, []

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, reply: Any) -> None:
        self.replies.append(reply)
        if len(self.replies) == self.n:
            self.future.set_result(self.replies)

    def set_exception(self, exc: BaseException) -> None:
        self.future.set_exception(exc)


class _Conn(asyncio.Protocol):
    """One connection: the queue of commands awaiting replies, the write buffer, the watchdog."""

    def __init__(self, timeout: float, on_push: Any = None):
        self.timeout = timeout
        self.on_push = on_push
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future | _Many, float]] = deque()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.broken: Exception | None = None
        self.loop = asyncio.get_running_loop()
        self.watchdog: asyncio.TimerHandle | None = None
        self.rx = 0.0  # when the last bytes arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes) -> asyncio.Future:
        """Queue one command; the future of its reply."""
        future = self.loop.create_future()
        self._queue(payload, (future,))
        return future

    def send_many(self, payload: bytes, count: int) -> asyncio.Future:
        """Queue `count` commands; one future for the list of their replies (no future per command)."""
        many = _Many(self.loop.create_future(), count)
        self._queue(payload, (many,) * count)
        return many.future

    def _queue(self, payload: bytes, waiters: tuple) -> None:
        if self.broken is not None:
            raise ConnectionError(f"redis connection lost: {self.broken}")
        if not self.out:
            self.loop.call_soon(self._flush)  # every command of this loop iteration leaves in one write
        self.out.append(payload)
        deadline = time.monotonic() + self.timeout
        self.waiting.extend((w, deadline) for w in waiters)
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._watch)

    def _flush(self) -> None:
        if self.out and self.transport is not None and self.broken is None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def _watch(self) -> None:
        self.watchdog = None
        if not self.waiting:
            return
        due = max(self.waiting[0][1], self.rx + self.timeout) - time.monotonic()
        if due <= 0:
            self._fail(TimeoutError(f"no reply within {self.timeout:g} s"))
            return
        self.watchdog = self.loop.call_later(due, self._watch)

    def data_received(self, data: bytes) -> None:
        self.rx = time.monotonic()
        self.reader.feed(data)
        waiting = self.waiting
        try:
            while (reply := self.reader.gets()) is not False:
                if self.on_push is not None and type(reply) is list and reply[:1] == [b"message"]:
                    self.on_push(reply[2])
                    continue
                future = waiting.popleft()[0]
                if not future.done():  # cancelled by its caller: the reply is read and dropped
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # not Redis, or a reply nobody asked for
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc if isinstance(exc, Exception) else ConnectionError(str(exc))
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(ConnectionError(f"redis connection lost: {self.broken}"))
        if self.transport is not None:
            self.transport.abort()


# One command in RESP, an array of bulk strings (str as UTF-8, int/float as their decimal text): hiredis's C
# encoder, about 5x faster than the same in Python (tests/test_redis_wire.py checks it against the protocol).
pack = hiredis.pack_command


class RedisClient:
    def __init__(self, url: str, timeout: float = 0.25, connect_timeout: float = 1.0, on_push: Any = None):
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} (redis://, rediss://, unix://)")
        self.unix = parts.path if parts.scheme == "unix" else None
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        self.hello: list[tuple] = []  # sent first on every new connection
        if parts.password:
            user = unquote(parts.username) if parts.username else None
            self.hello.append(("AUTH", user, unquote(parts.password)) if user else ("AUTH", unquote(parts.password)))
        if db not in ("", "0"):
            self.hello.append(("SELECT", int(db)))
        self.timeout, self.connect_timeout, self.on_push = timeout, connect_timeout, on_push
        self._conn: _Conn | None = None
        self._connecting: asyncio.Future | None = None

    def _live(self) -> _Conn | None:
        """The open connection, if any (the fast path: no coroutine)."""
        conn = self._conn
        return conn if conn is not None and conn.broken is None else None

    async def _connection(self) -> _Conn:
        """A new connection: one connect for every command that waits for it."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        factory = lambda: _Conn(self.timeout, self.on_push)  # noqa: E731
        opening = (loop.create_unix_connection(factory, self.unix) if self.unix else
                   loop.create_connection(factory, self.host, self.port, ssl=self.ssl))
        _, conn = await asyncio.wait_for(opening, self.connect_timeout)
        for cmd in self.hello:
            reply = await conn.send(pack(cmd))
            if isinstance(reply, ReplyError):
                conn.transport.abort()
                raise ConnectionError(f"redis refused {cmd[0]}: {reply}")
        self._conn = conn
        return conn

    async def connection(self) -> _Conn:
        """The connection commands go to now (its `broken` is set once it fails; the next one is new)."""
        return self._live() or await self._connection()

    async def execute(self, *args: Any) -> Any:
        conn = self._live() or await self._connection()
        reply = await conn.send(pack(args))
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def execute_many(self, commands: list[tuple]) -> list[Any]:
        """Several commands in one write; their replies in order (errors returned in place, not raised)."""
        conn = self._live() or await self._connection()
        return await conn.send_many(b"".join(map(pack, commands)), len(commands))

    def script(self, source: str) -> Script:
        return Script(self, source)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded on the first NOSCRIPT (a restarted or flushed Redis)."""

    def __init__(self, client: RedisClient, source: str):
        self.client, self.source = client, source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, *args: Any, keys: tuple = ()) -> Any:
        try:
            return await self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.client.execute("EVAL", self.source, len(keys), *keys, *args)
