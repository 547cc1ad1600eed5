"""Raw responses captured from a running gateway, validated against the providers' own schemas
(tests/wire_schemas.py): OpenAI's OpenAPI document for every chat completion, every stream chunk,
embeddings, the model list and error envelopes; the `anthropic` SDK's models, strictly, for /v1/messages.

Sources covered: the OpenAI-format fake, the simulated provider, the Anthropic and Gemini egress fakes,
exact cache hits (plain and replayed as streams), upstream rejections and our own refusals. Each item of the
wire-format list is asserted on its own as well: refusal present, no null system_fingerprint, Anthropic cache
counts in prompt_tokens_details, `usage: null` on non-final chunks, fresh ids, n=2 streams, base64
embeddings, GET /v1/models/{id}, the Anthropic 413 envelope and message_start usage, stop sequences, the
upstream's error code passed through, and Retry-After on every 429.
"""

from __future__ import annotations

import base64
import http.client
import struct
from urllib.parse import quote, urlsplit

import openai
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent

from conftest import MASTER, UPSTREAM_KEY
from fake_anthropic import FakeAnthropic
from fake_gemini import FakeGemini
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from wire_schemas import anthropic_errors, openai_errors

SIM = {"ttft_ms": 1, "tokens_per_second": 100000, "label": "sim"}
CHAT_MODELS = ("oa", "sim", "claude", "claude-cached", "gem", "cached-sim")
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def fakes():
    a, g = FakeAnthropic().start(), FakeGemini().start()
    yield a, g
    a.stop()
    g.stop()


@pytest.fixture(scope="module")
def gw(upstream, fakes, tmp_path_factory):
    anth, gem = fakes
    oa = lambda model: {"provider": "openai", "model": model, "api_base": upstream.base_url,  # noqa: E731
                        "api_key": UPSTREAM_KEY}
    cfg = {
        "server": {"max_body_bytes": MAX_BODY},
        "auth": {"master_key": MASTER},
        "ledger": {"url": f"sqlite:///{tmp_path_factory.mktemp('wire')}/ledger.db", "flush_interval": 0.05},
        "routing": {"num_retries": 0, "retry_backoff": 0.01},
        "cache": {"enabled": False, "embedder": "none", "models": {"cached-sim": {"enabled": True}}},
        "limits": {"models": {"rpm-1": {"rpm": 1}}},
        "models": [
            {"name": "oa", "deployments": [oa("ok-mini")]},
            {"name": "oa-long", "deployments": [oa("context-400")]},
            {"name": "oa-429", "deployments": [oa("fail-429")]},
            {"name": "sim", "deployments": [{"provider": "simulated", "model": "s1", "settings": SIM}]},
            {"name": "cached-sim", "deployments": [{"provider": "simulated", "model": "s2", "settings": SIM}]},
            {"name": "rpm-1", "deployments": [{"provider": "simulated", "model": "s3", "settings": SIM}]},
            {"name": "claude", "deployments": [{"provider": "anthropic", "model": "claude-x", "api_base": anth.base_url,
                                                "api_key": UPSTREAM_KEY, "price": {"input": "1", "output": "1"}}]},
            {"name": "claude-cached", "deployments": [{"provider": "anthropic", "model": "claude-cached",
                                                       "api_base": anth.base_url, "api_key": UPSTREAM_KEY,
                                                       "price": {"input": "1", "output": "1"}}]},
            {"name": "gem", "deployments": [{"provider": "gemini", "model": "gemini-x", "api_base": gem.base_url,
                                             "api_key": UPSTREAM_KEY, "price": {"input": "1", "output": "1"}}]},
        ],
    }
    with BackgroundGateway(from_dict(cfg)) as g:
        yield g


def call(gw, method: str, path: str, body=None, headers=None) -> tuple[int, dict, bytes]:
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    conn.request(method, path, body=data, headers={"authorization": f"Bearer {MASTER}",
                                                   "content-type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def sse(raw: bytes) -> list[tuple[str | None, dict | str]]:
    """(event name, parsed data) per SSE event; `[DONE]` as the string."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if data is not None:
            out.append((name, "[DONE]" if data == b"[DONE]" else orjson.loads(data)))
    return out


def chat(gw, model: str, **kw) -> tuple[int, dict, bytes]:
    return call(gw, "POST", "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "Hello there, how are you?"}], **kw})


def valid_completion(raw: bytes) -> dict:
    obj = orjson.loads(raw)
    assert openai_errors("CreateChatCompletionResponse", obj) == []
    return obj


def valid_chunks(raw: bytes) -> list[dict]:
    events = sse(raw)
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    for chunk in chunks:
        assert openai_errors("CreateChatCompletionStreamResponse", chunk) == [], chunk
    return chunks


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_completions_conform_and_carry_refusal(gw, model):
    status, _, raw = chat(gw, model)
    assert status == 200, raw
    obj = valid_completion(raw)
    for choice in obj["choices"]:
        assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    assert "system_fingerprint" not in obj or isinstance(obj["system_fingerprint"], str)


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("include_usage", [True, False])
def test_every_stream_chunk_conforms(gw, model, include_usage):
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    status, headers, raw = chat(gw, model, stream=True, **kw)
    assert status == 200 and headers["content-type"] == "text/event-stream", raw
    chunks = valid_chunks(raw)
    assert len({c["id"] for c in chunks}) == 1  # one id per stream
    if include_usage:  # OpenAI: "a null value except for the last chunk"
        assert all("usage" in c and c["usage"] is None for c in chunks[:-1]), [c.get("usage", "absent") for c in chunks]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    else:
        assert all(c.get("usage") is None for c in chunks)
    assert all(isinstance(c.get("system_fingerprint", ""), str) for c in chunks)


def test_cache_hits_and_replays_conform_with_fresh_ids(gw):
    body = {"messages": [{"role": "user", "content": "a question for the cache"}]}
    first = chat(gw, "cached-sim", **body)
    hits = [chat(gw, "cached-sim", **body) for _ in range(3)]
    assert {h[1]["x-hedgeway-cache"] for h in hits} == {"hit-exact"}
    objs = [valid_completion(r[2]) for r in [first, *hits]]
    assert len({o["id"] for o in objs}) == 4  # a hit is a new response, not the original's id
    assert all(o["choices"][0]["message"]["refusal"] is None for o in objs)
    status, headers, raw = chat(gw, "cached-sim", stream=True, stream_options={"include_usage": True}, **body)
    assert headers["x-hedgeway-cache"] == "hit-exact"
    chunks = valid_chunks(raw)
    assert chunks[0]["id"] not in {o["id"] for o in objs}
    assert all("system_fingerprint" not in c or isinstance(c["system_fingerprint"], str) for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        objs[0]["choices"][0]["message"]["content"]


def test_simulated_ids_are_unique(gw):
    ids = {orjson.loads(chat(gw, "sim", messages=[{"role": "user", "content": f"q{i}"}])[2])["id"]
           for i in range(100)}
    assert len(ids) == 100


def test_anthropic_cache_counts_are_in_prompt_tokens_details(gw):
    obj = valid_completion(chat(gw, "claude-cached")[2])
    usage = obj["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 1000, "cache_write_tokens": 200}
    assert usage["prompt_tokens"] == 1250 and "cache_read_input_tokens" not in usage
    chunks = valid_chunks(chat(gw, "claude-cached", stream=True, stream_options={"include_usage": True})[2])
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 1000, "cache_write_tokens": 200}


def test_simulated_n2_streams_both_choices(gw):
    chunks = valid_chunks(chat(gw, "sim", n=2, stream=True)[2])
    finished = {c["choices"][0]["index"]: c["choices"][0]["finish_reason"] for c in chunks
                if c["choices"] and c["choices"][0]["finish_reason"]}
    assert set(finished) == {0, 1}
    plain = valid_completion(chat(gw, "sim", n=2)[2])
    texts = ["".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                     if c["choices"] and c["choices"][0]["index"] == i) for i in (0, 1)]
    assert texts == [ch["message"]["content"] for ch in plain["choices"]]


@pytest.mark.parametrize("model", ["sim", "gem"])
def test_base64_embeddings(gw, model):
    status, _, raw = call(gw, "POST", "/v1/embeddings", {"model": model, "input": ["one", "two"]})
    floats = orjson.loads(raw)
    assert status == 200 and openai_errors("CreateEmbeddingResponse", floats) == []
    status, _, raw = call(gw, "POST", "/v1/embeddings",
                          {"model": model, "input": ["one", "two"], "encoding_format": "base64"})
    encoded = orjson.loads(raw)
    assert status == 200
    for f, e in zip(floats["data"], encoded["data"]):
        packed = base64.b64decode(e["embedding"])
        values = struct.unpack(f"<{len(packed) // 4}f", packed)
        assert values == pytest.approx(f["embedding"], rel=1e-6, abs=1e-6)
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)  # asks for base64 by default
    got = sdk.embeddings.create(model=model, input=["one", "two"]).data
    for d, f in zip(got, floats["data"]):
        assert d.embedding == pytest.approx(f["embedding"], rel=1e-6, abs=1e-6)


def test_openai_embeddings_conform(gw):
    status, _, raw = call(gw, "POST", "/v1/embeddings", {"model": "oa", "input": "x"})
    assert status == 200 and openai_errors("CreateEmbeddingResponse", orjson.loads(raw)) == []


def test_models_list_and_retrieve(gw):
    status, _, raw = call(gw, "GET", "/v1/models")
    assert status == 200 and openai_errors("ListModelsResponse", orjson.loads(raw)) == []
    status, _, raw = call(gw, "GET", "/v1/models/sim")
    assert status == 200 and openai_errors("Model", orjson.loads(raw)) == [] and orjson.loads(raw)["id"] == "sim"
    status, _, raw = call(gw, "GET", "/v1/models/" + quote("no-such-model"))
    assert status == 404 and openai_errors("ErrorResponse", orjson.loads(raw)) == []
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
    assert sdk.models.retrieve("claude").id == "claude"


@pytest.mark.parametrize("case", ["bad-json", "no-key", "unknown-model", "upstream-400", "upstream-429", "rpm"])
def test_error_envelopes_conform(gw, case):
    requests = {
        "bad-json": lambda: call(gw, "POST", "/v1/chat/completions", b"{nope"),
        "no-key": lambda: call(gw, "POST", "/v1/chat/completions", {}, {"authorization": "Bearer wrong"}),
        "unknown-model": lambda: chat(gw, "nope"),
        "upstream-400": lambda: chat(gw, "oa-long"),
        "upstream-429": lambda: chat(gw, "oa-429"),
        "rpm": lambda: [chat(gw, "rpm-1") for _ in range(2)][-1],
    }
    status, headers, raw = requests[case]()
    assert status >= 400
    assert openai_errors("ErrorResponse", orjson.loads(raw)) == []
    if status == 429:
        assert int(headers["retry-after"]) >= 1


def test_upstream_context_length_error_passes_through(gw):
    status, _, raw = chat(gw, "oa-long")
    err = orjson.loads(raw)["error"]
    assert status == 400
    assert (err["code"], err["param"], err["type"]) == ("context_length_exceeded", "messages", "invalid_request_error")
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="oa-long", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "context_length_exceeded"


def test_budget_refusal_carries_retry_after(upstream, tmp_path):
    cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": f"sqlite:///{tmp_path}/l.db"},
           "limits": {"budgets": [{"limit": "0.000000001", "period": "total"}]},
           "models": [{"name": "sim", "deployments": [{"provider": "simulated", "model": "s", "settings": SIM,
                                                       "price": {"input": "10", "output": "10"}}]}]}
    with BackgroundGateway(from_dict(cfg)) as g:
        status, headers, raw = chat(g, "sim")
    assert status == 429 and orjson.loads(raw)["error"]["code"] == "budget_exceeded"
    assert int(headers["retry-after"]) >= 1


# --- /v1/messages, against the anthropic SDK's models ---
def messages(gw, model: str, **kw) -> tuple[int, dict, bytes]:
    return call(gw, "POST", "/v1/messages", {"model": model, "max_tokens": 64,
                                              "messages": [{"role": "user", "content": "Hello there, friend"}], **kw})


@pytest.mark.parametrize("model", ["oa", "sim", "claude", "claude-cached", "gem", "cached-sim"])
def test_messages_conform_strictly(gw, model):
    status, _, raw = messages(gw, model)
    assert status == 200, raw
    assert anthropic_errors(Message, orjson.loads(raw)) == []
    status, _, raw = messages(gw, model, stream=True)
    events = sse(raw)
    for name, data in events:
        assert anthropic_errors(RawMessageStreamEvent, data) == [], data
        assert name == data["type"]
    start = events[0][1]
    assert start["type"] == "message_start" and start["message"]["usage"]["input_tokens"] > 0


def test_messages_stop_sequence(gw):
    # the simulator's answers start with "[sim]": a "]" stop ends the answer right there
    for model in ("sim", "claude"):
        stop = "]" if model == "sim" else "there"
        status, _, raw = messages(gw, model, stop_sequences=[stop])
        msg = orjson.loads(raw)
        assert (msg["stop_reason"], msg["stop_sequence"]) == ("stop_sequence", stop), msg
        status, _, raw = messages(gw, model, stop_sequences=[stop], stream=True)
        delta = [d for _, d in sse(raw) if d["type"] == "message_delta"][0]
        assert (delta["delta"]["stop_reason"], delta["delta"]["stop_sequence"]) == ("stop_sequence", stop)


def test_messages_413_is_anthropic_envelope(gw):
    body = orjson.dumps({"model": "sim", "max_tokens": 8, "messages": [{"role": "user", "content": "x" * MAX_BODY}]})
    status, _, raw = call(gw, "POST", "/v1/messages", body)
    err = orjson.loads(raw)
    assert status == 413 and err["type"] == "error" and err["error"]["type"] == "request_too_large"
    status, _, raw = call(gw, "POST", "/v1/chat/completions", body)
    assert status == 413 and openai_errors("ErrorResponse", orjson.loads(raw)) == []


def test_messages_errors_conform(gw):
    for status_expected, req in ((404, lambda: messages(gw, "nope")), (429, lambda: messages(gw, "oa-429"))):
        status, headers, raw = req()
        assert status == status_expected
        err = orjson.loads(raw)
        assert err["type"] == "error" and set(err["error"]) == {"type", "message"}
        if status == 429:
            assert int(headers["retry-after"]) >= 1
