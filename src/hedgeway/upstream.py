"""A lean pooled HTTP/1.1 client for upstream calls (asyncio Protocols + httptools).

Why not httpx/aiohttp: on this hot path their per-request object churn costs 10–20× the gateway's own work
(docs: PERFORMANCE.md). This client does only what an upstream call needs: keep-alive pooling per origin,
TLS, Content-Length, chunked and close-delimited bodies, gzip bodies, interim (1xx) responses skipped,
streaming with backpressure, and deadlines. tests/test_http_conformance.py checks its framing against h11.

Contract:
- `Pool(base_url).request(method, path, headers, body, first_byte_timeout, timeout)` returns a `Response`
  once the status line and headers arrived (within `first_byte_timeout`), or raises `UpstreamError` /
  `UpstreamTimeout`. The whole exchange must end within `timeout` seconds of the call, else the
  connection is aborted and readers get `UpstreamTimeout`.
- A `Response` is read once: `await read()` for the whole body, or `async for chunk in response` to
  stream. `close()` aborts an unfinished response (its connection is never reused).
- A connection returns to the pool only after a complete, keep-alive response (a body delimited by the
  connection's close completes at the close; that connection is never reused). A request on a reused
  connection that dies before any response byte is retried once on a fresh connection (the server closed
  an idle keep-alive connection; nothing was processed).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from urllib.parse import urlsplit

import httptools

from hedgeway.errors import UpstreamError, UpstreamTimeout

HIGH_WATER = 1 << 20  # pause reading the upstream when this many body bytes wait for the client
MAX_IDLE = 256
MAX_RESPONSE_BYTES = 256 << 20  # a body read whole (`read()`) larger than this fails: memory is finite
MAX_HEAD_BYTES = 64 << 10  # bytes before the final response's headers end (interim responses included)
DECODERS = {"gzip": 31, "x-gzip": 31, "deflate": 15}  # Content-Encoding -> zlib wbits


def _size(headers: dict[str, str]) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items())


class Response:
    __slots__ = ("status", "headers", "_chunks", "_buffered", "_eof", "_exc", "_waiter", "_conn",
                 "got_bytes", "_whole")

    def __init__(self, conn: "_Conn"):
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._conn = conn
        self.got_bytes = False
        self._whole = False  # read() wants the whole body: no backpressure, but a size cap

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self._conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                raise StopAsyncIteration
            await self._wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < HIGH_WATER // 2:
            self._conn.resume()
        return chunk

    async def read(self) -> bytes:
        self._whole = True
        if not self._eof:  # (after eof the connection may already serve another response)
            self._conn.resume()  # streaming backpressure may have paused it; nobody else would resume it
        while not self._eof:
            if self._exc is not None:
                raise self._exc
            await self._wait()
        if self._exc is not None:
            raise self._exc
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def close(self) -> None:
        if not self._eof:
            self._conn.abort()


class _Conn(asyncio.Protocol):
    """One upstream connection; serves one request at a time."""

    def __init__(self, pool: "Pool"):
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = None
        self.resp: Response | None = None
        self.headers_ready: asyncio.Future | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.first_byte: asyncio.TimerHandle | None = None
        self.closed = False
        self.paused = False
        self.reused = False
        self.head_bytes = 0  # bytes received before the final response's headers ended
        self.interim_bytes = 0  # header bytes of the interim responses skipped
        self.interim = False  # parsing a 1xx response: skipped, the final response follows
        self.until_close = False  # the body ends when the upstream closes the connection
        self.decoder = None  # zlib decompressor for a gzip/deflate body

    # --- asyncio.Protocol ---
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        resp = self.resp
        if resp is None:  # bytes on an idle connection: the server is misbehaving; drop it
            self.abort()
            return
        resp.got_bytes = True
        if not resp.status:  # the final response's headers have not ended: count what httptools holds
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # an UpstreamError raised by a callback below
            self._fail(cause if isinstance(cause, UpstreamError) else
                       UpstreamError("invalid HTTP response from upstream", deployment=self.pool.name))
            return
        if not resp.status and self.head_bytes > MAX_HEAD_BYTES:
            self._fail(UpstreamError(f"upstream response headers larger than {MAX_HEAD_BYTES} bytes",
                                     deployment=self.pool.name))

    def connection_lost(self, exc):
        self.closed = True
        self.pool._forget(self)
        if self.resp is not None and not self.resp._eof:
            if self.until_close:  # RFC 9112 §6.3: the close is this body's end
                self.on_message_complete()
            else:
                self._fail(UpstreamError("upstream closed the connection", deployment=self.pool.name))

    # --- httptools callbacks ---
    def on_header(self, name: bytes, value: bytes):
        self.resp.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:  # never asked for: the connection would speak another protocol
                raise UpstreamError("upstream switched protocols unasked", deployment=self.pool.name)
            self.interim = True  # 100 Continue, 103 Early Hints: not the answer; its headers are dropped
            self.interim_bytes += 32 + _size(self.resp.headers)
            if self.interim_bytes > MAX_HEAD_BYTES:
                raise UpstreamError(f"upstream response headers larger than {MAX_HEAD_BYTES} bytes",
                                    deployment=self.pool.name)
            self.resp.headers = {}
            return
        resp = self.resp
        headers = resp.headers
        # (the bytes counted may include body bytes that came with the headers: then count exactly)
        if self.head_bytes > MAX_HEAD_BYTES and self.interim_bytes + _size(headers) > MAX_HEAD_BYTES:
            raise UpstreamError(f"upstream response headers larger than {MAX_HEAD_BYTES} bytes",
                                deployment=self.pool.name)
        resp.status = status
        if "content-length" not in headers and status != 204 and status != 304:
            self.until_close = "chunked" not in headers.get("transfer-encoding", "").lower()
        coding = headers.get("content-encoding")
        if coding is not None and coding.lower() in DECODERS:
            self.decoder = zlib.decompressobj(DECODERS[coding.lower()])
        if self.first_byte is not None:
            self.first_byte.cancel()
            self.first_byte = None
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes):
        resp = self.resp
        if resp is None:  # failed earlier in this same feed (e.g. over the size cap)
            return
        if self.decoder is not None:
            body = self._decode(body)
            if not body:
                return
        resp._chunks.append(body)
        resp._buffered += len(body)
        if resp._whole:
            if resp._buffered > MAX_RESPONSE_BYTES:
                self._fail(UpstreamError(f"upstream response larger than {MAX_RESPONSE_BYTES} bytes",
                                         deployment=self.pool.name))
        elif resp._buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        resp._wake()

    def on_message_complete(self):
        resp = self.resp
        if resp is None:
            return
        if self.interim:
            self.interim = False
            return
        if self.decoder is not None:
            if not self.decoder.eof:  # a truncated gzip stream is not a whole body
                self._fail(UpstreamError("upstream sent a truncated compressed body", deployment=self.pool.name))
                return
            self.decoder = None
        resp._eof = True
        keep = not self.until_close and self.parser.should_keep_alive()
        if keep and "connection" in resp.headers:  # HTTP/1.0 with `keep-alive`: not reused (as h11; safer)
            keep = self.parser.get_http_version() != "1.0"
        self._finish()
        resp._wake()
        if keep and not self.closed:
            self.pool._release(self)
        else:
            self.abort()

    def _decode(self, body: bytes) -> bytes:
        try:
            return self.decoder.decompress(body)
        except zlib.error:
            raise UpstreamError("upstream sent an invalid compressed body", deployment=self.pool.name) from None

    # --- internals ---
    def start(self, payload: bytes, first_byte_timeout: float, timeout: float) -> Response:
        self.resp = Response(self)
        self.parser = httptools.HttpResponseParser(self)
        self.head_bytes = self.interim_bytes = 0
        self.headers_ready = self.loop.create_future()
        self.deadline = self.loop.call_later(timeout, self._timed_out, "finish")
        if first_byte_timeout < timeout:
            self.first_byte = self.loop.call_later(first_byte_timeout, self._timed_out, "respond")
        self.transport.write(payload)
        return self.resp

    def _finish(self) -> None:
        for timer in (self.deadline, self.first_byte):
            if timer is not None:
                timer.cancel()
        self.deadline = self.first_byte = None
        self.resp = None

    def _timed_out(self, what: str) -> None:
        self._fail(UpstreamTimeout(f"upstream did not {what} in time", deployment=self.pool.name))

    def _fail(self, exc: UpstreamError) -> None:
        resp = self.resp
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_exception(exc)
        if resp is not None:
            resp._exc = exc
            self._finish()
            resp._wake()
        self.abort()

    def resume(self) -> None:
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
            self.transport.abort()


class Pool:
    """Keep-alive connections to one origin (scheme://host:port), shared by every request to it."""

    def __init__(self, base_url: str, name: str = "", connect_timeout: float = 10.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.name = name
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.base_path = parts.path.rstrip("/")
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.idle: deque[_Conn] = deque()
        self.loop: asyncio.AbstractEventLoop | None = None

    def _release(self, conn: _Conn) -> None:
        conn.reused = True
        conn.headers_ready = None
        if len(self.idle) < MAX_IDLE:
            self.idle.append(conn)
        else:
            conn.abort()

    def _forget(self, conn: _Conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def _connect(self, timeout: float) -> _Conn:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Conn(self), self.host, self.port, ssl=self.ssl,
                                            server_hostname=self.host if self.ssl else None),
                timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout("connecting to upstream timed out", deployment=self.name) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to upstream ({exc.strerror or type(exc).__name__})",
                                deployment=self.name) from None
        return conn

    def _acquire_idle(self) -> _Conn | None:
        while self.idle:
            conn = self.idle.pop()  # most recently used: least likely to have been closed by the server
            if not conn.closed:
                return conn
        return None

    async def request(self, method: str, path: str, headers: bytes, body: bytes,
                      first_byte_timeout: float, timeout: float) -> Response:
        """`headers` are preformatted `Name: value\\r\\n` lines (without Host and Content-Length)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        # gzip asked for as the SDKs' HTTP clients ask (httpx: `gzip, deflate`): less to carry from a far API
        payload = b"".join((f"{method} {self.base_path}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                            f"Accept-Encoding: gzip\r\nContent-Length: {len(body)}\r\n".encode("latin-1"),
                            headers, b"\r\n", body))
        started = self.loop.time()
        for attempt in (0, 1):
            # Connecting counts against both deadlines: they run from the call, not from the connect.
            conn = self._acquire_idle() or await self._connect(
                min(self.connect_timeout, first_byte_timeout - (self.loop.time() - started)))
            spent = self.loop.time() - started
            resp = conn.start(payload, first_byte_timeout - spent, timeout - spent)
            try:
                await conn.headers_ready
                return resp
            except UpstreamTimeout:
                raise
            except asyncio.CancelledError:
                conn.abort()
                raise
            except UpstreamError:
                if attempt == 0 and conn.reused and not resp.got_bytes:
                    continue  # stale keep-alive connection: nothing was processed, retry fresh
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        while self.idle:
            self.idle.pop().abort()
