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
