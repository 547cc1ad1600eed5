"""Canned upstreams for bench/provider_overhead.py: OpenAI, Anthropic and Gemini on loopback, each answering
every request at once with the same 20-delta text in its own documented wire format (JSON, or SSE when the
body asks for `"stream":true` / the Gemini path is `:streamGenerateContent`). asyncio Protocols + httptools,
so the mock costs far less than the gateway it is measured against.

    python bench/provider_mocks.py       # serves until killed; prints "mocks up"
"""

from __future__ import annotations

import asyncio
import socket

import httptools
import orjson

PORTS = {"openai": 18500, "anthropic": 18501, "gemini": 18502}
PIECES = [f"word{i:02d} " for i in range(19)] + ["end."]   # 20 deltas per answer, every format
TEXT = "".join(PIECES)
PROMPT = [{"role": "user", "content": "Say twenty words."}]


def _sse(events: list[dict], frame=lambda e: b"data: " + orjson.dumps(e) + b"\n\n") -> list[bytes]:
    return [frame(e) for e in events]


def _oai_bodies() -> tuple[dict, list[bytes]]:
    usage = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1718000000, "model": "gpt-4o-mini"}
    full = {**head, "object": "chat.completion", "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}]}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in PIECES] + [{}]
    events = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": "stop" if not d else None}]}
              for d in deltas] + [{**head, "choices": [], "usage": usage}]
    return full, [*_sse(events), b"data: [DONE]\n\n"]


def _anthropic_bodies() -> tuple[dict, list[bytes]]:
    usage = {"input_tokens": 12, "output_tokens": 20, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    msg = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
           "stop_sequence": None}
    full = {**msg, "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "usage": usage}
    events = [{"type": "message_start", "message": {**msg, "content": [], "stop_reason": None,
                                                     "usage": {**usage, "output_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in PIECES),
              {"type": "content_block_stop", "index": 0},
              {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage},
              {"type": "message_stop"}]
    return full, _sse(events, lambda e: b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n")


def _gemini_bodies() -> tuple[dict, list[bytes]]:
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 20, "totalTokenCount": 32}

    def resp(text, finish=None, u=None):
        cand = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        return {"candidates": [cand | ({"finishReason": finish} if finish else {})], "modelVersion": "gemini-2.5-flash",
                "usageMetadata": u or {"promptTokenCount": 12, "totalTokenCount": 12}, "responseId": "resp-bench"}
    events = [resp(p) for p in PIECES[:-1]] + [resp(PIECES[-1], "STOP", usage)]
    return resp(TEXT, "STOP", usage), _sse(events, lambda e: b"data: " + orjson.dumps(e) + b"\r\n\r\n")


def _framed(full: dict, events: list[bytes], ctype: bytes) -> tuple[bytes, list[bytes]]:
    """(whole non-streaming response, streaming response as separate writes: headers + first event, then one
    chunk per event, the terminating chunk riding with the last)."""
    body = orjson.dumps(full)
    plain = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
    chunks[0] = (b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncache-control: no-cache\r\n"
                 b"transfer-encoding: chunked\r\n\r\n" + chunks[0])
    chunks[-1] += b"0\r\n\r\n"
    return plain, chunks


BODIES = {"openai": _framed(*_oai_bodies(), b"text/event-stream"),
          "anthropic": _framed(*_anthropic_bodies(), b"text/event-stream; charset=utf-8"),
          "gemini": _framed(*_gemini_bodies(), b"text/event-stream")}


class NoDelay(asyncio.Protocol):
    def connection_made(self, transport):   # each SSE event leaves at once, as from a real server
        self.t = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MockProtocol(NoDelay):
    """Answers every complete request at once from BODIES; streams when the body asks for it (OpenAI/Anthropic
    `"stream":true`) or the path does (Gemini `:streamGenerateContent`)."""

    def __init__(self, kind: str):
        self.plain, self.stream = BODIES[kind]
        self.kind = kind
        self.parser = httptools.HttpRequestParser(self)
        self.url, self.body = b"", []

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.t.close()

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        body, url = b"".join(self.body), self.url
        self.url, self.body = b"", []
        if not (b":streamGenerateContent" in url if self.kind == "gemini" else b'"stream":true' in body):
            self.t.write(self.plain)
            return
        for c in self.stream:   # one write (one segment with TCP_NODELAY) per event, as a model would send them
            self.t.write(c)


async def serve_mocks():
    loop = asyncio.get_running_loop()
    for kind, port in PORTS.items():
        await loop.create_server(lambda k=kind: MockProtocol(k), "127.0.0.1", port, reuse_address=True, backlog=512)
    print("mocks up", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve_mocks())
