"""Anthropic Messages answers from OpenAI ones: the `Message` body, stop reasons, usage, error envelopes,
and the count_tokens estimate. Pure functions (streams: `anthropic_stream`).

- content → a text block; `tool_calls` → `tool_use` blocks (arguments parsed; arguments that are not a JSON
  object are kept, as a string, under `_raw_arguments` rather than lost); an OpenAI `refusal` → text with
  stop_reason `refusal`. The content list is never empty: a text block (possibly "") when there is no call.
- `finish_reason` → `stop_reason` (stop → end_turn, length → max_tokens, tool_calls → tool_use,
  content_filter → refusal); `stop_sequence` when the upstream names the matched stop string (vLLM does, in
  the choice's `stop_reason`; OpenAI does not, so there a stop-sequence stop reads as end_turn).
- usage → `input_tokens` (prompt minus cache reads and writes, Anthropic's meaning), `output_tokens`,
  `cache_read_input_tokens`, `cache_creation_input_tokens`.
- errors: `{"type":"error","error":{"type","message"},"request_id"}` with the type Anthropic documents for
  the HTTP status (the status itself is the `HedgewayError`'s).
"""

from __future__ import annotations

from typing import Any

import orjson

from hedgeway.errors import HedgewayError
from hedgeway.ingress.anthropic import Inbound
from hedgeway.providers.openai import parse_usage

# HTTP status -> Anthropic error type (the types Anthropic documents; other 4xx read as invalid requests).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
               503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}

# Hedgeway's OpenAI-envelope `type` -> Anthropic type, for errors that arrive in-band inside a stream.
OPENAI_ERROR_TYPES = {"invalid_request_error": "invalid_request_error",
                      "authentication_error": "authentication_error", "permission_error": "permission_error",
                      "not_found_error": "not_found_error", "rate_limit_error": "rate_limit_error",
                      "timeout_error": "timeout_error", "service_unavailable": "overloaded_error"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def envelope(status: int, message: str, request_id: str) -> bytes:
    """Anthropic's error envelope for an answer with HTTP `status`."""
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message},
                         "request_id": request_id})


def error_body(exc: HedgewayError, request_id: str) -> bytes:
    """Anthropic's error envelope for `exc` (the HTTP status stays `exc.status_code`)."""
    return envelope(exc.status_code, exc.message, request_id)



# --- response ---
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def stop_reason(finish: str | None, matched: Any, stop_sequences: tuple[str, ...]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). `matched` is the upstream's `stop_reason` (vLLM names the stop string
    that ended generation there; OpenAI does not, so a stop-sequence stop reads as end_turn)."""
    if isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish or "stop", "end_turn"), None


def usage(u: dict[str, Any] | None) -> dict[str, int]:
    """OpenAI usage -> Anthropic usage (whose input_tokens exclude cache reads and writes)."""
    p = parse_usage(u)
    return {"input_tokens": max(p.prompt_tokens - p.cached_tokens - p.cache_write_tokens, 0),
            "output_tokens": p.completion_tokens, "cache_read_input_tokens": p.cached_tokens,
            "cache_creation_input_tokens": p.cache_write_tokens}


def tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def to_message(raw: bytes, inbound: Inbound, msg_id: str) -> bytes:
    """An OpenAI `chat.completion` (bytes) -> Anthropic `Message` JSON bytes."""
    resp = orjson.loads(raw)
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    text = msg.get("content") or ""
    finish = choice.get("finish_reason")
    if not text and msg.get("refusal"):
        text, finish = msg["refusal"], "content_filter"
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    content: list[dict[str, Any]] = []
    calls = msg.get("tool_calls") or ()
    if text or not calls:
        content.append({"type": "text", "text": text})
    for i, call in enumerate(calls):
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{msg_id}_{i}", "name": fn.get("name"),
                        "input": tool_input(fn.get("arguments"))})
    reason, seq = stop_reason(finish, choice.get("stop_reason"), inbound.stop_sequences)
    return orjson.dumps({"id": msg_id, "type": "message", "role": "assistant", "model": inbound.model,
                         "content": content, "stop_reason": reason, "stop_sequence": seq,
                         "usage": usage(resp.get("usage"))})


# --- count_tokens ---
CHARS_PER_TOKEN = 4  # a rough average for English text and JSON under BPE tokenizers
IMAGE_TOKENS = 1600  # Anthropic's figure for a full-size image (about 1.15 megapixels)
MESSAGE_TOKENS = 4  # per-message framing (role, separators)


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """An ESTIMATE of the prompt's tokens (no tokenizer for every upstream): characters of text and tool
    definitions / 4, plus 4 per message and 1600 per image or file part. Good for budgeting, not billing."""
    chars, extra = 0, 0
    for m in body["messages"]:
        extra += MESSAGE_TOKENS
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    chars += len(part["text"])
                else:
                    extra += IMAGE_TOKENS
        for call in m.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return extra + -(-chars // CHARS_PER_TOKEN)
