"""Upstream wire quirks real servers have, through the whole gateway: interim 1xx responses, bodies and
streams delimited by the connection's close (HTTP/1.0 servers, some proxies), gzip bodies, and `[DONE]`
spelled without the space or after `event:`/`id:` lines. Each must give the client its own complete answer
and a clean ledger row."""

import asyncio
import gzip
import http.client
import threading

import orjson
import pytest

from conftest import MASTER, records
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def completion(text: str) -> bytes:
    return orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m", "usage": USAGE,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}]})


def stream_events(text: str) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return (b"event: message\r\nid: 1\r\ndata:" + orjson.dumps({**chunk, "choices": [
                {"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}) + b"\r\n\r\n"
            + b"data:" + orjson.dumps({**chunk, "choices": [], "usage": USAGE}) + b"\r\n\r\n"
            + b"id: 2\r\ndata:[DONE]\r\n\r\n")


async def answer(reader, writer):
    """Quirk by the upstream model name; the answer echoes the user's message (whose answer is whose)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = orjson.loads(await reader.readexactly(length))
        quirk, text, stream = body["model"], body["messages"][-1]["content"], body.get("stream")
        if quirk == "hints":
            data = completion(text)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(data), data))
        elif quirk == "gzip":
            data = gzip.compress(completion(text))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(data), data))
        else:  # "close": no length, no chunks; the close ends the body
            data = stream_events(text) if stream else completion(text)
            kind = b"text/event-stream" if stream else b"application/json"
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + kind + b"\r\n\r\n")
            for i in range(0, len(data), 40):
                writer.write(data[i:i + 40])
                await writer.drain()
            break
        await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(answer, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    ledger = f"sqlite:///{tmp_path_factory.mktemp('quirks')}/ledger.db"
    cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": ledger, "flush_interval": 0.01},
           "routing": {"num_retries": 0},
           "models": [{"name": q, "deployments": [{"provider": "openai", "model": q, "api_base": url,
                                                   "api_key": "sk-x", "price": {"input": "1", "output": "1"}}]}
                      for q in ("hints", "gzip", "close")]}
    with BackgroundGateway(from_dict(cfg)) as gw:
        yield gw, ledger
    loop.call_soon_threadsafe(loop.stop)


def ask(gw, model: str, text: str, stream: bool = False) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    conn.request("POST", "/v1/chat/completions",
                 orjson.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}),
                 {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.parametrize("model", ["hints", "gzip", "close"])
def test_each_request_gets_its_own_complete_answer(quirky, model):
    gw, ledger = quirky
    before = len(records(ledger, 0, 0))
    for who in ("team A", "team B", "team C"):  # sequential: a pooled connection would be reused
        status, data = ask(gw, model, who)
        assert status == 200, data
        assert orjson.loads(data)["choices"][0]["message"]["content"] == who
    rows = records(ledger, before + 3)[before:]
    assert [(r.status, r.error_type) for r in rows] == [(200, None)] * 3


def test_a_close_delimited_stream_with_done_spelled_otherwise_ends_cleanly(quirky):
    gw, ledger = quirky
    before = len(records(ledger, 0, 0))
    status, data = ask(gw, "close", "streamed", stream=True)
    assert status == 200 and b'"error"' not in data and b"streamed" in data
    assert data.rstrip().endswith(b"[DONE]")
    row = records(ledger, before + 1)[before]
    assert (row.status, row.error_type, row.completion_tokens) == (200, None, 2)
