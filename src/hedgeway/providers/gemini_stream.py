"""Gemini `GenerateContentResponse` → OpenAI chat format: usage, finish reasons, the error envelope, complete
answers, and the SSE translator for `streamGenerateContent?alt=sse`.

Contract of `StreamTranslator.feed(bytes) -> bytes`: give it upstream body bytes in any split; it returns
the OpenAI SSE bytes for every complete upstream event (possibly empty): the role chunk on the first event,
then content and tool-call deltas. `finish()` (call at the upstream's end of stream) returns the finish
chunk(s), a usage-only chunk (`"choices":[]`, the form `sse.UsageTap` reads) built from the LAST
usageMetadata seen, and `data: [DONE]`; it raises UpstreamError if no event ever said the answer was done.
An `{"error": …}` event sets `error` and stops translation; the caller raises it.

Gemini gives function calls no ids, so they are named `call_<n>_<name>` (n counts the calls of one choice):
stable across retries of the same answer, and unique within it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import orjson

from hedgeway.errors import UpstreamError
from hedgeway.providers.base import chunk_end, upstream_failure
from hedgeway.sse_frames import Frames, data_of
from hedgeway.types import Usage
from hedgeway.wire import message

FILTERED = "content_filter"
# Gemini finishReason -> OpenAI finish_reason (unknown / future reasons read as "stop").
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": FILTERED, "RECITATION": FILTERED,
          "BLOCKLIST": FILTERED, "PROHIBITED_CONTENT": FILTERED, "SPII": FILTERED, "IMAGE_SAFETY": FILTERED,
          "LANGUAGE": FILTERED}

# google.rpc.ErrorInfo reasons that mean "this deployment's key is bad" although Gemini answers 400:
# treated as 401 so they stay fallback-eligible and are never echoed.
CREDENTIAL_REASONS = {"API_KEY_INVALID": 401, "API_KEY_SERVICE_BLOCKED": 403, "API_KEY_HTTP_REFERRER_BLOCKED": 403}
# Status names for an in-stream `error` object that carries no numeric code.
STATUS_CODES = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401,
                "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500,
                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}
DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def gemini_failure(status: int, payload: Any, deployment: str, redact: Callable[[str], str]) -> UpstreamError:
    """The error for Google's envelope `{"error": {"code", "message", "status", "details"}}`."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        return upstream_failure(status, redact(str(payload)[:200]), deployment)
    retry_after = None
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        status = CREDENTIAL_REASONS.get(detail.get("reason"), status)
        delay = DELAY.match(str(detail.get("retryDelay") or ""))  # google.rpc.RetryInfo, e.g. "17s"
        if delay:
            retry_after = delay.group(1)
    text = redact(f"{err.get('status') or 'ERROR'}: {err.get('message') or ''}")
    return upstream_failure(status, text, deployment, retry_after)


def openai_usage(u: dict[str, Any] | None) -> tuple[dict[str, Any], Usage]:
    """usageMetadata -> (OpenAI usage object, Usage). promptTokenCount already includes cached content
    (like OpenAI's prompt_tokens); thinking tokens are billed as output, so they count as completion."""
    u = u or {}
    prompt = (u.get("promptTokenCount") or 0) + (u.get("toolUsePromptTokenCount") or 0)
    thoughts = u.get("thoughtsTokenCount") or 0
    completion = (u.get("candidatesTokenCount") or 0) + thoughts
    cached = u.get("cachedContentTokenCount") or 0
    body = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}
    return body, Usage(prompt, completion, cached_tokens=cached)


def call_id(n: int, name: Any) -> str:
    return f"call_{n}_{name}"


def tool_call(n: int, fc: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id(n, fc.get("name")), "type": "function",
            "function": {"name": fc.get("name"), "arguments": orjson.dumps(fc.get("args") or {}).decode()}}


def _finish(candidate: dict[str, Any], has_calls: bool) -> str:
    reason = FINISH.get(candidate.get("finishReason"), "stop")
    return "tool_calls" if has_calls and reason == "stop" else reason


def completion(resp: dict[str, Any], model: str) -> tuple[bytes, Usage]:
    """A complete GenerateContentResponse -> OpenAI `chat.completion` bytes and its usage. A blocked
    prompt (promptFeedback.blockReason, no candidates) is an empty answer with finish `content_filter`."""
    choices = []
    for pos, cand in enumerate(resp.get("candidates") or ()):
        parts = (cand.get("content") or {}).get("parts") or ()
        texts = [p["text"] for p in parts if "text" in p and not p.get("thought")]
        calls = [tool_call(n, p["functionCall"]) for n, p in enumerate(p for p in parts if "functionCall" in p)]
        choices.append({"index": cand.get("index", pos), "message": message("".join(texts) if texts else None, calls),
                        "logprobs": None,
                        "finish_reason": _finish(cand, bool(calls))})
    if not choices:
        reason = "stop" if not (resp.get("promptFeedback") or {}).get("blockReason") else FILTERED
        choices = [{"index": 0, "message": message(""), "logprobs": None,
                    "finish_reason": reason}]
    usage, parsed = openai_usage(resp.get("usageMetadata"))
    body = {"id": "chatcmpl-" + (resp.get("responseId") or f"gemini{time.time_ns()}"),
            "object": "chat.completion", "created": int(time.time()), "model": resp.get("modelVersion") or model,
            "choices": choices, "usage": usage}
    return orjson.dumps(body), parsed


class StreamTranslator:
    __slots__ = ("deployment", "model", "redact", "error", "_frames", "_prefix", "_end", "_usage", "_finish",
                 "_calls")

    def __init__(self, deployment: str, model: str, redact: Callable[[str], str], include_usage: bool = False):
        self.deployment = deployment
        self._end = chunk_end(include_usage)
        self.model = model
        self.redact = redact
        self.error: UpstreamError | None = None
        self._frames = Frames()
        self._prefix = b""  # `data: {"id":…,"model":…,"choices":[` once the first event arrived
        self._usage: dict[str, Any] | None = None
        self._finish: dict[int, str] = {}  # choice index -> OpenAI finish_reason
        self._calls: dict[int, int] = {}  # choice index -> function calls emitted so far

    def feed(self, data: bytes) -> bytes:
        if self.error is not None:
            return b""
        out = []
        for raw in self._frames.feed(data):  # Google separates events with CRLF CRLF
            payload = data_of(raw)
            if payload is None:
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self.error = UpstreamError("upstream sent an invalid stream event", deployment=self.deployment)
                break
            if "error" in event:
                err = event["error"] if isinstance(event["error"], dict) else {}
                status = err.get("code") or STATUS_CODES.get(err.get("status"), 500)
                self.error = gemini_failure(status, event, self.deployment, self.redact)
                break
            out.append(self._event(event))
        return b"".join(out)

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return (self._prefix + b'{"index":' + str(index).encode() + b',"delta":' + orjson.dumps(delta)
                + b',"finish_reason":null}' + self._end)

    def _event(self, event: dict[str, Any]) -> bytes:
        out = []
        if not self._prefix:
            rid = event.get("responseId") or f"gemini{time.time_ns()}"
            self._prefix = (b'data: {"id":' + orjson.dumps("chatcmpl-" + rid) + b',"object":"chat.completion.chunk",'
                            b'"created":' + str(int(time.time())).encode() + b',"model":'
                            + orjson.dumps(event.get("modelVersion") or self.model) + b',"choices":[')
            out.append(self._delta(0, {"role": "assistant", "content": ""}))
        if event.get("usageMetadata"):
            self._usage = event["usageMetadata"]
        candidates = event.get("candidates") or ()
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            self._finish[0] = FILTERED
        for pos, cand in enumerate(candidates):
            index = cand.get("index", pos)
            for part in (cand.get("content") or {}).get("parts") or ():
                if "functionCall" in part:  # complete in one event: id, name and all arguments at once
                    n = self._calls[index] = self._calls.get(index, -1) + 1
                    out.append(self._delta(index, {"tool_calls": [{"index": n, **tool_call(n, part["functionCall"])}]}))
                elif part.get("text") and not part.get("thought"):
                    out.append(self._delta(index, {"content": part["text"]}))
            if cand.get("finishReason"):
                self._finish[index] = _finish(cand, index in self._calls)
        return b"".join(out)

    def finish(self) -> bytes:
        if self.error is not None:
            raise self.error
        if not self._finish:
            raise UpstreamError("upstream ended the stream before a finishReason", deployment=self.deployment)
        usage, _ = openai_usage(self._usage)
        ends = [self._prefix + b'{"index":' + str(i).encode() + b',"delta":{},"finish_reason":"' + r.encode()
                + b'"}' + self._end for i, r in sorted(self._finish.items())]
        return b"".join(ends) + self._prefix + b'],"usage":' + orjson.dumps(usage) + b'}\n\ndata: [DONE]\n\n'
