"""A minimal HTTP/1.1 server on asyncio Protocols + httptools.

Why not a framework: a stock ASGI stack costs ~250 µs of CPU per request here, more than the whole
gateway's own work (docs: PERFORMANCE.md). This server does what the gateway needs and nothing more:
keep-alive, pipelined requests answered in order (an error for a bad one after the answers before it), a body
size limit enforced while reading (413 without buffering the excess; at once after `Expect: 100-continue`,
else `100 Continue`), fixed-length responses, chunked streaming with backpressure (close-delimited for
HTTP/1.0 clients), HEAD answered as GET without the body, the timeouts and connection cap of `Limits`, and a
graceful drain. tests/test_http_conformance.py checks its request parsing against h11.

Contract with the application: `app(request) -> Response | StreamingResponse` (types in http/wire.py,
re-exported here). The app maps its own errors to responses; anything escaping it becomes a bare 500
with no detail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import httptools

from hedgeway.http.wire import App, Limits, Request, Response, StreamingResponse, render_head

__all__ = ["App", "Limits", "Request", "Response", "Server", "StreamingResponse"]  # the app's contract

log = logging.getLogger("hedgeway.http")

LINGER = 2.0  # seconds a closing connection keeps reading what the client still sends
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; more is an attack or a bug (431, connection closed)
INTERNAL_ERROR = (b'{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}')


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App, server: "Server"):
        self.app = app
        self.server = server
        self.limits = server.limits
        self.max_body = server.limits.max_body
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[tuple[Request | Response, bool, bool, bool]] = deque()
        self.task: asyncio.Task | None = None
        self.closed = False
        self.done_reading = False  # a rejection or a last (non-keep-alive) request is queued: ignore more
        self.over_capacity = False
        self.drain_waiter: asyncio.Future | None = None
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None  # when the current phase (idle, head, body) times out
        self.phase = server.limits.head_timeout  # the timeout of the request being read
        self.reading = False  # a request's first byte came, its end not yet
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._head = 0  # bytes of the current request line and headers
        self._in_head = False

    # --- transport events ---
    def connection_made(self, transport):
        self.transport = transport
        connections = self.server.connections
        self.over_capacity = len(connections) >= self.limits.max_connections  # answered 503
        connections.add(self)
        self._arm(self.limits.idle_timeout)

    def connection_lost(self, exc):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.task is None:  # else _serve leaves the set when its task ends: the drain must wait for
            self.server.connections.discard(self)  # a stream's cleanup (its ledger record) after a hang-up
        self._wake_writer()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._wake_writer()

    def _wake_writer(self):
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def data_received(self, data: bytes):
        if self.done_reading:
            return
        was_in_head = self._in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._reject(400, "malformed HTTP request")
        if was_in_head and self._in_head:  # still no end of headers: the parser buffers them all
            self._head += len(data)
            if self._head > MAX_HEAD_BYTES:
                self._reject(431, "request headers too large")

    def _reject(self, status: int, message: str) -> None:
        """Answer with an error after every request before it, then close; nothing more is read."""
        if self.done_reading:
            return
        self.done_reading = True
        self.reading = False
        kind = b"api_error" if status >= 500 else b"invalid_request_error"
        body = b'{"error":{"message":"%s","type":"%s","param":null,"code":null}}' % (message.encode(), kind)
        self._enqueue(Response(status, body, {"retry-after": "1"} if status == 503 else {}), False, False, False)

    # --- timeouts: one timer per connection, re-armed only when a deadline moves earlier ---
    def _arm(self, seconds: float) -> None:
        self.deadline = when = self.loop.time() + seconds
        if self.timer is not None and self.timer.when() > when:
            self.timer.cancel()
            self.timer = None
        if self.timer is None:
            self.timer = self.loop.call_at(when, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.closed or self.deadline is None or self.task is not None:  # _serve re-arms when done
            return
        if self.loop.time() < self.deadline:  # the deadline moved later since this timer was set
            self.timer = self.loop.call_at(self.deadline, self._expired)
        elif self.reading:  # slowloris: a head or body trickling in
            self._reject(408, "request not received in time")
        else:  # an idle keep-alive connection
            self.closed = True
            self.transport.close()

    # --- httptools callbacks ---
    def on_message_begin(self):
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._too_large = False
        self._head = 0
        self._in_head = True
        self.reading = True
        self.phase = self.limits.head_timeout
        self._arm(self.phase)

    def on_url(self, url: bytes):
        self._url += url
        self._head += len(url)

    def on_header(self, name: bytes, value: bytes):
        self._head += len(name) + len(value) + 4
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        self._in_head = False
        if self.over_capacity:
            self._reject(503, "server at its connection limit; retry")
            return
        self.phase = self.limits.body_timeout
        self._arm(self.phase)
        headers = self._headers
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            self._too_large = True
        if headers.get("expect", "").lower() == "100-continue" and self.parser.get_http_version() != "1.0":
            if self._too_large:  # say so now: the client has not sent the body yet
                self._reject(413, f"request body exceeds the limit of {self.max_body} bytes")
            elif self.task is None:  # (while an earlier answer is being written, the client's wait ends it)
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        self._size += len(body)
        if self._size > self.max_body:
            self._too_large = True
        if not self._too_large:
            self._body.append(body)

    def on_message_complete(self):
        if self.done_reading:  # rejected while parsing this message
            return
        self.reading = False
        self.deadline = None
        if self._head > MAX_HEAD_BYTES:
            self._reject(431, "request headers too large")
            return
        if self._too_large:
            self._reject(413, f"request body exceeds the limit of {self.max_body} bytes")
            return
        parser = self.parser
        http10 = parser.get_http_version() == "1.0"  # no chunked answers; one request per connection
        keep_alive = not http10 and parser.should_keep_alive()
        method = parser.get_method().decode()
        head_only = method == "HEAD"  # answered as GET, without the body
        path, _, query = self._url.decode("latin-1").partition("?")
        req = Request("GET" if head_only else method, path, query, self._headers, b"".join(self._body))
        if not keep_alive:
            self.done_reading = True
        self._enqueue(req, keep_alive, head_only, http10)

    def _enqueue(self, item: Request | Response, keep_alive: bool, head_only: bool, http10: bool) -> None:
        self.queue.append((item, keep_alive, head_only, http10))
        if self.task is None:
            self.task = self.loop.create_task(self._serve())

    # --- responding ---
    async def _serve(self) -> None:
        try:
            while self.queue and not self.closed:
                item, keep_alive, head_only, http10 = self.queue.popleft()
                keep_alive = keep_alive and not self.server.draining
                if isinstance(item, Response):
                    resp = item
                else:
                    try:
                        resp = await self.app(item)
                    except Exception:
                        log.exception("unhandled error in request handler")
                        resp = Response(500, INTERNAL_ERROR)
                if isinstance(resp, Response):
                    if not self.closed:
                        self.transport.write(render_head(resp.status, resp.content_type, resp.headers,
                                                         keep_alive, b"content-length: %d\r\n" % len(resp.body))
                                             + (b"" if head_only else resp.body))
                else:
                    await self._stream(resp, keep_alive, head_only, http10)
                if not keep_alive:
                    self._close()
        finally:
            self.task = None
            if self.closed:
                self.server.connections.discard(self)
            else:  # the clocks restart once the answers are out
                self._arm(self.phase if self.reading else self.limits.idle_timeout)

    def _close(self) -> None:
        """End the connection after the last answer. Lingering: the write side closes first and what the
        client still sends is read and dropped (a close with unread bytes would reset the connection and
        could destroy the answer before the client read it); the client's close, or LINGER s, ends it."""
        if self.closed:
            return
        self.closed = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER, self.transport.abort)
        else:
            self.transport.close()

    async def _stream(self, resp: StreamingResponse, keep_alive: bool, head_only: bool, http10: bool) -> None:
        """Chunked, or delimited by the close for an HTTP/1.0 client (which cannot read chunks)."""
        chunks = resp.chunks
        try:
            if self.closed:
                return
            self.transport.write(render_head(resp.status, resp.content_type, resp.headers, keep_alive,
                                             b"" if http10 else b"transfer-encoding: chunked\r\n"))
            if head_only:
                return
            async for chunk in chunks:
                if self.closed:
                    return
                if chunk:  # (an empty chunk would end the body)
                    self.transport.write(chunk if http10 else b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if self.paused:
                    self.drain_waiter = self.loop.create_future()
                    await self.drain_waiter
                    self.drain_waiter = None
            if not (self.closed or http10):
                self.transport.write(b"0\r\n\r\n")
        finally:
            await chunks.aclose()  # runs the relay's cleanup (ledger record, upstream release) now


class Server:
    """Owns the listening socket and tracks connections for a graceful drain."""

    def __init__(self, app: App, limits: Limits):
        self.app = app
        self.limits = limits
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: HttpProtocol(self.app, self), host, port, reuse_port=reuse_port or None,
            backlog=2048)
        return self._server.sockets[0].getsockname()[1]

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `grace` s), then close idle connections."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.task for c in self.connections):
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.task is not None:
                conn.task.cancel()
            if conn.transport is not None:
                conn.transport.close()
