"""Server-sent events as the WHATWG HTML standard parses them ("event stream interpretation"), reduced to
what Hedgeway reads: the one splitter every stream relay and translator reads upstream bytes with.

    frames = Frames()
    for event in frames.feed(chunk): payload = data_of(event)   # complete events, line ends made LF
    tail = frames.rest()                                        # at the end: an event without its blank line
    is_done(event)                                              # its data is `[DONE]`

Lines end with CRLF, LF or a lone CR (an LF right after a CR that ended the previous chunk is skipped); a
blank line ends an event. A line is `field:value`, one space after the colon dropped; a line starting
with `:` is a comment; a line without a colon is a field with an empty value. The data lines of an event
are joined with LF; `event:`, `id:` and `retry:` lines are relayed but not read. An unfinished event
longer than MAX_TAIL is handed on as it is, so a stream that never ends an event cannot grow memory
without bound. tests/test_sse.py checks this against httpx-sse's decoder on generated streams.
"""

from __future__ import annotations

MAX_TAIL = 1 << 20


class Frames:
    __slots__ = ("_tail", "_cr")

    def __init__(self):
        self._tail = b""
        self._cr = False  # the last chunk ended with CR: an LF starting the next one belongs to it

    def feed(self, data: bytes) -> list[bytes]:
        if self._cr:
            self._cr = False
            if data[:1] == b"\n":
                data = data[1:]
        buf = self._tail + data if self._tail else data
        if b"\r" in buf:
            self._cr = buf[-1:] == b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
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
    """The data of one event (its `data` fields joined with LF), or None when it has no data field
    (a comment, an `event:`-only block)."""
    if b"data" not in event:
        return None
    if event.startswith(b"data:") and b"\n" not in event:  # the usual event: one data line
        return event[6:] if event[5:6] == b" " else event[5:]
    parts = []
    for line in event.split(b"\n"):
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
