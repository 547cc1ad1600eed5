"""OpenTelemetry traces through a real gateway to a fake OTLP/HTTP collector on loopback (JSON encoding,
as the OTLP specification defines it): span shape, GenAI attributes, W3C parent propagation and its
sampled flag, and a failing collector that never touches requests."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from aiohttp import web

from conftest import MASTER, UPSTREAM_KEY, gateway_config
from fake_server import LoopbackServer
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger.base import Record
from hedgeway.tracing import span
from test_http_openai import raw

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


class Collector(LoopbackServer):
    """POST /v1/traces: keeps every request body and header set; answers `status`."""

    def __init__(self, status: int = 200):
        super().__init__()
        self.status = status
        self.start()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self.traces)

    async def traces(self, request: web.Request):
        await self.received(request)
        return web.json_response({}, status=self.status)

    def spans(self) -> list[dict]:
        return [s for b in self.requests for rs in b["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def _attrs(s: dict) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in s["attributes"]}


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)
    return pred()


def test_spans_carry_genai_attributes_and_the_callers_trace(upstream, ledger_url, monkeypatch):
    monkeypatch.setenv("HW_TEST_OTLP_AUTH", "Bearer collector-secret")
    collector = Collector()
    cfg = gateway_config(upstream.base_url, ledger_url, tracing={
        "endpoint": f"http://127.0.0.1:{collector.port}", "interval": 0.05, "service_name": "gw-test",
        "headers": {"authorization": "os.environ/HW_TEST_OTLP_AUTH"}})
    with BackgroundGateway(from_dict(cfg)) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
        msgs = [{"role": "user", "content": "a private prompt"}]
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                       extra_headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs,  # the caller did not sample it
                                       extra_headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
        list(client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True))
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="dead", messages=msgs)
        assert _wait(lambda: len(collector.spans()) >= 3)
        _, _, metrics = raw(gw, "GET", "/metrics")
    spans = collector.spans()
    assert len(spans) == 3
    child, streamed, failed = spans
    assert (child["traceId"], child["parentSpanId"]) == (PARENT_TRACE, PARENT_SPAN)
    assert len(streamed["traceId"]) == 32 and streamed["traceId"] != PARENT_TRACE and streamed["parentSpanId"] == ""
    assert child["name"] == "chat gpt-4o-mini" and child["kind"] == 2 and child["status"]["code"] == 1
    a = _attrs(child)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.usage.input_tokens"] == "12"
    assert a["gen_ai.usage.output_tokens"] == "5" and a["http.response.status_code"] == "200"
    assert a["hedgeway.cost_usd"] == pytest.approx((8 * 0.15 + 4 * 0.075 + 5 * 0.60) / 1e6)
    assert int(child["endTimeUnixNano"]) > int(child["startTimeUnixNano"]) > (time.time() - 60) * 1e9
    assert _attrs(streamed)["hedgeway.stream"] is True and "hedgeway.ttft_ms" in _attrs(streamed)
    assert failed["status"]["code"] == 2 and _attrs(failed)["error.type"] == "AllDeploymentsFailed"
    body = str(collector.requests)
    assert "a private prompt" not in body and MASTER not in body and UPSTREAM_KEY not in body
    assert collector.requests[0]["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] == "gw-test"
    assert collector.headers[0]["Authorization"] == "Bearer collector-secret"
    assert b"hedgeway_trace_spans_exported_total 3" in metrics


def test_a_failing_collector_costs_requests_nothing_and_is_counted(upstream, ledger_url):
    collector = Collector(status=503)
    cfg = gateway_config(upstream.base_url, ledger_url, tracing={
        "endpoint": f"http://127.0.0.1:{collector.port}", "interval": 0.05})
    with BackgroundGateway(from_dict(cfg)) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert _wait(lambda: b"hedgeway_trace_spans_failed_total 3" in raw(gw, "GET", "/metrics")[2])


def test_tracing_off_means_no_tracer_and_config_errors_name_the_field(upstream, ledger_url):
    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, ledger_url))) as gw:
        assert b"hedgeway_trace_spans" not in raw(gw, "GET", "/metrics")[2]
        assert not any(t.name == "hedgeway-tracing" for t in threading.enumerate())
    with pytest.raises(ConfigError) as err:
        from_dict(gateway_config(upstream.base_url, ledger_url, tracing={"endpoint": "http://x", "sample_ratio": 2}))
    assert "tracing.sample_ratio" in str(err.value)
    with pytest.raises(ConfigError) as err:
        from_dict(gateway_config(upstream.base_url, ledger_url,
                                 tracing={"endpoint": "http://x", "headers": {"k": "os.environ/HW_NOT_SET_ANYWHERE"}}))
    assert "tracing.headers.k" in str(err.value) and "HW_NOT_SET_ANYWHERE" in str(err.value)


def test_span_of_a_broken_stream_is_an_error_and_a_malformed_parent_starts_a_new_trace():
    rec = Record(request_id="r1", ts=1_700_000_000.0, endpoint="messages", model_name="auto", deployment="d",
                 provider="anthropic", status=200, error_type="UpstreamErrorMidStream", latency_ms=12.5)
    s = span(rec, "00-not-a-trace-parent-01")
    assert s["status"]["code"] == 2 and s["parentSpanId"] == "" and s["name"] == "chat auto"
    assert int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) == 12_500_000
