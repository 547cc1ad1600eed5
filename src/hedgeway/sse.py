"""Relaying an OpenAI-format SSE stream: bytes pass through untouched except the usage event.

Hedgeway always asks the upstream for usage (it prices every stream), so the final usage-only event
(`"choices": []`) is removed when the client did not ask for `stream_options.include_usage`. Only events
that carry a usage object are parsed; everything else is split on the event separator and joined back.

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
from hedgeway.types import Usage

MAX_TAIL = 1 << 20  # an event this large without a separator: stop waiting for one and pass bytes on


_OUTPUT = (b'"content":"', b'"content": "', b'"arguments":"', b'"arguments": "')


def _carries_output(event: bytes) -> bool:
    """Whether an event's delta holds non-empty content or tool-call arguments (no JSON parsing)."""
    for key in _OUTPUT:
        at = event.find(key)
        if at >= 0 and event[at + len(key):at + len(key) + 1] != b'"':
            return True
    return False


class UsageTap:
    __slots__ = ("keep_usage", "usage", "_tail", "_sep", "done", "scrub", "cap", "produced", "capped", "_first")

    def __init__(self, keep_usage: bool, scrub: Callable[[bytes], bytes] | None = None, cap: int = 0):
        self.keep_usage = keep_usage
        self.usage: Usage | None = None
        self.done = False  # saw `data: [DONE]`
        self._tail = b""
        self._sep: bytes | None = None
        self.scrub = scrub
        self.cap = cap
        self.produced = 0  # output events counted (only with a cap)
        self.capped = False
        self._first: bytes | None = None  # the first event (its id and model name the stop event)

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
            elif self.cap:
                self._first = self._first or event
                if _carries_output(event):
                    self.produced += 1
                    if self.produced > self.cap:
                        self.capped = True
                        break
            out.append(event)
        if not out:
            return b""
        data = sep.join(out) + sep
        return self.scrub(data) if self.scrub is not None else data

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return self.scrub(tail) if self.scrub is not None and tail else tail

    def stop(self, n: object) -> bytes:
        """The end of a capped stream: a chunk finishing each of the request's `n` choices with "length",
        then [DONE]."""
        sep = self._sep or b"\n\n"
        choices = n if isinstance(n, int) and 0 < n <= 128 else 1
        try:
            first = orjson.loads(self._first[self._first.find(b"{"):]) if self._first else {}
        except orjson.JSONDecodeError:
            first = {}
        chunk = {"id": first.get("id"), "object": "chat.completion.chunk", "created": first.get("created"),
                 "model": first.get("model"),
                 "choices": [{"index": i, "delta": {}, "finish_reason": "length"} for i in range(choices)]}
        return b"data: " + orjson.dumps(chunk) + sep + b"data: [DONE]" + sep

    def _take_usage(self, event: bytes) -> bool:
        """Record the usage; return False when the event must be dropped (usage-only, not asked for)."""
        start = event.find(b"{")
        try:
            obj = orjson.loads(event[start:])
        except orjson.JSONDecodeError:
            return True
        self.usage = parse_usage(obj.get("usage"))
        return self.keep_usage or bool(obj.get("choices"))
