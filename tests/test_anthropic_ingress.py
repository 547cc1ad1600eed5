"""End to end: the official `anthropic` SDK → Hedgeway's /v1/messages → a fake OpenAI-compatible upstream
(conftest's FakeOpenAI plus the scenarios of `fake_openai_scenarios`: tool calls, vLLM-style stop reasons),
and, once, an Anthropic deployment behind it (`fake_anthropic`)."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

import anthropic
import orjson
import pytest

from conftest import MASTER, gateway_config, records
from fake_openai_scenarios import ARGS, ScenarioOpenAI
from hedgeway.config import from_dict
from hedgeway.errors import InvalidRequest
from hedgeway.http.background import BackgroundGateway
from hedgeway.ingress.anthropic import to_openai
from hedgeway.ingress.anthropic_stream import StreamTranslator

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
RAW_EVENTS = {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
              "message_stop"}


@pytest.fixture(scope="module")
def fake():
    f = ScenarioOpenAI().start()
    yield f
    f.stop()


@pytest.fixture()
def gw(fake, ledger_url):
    cfg = gateway_config(fake.base_url, ledger_url)
    dep = dict(cfg["models"][0]["deployments"][0])
    cfg["models"] += [{"name": "agent", "deployments": [{**dep, "model": "tool-agent"}]},
                      {"name": "stopper", "deployments": [{**dep, "model": "vllm-stop"}]},
                      {"name": "trickle", "deployments": [{"provider": "simulated", "model": "sim-slow",
                                                           "settings": {"ttft_ms": 1, "tokens_per_second": 20,
                                                                        "max_output_tokens": 200}}]}]
    with BackgroundGateway(from_dict(cfg)) as g:
        yield g


def root(gw) -> str:
    return gw.base_url.removesuffix("/v1")


@pytest.fixture()
def ac(gw):
    return anthropic.Anthropic(base_url=root(gw), api_key=MASTER, max_retries=0, timeout=10)


def raw(gw, method: str, path: str, body: bytes = b"", key: str = MASTER):
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, path, body=body, headers={"x-api-key": key, "content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def sse_events(data: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE event, checking the name matches the data's `type`."""
    out = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        payload = json.loads(lines["data"])
        assert payload["type"] == lines["event"]
        out.append((lines["event"], payload))
    return out


def kind(err) -> str:
    """The Anthropic error type of a raised SDK error (read from the body: works with every SDK version)."""
    return err.value.body["error"]["type"]


# --- complete messages ---
def test_text_round_trip_and_what_the_upstream_received(ac, fake):
    resp = ac.messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=64, system="Be brief.", stop_sequences=["\n\nHuman:"],
        metadata={"user_id": "u-42"}, extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 5},  # older SDKs
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "Weather in Paris?"}])
    msg = resp.parse()
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.model == "gpt-4o-mini"  # the name the client asked for, not the upstream's id
    assert [(b.type, b.text) for b in msg.content] == [("text", "echo: Weather in Paris?")]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    # FakeOpenAI: 12 prompt tokens of which 4 cached, 5 completion tokens
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (8, 5, 4)
    assert resp.headers["request-id"] == resp.headers["x-hedgeway-request-id"]
    assert resp.headers["x-hedgeway-deployment"] and float(resp.headers["x-hedgeway-overhead-ms"]) >= 0
    sent = fake.requests[-1]
    assert sent["model"] == "ok-mini"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "Weather in Paris?"}]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["stop"], sent["user"]) == \
        (64, 0.2, 0.9, ["\n\nHuman:"], "u-42")
    assert "top_k" not in sent and "metadata" not in sent and "stream" not in sent


def test_system_blocks_and_images_reach_the_upstream_as_openai_parts(ac, fake):
    ac.messages.create(
        model="gpt-4o-mini", max_tokens=10,
        system=[{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}])
    sent = fake.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse.\nAnswer in French."}
    assert sent[1] == {"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}


def test_tool_use_round_trip(ac, fake):
    history = [{"role": "user", "content": "Weather in Paris, and the time?"}]
    first = ac.messages.create(model="agent", max_tokens=100, tools=[WEATHER, CLOCK], messages=history,
                               tool_choice={"type": "any", "disable_parallel_tool_use": False})
    sent = fake.requests[-1]
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "description":
                              "Weather for a city", "parameters": WEATHER["input_schema"]}},
                             {"type": "function", "function": {"name": "get_time",
                                                               "parameters": CLOCK["input_schema"]}}]
    assert sent["tool_choice"] == "required" and "parallel_tool_calls" not in sent
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use", "tool_use"]
    assert first.content[0].text == "Let me check."
    call = first.content[1]
    assert (call.id, call.name, call.input) == ("call_1", "get_weather", {"city": "Paris", "units": "metric"})

    history += [{"role": "assistant", "content": first.content},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C and sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "is_error": True,
                     "content": [{"type": "text", "text": "clock offline"}]},
                    {"type": "text", "text": "Thanks!"}]}]
    second = ac.messages.create(model="agent", max_tokens=100, tools=[WEATHER, CLOCK], messages=history,
                                tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True})
    sent = fake.requests[-1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    compact = [a.replace(" ", "") for a in ARGS]  # inputs re-serialised as compact JSON
    assert sent["messages"][1] == {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": compact[0]}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": compact[1]}}]}
    assert sent["messages"][2:] == [  # tool results first (OpenAI requires them right after the calls)
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: clock offline"},
        {"role": "user", "content": "Thanks!"}]
    # the fake answers from the last message it got, here the user's "Thanks!"; ask again ending on results
    history[-1]["content"].pop()
    third = ac.messages.create(model="agent", max_tokens=100, tools=[WEATHER, CLOCK], messages=history)
    assert second.stop_reason == "tool_use"
    assert third.stop_reason == "end_turn" and third.content[0].text == "tool said: Error: clock offline"


# --- streams ---
def test_stream_text_event_order_and_final_usage(ac):
    with ac.messages.stream(model="gpt-4o-mini", max_tokens=50,
                            messages=[{"role": "user", "content": "a b c"}]) as stream:
        kinds = [e.type for e in stream if e.type in RAW_EVENTS]
        final = stream.get_final_message()
    assert kinds == ["message_start", "content_block_start"] + ["content_block_delta"] * 4 + \
        ["content_block_stop", "message_delta", "message_stop"]
    assert final.content[0].text == "echo: a b c "  # FakeOpenAI streams word by word, each with a space
    assert final.model == "gpt-4o-mini" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (8, 5, 4)


def test_stream_wire_format_with_tool_calls(gw):
    body = {"model": "agent", "max_tokens": 100, "stream": True, "tools": [WEATHER, CLOCK],
            "messages": [{"role": "user", "content": "Weather and time?"}]}
    status, headers, data = raw(gw, "POST", "/v1/messages", orjson.dumps(body))
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert headers["request-id"] == headers["x-hedgeway-request-id"]
    events = sse_events(data)
    names = [(n, p.get("index")) for n, p in events if n != "content_block_delta"]
    assert names == [("message_start", None), ("content_block_start", 0), ("content_block_stop", 0),
                     ("content_block_start", 1), ("content_block_stop", 1), ("content_block_start", 2),
                     ("content_block_stop", 2), ("message_delta", None), ("message_stop", None)]
    start = events[0][1]["message"]
    assert start["model"] == "agent" and start["content"] == [] and start["usage"]["input_tokens"] == 0
    blocks = [p["content_block"] for n, p in events if n == "content_block_start"]
    assert blocks[1] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert blocks[2]["name"] == "get_time"
    partial = {}
    for n, p in events:
        if n == "content_block_delta" and p["delta"]["type"] == "input_json_delta":
            partial[p["index"]] = partial.get(p["index"], "") + p["delta"]["partial_json"]
    assert partial == {1: ARGS[0], 2: ARGS[1]}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 0,
                              "cache_creation_input_tokens": 0}


def test_stream_tool_input_reassembled_by_the_sdk(ac):
    with ac.messages.stream(model="agent", max_tokens=100, tools=[WEATHER],
                            messages=[{"role": "user", "content": "Weather?"}]) as stream:
        json_events = [e for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert "".join(e.partial_json for e in json_events) == ARGS[0]
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me check. "
    assert final.content[1].input == {"city": "Paris", "units": "metric"}
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 9)


def test_stop_sequence_is_reported_when_the_upstream_names_it(ac):
    msg = ac.messages.create(model="stopper", max_tokens=20, stop_sequences=["three"],
                             messages=[{"role": "user", "content": "count"}])
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "three")
    with ac.messages.stream(model="stopper", max_tokens=20, stop_sequences=["three"],
                            messages=[{"role": "user", "content": "count"}]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "three")
    plain = ac.messages.create(model="stopper", max_tokens=20, messages=[{"role": "user", "content": "count"}])
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


def test_mid_stream_cut_ends_with_an_error_event_and_is_recorded(gw, ac, ledger_url):
    body = {"model": "cut", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    status, _, data = raw(gw, "POST", "/v1/messages", orjson.dumps(body))
    events = sse_events(data)
    assert status == 200
    assert [n for n, _ in events] == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "interrupted" in events[-1][1]["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as err:
        with ac.messages.stream(model="cut", max_tokens=20, messages=[{"role": "user", "content": "a b"}]) as s:
            for _ in s:
                pass
    assert kind(err) == "api_error"
    rows = records(ledger_url, 2)
    assert [(r.endpoint, r.stream, r.error_type) for r in rows] == [("messages", True, "UpstreamErrorMidStream")] * 2


def test_any_deployment_serves_messages_here_the_simulator(ac, ledger_url):
    msg = ac.messages.create(model="sim", max_tokens=16, messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].text and msg.usage.output_tokens > 0 and msg.usage.input_tokens > 0
    with ac.messages.stream(model="sim", max_tokens=16, messages=[{"role": "user", "content": "hello"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == final.content[0].text and final.usage.output_tokens > 0 and final.stop_reason
    rows = records(ledger_url, 2)
    assert [(r.endpoint, r.status, r.stream) for r in rows] == [("messages", 200, False), ("messages", 200, True)]
    assert all(r.cost > 0 for r in rows)


def test_client_leaving_mid_stream_is_recorded_and_frees_the_upstream(gw, ledger_url):
    body = {"model": "trickle", "max_tokens": 200, "stream": True, "messages": [{"role": "user", "content": "go"}]}
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/v1/messages", body=orjson.dumps(body), headers={"x-api-key": MASTER})
    resp = conn.getresponse()
    assert b"event: message_start" in resp.read1(65536)
    conn.close()  # gone after the first bytes of a stream that would last ~10 s
    [row] = records(ledger_url, 1)
    assert (row.endpoint, row.status, row.error_type) == ("messages", 499, "ClientDisconnected")
    status, _, data = raw(gw, "GET", "/metrics")
    gauges = [line for line in data.decode().splitlines() if line.startswith('hedgeway_inflight_requests{deployment="trickle')]
    assert status == 200 and len(gauges) == 1 and gauges[0].endswith(" 0")  # nothing left in flight


def test_an_anthropic_deployment_round_trips_usage_and_tools():
    """Anthropic in, OpenAI inside the pipeline, Anthropic out to the upstream, and back: nothing lost that
    both formats carry (system, tools, cache reads and writes)."""
    from fake_anthropic import FakeAnthropic

    upstream = FakeAnthropic().start()
    cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": "sqlite:///:memory:"},
           "models": [{"name": "claude", "deployments": [{"provider": "anthropic", "model": "claude-cached",
                                                          "api_base": upstream.base_url, "api_key": "sk-ant-x",
                                                          "price": {"input": "3", "output": "15"}}]}]}
    try:
        with BackgroundGateway(from_dict(cfg)) as g:
            ac = anthropic.Anthropic(base_url=root(g), api_key=MASTER, max_retries=0, timeout=10)
            msg = ac.messages.create(model="claude", max_tokens=50, system="Be brief.",
                                     messages=[{"role": "user", "content": "hello"}])
            assert upstream.requests[-1]["system"][0]["text"] == "Be brief."
            cached = (50, 1000, 200)  # the fake's input, cache-read and cache-write tokens
            u = msg.usage
            assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == cached
            with ac.messages.stream(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
                final = s.get_final_message()
            u = final.usage
            assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == cached
            assert final.content[0].text == msg.content[0].text.replace("hello", "hi")
    finally:
        upstream.stop()


# --- errors ---
def test_missing_max_tokens_is_an_anthropic_400(ac):
    with pytest.raises(anthropic.BadRequestError) as err:
        ac.post("/v1/messages", cast_to=anthropic.types.Message,
                body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert err.value.status_code == 400 and kind(err) == "invalid_request_error"
    assert err.value.body["type"] == "error" and err.value.body["error"]["message"] == "max_tokens: Field required"
    assert err.value.request_id and err.value.body["request_id"] == err.value.request_id


def test_bad_key_is_anthropic_401(gw):
    bad = anthropic.Anthropic(base_url=root(gw), api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert kind(err) == "authentication_error" and err.value.request_id
    assert "sk-wrong" not in json.dumps(err.value.body)


def test_unknown_model_is_anthropic_404(ac):
    with pytest.raises(anthropic.NotFoundError) as err:
        ac.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert kind(err) == "not_found_error" and "claude-nope" in err.value.body["error"]["message"]


def test_upstream_failures_after_fallback_are_api_errors_and_recorded(ac, ledger_url, fake):
    before = fake.calls["fail-500"]
    with pytest.raises(anthropic.InternalServerError) as err:
        ac.messages.create(model="dead", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and kind(err) == "api_error"
    assert fake.calls["fail-500"] - before == 4  # dead and its fallback also-dead, each retried once
    with pytest.raises(anthropic.InternalServerError):  # a stream that never started: a plain error response
        ac.messages.create(model="dead", max_tokens=5, stream=True, messages=[{"role": "user", "content": "hi"}])
    ac.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    rows = {(r.model_name, r.stream): r for r in records(ledger_url, 3)}
    fail, fail_stream, ok = rows[("dead", False)], rows[("dead", True)], rows[("gpt-4o-mini", False)]
    assert (fail.endpoint, fail.status, fail.error_type, fail.attempts) == ("messages", 502, "AllDeploymentsFailed", 4)
    assert (fail_stream.endpoint, fail_stream.status) == ("messages", 502)
    assert (ok.endpoint, ok.status, ok.prompt_tokens, ok.completion_tokens, ok.cached_tokens) == \
        ("messages", 200, 12, 5, 4)
    assert ok.cost > 0


@pytest.mark.parametrize("model,status,exc,error_type", [
    ("bad", 400, anthropic.BadRequestError, "invalid_request_error"),  # upstream 400: returned, not retried
    ("limited", 429, anthropic.RateLimitError, "rate_limit_error"),  # every attempt rate-limited
    ("slow", 504, anthropic.InternalServerError, "timeout_error"),  # every attempt timed out
])
def test_upstream_failure_kinds_map_to_anthropic_types(ac, model, status, exc, error_type):
    with pytest.raises(exc) as err:
        ac.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == status and kind(err) == error_type


@pytest.mark.parametrize("method,path,body,status,kind,needle", [
    ("POST", "/v1/messages", b"{not json", 400, "invalid_request_error", "JSON"),
    ("POST", "/v1/messages", b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[]}', 400,
     "invalid_request_error", "messages"),
    ("POST", "/v1/messages", b'{"model":"gpt-4o-mini","max_tokens":5,"mcp_servers":[],'
                             b'"messages":[{"role":"user","content":"hi"}]}', 400, "invalid_request_error",
     "mcp_servers"),
    ("POST", "/v1/messages", b'{"model":"gpt-4o-mini","max_tokens":5,'
                             b'"messages":[{"role":"system","content":"hi"}]}', 400, "invalid_request_error",
     "messages.0.role"),
    ("GET", "/v1/messages", b"", 405, "invalid_request_error", "POST"),
])
def test_every_error_on_the_route_is_in_anthropic_format(gw, method, path, body, status, kind, needle):
    got, headers, data = raw(gw, method, path, body)
    err = orjson.loads(data)
    assert got == status and err["type"] == "error" and err["error"]["type"] == kind
    assert needle in err["error"]["message"] and headers["request-id"] == err["request_id"]


def test_count_tokens_is_an_estimate(ac):
    small = ac.messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    big = ac.messages.count_tokens(model="gpt-4o-mini", system="x" * 400, tools=[WEATHER],
                                   messages=[{"role": "user", "content": "hi " * 100}])
    assert 0 < small.input_tokens < big.input_tokens and big.input_tokens > 175
    with pytest.raises(anthropic.NotFoundError):
        ac.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])


# --- translation details (pure) ---
def test_translation_edge_cases():
    inbound = to_openai({"model": "m", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024},
                         "messages": [
                             {"role": "user", "content": [
                                 {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                 "data": "Doc body."}},
                                 {"type": "text", "text": "Summarise.", "cache_control": {"type": "ephemeral"}}]},
                             {"role": "assistant", "content": [
                                 {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                 {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}}]},
                             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                                 {"type": "text", "text": "found"},
                                 {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}]})
    assert "thinking" not in inbound.body
    assert inbound.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Doc body."}, {"type": "text", "text": "Summarise."}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "look", "arguments": '{"q":1}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "found"},  # images of a tool result follow it
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    with pytest.raises(InvalidRequest, match="tools.0.type"):
        to_openai({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    with pytest.raises(InvalidRequest, match="messages.0.content.0.type"):
        to_openai({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]})


def test_stream_translator_any_split_empty_answer_and_error_mapping():
    inbound = to_openai({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})

    def run(data: bytes, step: int) -> list[tuple[str, dict]]:
        tr = StreamTranslator(inbound, "msg_t")
        out = tr.start() + b"".join(tr.feed(data[i:i + step]) for i in range(0, len(data), step)) + tr.finish()
        return sse_events(out)

    empty = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\n\n' \
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'  # no [DONE]: finish() closes
    events = run(empty, 1000)
    assert [n for n, _ in events] == ["message_start", "content_block_start", "content_block_stop", "message_delta",
                                      "message_stop"]
    assert events[3][1]["delta"]["stop_reason"] == "max_tokens"
    broken = b'data: {"choices":[{"index":0,"delta":{"content":"h\\u00e9llo"},"finish_reason":null}]}\r\n\r\n' \
             b'data: {"error":{"message":"boom","type":"timeout_error","param":null,"code":null}}\r\n\r\n'
    for step in (1, 3, 7, 1000):  # CRLF separators, split anywhere, even inside "\r\n\r\n"
        events = run(broken, step)
        assert [n for n, _ in events] == ["message_start", "content_block_start", "content_block_delta", "error"]
        assert events[2][1]["delta"]["text"] == "héllo"
        assert events[3][1]["error"] == {"type": "timeout_error", "message": "boom"}
