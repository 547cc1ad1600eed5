"""End to end: the official `openai` SDK's `client.responses` → Hedgeway's /v1/responses → the fake OpenAI
upstream (conftest's FakeOpenAI plus `fake_openai_scenarios`: tool calls) and the simulated provider.
Every answer and stream event is validated against the SDK's own pydantic types (responses_support)."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import gateway_config, records
from fake_openai_scenarios import ARGS, ScenarioOpenAI
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from responses_support import CLOCK, ITEM, WEATHER, call, created, deltas_agree, sdk, streamed


@pytest.fixture(scope="module")
def fake():
    f = ScenarioOpenAI().start()
    yield f
    f.stop()


def config(fake, ledger_url: str, **overrides) -> dict:
    cfg = gateway_config(fake.base_url, ledger_url, **overrides)
    dep = dict(cfg["models"][0]["deployments"][0])
    cfg["models"] += [{"name": "agent", "deployments": [{**dep, "model": "tool-agent"}]},
                      {"name": "short", "deployments": [{"provider": "simulated", "model": "sim-short",
                                                         "settings": {"ttft_ms": 1, "tokens_per_second": 5000,
                                                                      "max_output_tokens": 60}}]}]
    return cfg


@pytest.fixture()
def gw(fake, ledger_url):
    with BackgroundGateway(from_dict(config(fake, ledger_url))) as g:
        yield g


# --- create ---
def test_create_sends_instructions_as_the_system_prompt_and_records_one_ledger_row(gw, fake, ledger_url):
    r = sdk(gw).responses.create(model="gpt-4o-mini", input="Weather in Paris?", instructions="Be brief.",
                                 temperature=0.2, top_p=0.9, max_output_tokens=64, user="u-42",
                                 metadata={"team": "search"})
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == "gpt-4o-mini" and r.instructions == "Be brief." and r.metadata == {"team": "search"}
    assert (r.temperature, r.top_p, r.max_output_tokens) == (0.2, 0.9, 64)
    assert r.output_text == "echo: Weather in Paris?"
    [msg] = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    # FakeOpenAI: 12 prompt tokens of which 4 cached, 5 completion tokens
    u = r.usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens, u.input_tokens_details.cached_tokens,
            u.output_tokens_details.reasoning_tokens) == (12, 5, 17, 4, 0)
    sent = fake.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Weather in Paris?"}]
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["top_p"], sent["user"]) == \
        ("ok-mini", 64, 0.2, 0.9, "u-42")
    assert not {"metadata", "store", "instructions", "input", "previous_response_id"} & sent.keys()
    [row] = records(ledger_url, 1)
    assert (row.endpoint, row.model_name, row.status, row.stream) == ("responses", "gpt-4o-mini", 200, False)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (12, 5, 4) and row.cost > 0


def test_input_items_with_images_roles_and_json_schema_reach_the_upstream(gw, fake):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = {"model": "gpt-4o-mini", "text": {"format": {"type": "json_schema", "name": "city", "schema": schema,
                                                         "strict": True}},
            "input": [{"role": "developer", "content": "Answer in JSON."},
                      {"role": "user", "content": [{"type": "input_text", "text": "Which city?"},
                                                   {"type": "input_image", "image_url": "https://x.test/a.png",
                                                    "detail": "low"}]},
                      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Paris"}]},
                      {"role": "user", "content": [{"type": "input_text", "text": "Sure?"}]}]}
    r = created(gw, body)
    assert r["text"]["format"]["name"] == "city"
    sent = fake.requests[-1]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "city", "schema": schema,
                                                                              "strict": True}}
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": [{"type": "text", "text": "Which city?"}, {
            "type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]},
        {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "Sure?"}]
    created(gw, {"model": "gpt-4o-mini", "input": "x", "text": {"format": {"type": "json_object"}}})
    assert fake.requests[-1]["response_format"] == {"type": "json_object"}


# --- streams ---
def test_stream_events_are_typed_in_order_and_the_sdk_assembles_the_deltas(gw, ledger_url):
    evs = streamed(gw, {"model": "gpt-4o-mini", "input": "stream me please", "instructions": "Be brief."})
    assert [e["type"] for e in evs[:4]] == ["response.created", "response.in_progress", "response.output_item.added",
                                            "response.content_part.added"]
    tail = [e["type"] for e in evs if not e["type"].endswith(".delta")]
    assert tail == ["response.created", "response.in_progress", "response.output_item.added",
                    "response.content_part.added", "response.output_text.done", "response.content_part.done",
                    "response.output_item.done", "response.completed"]
    assert sum(e["type"] == "response.output_text.delta" for e in evs) == 4
    final = deltas_agree(evs)
    assert final["status"] == "completed" and final["usage"]["input_tokens"] == 12
    assert final["output"][0]["content"][0]["text"] == "echo: stream me please "
    with sdk(gw).responses.stream(model="gpt-4o-mini", input="hello there") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        resp = s.get_final_response()
    assert resp.output_text == text == "echo: hello there " and resp.usage.output_tokens == 5
    rows = records(ledger_url, 2)
    assert [(r.endpoint, r.stream, r.prompt_tokens, r.completion_tokens) for r in rows] == \
        [("responses", True, 12, 5)] * 2


def test_a_stream_broken_by_the_upstream_ends_with_response_failed_and_is_not_stored(gw, ledger_url):
    evs = streamed(gw, {"model": "cut", "input": "one two three"})
    assert evs[-1]["type"] == "response.failed"
    failed = evs[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "interrupted" in failed["error"]["message"]
    assert call(gw, "GET", f"/v1/responses/{failed['id']}")[0] == 404
    [row] = records(ledger_url, 1)
    assert (row.endpoint, row.error_type) == ("responses", "UpstreamErrorMidStream")


def test_max_output_tokens_cut_is_incomplete(gw):
    r = created(gw, {"model": "short", "input": "tell me a long story", "max_output_tokens": 3})
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["output"][0]["status"] == "incomplete" and r["usage"]["output_tokens"] == 3
    evs = streamed(gw, {"model": "short", "input": "tell me a long story", "max_output_tokens": 3})
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    deltas_agree(evs)


# --- tools and conversation state ---
def test_function_tool_round_trip_continued_with_previous_response_id(gw, fake, ledger_url):
    client = sdk(gw)
    first = client.responses.create(model="agent", input="Weather and time in Paris?", tools=[WEATHER, CLOCK],
                                    instructions="Use tools.")
    calls = [o for o in first.output if o.type == "function_call"]
    assert [(c.name, c.arguments, c.call_id) for c in calls] == [("get_weather", ARGS[0], "call_1"),
                                                                ("get_time", ARGS[1], "call_2")]
    assert all(c.id.startswith("fc_") and c.status == "completed" for c in calls)
    assert first.output[0].type == "message" and first.output[0].content[0].text == "Let me check."
    assert fake.requests[-1]["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["parameters"]}}
    second = client.responses.create(
        model="agent", previous_response_id=first.id, tools=[WEATHER, CLOCK],
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "18C"},
               {"type": "function_call_output", "call_id": "call_2", "output": "14:00"}])
    assert second.output_text == "tool said: 14:00" and second.previous_response_id == first.id
    sent = fake.requests[-1]["messages"]
    assert sent[0] == {"role": "user", "content": "Weather and time in Paris?"}  # instructions not carried over
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Let me check."
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_1", "call_2"]
    assert sent[2:] == [{"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                        {"role": "tool", "tool_call_id": "call_2", "content": "14:00"}]
    rows = records(ledger_url, 2)
    assert [(r.endpoint, r.prompt_tokens) for r in rows] == [("responses", 20)] * 2


def test_a_stateless_client_resends_the_output_items_as_input(gw, fake):
    """The other common loop: `store: false` and the previous output appended to the input (SDK objects)."""
    client = sdk(gw)
    question = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.responses.create(model="agent", input=question, tools=[WEATHER], store=False)
    [fc] = [o for o in first.output if o.type == "function_call"]
    again = question + [o.model_dump(exclude_none=True) for o in first.output] + [
        {"type": "function_call_output", "call_id": fc.call_id, "output": "18C"}]
    second = client.responses.create(model="agent", input=again, tools=[WEATHER], store=False)
    assert second.output_text == "tool said: 18C"
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["content"] == "Let me check." and sent[1]["tool_calls"][0]["id"] == fc.call_id


def test_streamed_function_calls_assemble_in_the_sdk(gw):
    evs = streamed(gw, {"model": "agent", "input": "Weather?", "tools": [WEATHER, CLOCK]})
    final = deltas_agree(evs)
    assert [o["type"] for o in final["output"]] == ["message", "function_call", "function_call"]
    assert [o["arguments"] for o in final["output"][1:]] == ARGS
    done = [e for e in evs if e["type"] == "response.function_call_arguments.done"]
    assert [e["arguments"] for e in done] == ARGS
    with sdk(gw).responses.stream(model="agent", input="Weather?", tools=[WEATHER]) as s:
        resp = s.get_final_response()
    [fc] = [o for o in resp.output if o.type == "function_call"]
    assert fc.arguments == ARGS[0] and fc.call_id == "call_1"


def test_retrieve_input_items_and_delete(gw):
    client = sdk(gw)
    first = client.responses.create(model="gpt-4o-mini", input="one")
    second = client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "two"}],
                                     previous_response_id=first.id)
    got = client.responses.retrieve(second.id)
    assert got.model_dump() == second.model_dump()
    status, _, raw = call(gw, "GET", f"/v1/responses/{second.id}/input_items?order=asc")
    listing = json.loads(raw)
    for item in listing["data"]:
        ITEM.validate_python(item)
    texts = [(i["role"], i["content"][0]["text"]) for i in listing["data"]]
    assert texts == [("user", "one"), ("assistant", "echo: one"), ("user", "two")]
    assert (listing["first_id"], listing["has_more"]) == (listing["data"][0]["id"], False)
    paged = [i.id for i in client.responses.input_items.list(second.id, limit=1)]  # desc, one per page
    assert paged == [i["id"] for i in reversed(listing["data"])]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.retrieve(first.id)
    assert err.value.body["param"] == "response_id" and err.value.body["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(first.id)
    # the deleted turn is gone from the conversation continued after it
    third = client.responses.create(model="gpt-4o-mini", input="three", previous_response_id=second.id)
    assert third.output_text == "echo: three"


def test_an_unknown_previous_response_id_is_a_400_naming_the_field_and_reaches_no_upstream(gw, fake, ledger_url):
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as err:
        sdk(gw).responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_nope")
    assert err.value.body["param"] == "previous_response_id" and err.value.body["code"] == "previous_response_not_found"
    assert len(fake.requests) == before
    for path in ("/v1/responses/resp_nope", "/v1/responses/resp_nope/input_items"):
        status, _, raw = call(gw, "GET", path)
        assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error"


def test_store_false_keeps_nothing(gw):
    r = created(gw, {"model": "gpt-4o-mini", "input": "secret", "store": False})
    assert r["store"] is False
    assert call(gw, "GET", f"/v1/responses/{r['id']}")[0] == 404
    assert call(gw, "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "x",
                                              "previous_response_id": r["id"]})[0] == 400


def test_a_deployment_without_a_store_says_so(fake, ledger_url):
    with BackgroundGateway(from_dict(config(fake, ledger_url, responses={"store": False}))) as g:
        r = created(g, {"model": "gpt-4o-mini", "input": "hi"})
        assert r["store"] is False and call(g, "GET", f"/v1/responses/{r['id']}")[0] == 404
        status, _, raw = call(g, "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "store": True})
        assert status == 400 and json.loads(raw)["error"]["param"] == "store"


def test_tenants_never_see_each_others_responses(gw):
    for team in ("red", "blue"):
        assert call(gw, "POST", "/admin/teams", {"id": team})[0] == 201
    keys = {name: json.loads(call(gw, "POST", "/admin/keys", {"team": team})[2])["key"]
            for name, team in (("red1", "red"), ("red2", "red"), ("blue", "blue"))}
    mine = sdk(gw, keys["red1"]).responses.create(model="gpt-4o-mini", input="red only")
    assert sdk(gw, keys["red2"]).responses.retrieve(mine.id).id == mine.id  # a team shares its responses
    other = sdk(gw, keys["blue"])
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(mine.id)
    with pytest.raises(openai.BadRequestError) as err:
        other.responses.create(model="gpt-4o-mini", input="hi", previous_response_id=mine.id)
    assert err.value.body["code"] == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk(gw).responses.retrieve(mine.id)  # the master key is a tenant of its own too
    assert sdk(gw, keys["red1"]).responses.retrieve(mine.id).output_text == "echo: red only"


# --- what cannot be honoured ---
@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [WEATHER, {"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[1].type"),
    ({"background": True}, "background"),
    ({"include": ["reasoning.encrypted_content"]}, "include"),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary"),
    ({"truncation": "auto"}, "truncation"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].file_id"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
    ({"temperature": 3}, "temperature"),
    ({"input": []}, "input"),
])
def test_what_no_deployment_can_honour_is_a_400_naming_the_field(gw, fake, extra, param):
    before = len(fake.requests)
    status, _, raw = call(gw, "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", **extra})
    err = json.loads(raw)["error"]
    assert status == 400 and err["param"] == param and err["type"] == "invalid_request_error", err
    assert len(fake.requests) == before


def test_upstream_and_pipeline_errors_are_openai_envelopes_recorded_under_responses(gw, ledger_url):
    status, headers, raw = call(gw, "POST", "/v1/responses", {"model": "bad", "input": "hi"})
    assert status == 400 and json.loads(raw)["error"]["code"] == "upstream_rejected"
    assert headers["x-hedgeway-request-id"]
    status, _, raw = call(gw, "POST", "/v1/responses", {"model": "nope", "input": "hi"})
    assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found"
    status, _, _ = call(gw, "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}, key="sk-wrong")
    assert status == 401
    rows = sorted(records(ledger_url, 2), key=lambda r: r.status)
    assert [(r.endpoint, r.status) for r in rows] == [("responses", 400), ("responses", 404)]
    assert call(gw, "PUT", "/v1/responses/resp_x")[0] == 405
    assert call(gw, "GET", "/v1/responses/resp_x/other")[0] == 404


def test_the_simulated_provider_serves_responses(gw):
    r = sdk(gw).responses.create(model="sim", input="Explain caching briefly.")
    assert r.status in ("completed", "incomplete") and r.output_text and r.usage.output_tokens > 0
    with sdk(gw).responses.stream(model="sim", input="Explain caching briefly.") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert final.output_text == deltas


def test_a_cached_answer_is_served_as_a_response(fake, ledger_url):
    cfg = config(fake, ledger_url, cache={"enabled": True, "semantic": False})
    with BackgroundGateway(from_dict(cfg)) as g:
        a = created(g, {"model": "gpt-4o-mini", "input": "cache me", "instructions": "Be brief."})
        status, headers, raw = call(g, "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "cache me",
                                                                 "instructions": "Be brief."})
        assert status == 200 and headers["x-hedgeway-cache"] == "hit-exact"
        b = json.loads(raw)
        assert b["id"] != a["id"] and b["output"][0]["content"] == a["output"][0]["content"]
        assert call(g, "GET", f"/v1/responses/{b['id']}")[0] == 200
