"""/v1/responses beyond the OpenAI fake: the strict Anthropic and Gemini fakes behind it, the response store on
PostgreSQL shared by two replicas, and the store's retention."""

from __future__ import annotations

import uuid

import pytest

from conftest import MASTER, gateway_config, records
from fake_anthropic import FakeAnthropic
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger.responses import ResponsesIn, ResponseStore
from responses_support import WEATHER, call, deltas_agree, sdk, streamed
from test_ledger_postgres import pg_admin  # noqa: F401  (the shared PostgreSQL fixture)


@pytest.fixture(scope="module")
def anthropic_fake():
    f = FakeAnthropic().start()
    yield f
    f.stop()


def test_an_anthropic_deployment_serves_responses_with_tools_and_state(anthropic_fake, ledger_url):
    cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": ledger_url, "flush_interval": 0.05},
           "models": [{"name": "claude", "deployments": [{"provider": "anthropic", "model": "claude-x",
                                                          "api_base": anthropic_fake.base_url, "api_key": "sk-ant-x",
                                                          "price": {"input": "3", "output": "15"}}]}]}
    with BackgroundGateway(from_dict(cfg)) as g:
        client = sdk(g)
        r = client.responses.create(model="claude", input="hello", instructions="Be brief.", max_output_tokens=50)
        sent = anthropic_fake.requests[-1]
        assert sent["system"][0]["text"] == "Be brief." and sent["max_tokens"] == 50
        assert [m["role"] for m in sent["messages"]] == ["user"] and "hello" in str(sent["messages"][0]["content"])
        assert r.output_text == "echo: hello" and (r.usage.input_tokens, r.usage.output_tokens) == (11, 7)
        first = client.responses.create(model="claude", input="Weather?", tools=[WEATHER])
        [fc] = [o for o in first.output if o.type == "function_call"]
        assert (fc.name, fc.call_id) == ("get_weather", "toolu_01") and '"city":"Paris"' in fc.arguments
        second = client.responses.create(model="claude", previous_response_id=first.id, tools=[WEATHER],
                                         input=[{"type": "function_call_output", "call_id": fc.call_id,
                                                 "output": "18C"}])
        assert second.output_text == "Result: 18C"  # the fake validated roles, ids and alternation
        result = anthropic_fake.requests[-1]["messages"][-1]["content"][0]
        assert (result["type"], result["tool_use_id"]) == ("tool_result", "toolu_01")
        evs = streamed(g, {"model": "claude", "input": "Weather?", "tools": [WEATHER], "instructions": "Be brief."})
        final = deltas_agree(evs)
        assert [o["type"] for o in final["output"]] == ["message", "function_call"]
        assert anthropic_fake.requests[-1]["system"][0]["text"] == "Be brief."
        rows = records(ledger_url, 4)
        assert [(r.endpoint, r.provider, r.status) for r in rows] == [("responses", "anthropic", 200)] * 4
        assert all(r.prompt_tokens == 11 and r.completion_tokens == 7 and r.cost > 0 for r in rows)


def test_a_gemini_deployment_serves_responses_with_tools_and_state(ledger_url):
    from fake_gemini import FakeGemini

    upstream = FakeGemini().start()
    cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": ledger_url, "flush_interval": 0.05},
           "models": [{"name": "gem", "deployments": [{"provider": "gemini", "model": "gemini-2.5-flash",
                                                       "api_base": upstream.base_url, "api_key": "g-key"}]}]}
    try:
        with BackgroundGateway(from_dict(cfg)) as g:
            client = sdk(g)
            r = client.responses.create(model="gem", input="hello", instructions="Be brief.")
            assert r.output_text == "echo: hello"
            assert upstream.requests[-1]["systemInstruction"]["parts"][0]["text"] == "Be brief."
            first = client.responses.create(model="gem", input="Weather?", tools=[WEATHER])
            [fc] = [o for o in first.output if o.type == "function_call"]
            second = client.responses.create(model="gem", previous_response_id=first.id, tools=[WEATHER],
                                             input=[{"type": "function_call_output", "call_id": fc.call_id,
                                                     "output": "18C"}])
            assert second.output_text.startswith("Result: ") and "18C" in second.output_text
            final = deltas_agree(streamed(g, {"model": "gem", "input": "Weather?", "tools": [WEATHER]}))
            assert [o["type"] for o in final["output"]] == ["message", "function_call"]
            rows = records(ledger_url, 4)
            assert [(r.endpoint, r.provider, r.status) for r in rows] == [("responses", "gemini", 200)] * 4
    finally:
        upstream.stop()


@pytest.fixture
def pg_ledger(pg_admin):  # noqa: F811
    url, admin = pg_admin
    schema = f"hw_resp_{uuid.uuid4().hex[:12]}"
    yield f"{url}?schema={schema}"
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_two_replicas_share_conversations_through_postgresql(upstream, pg_ledger):
    cfg = from_dict(gateway_config(upstream.base_url, pg_ledger))
    with BackgroundGateway(cfg) as a, BackgroundGateway(cfg) as b:
        first = sdk(a).responses.create(model="gpt-4o-mini", input="one")
        second = sdk(b).responses.create(model="gpt-4o-mini", input="two", previous_response_id=first.id)
        assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "one"},
                                                     {"role": "assistant", "content": "echo: one"},
                                                     {"role": "user", "content": "two"}]
        evs = streamed(a, {"model": "gpt-4o-mini", "input": "three", "previous_response_id": second.id})
        third = evs[-1]["response"]
        assert sdk(b).responses.retrieve(third["id"]).output_text == "echo: three "
        assert [i.content[0].text for i in sdk(b).responses.input_items.list(third["id"], order="asc")] == \
            ["one", "echo: one", "two", "echo: two", "three"]
        sdk(a).responses.delete(first.id)
        assert call(b, "GET", f"/v1/responses/{first.id}")[0] == 404


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_responses_expire_after_the_retention_and_stay_with_their_tenant(tmp_path):
    clock = Clock()
    store = ResponseStore(f"sqlite:///{tmp_path}/r.db", ResponsesIn(retention_days=1), clock)
    try:
        store.put("key:a", {"id": "resp_a", "output": []}, [{"id": "msg_1", "type": "message"}], [])
        store.put("key:a", {"id": "resp_b", "output": [], "previous_response_id": "resp_a"}, [], ["resp_a"])
        assert [(t.id, t.input) for t in store.chain("key:a", "resp_b")] == \
            [("resp_a", [{"id": "msg_1", "type": "message"}]), ("resp_b", [])]
        assert store.chain("key:b", "resp_b") is None and store.get("key:b", "resp_a") is None
        assert store.delete("key:b", "resp_a") is False and store.get("key:a", "resp_a") is not None
        assert store.flush()
        clock.now += 86401
        assert store.get("key:a", "resp_a") is None and store.chain("key:a", "resp_b") is None
        assert store.delete("key:a", "resp_b") is False
    finally:
        store.close()


def test_a_stored_turn_keeps_its_conversation_alive(tmp_path):
    clock = Clock()
    store = ResponseStore(f"sqlite:///{tmp_path}/r.db", ResponsesIn(retention_days=1), clock)
    try:
        store.put("t", {"id": "resp_a", "output": []}, [], [])
        clock.now += 80000
        store.put("t", {"id": "resp_b", "output": [], "previous_response_id": "resp_a"}, [], ["resp_a"])
        assert store.flush()
        clock.now += 80000  # resp_a's own retention is over; its conversation's is not
        assert [t.id for t in store.chain("t", "resp_b")] == ["resp_a", "resp_b"]
        assert store.get("t", "resp_a") is not None
    finally:
        store.close()


def test_queued_responses_are_read_at_once_here_and_committed_by_close(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    store = ResponseStore(url, ResponsesIn())
    assert store.put("t", {"id": "resp_a", "output": []}, [], [])
    assert store.put("t", {"id": "resp_b", "output": [], "previous_response_id": "resp_a"}, [], ["resp_a"])
    assert [t.id for t in store.chain("t", "resp_b")] == ["resp_a", "resp_b"]  # committed or not
    store.close()
    other = ResponseStore(url, ResponsesIn())  # another replica: only the database
    try:
        assert [t.id for t in other.chain("t", "resp_b")] == ["resp_a", "resp_b"]
        assert other.delete("t", "resp_a") and other.chain("t", "resp_b")[0].id == "resp_b"
    finally:
        other.close()
