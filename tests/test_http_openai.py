"""End to end: the official `openai` SDK → a real Hedgeway server on loopback → a fake OpenAI upstream."""

from __future__ import annotations

import http.client
import json
from decimal import Decimal
from urllib.parse import urlsplit

import openai
import pytest

from conftest import MASTER, UPSTREAM_KEY, records


def raw(gateway, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """A plain HTTP call, for what the SDK cannot send (malformed JSON, huge bodies, wrong methods)."""
    u = urlsplit(gateway.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {MASTER}", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def test_chat_passes_everything_through_and_labels_the_answer(client, upstream):
    raw_resp = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        tool_choice="auto", response_format={"type": "text"}, n=2, stop=["\n\n"], seed=7, user="u-42",
        temperature=0.2, extra_body={"custom_vendor_field": {"keep": True}})
    completion = raw_resp.parse()
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert len(completion.choices) == 2
    assert completion.usage.prompt_tokens == 12
    sent = upstream.requests[-1]
    assert sent["model"] == "ok-mini"  # the deployment's model, not the logical name
    for field in ("tools", "tool_choice", "response_format", "n", "stop", "seed", "user", "temperature",
                  "custom_vendor_field"):
        assert field in sent, field
    assert upstream.headers[-1]["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # never the client's key
    h = raw_resp.headers
    assert h["x-hedgeway-deployment"] == "gpt-4o-mini/openai/ok-mini"
    assert h["x-hedgeway-request-id"].startswith("hw-")
    assert 0 <= float(h["x-hedgeway-overhead-ms"]) < 1000


def test_stream_without_usage_request_hides_usage_but_ledger_prices_it(client, upstream, ledger_url):
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "echo: one two three"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}  # but the gateway did
    [rec] = records(ledger_url, 1)
    assert rec.stream and rec.status == 200 and rec.ttft_ms is not None
    assert (rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens) == (12, 5, 4)


def test_stream_with_include_usage_ends_with_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 17


def test_cost_is_exact_decimal_from_usage_and_price_card(client, ledger_url):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    [rec] = records(ledger_url, 1)
    # 12 prompt tokens of which 4 cached, 5 completion: (8×0.15 + 4×0.075 + 5×0.60) / 1e6
    assert rec.cost == Decimal("0.0000045")
    assert rec.deployment == "gpt-4o-mini/openai/ok-mini" and rec.key_id == "master"


def test_embeddings_and_models(client):
    emb = client.embeddings.create(model="gpt-4o-mini", input=["a", "b"])
    assert [d.index for d in emb.data] == [0, 1] and emb.usage.prompt_tokens == 6
    names = {m.id for m in client.models.list().data}
    assert {"gpt-4o-mini", "flaky", "sim"} <= names


def test_fallback_to_next_model_is_recorded(client, upstream, ledger_url):
    before = upstream.calls["fail-500"]
    resp = client.chat.completions.with_raw_response.create(model="flaky", messages=[{"role": "user", "content": "x"}])
    assert resp.headers["x-hedgeway-deployment"] == "gpt-4o-mini/openai/ok-mini"
    assert upstream.calls["fail-500"] - before == 2  # one retry on the failing group, then the fallback
    [rec] = records(ledger_url, 1)
    assert rec.attempts == 3 and "flaky/openai/fail-500" in rec.route


def test_all_deployments_failed_is_502_and_lists_attempts(client, ledger_url):
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="dead", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 502
    assert err.value.body["code"] == "all_deployments_failed"
    [rec] = records(ledger_url, 1)
    assert rec.status == 502 and rec.error_type == "AllDeploymentsFailed" and rec.attempts == 4


def test_upstream_rate_limit_everywhere_is_429(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "x"}])


def test_upstream_400_is_returned_not_retried(client, upstream):
    before = upstream.calls["bad-400"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="bad", messages=[{"role": "user", "content": "x"}])
    assert "messages[0].role" in err.value.body["message"]
    assert upstream.calls["bad-400"] - before == 1


def test_upstream_timeout_is_504(client, ledger_url):
    # The upstream answers 200 after 3 s: a 504 after two attempts means the 0.5 s deadline cut both short.
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 504 and err.value.body["type"] == "timeout_error"
    [rec] = records(ledger_url, 1)
    assert rec.error_type == "AllDeploymentsFailed" and rec.status == 504 and rec.attempts == 2


def test_stream_cut_by_upstream_ends_with_error_event_and_is_recorded(client, ledger_url):
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="cut", stream=True,
                                                messages=[{"role": "user", "content": "a b c d"}]):
            pass
    [rec] = records(ledger_url, 1)
    assert rec.stream and rec.error_type == "UpstreamErrorMidStream"


def test_embeddings_on_model_without_them_fails_cleanly(client):
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model="no-embed", input="x")
    assert err.value.status_code == 502


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (b'{"model": "gpt-4o-mini"}', 400, "messages"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
    (b'{"model": "gpt-4o-mini", "messages": [], "stream": false}', 400, "messages"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    (b'[1, 2]', 400, None),
])
def test_bad_requests_get_openai_errors(gateway, ledger_url, body, status, param):
    code, headers, data = raw(gateway, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    err = json.loads(data)["error"]
    assert code == status and err["param"] == param
    assert set(err) == {"message", "type", "param", "code"}
    # refused as malformed, yet authenticated: one ledger record, with its status and error type
    [rec] = records(ledger_url, 1)
    assert (rec.request_id, rec.status) == (headers["x-hedgeway-request-id"], status)
    assert rec.error_type == ("InvalidRequest" if status == 400 else "NotFound")


def test_bad_key_is_401_and_never_echoed(gateway):
    code, _, data = raw(gateway, "GET", "/v1/models", headers={"Authorization": "Bearer sk-wrong-key-123456"})
    assert code == 401 and b"sk-wrong" not in data
    code, _, _ = raw(gateway, "POST", "/v1/chat/completions", b"{}", headers={"Authorization": ""})
    assert code == 401


def test_body_over_limit_is_413(gateway):
    big = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"x" * (5 * 1024 * 1024) + b'"}]}'
    code, _, data = raw(gateway, "POST", "/v1/chat/completions", big)
    assert code == 413 and json.loads(data)["error"]["code"] is None or code == 413


def test_unknown_path_and_method(gateway):
    assert raw(gateway, "GET", "/v1/nothing")[0] == 404
    code, headers, _ = raw(gateway, "GET", "/v1/chat/completions")
    assert code == 405 and headers.get("allow") == "POST"


def test_health_ready_and_metrics(client, gateway):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert raw(gateway, "GET", "/healthz")[0] == 200
    assert raw(gateway, "GET", "/readyz")[0] == 200
    code, _, text = raw(gateway, "GET", "/metrics")
    text = text.decode()
    assert code == 200
    assert 'hedgeway_requests_total{model="gpt-4o-mini",deployment="gpt-4o-mini/openai/ok-mini",status="200"} 1' in text
    assert 'llm_queue_depth{deployment="gpt-4o-mini/openai/ok-mini"} 0' in text
    assert 'hedgeway_tokens_total{model="gpt-4o-mini",deployment="gpt-4o-mini/openai/ok-mini",type="prompt"} 12' in text


def test_upstream_secret_never_reaches_client_or_logs(client, gateway, caplog):
    for model in ("dead", "bad", "gpt-4o-mini"):
        try:
            r = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "x"}])
            assert UPSTREAM_KEY not in r.http_response.text
        except openai.APIStatusError as exc:
            assert UPSTREAM_KEY not in exc.response.text
    assert UPSTREAM_KEY not in caplog.text and MASTER not in caplog.text


def test_keep_alive_connection_serves_many_requests(gateway):
    u = urlsplit(gateway.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    body = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hello"}]})
    texts = set()
    for _ in range(5):
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Authorization": f"Bearer {MASTER}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("x-hedgeway-simulated") == "true"
        texts.add(json.loads(resp.read())["choices"][0]["message"]["content"])
    assert len(texts) == 1  # same request, same simulated answer
    conn.close()


def test_prompts_are_kept_only_when_logging_is_on(upstream, tmp_path, client, ledger_url):
    from conftest import gateway_config
    from hedgeway.config import from_dict
    from hedgeway.http.background import BackgroundGateway

    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 2+2?"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)  # the default gateway: off
    assert [r.prompt for r in records(ledger_url, 1)] == [None]
    url = f"sqlite:///{tmp_path}/logged.db"
    cfg = gateway_config(upstream.base_url, url)
    cfg["ledger"]["log_prompts"] = True
    with BackgroundGateway(from_dict(cfg)) as gw:
        logged = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
        logged.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        list(logged.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True))
    rows = records(url, 2)
    assert [json.loads(r.prompt) for r in rows] == [msgs, msgs]
