"""OpenAI `chat.completion.chunk` SSE (what the gateway relays) → Responses API stream events.

Contract: `start()` returns `response.created` and `response.in_progress`; `feed(bytes)` takes the gateway's
bytes in any split and returns the events of every complete chunk; `finish()` closes the response if the
stream ended without `data: [DONE]`. Once the response is closed, `final` holds the Response object the last
event carried (the store keeps it). Every event has `event:` = its `type` and a `sequence_number` from 0.

    response.created  response.in_progress
    response.output_item.added(message)  response.content_part.added(output_text)
        response.output_text.delta…  response.output_text.done  response.content_part.done
    response.output_item.done(message)
    response.output_item.added(function_call)  response.function_call_arguments.delta…
        response.function_call_arguments.done  response.output_item.done(function_call)
    response.completed | response.incomplete (max_output_tokens, content_filter)

An item is closed when the next one starts; a response with no content gets one empty message (as complete
ones do). Usage is known at the end only (OpenAI reports it last): the final event carries it. An in-band
error (`data: {"error": …}`, written by the gateway when the upstream broke mid-stream) becomes
`response.failed` (status failed, `error`, the items so far) and ends the translation.

Hot path: text deltas are written from a byte template; only the text itself is serialised.
"""

from __future__ import annotations

from typing import Any

import orjson

from hedgeway.ingress.chat_stream import ChatStreamReader
from hedgeway.ingress.responses import Inbound
from hedgeway.ingress.responses_items import Item, item_id
from hedgeway.ingress.responses_reply import call_item, envelope, message_item, status_of, text_part, usage

_TEXT_DELTA = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":%d,'
               b'"item_id":"%b","output_index":%d,"content_index":0,"delta":%b,"logprobs":[]}\n\n')
# Hedgeway's error `type` -> ResponseError code (anything else reads as server_error)
ERROR_CODES = {"rate_limit_error": "rate_limit_exceeded"}


class StreamTranslator(ChatStreamReader):
    __slots__ = ("inb", "resp_id", "created_at", "final", "_seq", "_items", "_open", "_texts", "_calls")

    def __init__(self, inb: Inbound, resp_id: str, created_at: int):
        super().__init__()
        self.inb = inb
        self.resp_id = resp_id
        self.created_at = created_at
        self.final: dict[str, Any] | None = None  # the Response object of the last event, once closed
        self._seq = 0
        self._items: list[Item] = []  # output items, in order (the open one last)
        self._open: Any = None  # "text", or the chat tool-call index of the open function_call item
        self._texts: list[str] = []  # the open item's text or argument fragments
        self._calls: dict[Any, Item] = {}  # chat tool-call index -> its function_call item

    def _emit(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self) -> bytes:
        snapshot = envelope(self.inb, self.resp_id, self.created_at, "in_progress", [])
        return self._emit("response.created", {"response": snapshot}) + \
            self._emit("response.in_progress", {"response": snapshot})

    @property
    def ended(self) -> bool:
        return self.final is not None

    def _add(self, item: Item, opened: Any) -> bytes:
        out = self._close_item()
        self._open = opened
        self._items.append(item)
        return out + self._emit("response.output_item.added", {"output_index": len(self._items) - 1,
                                                                "item": item})

    def _text(self, text: str) -> bytes:
        out = self._open_message() if self._open != "text" else b""
        self._texts.append(text)
        self._seq += 1
        return out + _TEXT_DELTA % (self._seq - 1, self._items[-1]["id"].encode(), len(self._items) - 1,
                                    orjson.dumps(text))

    def _tool(self, call: dict[str, Any]) -> bytes:
        key = call.get("index", call.get("id"))
        out = b""
        item = self._calls.get(key)
        if item is None:
            fn = call.get("function") or {}
            item = self._calls[key] = call_item(item_id("fc"), call.get("id") or f"call_{self.resp_id}_{key}",
                                                fn.get("name") or "", "", "in_progress")
            out = self._add(item, key)
        args = (call.get("function") or {}).get("arguments")
        if args:
            if self._open != key:  # a late fragment of a call already closed: the final response has it
                item["arguments"] += args
                return out
            self._texts.append(args)
            out += self._emit("response.function_call_arguments.delta", {
                "item_id": item["id"], "output_index": len(self._items) - 1, "delta": args})
        return out

    def _close_item(self, status: str = "completed") -> bytes:
        """Close the open item (if any): its done events, with the item complete."""
        if self._open is None:
            return b""
        index, item = len(self._items) - 1, self._items[-1]
        common = {"item_id": item["id"], "output_index": index}
        text = "".join(self._texts)
        self._texts = []
        if self._open == "text":
            part = text_part(text)
            out = self._emit("response.output_text.done", {**common, "content_index": 0, "text": text,
                                                             "logprobs": []})
            out += self._emit("response.content_part.done", {**common, "content_index": 0, "part": part})
            item["content"] = [part]
        else:
            item["arguments"] = text
            out = self._emit("response.function_call_arguments.done", {**common, "arguments": text})
        item["status"] = status
        self._open = None
        return out + self._emit("response.output_item.done", {"output_index": index, "item": item})

    def _open_message(self) -> bytes:
        out = self._add(message_item(item_id("msg"), [], "in_progress"), "text")
        return out + self._emit("response.content_part.added", {
            "item_id": self._items[-1]["id"], "output_index": len(self._items) - 1, "content_index": 0,
            "part": text_part("")})

    def _close(self) -> bytes:
        if self.final is not None:
            return b""
        status, reason = status_of(self._finish)
        # nothing was said: one empty message, as a complete response would carry
        out = b"" if self._items else self._open_message()
        out += self._close_item("incomplete" if reason else "completed")
        self.final = envelope(self.inb, self.resp_id, self.created_at, status, self._items, usage(self._usage),
                              incomplete=reason)
        kind = "response.incomplete" if reason else "response.completed"
        return out + self._emit(kind, {"response": self.final})

    def _error(self, err: Any) -> bytes:
        err = err if isinstance(err, dict) else {"message": str(err)}
        if self._open is not None:
            self._items[-1]["status"] = "incomplete"
        error = {"code": ERROR_CODES.get(err.get("type"), "server_error"), "message": str(err.get("message") or "")}
        self.final = envelope(self.inb, self.resp_id, self.created_at, "failed", self._items, usage(self._usage),
                              error=error)
        return self._emit("response.failed", {"response": self.final})
