"""Pieces of OpenAI's response format that Hedgeway builds itself (simulated answers, Anthropic and Gemini
egress, cache hits), written once so that each conforms to OpenAI's published schema the same way:

    completion_id()            a fresh `chatcmpl-…` id: every response has its own, cache hits included
    message(content, calls)    an assistant message with `refusal: null` (the schema requires the key)
    embedding(vector, fmt)     a float list, or base64 of little-endian float32 for `encoding_format: base64`
    restamp(body)              a stored chat.completion as a new response: fresh id and `created`, no null
                               `system_fingerprint` (the schema types it as a string: absent when unknown)
"""

from __future__ import annotations

import base64
import struct
import time
from secrets import token_hex
from typing import Any

import orjson


def completion_id() -> str:
    return "chatcmpl-" + token_hex(12)


def message(content: str | None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def embedding(vector: list[float], encoding_format: Any) -> list[float] | str:
    """The `embedding` value as the client asked for it (OpenAI: base64 of float32, little-endian)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def restamp(body: bytes) -> bytes:
    """A stored chat.completion body served again: a new id and creation time; a null
    system_fingerprint left out; a message without `refusal` given `refusal: null`."""
    obj = orjson.loads(body)
    obj["id"], obj["created"] = completion_id(), int(time.time())
    if obj.get("system_fingerprint", "") is None:
        del obj["system_fingerprint"]
    for choice in obj.get("choices") or ():
        msg = choice.get("message")
        if isinstance(msg, dict):
            msg.setdefault("refusal", None)
    return orjson.dumps(obj)
