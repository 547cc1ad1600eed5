import asyncio

import orjson

from hedgeway.config import from_dict
from hedgeway.errors import UpstreamError
from hedgeway.providers.simulated import SimulatedProvider
from hedgeway.types import ChatRequest


def provider(**settings):
    cfg = from_dict({"auth": {"disabled": True}, "models": [{"name": "s", "deployments": [{
        "provider": "simulated", "model": "sim", "price": {"input": 1, "output": 1},
        "settings": {"ttft_ms": 0, "tokens_per_second": 100000, **settings}}]}]})
    return SimulatedProvider(cfg.models["s"][0])


def ask(p, text, **extra):
    req = ChatRequest(model="s", body={"model": "s", "messages": [{"role": "user", "content": text}], **extra})
    reply = asyncio.run(p.chat(req))
    return orjson.loads(reply.body), reply


def test_same_request_same_answer_different_prompt_different_answer():
    p = provider()
    a1, r1 = ask(p, "What is a cache?")
    a2, _ = ask(p, "What is a cache?")
    b, _ = ask(p, "Explain HNSW indexes")
    assert a1["choices"][0]["message"]["content"] == a2["choices"][0]["message"]["content"]
    assert a1["choices"][0]["message"]["content"] != b["choices"][0]["message"]["content"]
    assert a1["model"] == "simulated/sim" and r1.headers["x-hedgeway-simulated"] == "true"


def test_usage_is_realistic_and_respects_max_tokens():
    p = provider()
    body, reply = ask(p, "x" * 400, max_tokens=5)
    assert reply.usage.prompt_tokens == 100 + 4
    assert reply.usage.completion_tokens == 5 == len(body["choices"][0]["message"]["content"].split())
    assert body["choices"][0]["finish_reason"] == "length"


def test_stream_matches_non_stream_text_and_reports_usage():
    p = provider()
    body, reply = ask(p, "stream me")
    req = ChatRequest(model="s", body={"model": "s", "messages": [{"role": "user", "content": "stream me"}]}, stream=True)

    async def collect():
        s = await p.stream(req)
        return b"".join([c async for c in s.chunks()])

    raw = asyncio.run(collect())
    events = [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == body["choices"][0]["message"]["content"]
    assert events[-1]["usage"]["completion_tokens"] == reply.usage.completion_tokens
    assert raw.endswith(b"data: [DONE]\n\n")


def test_failure_rate_one_always_fails():
    p = provider(failure_rate=1.0)
    try:
        ask(p, "x")
    except UpstreamError as exc:
        assert exc.upstream_status == 503
    else:
        raise AssertionError("expected a simulated failure")
