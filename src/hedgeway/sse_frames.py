"""Server-sent events as the WHATWG HTML standard parses them ("event stream interpretation"), reduced to
what Hedgeway reads: the one splitter every stream relay and translator reads upstream bytes with.

    frames = Frames()
    for event in frames.feed(chunk): payload = data_of(event)   # complete events, bytes as received
    tail = frames.rest()                                        # at the end: an event without its blank line
    is_done(event)                                              # its data is `[DONE]`

Lines end with CRLF, LF or a lone CR (a CR last in a chunk waits for the next byte: it may be half a
CRLF); a blank line ends an event. Events are the upstream's bytes, each with the line ends that closed
it, so joined again they are the stream as sent (a relay changes nothing it does not mean to). A line is
`field:value`, one space after the colon dropped; a line starting with `:` is a comment; a line without a
colon is a field with an empty value. The data lines of an event are joined with LF; `event:`, `id:` and
`retry:` lines are relayed but not read. An unfinished event longer than MAX_TAIL is handed on as it is,
so a stream that never ends an event cannot grow memory without bound. tests/test_sse.py checks this
against httpx-sse's decoder on generated streams.

`chat_event(event)` says what one relayed OpenAI chat event is, for the translators that re-encode the
gateway's stream in another API's events.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MAX_TAIL = 1 << 20
DONE, CHUNK, ERROR = "done", "chunk", "error"
# two line ends in a row: a blank line. A CR followed by LF is one line end, not two.
_BLANK_LINE = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")


class Frames:
    __slots__ = ("_tail",)

    def __init__(self):
        self._tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._tail + data if self._tail else data
        if b"\r" not in buf:  # LF line ends (most upstreams): a plain split
            parts = buf.split(b"\n\n")
            self._tail = parts.pop()
            events = [part + b"\n\n" for part in parts]
        else:
            events, at = [], 0
            for blank in _BLANK_LINE.finditer(buf):
                end = blank.end()
                if end == len(buf) and buf[-1] == 13:  # a CR last: half a CRLF? the next byte tells
                    break
                events.append(buf[at:end])
                at = end
            self._tail = buf[at:]
        if len(self._tail) > MAX_TAIL:
            events.append(self._tail)
            self._tail = b""
        return events

    @property
    def holding(self) -> bool:
        """Whether part of an event waits for more bytes."""
        return bool(self._tail)

    def rest(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail


def data_of(event: bytes) -> bytes | None:
    """The data of one event (its `data` fields joined with LF), or None when it has no data field
    (a comment, an `event:`-only block)."""
    if b"data" not in event:
        return None
    body = event.rstrip(b"\r\n")
    if body.startswith(b"data:") and b"\n" not in body and b"\r" not in body:  # the usual: one data line
        return body[6:] if body[5:6] == b" " else body[5:]
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    parts = []
    for line in body.split(b"\n"):
        name, _, value = line.partition(b":")
        if name == b"data":
            parts.append(value[1:] if value[:1] == b" " else value)
    return b"\n".join(parts) if parts else None


def is_done(event: bytes) -> bool:
    """Whether this event is OpenAI's end-of-stream marker (`data: [DONE]`, `data:[DONE]`, or after
    `event:`/`id:` lines)."""
    if b"[DONE]" not in event:
        return False
    data = data_of(event)
    return data is not None and data.strip() == b"[DONE]"


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
