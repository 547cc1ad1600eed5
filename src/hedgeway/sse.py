"""Relaying an OpenAI-format SSE stream: bytes pass through untouched except the usage event.

Hedgeway always asks the upstream for usage (it prices every stream), so the final usage-only event
(`"choices": []`) is removed when the client did not ask for `stream_options.include_usage`. Only events
that carry a usage object are parsed; everything else is split on the event separator and joined back.
"""

from __future__ import annotations

import orjson

from hedgeway.providers.openai import parse_usage
from hedgeway.types import Usage

MAX_TAIL = 1 << 20  # an event this large without a separator: stop waiting for one and pass bytes on


class UsageTap:
    __slots__ = ("keep_usage", "usage", "_tail", "_sep", "done")

    def __init__(self, keep_usage: bool):
        self.keep_usage = keep_usage
        self.usage: Usage | None = None
        self.done = False  # saw `data: [DONE]`
        self._tail = b""
        self._sep: bytes | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client for this upstream chunk (possibly empty)."""
        data = self._tail + chunk if self._tail else chunk
        sep = self._sep
        if sep is None:  # decided by the first separator seen; until then, hold the bytes
            crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
            if crlf < 0 and lf < 0:
                self._tail = data
                return b""
            sep = self._sep = b"\r\n\r\n" if crlf >= 0 and (lf < 0 or crlf < lf) else b"\n\n"
        parts = data.split(sep)
        self._tail = parts.pop()
        if len(self._tail) > MAX_TAIL:
            parts.append(self._tail)
            self._tail = b""
        out = []
        for event in parts:
            if b'"usage":{' in event or b'"usage": {' in event:
                if not self._take_usage(event):
                    continue
            elif event.startswith(b"data: [DONE]"):
                self.done = True
            out.append(event)
        if not out:
            return b""
        return sep.join(out) + sep

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail

    def _take_usage(self, event: bytes) -> bool:
        """Record the usage; return False when the event must be dropped (usage-only, not asked for)."""
        start = event.find(b"{")
        try:
            obj = orjson.loads(event[start:])
        except orjson.JSONDecodeError:
            return True
        self.usage = parse_usage(obj.get("usage"))
        return self.keep_usage or bool(obj.get("choices"))
