"""The pooled upstream client against scripted raw HTTP servers on loopback."""

import asyncio

import pytest

from hedgeway.errors import UpstreamError, UpstreamTimeout
from hedgeway.upstream import Pool

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


async def scripted(handler):
    """A server whose `handler(reader, writer, n)` answers the n-th connection."""
    count = 0

    async def on_conn(reader, writer):
        nonlocal count
        count += 1
        try:
            await handler(reader, writer, count)
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    return head, await reader.readexactly(length)


def test_keep_alive_reuses_one_connection_and_sends_path_and_body():
    seen = []

    async def handler(reader, writer, n):
        while True:
            try:
                head, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append((n, head.split(b"\r\n")[0], body))
            writer.write(OK)

    async def main():
        server, url = await scripted(handler)
        pool = Pool(url)
        for _ in range(3):
            resp = await pool.request("POST", "/chat/completions", b"X-Test: 1\r\n", b'{"a":1}', 5, 5)
            assert resp.status == 200 and await resp.read() == b'{"ok":true}'
        pool.close()
        server.close()

    asyncio.run(main())
    assert [s[0] for s in seen] == [1, 1, 1]
    assert seen[0][1] == b"POST /v1/chat/completions HTTP/1.1" and seen[0][2] == b'{"a":1}'


def test_stale_keep_alive_connection_is_retried_on_a_fresh_one():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:  # first connection: read the next request, then close without answering
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                pass

    async def main():
        server, url = await scripted(handler)
        pool = Pool(url)
        assert await (await pool.request("POST", "/x", b"", b"{}", 5, 5)).read() == b'{"ok":true}'
        resp = await pool.request("POST", "/x", b"", b"{}", 5, 5)
        assert await resp.read() == b'{"ok":true}'
        pool.close()
        server.close()

    asyncio.run(main())


def test_chunked_body_streams_in_order():
    async def handler(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main():
        server, url = await scripted(handler)
        pool = Pool(url)
        resp = await pool.request("POST", "/x", b"", b"{}", 5, 5)
        got = b"".join([c async for c in resp])
        server.close()
        return got

    assert asyncio.run(main()) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


def test_first_byte_and_total_deadlines():
    async def silent(reader, writer, n):
        await read_request(reader)
        await asyncio.sleep(2)

    async def trickle(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(2)

    async def main():
        server, url = await scripted(silent)
        with pytest.raises(UpstreamTimeout, match="respond"):
            await Pool(url).request("POST", "/x", b"", b"{}", 0.1, 1.0)
        server.close()
        server, url = await scripted(trickle)
        resp = await Pool(url).request("POST", "/x", b"", b"{}", 0.5, 0.3)
        with pytest.raises(UpstreamTimeout, match="finish"):
            await resp.read()
        server.close()

    asyncio.run(main())


def test_connection_refused_and_garbage_are_upstream_errors():
    async def garbage(reader, writer, n):
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def main():
        with pytest.raises(UpstreamError, match="cannot connect"):
            await Pool("http://127.0.0.1:9/v1").request("POST", "/x", b"", b"{}", 1, 1)
        server, url = await scripted(garbage)
        with pytest.raises(UpstreamError):
            resp = await Pool(url).request("POST", "/x", b"", b"{}", 1, 1)
            await resp.read()
        server.close()

    asyncio.run(main())


def test_interim_1xx_responses_are_skipped_and_never_answer_the_next_request():
    """103 Early Hints / 100 Continue precede the real answer; request B must get B's answer, not A's."""
    async def handler(reader, writer, n):
        while True:
            try:
                _, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            answer = b'{"for":' + body + b"}"
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))

    async def main():
        server, url = await scripted(handler)
        pool = Pool(url)
        got = []
        for name in (b'"A"', b'"B"'):
            resp = await pool.request("POST", "/x", b"", name, 5, 5)
            got.append((resp.status, "link" in resp.headers, await resp.read()))
        pool.close()
        server.close()
        return got

    assert asyncio.run(main()) == [(200, False, b'{"for":"A"}'), (200, False, b'{"for":"B"}')]


def one_shot(raw: bytes):
    """A handler that answers every request on its connection with `raw`, then closes if raw says so."""
    async def handler(reader, writer, n):
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(raw)
            await writer.drain()
            if b"close" in raw.lower() or b"HTTP/1.0" in raw:
                return
    return handler


def exchange(raw: bytes, times: int = 2, stream: bool = False):
    """Send `times` requests through one pool; returns [(status, body)] and the connections used."""
    async def main():
        server, url = await scripted(one_shot(raw))
        pool = Pool(url)
        got = []
        for _ in range(times):
            resp = await pool.request("POST", "/x", b"", b"{}", 5, 5)
            body = b"".join([c async for c in resp]) if stream else await resp.read()
            got.append((resp.status, body))
        pool.close()
        server.close()
        return got
    return asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\n"])
def test_a_body_delimited_by_the_close_completes_and_its_connection_is_not_reused(head, stream):
    body = b"data: 1\n\ndata: [DONE]\n\n" if stream else b'{"ok":true}'
    assert exchange(head + body, 2, stream) == [(200, body), (200, body)]  # second: a fresh connection


@pytest.mark.parametrize("stream", [False, True])
def test_gzip_bodies_are_asked_for_and_decoded(stream):
    import gzip
    seen = []

    async def handler(reader, writer, n):
        head, _ = await read_request(reader)
        seen.append(head.lower())
        packed = gzip.compress(b'{"ok":true}')
        if stream:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(packed), 7):
                writer.write(b"%x\r\n%s\r\n" % (len(packed[i:i + 7]), packed[i:i + 7]))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(packed), packed))
        await writer.drain()

    async def main():
        server, url = await scripted(handler)
        resp = await Pool(url).request("POST", "/x", b"", b"{}", 5, 5)
        body = b"".join([c async for c in resp]) if stream else await resp.read()
        server.close()
        return body

    assert asyncio.run(main()) == b'{"ok":true}'
    assert b"accept-encoding: gzip" in seen[0]


def test_a_corrupt_gzip_body_is_an_upstream_error():
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"
    with pytest.raises(UpstreamError, match="compressed"):
        exchange(raw, 1)


def test_response_headers_are_bounded():
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (70 << 10) + b"\r\nContent-Length: 2\r\n\r\n{}"
    with pytest.raises(UpstreamError, match="headers larger"):
        exchange(raw, 1)
    many_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"a" * 1000 + b">\r\n\r\n"
    with pytest.raises(UpstreamError, match="headers larger"):  # endless interim responses count too
        exchange(many_hints * 100 + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1)
