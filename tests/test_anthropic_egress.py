"""End to end: the official `openai` SDK → a real Hedgeway server → the Anthropic provider → a fake
Anthropic Messages API on loopback (tests/fake_anthropic.py). Plus the translator and config seams."""

from __future__ import annotations

import asyncio
import http.client
import json
from decimal import Decimal
from urllib.parse import urlsplit

import openai
import orjson
import pytest

from conftest import MASTER, UPSTREAM_KEY, records
from fake_anthropic import FakeAnthropic, ScriptedBody
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamRateLimited, UpstreamRejected
from hedgeway.http.background import BackgroundGateway
from hedgeway.providers.anthropic import AnthropicProvider, translate
from hedgeway.providers.anthropic_stream import StreamTranslator
from hedgeway.providers.base import upstream_failure
from hedgeway.sse import UsageTap
from hedgeway.types import Deployment

SONNET = "claude/anthropic/claude-sonnet-4-5"  # deployment id of the main model


@pytest.fixture(scope="module")
def fake():
    server = FakeAnthropic().start()
    yield server
    server.stop()


def config(base: str, ledger_url: str) -> dict:
    dep = lambda model, **kw: {"provider": "anthropic", "model": model, "api_base": base,  # noqa: E731
                               "api_key": UPSTREAM_KEY, **kw}

    fallback_to_claude = ("overloaded", "bad", "cut-first", "error-first")
    return {
        "auth": {"master_key": MASTER},
        "ledger": {"url": ledger_url, "flush_interval": 0.05},
        "routing": {"num_retries": 0, "retry_backoff": 0.01, "fallbacks": {m: ["claude"] for m in fallback_to_claude}},
        "models": [
            {"name": "claude", "deployments": [dep("claude-sonnet-4-5")]},  # priced from the catalogue
            {"name": "claude-small", "deployments": [dep("claude-small", settings={"max_tokens": 512},
                                                         price={"input": "1", "output": "5"})]},
            {"name": "cached", "deployments": [dep("claude-cached", price={
                "input": "3", "output": "15", "cached_input": "0.30", "cache_write": "3.75"})]},
            {"name": "overloaded", "deployments": [dep("overloaded-529")]},
            {"name": "limited", "deployments": [dep("rate-429")]},
            {"name": "bad", "deployments": [dep("bad-400")]},
            {"name": "auth", "deployments": [dep("auth-401")]},
            {"name": "cut-first", "deployments": [dep("cut-before-first-event")]},
            {"name": "error-first", "deployments": [dep("error-event-first")]},
            {"name": "cut-text", "deployments": [dep("cut-after-text")]},
            {"name": "error-mid", "deployments": [dep("error-event-mid-stream")]},
        ],
    }


@pytest.fixture()
def client(fake, ledger_url):
    with BackgroundGateway(from_dict(config(fake.base_url, ledger_url))) as gw:
        yield openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def user(text):
    return [{"role": "user", "content": text}]


# --- requests and complete answers ---
def test_text_chat_lifts_system_merges_turns_and_translates_the_answer(client, fake, ledger_url):
    raw = client.chat.completions.with_raw_response.create(
        model="claude", messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Bonjour"},
            {"role": "user", "content": [{"type": "text", "text": "ça va?"}]},
            {"role": "assistant", "content": "Oui."},
            {"role": "assistant", "content": "Et toi?"},
            {"role": "user", "content": "Bien"}],
        stop="END", temperature=0.3, top_p=0.9, user="u-42", seed=7)
    done = raw.parse()
    sent, headers = fake.requests[-1], fake.headers[-1]
    assert sent["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "Bonjour"}, {"type": "text", "text": "ça va?"}]
    assert len(sent["messages"][1]["content"]) == 2
    assert sent["model"] == "claude-sonnet-4-5" and sent["max_tokens"] == 4096
    assert sent["stop_sequences"] == ["END"] and sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["metadata"] == {"user_id": "u-42"} and "seed" not in sent and "stream" not in sent
    assert headers["x-api-key"] == UPSTREAM_KEY and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers  # the client's key never goes upstream

    assert done.object == "chat.completion" and done.id == "msg_fake01" and done.model == "claude-sonnet-4-5"
    assert done.choices[0].message.content == "echo: Bien" and done.choices[0].finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (11, 7, 18)
    assert raw.headers["x-hedgeway-deployment"] == SONNET
    [rec] = records(ledger_url, 1)
    assert rec.provider == "anthropic" and rec.prompt_tokens == 11
    assert rec.cost == Decimal("0.000138")  # (11 × 3 + 7 × 15) / 1e6, catalogue card for claude-sonnet-4-5


def test_max_tokens_default_comes_from_deployment_settings(client, fake):
    client.chat.completions.create(model="claude-small", messages=user("a"))
    assert fake.requests[-1]["max_tokens"] == 512


def test_translate_max_tokens_tool_choice_and_opening_user_turn():
    t = lambda **kw: translate({"messages": user("x"), **kw}, "m", 512)  # noqa: E731
    assert [t(**kw)["max_tokens"] for kw in ({}, {"max_completion_tokens": 100}, {"max_tokens": 200})] == [512, 100, 200]
    for ours, theirs in (("auto", "auto"), ("required", "any"), ("none", "none")):
        assert t(tools=[WEATHER], tool_choice=ours)["tool_choice"] == {"type": theirs}
    assert t(tools=[WEATHER], parallel_tool_calls=False)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    lone = translate({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "Hi"}]}, "m", 1)
    assert [m["role"] for m in lone["messages"]] == ["user", "assistant"]  # Anthropic wants a user turn first


def test_image_parts_become_base64_and_url_sources(client, fake):
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}]}])
    blocks = fake.requests[-1]["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": "iVBORw0KGgo="}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


def test_tools_tool_choice_and_tool_result_round_trip(client, fake):
    done = client.chat.completions.create(
        model="claude", messages=user("Weather in Paris?"), tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, parallel_tool_calls=False)
    sent = fake.requests[-1]
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert call.id == "toolu_01" and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "n": 0}

    follow = client.chat.completions.create(model="claude", tools=[WEATHER], messages=[
        *user("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}])
    turns = fake.requests[-1]["messages"]
    assert turns[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "n": 0}}]}
    assert turns[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C and sunny"}]}
    assert follow.choices[0].message.content == "Result: 18C and sunny"
    assert follow.choices[0].message.tool_calls is None


@pytest.mark.parametrize("extra", [{"n": 2}, {"logprobs": True}, {"response_format": {"type": "json_object"}}])
def test_fields_anthropic_cannot_honour_are_400_before_any_upstream_call(client, fake, extra):
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude", messages=user("x"), **extra)
    assert next(iter(extra)) in err.value.message and "claude-sonnet-4-5" in err.value.message
    assert len(fake.requests) == before


# --- streaming ---
def kinds(chunks):
    """A compact trace of what each chunk carries, in order."""
    def kind(c):
        if not c.choices:
            return "usage"
        delta, tc = c.choices[0].delta, (c.choices[0].delta.tool_calls or [None])[0]
        if tc:
            return f"tool{tc.index}:{'start' if tc.id else 'args'}"
        return "role" if delta.role else "text" if delta.content else f"finish:{c.choices[0].finish_reason}"
    return [kind(c) for c in chunks]


def test_stream_chunk_order_and_tool_call_reassembly(client, ledger_url):
    second = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    chunks = list(client.chat.completions.create(model="claude", messages=user("Weather and time?"),
                                                 tools=[WEATHER, second], stream=True,
                                                 stream_options={"include_usage": True}))
    assert kinds(chunks) == ["role", "text", "text", "text",
                             "tool0:start", "tool0:args", "tool0:args", "tool0:args",
                             "tool1:start", "tool1:args", "tool1:args", "tool1:args",
                             "finish:tool_calls", "usage"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Let me check."
    calls: dict[int, dict] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            slot = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
            slot["args"] += tc.function.arguments or ""
    assert calls[0]["id"] == "toolu_01" and calls[0]["name"] == "get_weather"
    assert calls[1]["id"] == "toolu_02" and calls[1]["name"] == "get_time"
    assert json.loads(calls[0]["args"]) == {"city": "Paris", "n": 0}
    assert json.loads(calls[1]["args"]) == {"city": "Paris", "n": 1}
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 7
    assert all(c.id == "msg_fake02" and c.object == "chat.completion.chunk" for c in chunks)
    [rec] = records(ledger_url, 1)
    assert rec.stream and rec.status == 200 and rec.error_type is None and rec.ttft_ms is not None
    assert (rec.prompt_tokens, rec.completion_tokens) == (11, 7)


def test_stream_wire_bytes_end_with_done_and_hide_usage_unless_asked(client, fake):
    u = urlsplit(str(client.base_url))
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=orjson.dumps(
        {"model": "claude", "messages": user("one two three"), "stream": True}),
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    payloads = [orjson.loads(e[len(b"data: "):]) for e in events[:-1]]
    assert all("usage" not in p for p in payloads)  # not asked for: the gateway drops the usage chunk
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads) == "echo: one two three"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.requests[-1]["stream"] is True


def test_cache_reads_and_writes_are_priced_at_their_own_rates(client, ledger_url):
    done = client.chat.completions.create(model="cached", messages=user("long prompt"))
    assert done.usage.prompt_tokens == 50 + 1000 + 200  # OpenAI counts cached input inside prompt_tokens
    assert done.usage.prompt_tokens_details.cached_tokens == 1000
    list(client.chat.completions.create(model="cached", messages=user("long prompt"), stream=True))
    recs = records(ledger_url, 2)
    # (50 × 3 + 1000 × 0.30 + 200 × 3.75 + 20 × 15) / 1e6, streamed or not
    assert [r.cost for r in recs] == [Decimal("0.0015"), Decimal("0.0015")]
    assert [(r.prompt_tokens, r.cached_tokens, r.stream) for r in recs] == [(1250, 1000, False), (1250, 1000, True)]


# --- failures ---
def test_overloaded_529_falls_back_to_the_next_deployment(client, fake, ledger_url):
    before = fake.calls["overloaded-529"]
    raw = client.chat.completions.with_raw_response.create(model="overloaded", messages=user("x"))
    assert raw.headers["x-hedgeway-deployment"] == SONNET
    assert raw.parse().choices[0].message.content == "echo: x"
    assert fake.calls["overloaded-529"] - before == 1
    [rec] = records(ledger_url, 1)
    assert rec.attempts == 2 and rec.deployment == SONNET and "overloaded-529" in rec.route


def test_400_is_not_retried_nor_fallen_back(client, fake, ledger_url):
    before, claude = fake.calls["bad-400"], fake.calls["claude-sonnet-4-5"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="bad", messages=user("x"))
    assert "Input should be a valid list" in err.value.message
    assert fake.calls["bad-400"] - before == 1 and fake.calls["claude-sonnet-4-5"] == claude
    [rec] = records(ledger_url, 1)
    assert rec.status == 400 and rec.error_type == "UpstreamRejected"


def test_upstream_429_is_a_rate_limit_for_the_client(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="limited", messages=user("x"))


def test_rejected_credentials_never_echo_the_key(client):
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="auth", messages=user("x"))
    assert err.value.status_code == 502 and "credentials were rejected" in err.value.message
    assert UPSTREAM_KEY not in err.value.message and UPSTREAM_KEY[:12] not in str(err.value.body)


@pytest.mark.parametrize("model", ["cut-first", "error-first"])
def test_stream_failing_before_the_first_event_falls_back(client, fake, ledger_url, model):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=user("hi there"), stream=True)
    assert raw.headers["x-hedgeway-deployment"] == SONNET
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "echo: hi there"
    [rec] = records(ledger_url, 1)
    assert rec.status == 200 and rec.error_type is None and rec.attempts == 2 and rec.prompt_tokens == 11


@pytest.mark.parametrize("model, expect_text", [("cut-text", "echo: "), ("error-mid", "echo: hi ")])
def test_stream_broken_after_text_reports_in_band(client, ledger_url, model, expect_text):
    got = []
    with pytest.raises(openai.APIError) as err:
        for c in client.chat.completions.create(model=model, messages=user("hi there you"), stream=True):
            got.append(c.choices[0].delta.content or "" if c.choices else "")
    assert "".join(got) == expect_text
    assert "upstream stream interrupted" in err.value.message
    [rec] = records(ledger_url, 1)
    assert rec.status == 200 and rec.error_type == "UpstreamErrorMidStream" and rec.stream


def test_embeddings_are_unsupported_and_say_which_model(client, ledger_url):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="claude", input="x")
    assert "embeddings" in err.value.message and "claude-sonnet-4-5" in err.value.message
    [rec] = records(ledger_url, 1)
    assert rec.status == 400 and rec.endpoint == "embeddings"


# --- seams without a socket ---
def test_translator_handles_any_split_and_crlf_and_old_style_usage():
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {
            "input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"}]
    wire = b"".join(b"event: " + e["type"].encode() + b"\r\ndata: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    tr = StreamTranslator("d", str)
    out = b"".join(tr.feed(wire[i:i + 1]) for i in range(len(wire)))  # one byte at a time
    assert tr.done and tr.error is None
    tap = UsageTap(keep_usage=True)
    relayed = tap.feed(out) + tap.flush()
    assert relayed == out and tap.done
    assert (tap.usage.prompt_tokens, tap.usage.cached_tokens, tap.usage.completion_tokens) == (8, 3, 9)
    chunks = [orjson.loads(e[6:]) for e in out.split(b"\n\n") if e and e != b"data: [DONE]"]
    assert chunks[1]["choices"][0]["delta"] == {"content": "héllo"}
    assert chunks[2]["choices"][0]["finish_reason"] == "length"


def test_relay_passes_text_before_a_mid_stream_error_but_not_before_a_first_one():
    ev = lambda e: b"data: " + orjson.dumps(e) + b"\n\n"  # noqa: E731
    start = ev({"type": "message_start", "message": {"id": "m", "model": "x", "usage": {}}})
    text = ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}})
    err = ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    provider = AnthropicProvider(Deployment(id="d", model_name="c", provider="anthropic", model="m",
                                            api_base="http://127.0.0.1:9"))

    async def collect(resp):
        got = []
        with pytest.raises(UpstreamError) as caught:
            async for piece in provider._relay(resp, StreamTranslator("d", str)):
                got.append(piece)
        return got, caught.value, resp.closed

    got, exc, closed = asyncio.run(collect(ScriptedBody(start, text + err)))
    assert len(got) == 2 and b'"hi"' in got[1] and exc.upstream_status == 529 and closed
    got, exc, closed = asyncio.run(collect(ScriptedBody(start + text + err)))  # nothing passed on yet: fall back
    assert got == [] and exc.fallback_eligible and closed


def test_status_and_error_event_mapping_is_shared_and_honours_retry_after():
    tr = StreamTranslator("d", str)
    tr.feed(b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}\n\n')
    assert isinstance(tr.error, UpstreamRateLimited) and "slow down" in tr.error.message
    assert upstream_failure(429, "x", "d", "2.5").retry_after == 2.5
    assert upstream_failure(429, "x", "d", "Wed, 21 Oct 2026 07:28:00 GMT").retry_after is None
    assert isinstance(upstream_failure(413, "too big", "d"), UpstreamRejected)
    overloaded = upstream_failure(529, "overloaded_error: Overloaded", "d")
    assert type(overloaded) is UpstreamError and overloaded.fallback_eligible
    assert "credentials" in upstream_failure(403, "key sk-ant-xyz", "d").message


def test_translate_rejects_malformed_tool_arguments_and_unknown_parts():
    bad_args = [*user("x"), {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]
    with pytest.raises(InvalidRequest, match="arguments"):
        translate({"messages": bad_args}, "m", 10)
    with pytest.raises(InvalidRequest, match="input_audio"):
        translate({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "m", 10)


def test_settings_are_validated_with_paths_and_litellm_prefix_maps_here():
    cfg = lambda **dep: {"auth": {"master_key": MASTER}, "models": [{"name": "c", "deployments": [  # noqa: E731
        {"provider": "anthropic", "model": "claude-haiku-4-5", **dep}]}]}

    with pytest.raises(ConfigError) as err:
        from_dict(cfg(settings={"max_token": 5}))
    assert err.value.path == "models[0].deployments[0].settings.max_token"
    with pytest.raises(ConfigError) as err:
        from_dict(cfg(settings={"max_tokens": 0}))
    assert err.value.path == "models[0].deployments[0].settings.max_tokens"
    [dep] = from_dict(cfg(settings={"anthropic_version": "2023-06-01"})).models["c"]
    assert dep.api_base == "https://api.anthropic.com" and dep.price.cache_write == Decimal("1.25")
    lite = from_dict({"model_list": [{"model_name": "c", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-5", "api_key": "k"}}], "general_settings": {"master_key": MASTER}})
    [dep] = lite.models["c"]
    assert (dep.provider, dep.model, dep.api_base) == ("anthropic", "claude-sonnet-4-5", "https://api.anthropic.com")
