"""OpenAI `chat.completion.chunk` SSE (what the gateway relays) → Anthropic Messages stream events.

Contract: `start()` returns `message_start` (the gateway hands over a stream only once the upstream sent
its first event, so the message can be announced before any chunk is read); `feed(bytes)` takes the
gateway's bytes in any split and returns the Anthropic events for every complete OpenAI event; `finish()`
returns whatever must still close the message when the stream ended without `data: [DONE]`. Event order:

    message_start
    content_block_start(text)  content_block_delta(text_delta)…  content_block_stop
    content_block_start(tool_use, id, name, input {})  content_block_delta(input_json_delta)…  content_block_stop
    message_delta(stop_reason, stop_sequence, usage)  message_stop

A block is closed when the next one starts; a message with no content gets one empty text block (as
complete messages do). Input tokens are only known at the end (OpenAI reports usage
last), so `message_start` carries 0 and `message_delta.usage` the final input, output and cache counts.
An in-band error (`data: {"error": …}`, written by the gateway when the upstream broke mid-stream) becomes
an Anthropic `error` event and ends the translation; nothing follows it.

Hot path: text deltas are written from byte templates; only the text itself is serialised.
"""

from __future__ import annotations

from typing import Any

import orjson

from hedgeway.ingress.anthropic import Inbound
from hedgeway.ingress.chat_stream import ChatStreamReader
from hedgeway.ingress.anthropic_reply import OPENAI_ERROR_TYPES, stop_reason, usage

_TEXT_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,' \
              b'"delta":{"type":"text_delta","text":%b}}\n\n'
_JSON_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,' \
              b'"delta":{"type":"input_json_delta","partial_json":%b}}\n\n'
_TEXT_START = b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,' \
              b'"content_block":{"type":"text","text":""}}\n\n'
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamTranslator(ChatStreamReader):
    __slots__ = ("inbound", "msg_id", "done", "_open", "_next", "_tools")

    def __init__(self, inbound: Inbound, msg_id: str):
        super().__init__()
        self.inbound = inbound
        self.msg_id = msg_id
        self.done = False  # message_stop or error sent: nothing more goes out
        self._open: Any = None  # the open block: "text", or the OpenAI tool-call index it translates
        self._next = 0  # index of the next Anthropic content block
        self._tools: dict[Any, int] = {}  # OpenAI tool-call index -> Anthropic block index

    def start(self) -> bytes:
        return event("message_start", {"type": "message_start", "message": {
            "id": self.msg_id, "type": "message", "role": "assistant", "model": self.inbound.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})

    @property
    def ended(self) -> bool:
        return self.done

    def _start(self, opened: Any) -> tuple[bytes, int]:
        """Close the open block (if any) and open the next one; returns (stop bytes, new index)."""
        out = _BLOCK_STOP % (self._next - 1) if self._open is not None else b""
        self._open = opened
        self._next += 1
        return out, self._next - 1

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open != "text":
            stop, index = self._start("text")
            out = stop + _TEXT_START % index
        return out + _TEXT_DELTA % (self._next - 1, orjson.dumps(text))

    def _tool(self, call: dict[str, Any]) -> bytes:
        key = call.get("index", call.get("id"))
        out = b""
        index = self._tools.get(key)
        if index is None:
            fn = call.get("function") or {}
            out, index = self._start(("tool", key))
            self._tools[key] = index
            block = {"type": "tool_use", "id": call.get("id") or f"toolu_{self.msg_id}_{index}",
                     "name": fn.get("name") or "", "input": {}}
            out += event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": block})
        args = (call.get("function") or {}).get("arguments")
        if args:
            out += _JSON_DELTA % (index, orjson.dumps(args))
        return out

    def _close(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        if self._next == 0:  # nothing was said: one empty text block, as a complete message would carry
            out = _TEXT_START % 0 + _BLOCK_STOP % 0
        else:
            out = _BLOCK_STOP % (self._next - 1)
        reason, seq = stop_reason(self._finish, self._matched, self.inbound.stop_sequences)
        return out + event("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": reason, "stop_sequence": seq},
                                             "usage": usage(self._usage)}) + _MESSAGE_STOP

    def _error(self, err: Any) -> bytes:
        self.done = True
        err = err if isinstance(err, dict) else {"message": str(err)}
        kind = OPENAI_ERROR_TYPES.get(err.get("type"), "api_error")
        return event("error", {"type": "error", "error": {"type": kind, "message": str(err.get("message") or "")}})
