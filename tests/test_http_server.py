"""The hand-written HTTP server's framing and limits, spoken to over raw loopback sockets."""

import asyncio
import re

import pytest

from hedgeway.http.server import Limits, Request, Response, Server, StreamingResponse


async def app(req: Request):
    if req.path == "/slow":
        await asyncio.sleep(0.05)
    if req.path == "/stream":
        async def chunks():
            for part in (b"data: 1\n\n", b"", b"data: [DONE]\n\n"):
                yield part
        return StreamingResponse({}, chunks())
    if req.method != "GET" and req.path != "/echo":
        return Response(405, b'{"error":"method"}')
    return Response(200, b'{"path":"' + req.path.encode() + b'","body":"' + req.body + b'"}')


async def serving(limits: Limits = Limits()):
    server = Server(app, limits)
    port = await server.start("127.0.0.1", 0)
    return server, port


async def talk(port: int, *writes: bytes, pause: float = 0.0) -> bytes:
    """Send `writes` (pausing between them), then read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for w in writes:
            writer.write(w)
            await writer.drain()
            await asyncio.sleep(pause)
    except ConnectionError:  # the server answered and closed before the client finished
        pass
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def run(coro_fn, limits: Limits = Limits()):
    async def main():
        server, port = await serving(limits)
        try:
            return await coro_fn(port)
        finally:
            await server.shutdown(0.1)
    return asyncio.run(main())


def test_expect_100_continue_is_answered_and_an_oversized_body_refused_before_it_is_sent():
    async def go(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(b"hi")
        final = await asyncio.wait_for(reader.readuntil(b'"}'), 10)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
        refused = await asyncio.wait_for(reader.read(), 10)  # no body sent: the answer comes anyway
        writer.close()
        return interim, final, refused

    interim, final, refused = run(go, Limits(max_body=1024))
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200") and final.endswith(b'"body":"hi"}')
    assert refused.startswith(b"HTTP/1.1 413") and b"connection: close" in refused


def test_head_gets_the_get_headers_and_no_body():
    out = run(lambda port: talk(port, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and b"content-length: 28" in first
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b'{"path":"/next","body":""}')


def test_http_1_0_clients_get_no_chunked_stream_and_the_close_ends_it():
    out = run(lambda port: talk(port, b"GET /stream HTTP/1.0\r\n\r\n"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert body == b"data: 1\n\ndata: [DONE]\n\n"
    chunked = run(lambda port: talk(port, b"GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert chunked.endswith(b"9\r\ndata: 1\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")  # no early 0-chunk


def test_a_malformed_request_in_a_pipeline_is_answered_after_the_valid_ones_before_it():
    out = run(lambda port: talk(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"GET /c HTTP/1.1\r\nContent-Length: nope\r\n\r\n"))
    statuses = re.findall(rb"HTTP/1.1 (\d+)", out)
    assert statuses == [b"200", b"200", b"400"]
    assert out.index(b'"/slow"') < out.index(b'"/b"') < out.index(b"malformed")


def test_a_trickling_request_head_gets_408_and_the_close():
    limits = Limits(head_timeout=0.3, body_timeout=0.3)
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    out = run(lambda port: talk(port, *[head[i:i + 2] for i in range(0, len(head), 2)], pause=0.02), limits)
    assert out.startswith(b"HTTP/1.1 408") and b"connection: close" in out
    body = run(lambda port: talk(port, b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc"), limits)
    assert body.startswith(b"HTTP/1.1 408")


def test_an_idle_keep_alive_connection_is_closed_cleanly():
    out = run(lambda port: talk(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), Limits(idle_timeout=0.2))
    assert out.startswith(b"HTTP/1.1 200") and out.count(b"HTTP/1.1") == 1  # answered, then closed
    silent = run(lambda port: talk(port), Limits(idle_timeout=0.2))  # never sent a byte
    assert silent == b""


def test_connections_past_the_cap_get_503():
    async def go(port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        over = await talk(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        for _, w in held:
            w.close()
        for _ in range(200):  # once the server has seen the closes, connections are served again
            after = await talk(port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if not after.startswith(b"HTTP/1.1 503"):
                break
            await asyncio.sleep(0.05)
        return over, after

    over, after = run(go, Limits(max_connections=2))
    assert over.startswith(b"HTTP/1.1 503") and b"connection: close" in over and b"retry-after: 1" in over
    assert after.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("field,value", [("head_timeout", 0), ("idle_timeout", -1), ("max_connections", 0),
                                         ("body_timeout", "x"), ("read_timeout", 5)])
def test_server_limits_are_validated_with_their_path(field, value):
    from hedgeway.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=f"server.{field}"):
        from_dict({"server": {field: value}, "auth": {"disabled": True},
                          "models": [{"name": "m", "deployments": [{"provider": "simulated", "model": "m"}]}]})
