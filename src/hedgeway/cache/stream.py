"""Converting between a cached chat.completion body and an OpenAI SSE stream.

`assemble`: the relayed chunks of a completed stream → one chat.completion body (content, refusal and
tool-call deltas joined per choice), so streamed and plain requests share one cache entry.
`replay`: a cached body → chat.completion.chunk events (role, content, tool calls, finish_reason per
choice; a usage-only event when the client asked for `stream_options.include_usage`; then [DONE]).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from hedgeway.sse_frames import Frames, data_of, is_done


def events(chunks: list[bytes]) -> list[dict]:
    """The JSON `data:` payloads of relayed SSE chunks, in order ([DONE] and unparsable ones left out)."""
    frames = Frames()
    out = []
    for event in frames.feed(b"".join(chunks)) + [frames.rest()]:
        payload = data_of(event)
        if payload and not is_done(event):
            try:
                out.append(orjson.loads(payload))
            except orjson.JSONDecodeError:
                pass
    return out


def assemble(chunks: list[bytes]) -> bytes | None:
    """The chat.completion the stream amounts to; None when it is not one (no choices, an error event)."""
    parsed = events(chunks)
    if not parsed or any("error" in e for e in parsed):
        return None
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for e in parsed:
        usage = e.get("usage") or usage
        for c in e.get("choices") or ():
            ch = choices.setdefault(c.get("index", 0), {"message": {"role": "assistant", "content": None},
                                                        "finish_reason": None, "tools": {}})
            delta = c.get("delta") or {}
            msg = ch["message"]
            for field in ("content", "refusal"):
                if delta.get(field):
                    msg[field] = (msg.get(field) or "") + delta[field]
            for tc in delta.get("tool_calls") or ():
                slot = ch["tools"].setdefault(tc.get("index", 0), {"id": None, "type": "function",
                                                                   "function": {"name": "", "arguments": ""}})
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if c.get("finish_reason"):
                ch["finish_reason"] = c["finish_reason"]
    if not choices or any(ch["finish_reason"] is None for ch in choices.values()):
        return None  # an unfinished stream is not an answer to keep
    first = parsed[0]
    out_choices = []
    for i in sorted(choices):
        ch = choices[i]
        if ch["tools"]:
            ch["message"]["tool_calls"] = [ch["tools"][k] for k in sorted(ch["tools"])]
        out_choices.append({"index": i, "message": ch["message"], "logprobs": None,
                            "finish_reason": ch["finish_reason"]})
    body = {"id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
            "model": first.get("model"), "system_fingerprint": first.get("system_fingerprint"),
            "choices": out_choices}
    if usage:
        body["usage"] = usage
    return orjson.dumps(body)


def _event(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def replay(body: bytes, include_usage: bool) -> AsyncIterator[bytes]:
    obj = orjson.loads(body)
    base = {"id": obj.get("id"), "object": "chat.completion.chunk", "created": obj.get("created"),
            "model": obj.get("model"), "system_fingerprint": obj.get("system_fingerprint")}
    if include_usage:
        base["usage"] = None
    for c in obj.get("choices") or ():
        i, msg = c.get("index", 0), c.get("message") or {}
        yield _event({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]})
        if msg.get("content"):
            yield _event({**base, "choices": [{"index": i, "delta": {"content": msg["content"]},
                                               "finish_reason": None}]})
        if msg.get("refusal"):
            yield _event({**base, "choices": [{"index": i, "delta": {"refusal": msg["refusal"]},
                                               "finish_reason": None}]})
        calls = [{"index": k, **tc} for k, tc in enumerate(msg.get("tool_calls") or ())]
        if calls:
            yield _event({**base, "choices": [{"index": i, "delta": {"tool_calls": calls}, "finish_reason": None}]})
        yield _event({**base, "choices": [{"index": i, "delta": {}, "finish_reason": c.get("finish_reason")}]})
    if include_usage and obj.get("usage"):
        yield _event({**base, "choices": [], "usage": obj["usage"]})
    yield b"data: [DONE]\n\n"
