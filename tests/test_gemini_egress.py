"""End to end: the official `openai` SDK → a real Hedgeway server → the Gemini provider → a fake Gemini API
on loopback (tests/fake_gemini.py). Plus the translator and config seams."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import orjson
import pytest

from conftest import MASTER, UPSTREAM_KEY, records
from fake_gemini import FakeGemini
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamRateLimited, UpstreamRejected
from hedgeway.http.background import BackgroundGateway
from hedgeway.providers.gemini import translate
from hedgeway.providers.gemini_stream import StreamTranslator, gemini_failure
from hedgeway.sse import UsageTap

FLASH = "gemini/gemini/gemini-2.5-flash"  # deployment id of the main model


@pytest.fixture(scope="module")
def fake():
    server = FakeGemini().start()
    yield server
    server.stop()


def config(base: str, ledger_url: str) -> dict:
    dep = lambda model, **kw: {"provider": "gemini", "model": model, "api_base": base,  # noqa: E731
                               "api_key": UPSTREAM_KEY, **kw}
    return {
        "auth": {"master_key": MASTER},
        "ledger": {"url": ledger_url, "flush_interval": 0.05},
        "routing": {"num_retries": 0, "retry_backoff": 0.01,
                    "fallbacks": {m: ["gemini"] for m in ("unavailable", "bad", "badkey", "cut-first")}},
        "models": [
            {"name": "gemini", "deployments": [dep("gemini-2.5-flash")]},  # priced from the catalogue
            {"name": "safe", "deployments": [dep("gemini-2.5-flash", settings={
                "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]})]},
            {"name": "unavailable", "deployments": [dep("unavailable-503")]},
            {"name": "quota", "deployments": [dep("quota-429")]},
            {"name": "bad", "deployments": [dep("bad-400")]},
            {"name": "badkey", "deployments": [dep("badkey-400")]},
            {"name": "safety", "deployments": [dep("safety-blocked")]},
            {"name": "blocked", "deployments": [dep("prompt-blocked")]},
            {"name": "cut-first", "deployments": [dep("cut-first")]},
            {"name": "cut", "deployments": [dep("cut-stream")]},
            {"name": "error-mid", "deployments": [dep("error-mid-stream")]},
            {"name": "embed", "deployments": [dep("text-embedding-004")]},
        ],
    }


@pytest.fixture()
def client(fake, ledger_url):
    with BackgroundGateway(from_dict(config(fake.base_url, ledger_url))) as gw:
        yield openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "additionalProperties": False,
                                                           "properties": {"city": {"type": "string"}}}}}


def user(text):
    return [{"role": "user", "content": text}]


# --- requests and complete answers ---
def test_text_chat_maps_roles_system_and_generation_config(client, fake, ledger_url):
    raw = client.chat.completions.with_raw_response.create(
        model="gemini", messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Bonjour"},
            {"role": "user", "content": [{"type": "text", "text": "ça va?"}]},
            {"role": "assistant", "content": "Oui."},
            {"role": "user", "content": "Bien"}],
        stop="END", temperature=0.3, top_p=0.9, max_tokens=64, seed=7, user="u-1")
    done = raw.parse()
    sent, headers, url = fake.requests[-1], fake.headers[-1], fake.urls[-1]
    assert url == "/v1beta/models/gemini-2.5-flash:generateContent"  # no key in the URL
    assert headers["x-goog-api-key"] == UPSTREAM_KEY and "Authorization" not in headers
    assert sent["systemInstruction"] == {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "Bonjour"}, {"text": "ça va?"}]},
                                {"role": "model", "parts": [{"text": "Oui."}]},
                                {"role": "user", "parts": [{"text": "Bien"}]}]
    assert sent["generationConfig"] == {"temperature": 0.3, "topP": 0.9, "seed": 7, "maxOutputTokens": 64,
                                        "stopSequences": ["END"]}
    assert done.object == "chat.completion" and done.id == "chatcmpl-resp-fake01"
    assert done.choices[0].message.content == "echo: Bien" and done.choices[0].finish_reason == "stop"
    # thinking tokens are billed as output; cached content is part of the prompt
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (12, 8, 20)
    assert done.usage.prompt_tokens_details.cached_tokens == 4
    assert done.usage.completion_tokens_details.reasoning_tokens == 3
    assert raw.headers["x-hedgeway-deployment"] == FLASH
    [rec] = records(ledger_url, 1)
    assert rec.provider == "gemini" and (rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens) == (12, 8, 4)
    assert rec.cost == Decimal("0.0000227")  # (8 × 0.30 + 4 × 0.075 + 8 × 2.50) / 1e6, catalogue card


def test_image_parts_json_mode_n_and_safety_settings(client, fake):
    done = client.chat.completions.create(model="safe", n=2, response_format={"type": "json_schema", "json_schema": {
        "name": "a", "schema": {"type": "object", "additionalProperties": False, "properties": {"x": {"type": "string"}}}}},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?size=big"}}]}])
    sent = fake.requests[-1]
    assert sent["contents"][0]["parts"] == [
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg?size=big", "mimeType": "image/jpeg"}}]
    assert sent["generationConfig"] == {"candidateCount": 2, "responseMimeType": "application/json",
                                        "responseSchema": {"type": "object", "properties": {"x": {"type": "string"}}}}
    assert sent["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    assert [c.index for c in done.choices] == [0, 1]


def test_tools_tool_choice_and_tool_result_round_trip(client, fake):
    done = client.chat.completions.create(
        model="gemini", messages=user("Weather in Paris?"), tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    sent = fake.requests[-1]
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]  # additionalProperties dropped
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert call.id == "call_0_get_weather" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "n": 0}

    follow = client.chat.completions.create(model="gemini", tools=[WEATHER], tool_choice="auto", messages=[
        *user("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}])
    sent = fake.requests[-1]
    assert sent["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris", "n": 0}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"result": "18C and sunny"}}}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert follow.choices[0].message.content == 'Result: {"result":"18C and sunny"}'
    assert follow.choices[0].finish_reason == "stop" and follow.choices[0].message.tool_calls is None


def test_safety_blocked_answer_and_blocked_prompt_are_content_filter(client, ledger_url):
    for model in ("safety", "blocked"):
        done = client.chat.completions.create(model=model, messages=user("something nasty"))
        assert done.choices[0].finish_reason == "content_filter"
        assert not done.choices[0].message.content
        chunks = list(client.chat.completions.create(model=model, messages=user("x"), stream=True))
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    recs = records(ledger_url, 4)
    assert [r.status for r in recs] == [200] * 4
    assert [r.prompt_tokens for r in recs if r.deployment.endswith("prompt-blocked")] == [8, 8]


def test_fields_gemini_cannot_honour_are_400_before_any_upstream_call(client, fake):
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gemini", messages=user("x"), logprobs=True)
    assert "logprobs" in err.value.message and len(fake.requests) == before


# --- streaming ---
def kinds(chunks):
    def kind(c):
        if not c.choices:
            return "usage"
        delta, tc = c.choices[0].delta, (c.choices[0].delta.tool_calls or [None])[0]
        if tc:
            return f"tool{tc.index}"
        return "role" if delta.role else "text" if delta.content else f"finish:{c.choices[0].finish_reason}"
    return [kind(c) for c in chunks]


def test_stream_chunk_order_and_tool_call_reassembly(client, fake, ledger_url):
    second = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    chunks = list(client.chat.completions.create(model="gemini", messages=user("Weather and time?"),
                                                 tools=[WEATHER, second], stream=True,
                                                 stream_options={"include_usage": True}))
    assert fake.urls[-1] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert fake.requests[-1]["tools"][0]["functionDeclarations"][1] == {"name": "get_time"}
    assert kinds(chunks) == ["role", "text", "text", "text", "tool0", "tool1", "finish:tool_calls", "usage"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Let me check."
    calls = {tc.index: tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []}
    assert (calls[0].id, calls[0].function.name) == ("call_0_get_weather", "get_weather")
    assert (calls[1].id, calls[1].function.name) == ("call_1_get_time", "get_time")
    assert json.loads(calls[1].function.arguments) == {"city": "Paris", "n": 1}
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 8)  # the LAST usageMetadata
    assert all(c.id == "chatcmpl-resp-fake01" and c.object == "chat.completion.chunk" for c in chunks)
    [rec] = records(ledger_url, 1)
    assert rec.stream and rec.status == 200 and rec.error_type is None
    assert (rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens) == (12, 8, 4)
    assert rec.cost == Decimal("0.0000227")


def test_stream_text_without_usage_option_hides_usage(client):
    chunks = list(client.chat.completions.create(model="gemini", messages=user("one two three"), stream=True))
    assert kinds(chunks) == ["role", "text", "text", "text", "text", "finish:stop"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: one two three"


def test_stream_cut_before_the_first_event_falls_back(client, fake, ledger_url):
    raw = client.chat.completions.with_raw_response.create(model="cut-first", messages=user("hi"), stream=True)
    assert raw.headers["x-hedgeway-deployment"] == FLASH
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == "echo: hi"
    [rec] = records(ledger_url, 1)
    assert rec.status == 200 and rec.attempts == 2 and rec.error_type is None


@pytest.mark.parametrize("model, expect", [("cut", "echo: "), ("error-mid", "echo: ")])
def test_stream_broken_mid_way_reports_in_band_and_is_ledgered(client, ledger_url, model, expect):
    got = []
    with pytest.raises(openai.APIError) as err:
        for c in client.chat.completions.create(model=model, messages=user("hi there"), stream=True):
            got.append(c.choices[0].delta.content or "" if c.choices else "")
    assert "".join(got) == expect and "upstream stream interrupted" in err.value.message
    [rec] = records(ledger_url, 1)
    assert rec.status == 200 and rec.error_type == "UpstreamErrorMidStream" and rec.stream


# --- failures ---
def test_503_falls_back_to_a_second_deployment(client, fake, ledger_url):
    before = fake.calls["unavailable-503"]
    raw = client.chat.completions.with_raw_response.create(model="unavailable", messages=user("x"))
    assert raw.headers["x-hedgeway-deployment"] == FLASH and raw.parse().choices[0].message.content == "echo: x"
    assert fake.calls["unavailable-503"] - before == 1
    [rec] = records(ledger_url, 1)
    assert rec.attempts == 2 and rec.deployment == FLASH and "unavailable-503" in rec.route


def test_400_is_not_retried_nor_fallen_back(client, fake, ledger_url):
    before, flash = fake.calls["bad-400"], fake.calls["gemini-2.5-flash"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="bad", messages=user("x"))
    assert "INVALID_ARGUMENT: Request contains an invalid argument." in err.value.message
    assert fake.calls["bad-400"] - before == 1 and fake.calls["gemini-2.5-flash"] == flash
    [rec] = records(ledger_url, 1)
    assert rec.status == 400 and rec.error_type == "UpstreamRejected"


def test_invalid_key_400_is_a_credentials_failure_that_falls_back(client, fake):
    raw = client.chat.completions.with_raw_response.create(model="badkey", messages=user("x"))
    assert raw.headers["x-hedgeway-deployment"] == FLASH


def test_429_is_a_rate_limit_for_the_client(client):
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="quota", messages=user("x"))
    assert "RESOURCE_EXHAUSTED" in err.value.message


# --- embeddings ---
def test_embeddings_through_the_gateway(client, fake, ledger_url):
    out = client.embeddings.create(model="embed", input=["hello world", "bye"], dimensions=3)
    sent = fake.requests[-1]
    assert fake.urls[-1] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent == {"requests": [
        {"model": "models/text-embedding-004", "outputDimensionality": 3, "content": {"parts": [{"text": "hello world"}]}},
        {"model": "models/text-embedding-004", "outputDimensionality": 3, "content": {"parts": [{"text": "bye"}]}}]}
    # the SDK asks for base64 (float32), as from OpenAI itself
    want = ([0.1, 0.11, 0.12], [0.2, 0.21, 0.22])
    assert [d.embedding for d in out.data] == [pytest.approx(v, rel=1e-6) for v in want]
    assert out.usage.prompt_tokens == 2 + 1  # estimated: ~4 characters per token
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="embed", input=[[1, 2, 3]])
    assert "token arrays" in err.value.message
    recs = records(ledger_url, 2)
    assert [(r.endpoint, r.status) for r in recs] == [("embeddings", 200), ("embeddings", 400)]


# --- seams without a socket ---
def test_translator_handles_any_split_crlf_and_prompt_block():
    events = [{"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking", "thought": True},
                                                                       {"text": "héllo"}]}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 5}, "responseId": "r1", "modelVersion": "m"},
              {"candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "MAX_TOKENS",
                               "index": 0}], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 9,
                                                               "cachedContentTokenCount": 2}}]
    wire = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    tr = StreamTranslator("d", "m", str)
    out = b"".join(tr.feed(wire[i:i + 1]) for i in range(len(wire))) + tr.finish()
    tap = UsageTap(keep_usage=True)
    assert tap.feed(out) + tap.flush() == out and tap.done
    assert (tap.usage.prompt_tokens, tap.usage.cached_tokens, tap.usage.completion_tokens) == (5, 2, 9)
    chunks = [orjson.loads(e[6:]) for e in out.split(b"\n\n") if e and e != b"data: [DONE]"]
    assert [c["choices"][0]["delta"] for c in chunks[:3]] == [{"role": "assistant", "content": ""},
                                                              {"content": "héllo"}, {"content": "!"}]
    assert chunks[3]["choices"][0]["finish_reason"] == "length"

    blocked = StreamTranslator("d", "m", str)
    blocked.feed(b'data: {"promptFeedback": {"blockReason": "OTHER"}}\n\n')
    assert b'"finish_reason":"content_filter"' in blocked.finish()
    with pytest.raises(UpstreamError, match="finishReason"):
        StreamTranslator("d", "m", str).finish()


def test_error_envelope_mapping_and_redaction():
    env = lambda code, status, msg, details=(): {"error": {"code": code, "message": msg, "status": status,  # noqa: E731
                                                           "details": list(details)}}
    limited = gemini_failure(429, env(429, "RESOURCE_EXHAUSTED", "quota", [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]), "d", str)
    assert isinstance(limited, UpstreamRateLimited) and limited.retry_after == 17.0
    for status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
        assert isinstance(gemini_failure(400, env(400, status, "no"), "d", str), UpstreamRejected)
    denied = gemini_failure(403, env(403, "PERMISSION_DENIED", f"key {UPSTREAM_KEY} denied"), "d", str)
    assert denied.fallback_eligible and "credentials" in denied.message and UPSTREAM_KEY not in denied.message
    for code in (500, 503, 504):
        e = gemini_failure(code, env(code, "UNAVAILABLE", "down"), "d", str)
        assert type(e) is UpstreamError and e.fallback_eligible
    tr = StreamTranslator("d", "m", str)
    tr.feed(b'data: {"error": {"message": "slow", "status": "RESOURCE_EXHAUSTED"}}\n\n')
    assert isinstance(tr.error, UpstreamRateLimited)


def test_translate_rejects_unknown_tool_call_ids_and_keeps_property_names():
    with pytest.raises(InvalidRequest, match="tool_call_id"):
        translate({"messages": [*user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}]}, {})
    params = {"type": "object", "properties": {"additionalProperties": {"type": "string", "$schema": "x"}}}
    out = translate({"messages": user("x"), "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}]}, {})
    assert out["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "object", "properties": {"additionalProperties": {"type": "string"}}}
    msgs = [*user("x"), {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": '{"temp": 18}'}, {"role": "tool", "tool_call_id": "c", "content": "[1]"}]
    parts = translate({"messages": msgs}, {})["contents"][2]["parts"]  # two results, one user turn
    assert [p["functionResponse"]["response"] for p in parts] == [{"temp": 18}, {"result": [1]}]


def test_settings_are_validated_with_paths_and_litellm_prefix_maps_here():
    cfg = lambda **dep: {"auth": {"master_key": MASTER}, "models": [{"name": "g", "deployments": [  # noqa: E731
        {"provider": "gemini", "model": "gemini-2.5-pro", **dep}]}]}
    with pytest.raises(ConfigError) as err:
        from_dict(cfg(settings={"safety": []}))
    assert err.value.path == "models[0].deployments[0].settings.safety"
    with pytest.raises(ConfigError) as err:
        from_dict(cfg(settings={"api_version": "v2"}))
    assert err.value.path == "models[0].deployments[0].settings.api_version"
    [dep] = from_dict(cfg(settings={"api_version": "v1"})).models["g"]
    assert dep.api_base == "https://generativelanguage.googleapis.com" and dep.price.output == Decimal("10.00")
    lite = from_dict({"model_list": [{"model_name": "g", "litellm_params": {
        "model": "gemini/gemini-2.5-flash", "api_key": "k"}}], "general_settings": {"master_key": MASTER}})
    [dep] = lite.models["g"]
    assert (dep.provider, dep.model, dep.api_base) == ("gemini", "gemini-2.5-flash",
                                                       "https://generativelanguage.googleapis.com")
