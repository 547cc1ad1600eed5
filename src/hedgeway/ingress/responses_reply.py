"""Responses API answers from OpenAI chat ones: the Response object, its output items, status and usage.
Pure functions; streams are translated in `responses_stream`, which builds its events from these pieces.

- content → one `message` item with an `output_text` part (a `refusal` part for a refusal); each tool call →
  a `function_call` item (`call_id` = the upstream's call id; `id` a new `fc_…`). A message is always there
  when there is no call, possibly with "" text, so `output_text` is never missing.
- `finish_reason` length → status `incomplete` with `incomplete_details.reason` max_output_tokens;
  content_filter → incomplete, reason content_filter; anything else → `completed`.
- usage → `input_tokens` (the prompt, cached reads included: OpenAI's meaning), `input_tokens_details`
  (`cached_tokens`, `cache_write_tokens`), `output_tokens`, `output_tokens_details.reasoning_tokens`,
  `total_tokens`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from hedgeway.ingress.responses import Inbound
from hedgeway.ingress.responses_items import Item, item_id
from hedgeway.providers.openai import parse_usage

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def envelope(inb: Inbound, resp_id: str, created_at: int, status: str, output: list[Item],
             usage: dict[str, Any] | None = None, *, incomplete: str | None = None,
             error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Response object around `output`, repeating the request's settings."""
    echo = inb.echo
    out = {"id": resp_id, "object": "response", "created_at": created_at, "status": status,
           "background": False, "error": error,
           "incomplete_details": {"reason": incomplete} if incomplete else None,
           "instructions": inb.instructions, "max_output_tokens": echo.get("max_output_tokens"),
           "model": inb.model, "output": output, "parallel_tool_calls": echo.get("parallel_tool_calls", True),
           "previous_response_id": inb.previous_id, "reasoning": echo.get("reasoning"), "store": inb.store,
           "temperature": echo.get("temperature"), "text": echo.get("text") or {"format": {"type": "text"}},
           "tool_choice": echo.get("tool_choice", "auto"), "tools": echo.get("tools", []),
           "top_p": echo.get("top_p"), "truncation": "disabled", "usage": usage, "user": echo.get("user"),
           "metadata": echo.get("metadata", {})}
    for name in ("service_tier", "safety_identifier", "prompt_cache_key"):
        if name in echo:
            out[name] = echo[name]
    if status == "completed":
        out["completed_at"] = int(time.time())
    return out


def status_of(finish: str | None) -> tuple[str, str | None]:
    """(status, incomplete reason) for a chat `finish_reason`."""
    reason = INCOMPLETE.get(finish or "")
    return ("incomplete", reason) if reason else ("completed", None)


def usage(u: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI chat usage → Responses usage."""
    p = parse_usage(u)
    reasoning = ((u or {}).get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": p.prompt_tokens,
            "input_tokens_details": {"cached_tokens": p.cached_tokens, "cache_write_tokens": p.cache_write_tokens},
            "output_tokens": p.completion_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": p.total_tokens}


def text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(msg_id: str, parts: list[Item], status: str = "completed") -> Item:
    return {"id": msg_id, "type": "message", "role": "assistant", "status": status, "content": parts}


def call_item(fc_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> Item:
    return {"id": fc_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def to_response(raw: bytes, inb: Inbound, resp_id: str, created_at: int) -> dict[str, Any]:
    """An OpenAI `chat.completion` (bytes) → the Response object (a dict: the store keeps it as well)."""
    resp = orjson.loads(raw)
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    status, reason = status_of(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    text = msg.get("content") or ""
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    calls = msg.get("tool_calls") or ()
    output: list[Item] = []
    if not text and msg.get("refusal"):
        output.append(message_item(item_id("msg"), [{"type": "refusal", "refusal": msg["refusal"]}], item_status))
    elif text or not calls:
        output.append(message_item(item_id("msg"), [text_part(text)], item_status))
    for i, call in enumerate(calls):
        fn = call.get("function") or {}
        args = fn.get("arguments")
        output.append(call_item(item_id("fc"), call.get("id") or f"call_{resp_id}_{i}", fn.get("name") or "",
                                args if isinstance(args, str) else orjson.dumps(args or {}).decode(), item_status))
    return envelope(inb, resp_id, created_at, status, output, usage(resp.get("usage")), incomplete=reason)
