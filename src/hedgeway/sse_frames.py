"""Server-sent events as frames: the one splitter every stream translator reads upstream bytes with.

    frames = Frames()
    for event in frames.feed(chunk): payload = data_of(event)   # complete events only, LF line ends
    tail = frames.rest()                                        # at the end: an event without separator

`chat_event(event)` says what one relayed OpenAI chat event is, for the translators that re-encode the
gateway's stream in another API's events.

CRLF and LF line ends are both accepted (Google sends CRLF). An incomplete event longer than MAX_TAIL is
handed on as it is, so a stream that never sends a separator cannot grow memory without bound.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_TAIL = 1 << 20
DONE, CHUNK, ERROR = "done", "chunk", "error"


class Frames:
    __slots__ = ("_tail",)

    def __init__(self):
        self._tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._tail + data if self._tail else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events = buf.split(b"\n\n")
        self._tail = events.pop()
        if len(self._tail) > MAX_TAIL:
            events.append(self._tail)
            self._tail = b""
        return events

    def rest(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail


def data_of(event: bytes) -> bytes | None:
    """The `data:` payload of one event, or None for comments and data-less blocks. Several `data:` lines
    are joined with newlines, as the SSE specification says."""
    _, found, payload = event.partition(b"data:")
    if not found:
        return None
    if b"\ndata:" not in payload:
        return payload
    return b"\n".join(line[5:] for line in event.split(b"\n") if line.startswith(b"data:"))


def chat_event(event: bytes) -> tuple[str | None, Any]:
    """(DONE, None) for `data: [DONE]`; (ERROR, detail) for an in-band error (`{"error": …}` without choices,
    written by the gateway when the upstream broke mid-stream); (CHUNK, object) for a chunk; (None, None)
    for anything else (comments, keep-alives, data that is not a JSON object)."""
    payload = data_of(event)
    if payload is None:
        return None, None
    payload = payload.strip()
    if payload == b"[DONE]":
        return DONE, None
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    if "error" in obj and not obj.get("choices"):
        return ERROR, obj["error"]
    return CHUNK, obj
