"""A minimal HTTP/1.1 server on asyncio Protocols + httptools.

Why not a framework: a stock ASGI stack costs ~250 µs of CPU per request here, more than the whole
gateway's own work (docs: PERFORMANCE.md). This server does what the gateway needs and nothing more:
keep-alive, pipelined requests answered in order, a body size limit enforced while reading (413 without
buffering the excess), fixed-length responses, chunked streaming with backpressure, and a graceful drain.

Contract with the application: `app(request) -> Response | StreamingResponse`. The app maps its own
errors to responses; anything escaping it becomes a bare 500 with no detail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import AsyncIterator, Awaitable, Callable

import httptools

log = logging.getLogger("hedgeway.http")

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; more is an attack or a bug (431, connection closed)
INTERNAL_ERROR = (b'{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}')


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass(slots=True)
class StreamingResponse:
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/event-stream"


App = Callable[[Request], Awaitable["Response | StreamingResponse"]]
# (status, message, path so far) -> the body of an error the server answers itself, before any handler
ErrorBody = Callable[[int, str, str], bytes]


def openai_error_body(status: int, message: str, path: str) -> bytes:
    return (b'{"error":{"message":"' + message.encode() + b'","type":"invalid_request_error","param":null,'
            b'"code":null}}')

_date = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, f"date: {formatdate(now, usegmt=True)}\r\n".encode()
    return _date[1]


def _head(status: int, content_type: str, headers: dict[str, str], keep_alive: bool, length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode(), _date_header(),
             b"server: hedgeway\r\ncontent-type: ", content_type.encode(), b"\r\n"]
    lines.append(f"content-length: {length}\r\n".encode() if length is not None else b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    if content_type == "text/event-stream":
        lines.append(b"cache-control: no-cache\r\n")
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    lines.append(b"\r\n")
    return b"".join(lines)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App, max_body: int, server: "Server"):
        self.app = app
        self.max_body = max_body
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[tuple[Request, bool]] = deque()
        self.task: asyncio.Task | None = None
        self.closed = False
        self.drain_waiter: asyncio.Future | None = None
        self.paused = False
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
        self.server.connections.add(self)

    def connection_lost(self, exc):
        self.closed = True
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
        body = self.server.error_body(status, message, self._url.decode("latin-1").partition("?")[0])
        if not self.closed:
            self.transport.write(_head(status, "application/json", {}, False, len(body)) + body)
            self.transport.close()
        self.closed = True

    # --- httptools callbacks ---
    def on_message_begin(self):
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._too_large = False
        self._head = 0
        self._in_head = True

    def on_url(self, url: bytes):
        self._url += url
        self._head += len(url)

    def on_header(self, name: bytes, value: bytes):
        self._head += len(name) + len(value) + 4
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        self._in_head = False
        length = self._headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            self._too_large = True

    def on_body(self, body: bytes):
        self._size += len(body)
        if self._size > self.max_body:
            self._too_large = True
        if not self._too_large:
            self._body.append(body)

    def on_message_complete(self):
        if self.closed:  # rejected while parsing this message
            return
        if self._head > MAX_HEAD_BYTES:
            self._reject(431, "request headers too large")
            return
        if self._too_large:
            self._reject(413, f"request body exceeds the limit of {self.max_body} bytes")
            return
        path, _, query = self._url.decode("latin-1").partition("?")
        req = Request(self.parser.get_method().decode(), path, query, self._headers, b"".join(self._body))
        self.queue.append((req, self.parser.should_keep_alive()))
        if self.task is None:
            self.task = self.loop.create_task(self._serve())

    # --- responding ---
    async def _serve(self) -> None:
        try:
            while self.queue and not self.closed:
                req, keep_alive = self.queue.popleft()
                keep_alive = keep_alive and not self.server.draining
                try:
                    resp = await self.app(req)
                except Exception:
                    log.exception("unhandled error in request handler")
                    resp = Response(500, INTERNAL_ERROR)
                if isinstance(resp, Response):
                    if not self.closed:
                        self.transport.write(_head(resp.status, resp.content_type, resp.headers, keep_alive,
                                                   len(resp.body)) + resp.body)
                else:
                    await self._stream(resp, keep_alive)
                if not keep_alive:
                    if not self.closed:
                        self.transport.close()
                    self.closed = True
        finally:
            self.task = None
            if self.closed:
                self.server.connections.discard(self)

    async def _stream(self, resp: StreamingResponse, keep_alive: bool) -> None:
        chunks = resp.chunks
        try:
            if self.closed:
                return
            self.transport.write(_head(resp.status, resp.content_type, resp.headers, keep_alive, None))
            async for chunk in chunks:
                if self.closed:
                    return
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if self.paused:
                    self.drain_waiter = self.loop.create_future()
                    await self.drain_waiter
                    self.drain_waiter = None
            if not self.closed:
                self.transport.write(b"0\r\n\r\n")
        finally:
            await chunks.aclose()  # runs the relay's cleanup (ledger record, upstream release) now


class Server:
    """Owns the listening socket and tracks connections for a graceful drain."""

    def __init__(self, app: App, max_body: int, error_body: ErrorBody = openai_error_body):
        self.app = app
        self.max_body = max_body
        self.error_body = error_body  # the app's envelope for the errors the server answers (413, 431, 400)
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: HttpProtocol(self.app, self.max_body, self), host, port, reuse_port=reuse_port or None,
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
