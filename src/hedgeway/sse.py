"""Relaying an OpenAI-format SSE stream: bytes pass through untouched except the usage event.

Hedgeway always asks the upstream for usage (it prices every stream), so the final usage-only event
(`"choices": []`) is removed when the client did not ask for `stream_options.include_usage`. Only events
that carry a usage object are parsed; everything else is split into events (sse_frames) and joined back.
"""

from __future__ import annotations

import orjson

from hedgeway.providers.openai import parse_usage
from hedgeway.sse_frames import Frames, data_of, is_done
from hedgeway.types import Usage


class UsageTap:
    __slots__ = ("keep_usage", "usage", "_frames", "done")

    def __init__(self, keep_usage: bool):
        self.keep_usage = keep_usage
        self.usage: Usage | None = None
        self.done = False  # saw the `[DONE]` event
        self._frames = Frames()

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client for this upstream chunk (possibly empty): its complete events."""
        if (chunk[-2:] == b"\n\n" and b"[DONE]" not in chunk and b'"usage":{' not in chunk
                and b'"usage": {' not in chunk and not self._frames.holding):
            return chunk  # whole events, none to read (the usual chunk): passed on as they are
        out = []
        for event in self._frames.feed(chunk):
            if b'"usage":{' in event or b'"usage": {' in event:
                if not self._take_usage(event):
                    continue
            elif is_done(event):
                self.done = True
            out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left at the end: an event without its blank line (`done` if it is `[DONE]`)."""
        tail = self._frames.rest()
        if is_done(tail):
            self.done = True
        return tail

    def _take_usage(self, event: bytes) -> bool:
        """Record the usage; return False when the event must be dropped (usage-only, not asked for)."""
        try:
            obj = orjson.loads(data_of(event) or b"")
        except orjson.JSONDecodeError:
            return True
        self.usage = parse_usage(obj.get("usage"))
        return self.keep_usage or bool(obj.get("choices"))
