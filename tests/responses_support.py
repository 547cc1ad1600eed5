"""What the /v1/responses tests share: the gateway in front of the OpenAI scenarios fake, raw HTTP, SSE parsing
and validation of every answer and stream event against the official SDK's own pydantic types."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import openai
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from conftest import MASTER
from test_anthropic_ingress import sse_events

EVENT = TypeAdapter(ResponseStreamEvent)
ITEM = TypeAdapter(ResponseItem)
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"type": "function", "name": "get_time",
         "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}


def sdk(gw, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)


def call(gw, method: str, path: str, body=None, key: str = MASTER) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body bytes) of one plain HTTP call."""
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    data = json.dumps(body).encode() if body is not None else b""
    conn.request(method, path, body=data, headers={"Authorization": f"Bearer {key}",
                                                   "content-type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload


def created(gw, body: dict, key: str = MASTER) -> dict:
    """POST /v1/responses (non-streaming): the raw JSON, validated as the SDK's Response."""
    status, _, data = call(gw, "POST", "/v1/responses", body, key)
    assert status == 200, data
    out = json.loads(data)
    Response.model_validate(out)
    return out


def events(data: bytes) -> list[dict]:
    """Every SSE event of a Responses stream, each validated against the SDK's ResponseStreamEvent union,
    its `event:` line equal to its type, and sequence numbers 0, 1, 2, … in order."""
    out = [payload for _, payload in sse_events(data)]  # each event's name equals its type
    for payload in out:
        EVENT.validate_python(payload)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def streamed(gw, body: dict, key: str = MASTER) -> list[dict]:
    status, headers, data = call(gw, "POST", "/v1/responses", {**body, "stream": True}, key)
    assert status == 200 and headers["content-type"].startswith("text/event-stream"), data
    return events(data)


def deltas_agree(evs: list[dict]) -> dict:
    """The final Response of a stream, checked against its deltas: each item's text and arguments are the
    concatenation of its deltas, and the done events carry the same."""
    final = evs[-1]["response"]
    for index, item in enumerate(final["output"]):
        text = "".join(e["delta"] for e in evs
                       if e["type"] == "response.output_text.delta" and e["output_index"] == index)
        args = "".join(e["delta"] for e in evs
                       if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == index)
        done = next(e for e in evs if e["type"] == "response.output_item.done" and e["output_index"] == index)
        assert done["item"] == item
        if item["type"] == "message":
            assert item["content"][0]["text"] == text
        else:
            assert item["arguments"] == args
    return final
