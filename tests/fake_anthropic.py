"""A fake Anthropic Messages API (`POST /v1/messages`) on loopback, written from Anthropic's published
reference: request validation (x-api-key, anthropic-version, max_tokens, alternating roles opening with
`user`, no `system` role inside messages), Message objects with `usage.cache_*_input_tokens`, the SSE event
sequence (message_start, content_block_start/delta/stop with text_delta and input_json_delta, ping,
message_delta with stop_reason and usage, message_stop) and the error envelope.

It misbehaves on demand by the `model` it receives:

    claude-cached           usage with cache reads and cache writes
    overloaded-529          HTTP 529 overloaded_error          rate-429   HTTP 429, retry-after: 0
    bad-400                 HTTP 400 invalid_request_error      auth-401   HTTP 401 (echoes the key)
    cut-before-first-event  200 + headers, then the connection drops before any event
    cut-after-text          message_start and one text delta, then the connection drops
    error-event-first       an `error` event (overloaded_error) as the first event
    error-event-mid-stream  some text, then an `error` event
    anything else           normal answers: an echo of the last user text, or tool_use blocks when tools
                            are given and the last user turn holds no tool_result
"""

from __future__ import annotations


import orjson
from aiohttp import web

from fake_server import LoopbackServer

USAGE = {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
CACHED_USAGE = {"input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 200}
ERRORS = {"overloaded-529": (529, "overloaded_error", "Overloaded"),
          "rate-429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
          "bad-400": (400, "invalid_request_error", "messages.0.content: Input should be a valid list")}


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def sse(event: dict) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def validation_error(body: dict, headers) -> str | None:
    """What the real API would reject in the request (400), or None."""
    if not headers.get("x-api-key"):
        return "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return "anthropic-version header is required"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    msgs = body["messages"]
    if not msgs or msgs[0]["role"] != "user":
        return "messages: first message must use the \"user\" role"
    for i, m in enumerate(msgs):
        if m["role"] not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and m["role"] == msgs[i - 1]["role"]:
            return "messages: roles must alternate between \"user\" and \"assistant\""
        if isinstance(m["content"], list) and any(b.get("type") == "text" and not b.get("text") for b in m["content"]):
            return f"messages.{i}: text content blocks must be non-empty"
    return None


def last_user_blocks(body: dict) -> list[dict]:
    content = body["messages"][-1]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def answer(body: dict) -> tuple[list[dict], str]:
    """(content blocks, stop_reason) for a well-formed request."""
    blocks = last_user_blocks(body)
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if body.get("tools") and not results and (body.get("tool_choice") or {}).get("type") != "none":
        calls = [{"type": "tool_use", "id": f"toolu_0{i + 1}", "name": t["name"], "input": {"city": "Paris", "n": i}}
                 for i, t in enumerate(body["tools"][:2])]
        return [{"type": "text", "text": "Let me check."}, *calls], "tool_use"
    if results:
        return [{"type": "text", "text": "Result: " + str(results[0]["content"])}], "end_turn"
    text = " ".join(b["text"] for b in blocks if b.get("type") == "text") or "(no text)"
    return [{"type": "text", "text": "echo: " + text[:200]}], "end_turn"


def stop_at(body: dict, blocks: list[dict], stop: str) -> tuple[str, str | None]:
    """Cut the first text block at the earliest of the request's stop_sequences, as the API does:
    (stop_reason, stop_sequence)."""
    text = blocks[0].get("text") if blocks and blocks[0]["type"] == "text" else None
    found = [(text.find(s), s) for s in body.get("stop_sequences") or () if text and s in text]
    if not found:
        return stop, None
    at, seq = min(found)
    blocks[0] = {"type": "text", "text": text[:at]}
    del blocks[1:]
    return "stop_sequence", seq


class FakeAnthropic(LoopbackServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)

    async def messages(self, request: web.Request):
        body = await self.received(request)
        model = body.get("model", "")
        self.calls[model] += 1
        if model in ERRORS:
            status, kind, message = ERRORS[model]
            headers = {"retry-after": "0"} if status == 429 else {}
            return web.json_response(error_body(kind, message), status=status, headers=headers)
        if model == "auth-401":
            key = request.headers.get("x-api-key", "")
            return web.json_response(error_body("authentication_error", f"invalid x-api-key {key}"), status=401)
        problem = validation_error(body, request.headers)
        if problem:
            return web.json_response(error_body("invalid_request_error", problem), status=400)
        usage = CACHED_USAGE if model == "claude-cached" else USAGE
        blocks, stop = answer(body)
        stop, seq = stop_at(body, blocks, stop)
        if not body.get("stream"):
            return web.json_response({"id": "msg_fake01", "type": "message", "role": "assistant", "model": model,
                                      "content": blocks, "stop_reason": stop, "stop_sequence": seq,
                                      "usage": usage})
        return await self._stream(request, model, blocks, stop, usage, seq)

    async def _stream(self, request, model, blocks, stop, usage, seq=None):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        if model == "cut-before-first-event":
            await resp.write(b"")
            request.transport.abort()
            return resp
        if model == "error-event-first":
            await resp.write(sse(error_body("overloaded_error", "Overloaded")))
            await resp.write_eof()
            return resp
        start_usage = {**usage, "output_tokens": 1}
        await resp.write(sse({"type": "message_start", "message": {
            "id": "msg_fake02", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}}))
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                await resp.write(sse({"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}}))
                await resp.write(sse({"type": "ping"}))
                words = block["text"].split(" ")
                for k, word in enumerate(words):
                    piece = word if k == len(words) - 1 else word + " "
                    await resp.write(sse({"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": piece}}))
                    if model == "cut-after-text":
                        request.transport.abort()
                        return resp
                    if model == "error-event-mid-stream" and k == 1:
                        await resp.write(sse(error_body("overloaded_error", "Overloaded")))
                        await resp.write_eof()
                        return resp
            else:
                await resp.write(sse({"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
                text = orjson.dumps(block["input"]).decode()
                for fragment in ("", text[:5], text[5:13], text[13:]):
                    await resp.write(sse({"type": "content_block_delta", "index": index,
                                          "delta": {"type": "input_json_delta", "partial_json": fragment}}))
            await resp.write(sse({"type": "content_block_stop", "index": index}))
        # message_delta's usage is cumulative; the newer API repeats the input counts there as well
        await resp.write(sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": seq},
                              "usage": usage}))
        await resp.write(sse({"type": "message_stop"}))
        await resp.write_eof()
        return resp


class ScriptedBody:
    """An upstream response body delivered in exactly the given reads (for the provider's relay)."""

    def __init__(self, *reads: bytes):
        self.reads, self.closed = list(reads), False

    async def __aiter__(self):
        for r in self.reads:
            yield r

    def close(self):
        self.closed = True
