"""What every translator of the gateway's OpenAI chat stream into another API's events shares.

`ChatStreamReader` reads the relayed `chat.completion.chunk` SSE in any byte split and calls its subclass:
`_text(text)` and `_tool(call delta)` for the first choice's content and tool-call deltas, in order;
`_close()` at `data: [DONE]` or at the end of a stream without it (`finish()`); `_error(detail)` for the
in-band error the gateway writes when the upstream broke mid-stream. Once `ended` is true nothing more is
read. What the subclass needs at the end is kept here: `_usage` (OpenAI reports it last), `_finish` (the
finish reason) and `_matched` (the upstream's own `stop_reason`: vLLM names the stop string matched there).
"""

from __future__ import annotations

from typing import Any

from hedgeway.sse_frames import CHUNK, DONE, ERROR, Frames, chat_event


class ChatStreamReader:
    __slots__ = ("_frames", "_finish", "_matched", "_usage")

    def __init__(self):
        self._frames = Frames()
        self._finish: str | None = None
        self._matched: Any = None
        self._usage: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> bytes:
        """The translated events of every complete event in `chunk` (plus what earlier chunks left over)."""
        out = b""
        for event in self._frames.feed(chunk):
            out += self._event(event)
        return out

    def finish(self) -> bytes:
        """Close the translation if the stream ended without `[DONE]` (a last event without separator counts)."""
        tail = self._frames.rest()
        out = self._event(tail) if tail.strip() else b""
        return out + self._close()

    def _event(self, raw: bytes) -> bytes:
        if self.ended:
            return b""
        kind, obj = chat_event(raw)
        if kind == DONE:
            return self._close()
        if kind == ERROR:
            return self._error(obj)
        return self._chunk(obj) if kind == CHUNK else b""

    def _chunk(self, obj: dict[str, Any]) -> bytes:
        if obj.get("usage"):
            self._usage = obj["usage"]
        out = b""
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                out += self._text(text)
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")
        return out

    def _text(self, text: str) -> bytes:
        raise NotImplementedError

    def _tool(self, call: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _close(self) -> bytes:
        raise NotImplementedError

    def _error(self, detail: Any) -> bytes:
        raise NotImplementedError
