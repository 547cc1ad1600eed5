"""Anthropic Messages responses → OpenAI chat format: usage, stop reasons, error events, and the SSE
translator that turns `message_start … message_stop` events into `chat.completion.chunk` events.

Contract of `StreamTranslator.feed(bytes) -> bytes`: give it upstream body bytes in any split; it returns
the OpenAI SSE bytes for every complete upstream event (possibly empty). After `message_stop` it has
emitted, in order: the finish chunk, a usage-only chunk (`"choices":[]`, the form `sse.UsageTap` reads)
and `data: [DONE]`, and `done` is True. An upstream `error` event sets `error` (an `UpstreamError`) and
stops translation; the caller raises it after passing on what came before it.

Only the per-chunk delta is serialised; the chunk envelope is built once per stream (hot path).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import orjson

from hedgeway.errors import UpstreamError
from hedgeway.providers.base import chunk_end, upstream_failure
from hedgeway.sse_frames import Frames, data_of
from hedgeway.types import Usage
from hedgeway.wire import message

# Anthropic stop_reason -> OpenAI finish_reason (unknown future reasons read as "stop").
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}

# Anthropic error type -> the HTTP status Anthropic documents for it; an `error` event inside a 200 stream
# is treated exactly like that status would have been.
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}

USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def error_detail(payload: Any) -> tuple[str, str]:
    """(type, message) from an Anthropic error envelope `{"type":"error","error":{"type","message"}}`."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict):
        return str(err.get("type") or "error"), str(err.get("message") or "")
    return "error", str(err or payload)[:200]


def event_error(payload: Any, deployment: str, redact: Callable[[str], str]) -> UpstreamError:
    kind, message = error_detail(payload)
    return upstream_failure(ERROR_STATUS.get(kind, 500), redact(f"{kind}: {message}"), deployment)


def openai_usage(u: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    """Anthropic usage -> (OpenAI usage object, Usage). Anthropic's `input_tokens` excludes cache reads and
    writes; OpenAI's `prompt_tokens` includes them, so they are added back. Cache reads and writes go where
    OpenAI reports them: `prompt_tokens_details.cached_tokens` and `.cache_write_tokens`."""
    read = u.get("cache_read_input_tokens") or 0
    write = u.get("cache_creation_input_tokens") or 0
    prompt = (u.get("input_tokens") or 0) + read + write
    completion = u.get("output_tokens") or 0
    body = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write}}
    return body, Usage(prompt, completion, cached_tokens=read, cache_write_tokens=write)


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {"id": block.get("id"), "type": "function",
            "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}}


def matched_stop(reason: Any, sequence: Any) -> dict[str, str]:
    """The choice's `stop_reason` naming the stop string that ended the answer (vLLM's convention, which
    /v1/messages reads back into Anthropic's `stop_sequence`), or nothing."""
    return {"stop_reason": sequence} if reason == "stop_sequence" and isinstance(sequence, str) else {}


def completion(msg: dict[str, Any]) -> tuple[bytes, Usage]:
    """A complete Anthropic Message -> OpenAI `chat.completion` bytes and its usage."""
    blocks = msg.get("content") or ()
    texts = [b.get("text") or "" for b in blocks if b.get("type") == "text"]
    calls = [tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    usage, parsed = openai_usage(msg.get("usage") or {})
    reason = msg.get("stop_reason")
    body = {"id": msg.get("id"), "object": "chat.completion", "created": int(time.time()),
            "model": msg.get("model"),
            "choices": [{"index": 0, "message": message("".join(texts) if texts else None, calls),
                         "logprobs": None, "finish_reason": FINISH.get(reason, "stop"),
                         **matched_stop(reason, msg.get("stop_sequence"))}],
            "usage": usage}
    return orjson.dumps(body), parsed


class StreamTranslator:
    __slots__ = ("deployment", "redact", "done", "error", "_frames", "_head", "_prefix", "_end", "_tools",
                 "_usage", "_events", "_started", "_starts", "_deltas")

    def __init__(self, deployment: str, redact: Callable[[str], str], include_usage: bool = False):
        self.deployment = deployment
        self._end = chunk_end(include_usage)
        self.redact = redact
        self.done = False
        self.error: UpstreamError | None = None
        self._frames = Frames()
        self._prefix = b""  # `data: {"id":…,"model":…,"choices":[` once message_start arrived
        self._head = b""  # _prefix + `{"index":0,"delta":`
        self._tools: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        self._usage: dict[str, int] = {}
        # until message_start has given the envelope, nothing else can be translated (or is expected)
        self._events: dict[str, Callable[[dict], bytes]] = {"message_start": self._message_start,
                                                             "error": self._error}
        self._started: dict[str, Callable[[dict], bytes]] = {
            "content_block_start": self._block_start, "content_block_delta": self._block_delta,
            "message_delta": self._message_delta, "message_stop": self._message_stop, "error": self._error}
        self._starts = {"tool_use": self._tool_start, "text": self._text_start}
        self._deltas = {"text_delta": self._text_delta, "input_json_delta": self._json_delta}

    def feed(self, data: bytes) -> bytes:
        if self.error is not None:
            return b""
        out = []
        for raw in self._frames.feed(data):
            payload = data_of(raw)
            if payload is None:
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self.error = UpstreamError("upstream sent an invalid stream event", deployment=self.deployment)
                break
            handler = self._events.get(event.get("type"))  # ping, content_block_stop, unknown: nothing
            if handler is not None:
                chunk = handler(event)
                if chunk:
                    out.append(chunk)
                if self.error is not None:
                    break
        return b"".join(out)

    # --- events ---
    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._head + orjson.dumps(delta) + b',"finish_reason":null}' + self._end

    def _message_start(self, event: dict) -> bytes:
        msg = event.get("message") or {}
        self._usage.update({k: v for k, v in (msg.get("usage") or {}).items() if k in USAGE_KEYS and v})
        self._prefix = (b'data: {"id":' + orjson.dumps(msg.get("id")) + b',"object":"chat.completion.chunk",'
                        b'"created":' + str(int(time.time())).encode() + b',"model":'
                        + orjson.dumps(msg.get("model")) + b',"choices":[')
        self._head = self._prefix + b'{"index":0,"delta":'
        self._events = self._started
        return self._delta({"role": "assistant", "content": ""})

    def _block_start(self, event: dict) -> bytes:
        block = event.get("content_block") or {}
        start = self._starts.get(block.get("type"))  # thinking, server tools: no OpenAI chat equivalent
        return start(event.get("index"), block) if start else b""

    def _tool_start(self, index: int, block: dict) -> bytes:
        n = self._tools[index] = len(self._tools)
        return self._delta({"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                                            "function": {"name": block.get("name"), "arguments": ""}}]})

    def _text_start(self, index: int, block: dict) -> bytes:
        return self._delta({"content": block["text"]}) if block.get("text") else b""

    def _block_delta(self, event: dict) -> bytes:
        delta = event.get("delta") or {}
        handler = self._deltas.get(delta.get("type"))  # thinking / signature / citations deltas: dropped
        return handler(event.get("index"), delta) if handler else b""

    def _text_delta(self, index: int, delta: dict) -> bytes:
        return self._delta({"content": delta.get("text", "")})

    def _json_delta(self, index: int, delta: dict) -> bytes:
        fragment = delta.get("partial_json")
        if not fragment:
            return b""
        return self._delta({"tool_calls": [{"index": self._tools.get(index, 0),
                                            "function": {"arguments": fragment}}]})

    def _message_delta(self, event: dict) -> bytes:
        self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if k in USAGE_KEYS and v is not None})
        delta = event.get("delta") or {}
        stop = matched_stop(delta.get("stop_reason"), delta.get("stop_sequence"))
        reason = FINISH.get(delta.get("stop_reason"), "stop")
        extra = b',"stop_reason":' + orjson.dumps(stop["stop_reason"]) if stop else b""
        return self._head + b'{},"finish_reason":"' + reason.encode() + b'"' + extra + b'}' + self._end

    def _message_stop(self, event: dict) -> bytes:
        self.done = True
        usage, _ = openai_usage(self._usage)
        return self._prefix + b'],"usage":' + orjson.dumps(usage) + b'}\n\ndata: [DONE]\n\n'

    def _error(self, event: dict) -> bytes:
        self.error = event_error(event, self.deployment, self.redact)
        return b""
