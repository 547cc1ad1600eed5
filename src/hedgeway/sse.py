"""Relaying an OpenAI-format SSE stream: bytes pass through untouched except the usage event.

Hedgeway always asks the upstream for usage (it prices every stream), so the final usage-only event
(`"choices": []`) is removed when the client did not ask for `stream_options.include_usage`. Only events
that carry a usage object are parsed; everything else is split into events (sse_frames) and joined back.

Two optional duties, both cheap on the hot path: `scrub` (bytes -> bytes) masks configured credentials in
what is relayed (an upstream error event may echo its key); `cap` > 0 counts output tokens the cheap way —
one per event that carries content or tool-call arguments, which is what OpenAI-format servers (OpenAI,
vLLM, llama.cpp) send per token — and stops relaying at the first event past `cap` (`capped`), after which
`stop()` gives the client a normal end (`finish_reason: "length"`, `[DONE]`).
"""

from __future__ import annotations

from typing import Callable

import orjson

from hedgeway.providers.openai import parse_usage
from hedgeway.sse_frames import Frames, data_of, is_done
from hedgeway.types import Usage

_OUTPUT = (b'"content":"', b'"content": "', b'"arguments":"', b'"arguments": "')


def _carries_output(event: bytes) -> bool:
    """Whether an event's delta holds non-empty content or tool-call arguments (no JSON parsing)."""
    for key in _OUTPUT:
        at = event.find(key)
        if at >= 0 and event[at + len(key):at + len(key) + 1] != b'"':
            return True
    return False


class UsageTap:
    __slots__ = ("keep_usage", "usage", "_frames", "done", "scrub", "cap", "produced", "capped", "_first")

    def __init__(self, keep_usage: bool, scrub: Callable[[bytes], bytes] | None = None, cap: int = 0):
        self.keep_usage = keep_usage
        self.usage: Usage | None = None
        self.done = False  # saw the `[DONE]` event
        self._frames = Frames()
        self.scrub = scrub
        self.cap = cap
        self.produced = 0  # output events counted (only with a cap)
        self.capped = False
        self._first: bytes | None = None  # the first event (its id and model name the stop event)

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send to the client for this upstream chunk (possibly empty): its complete events."""
        if (not self.cap and chunk[-2:] == b"\n\n" and b"[DONE]" not in chunk and b'"usage":{' not in chunk
                and b'"usage": {' not in chunk and not self._frames.holding):
            out = chunk  # whole events, none to read (the usual chunk): passed on as they are
        else:
            out = b"".join(self._events(chunk))
        return self.scrub(out) if self.scrub is not None and out else out

    def _events(self, chunk: bytes) -> list[bytes]:
        out = []
        for event in self._frames.feed(chunk):
            if b'"usage":{' in event or b'"usage": {' in event:
                if not self._take_usage(event):
                    continue
            elif is_done(event):
                self.done = True
            elif self.cap:
                self._first = self._first or event
                if _carries_output(event):
                    self.produced += 1
                    if self.produced > self.cap:
                        self.capped = True
                        break
            out.append(event)
        return out

    def flush(self) -> bytes:
        """What is left at the end: an event without its blank line (`done` if it is `[DONE]`)."""
        tail = self._frames.rest()
        if is_done(tail):
            self.done = True
        return self.scrub(tail) if self.scrub is not None and tail else tail

    def stop(self, n: object) -> bytes:
        """The end of a capped stream: a chunk finishing each of the request's `n` choices with "length",
        then [DONE]."""
        choices = n if isinstance(n, int) and 0 < n <= 128 else 1
        try:
            first = orjson.loads(data_of(self._first) or b"") if self._first else {}
        except orjson.JSONDecodeError:
            first = {}
        if not isinstance(first, dict):
            first = {}
        chunk = {"id": first.get("id"), "object": "chat.completion.chunk", "created": first.get("created"),
                 "model": first.get("model"),
                 "choices": [{"index": i, "delta": {}, "finish_reason": "length"} for i in range(choices)]}
        return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"

    def _take_usage(self, event: bytes) -> bool:
        """Record the usage; return False when the event must be dropped (usage-only, not asked for)."""
        try:
            obj = orjson.loads(data_of(event) or b"")
        except orjson.JSONDecodeError:
            return True
        self.usage = parse_usage(obj.get("usage"))
        return self.keep_usage or bool(obj.get("choices"))
