"""What the HTTP server and the application exchange (`Request` in; `Response` or `StreamingResponse`
out), the server's `Limits`, and how a response head is written."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import AsyncIterator, Awaitable, Callable

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


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


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may take (config `server:`): a request head must arrive within `head_timeout`
    seconds of its first byte, its body within `body_timeout` after the head (else 408 and close); an idle
    keep-alive connection is closed after `idle_timeout`; past `max_connections` open connections, a new
    connection's request gets 503 and the connection is closed."""
    max_body: int = 4 << 20
    head_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_connections: int = 4096


App = Callable[[Request], Awaitable["Response | StreamingResponse"]]

_date = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, f"date: {formatdate(now, usegmt=True)}\r\n".encode()
    return _date[1]


def render_head(status: int, content_type: str, headers: dict[str, str], keep_alive: bool, framing: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode(), _date_header(),
             b"server: hedgeway\r\ncontent-type: ", content_type.encode(), b"\r\n", framing]
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    if content_type == "text/event-stream":
        lines.append(b"cache-control: no-cache\r\n")
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    lines.append(b"\r\n")
    return b"".join(lines)
