"""Differential HTTP/1.1 conformance: generated message framings go through a loopback socket, split across
TCP writes at generated points, to Hedgeway's hand-written client (upstream.py) or server (http/server.py),
and the same bytes to h11 (a maintained, strict reference implementation). The body, the end of the
message, and whether the connection may be reused must agree; where h11 finds a protocol error, so must we.
"""

import asyncio
import re

import h11
from hypothesis import HealthCheck, given, settings, strategies as st

from hedgeway.errors import UpstreamError
from hedgeway.http.server import Limits, Request, Response, Server
from hedgeway.upstream import Pool

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
BODY = st.binary(max_size=300)


def cut(draw, data: bytes) -> list[bytes]:
    points = sorted(set(draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=5))))
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)]) if data[a:b]]


async def write_slowly(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    for piece in pieces:  # each piece its own TCP segment (NODELAY on asyncio sockets; a pause between)
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.001)


# --- responses: upstream.py's client vs h11's client ---

@st.composite
def responses(draw):
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    status = draw(st.sampled_from([200, 200, 201, 404, 500, 204, 304]))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    connection = draw(st.sampled_from([None, "close", "keep-alive"]))
    body = b"" if status in (204, 304) else draw(BODY)
    head = [f"HTTP/{version} {status} Whatever"]
    interim = draw(st.lists(st.sampled_from([100, 103]), max_size=2)) if version == "1.1" else []
    if connection:
        head.append(f"Connection: {connection}")
    head += [f"X-{draw(TOKEN)}: {draw(TOKEN)}" for _ in range(draw(st.integers(0, 3)))]
    if status in (204, 304):
        framing = "length"
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        raw = body
    elif framing == "chunked" and version == "1.1":
        head.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 64), max_size=6))
        parts, at = [], 0
        for n in sizes:
            part = body[at:at + n]
            if not part:
                break
            ext = draw(st.sampled_from(["", ";name=value", ";a"]))
            parts.append(b"%x%s\r\n%s\r\n" % (len(part), ext.encode(), part))
            at += len(part)
        body = body[:at]
        trailer = draw(st.sampled_from(["", "X-Trailer: yes\r\n"]))
        raw = b"".join(parts) + b"0\r\n" + trailer.encode() + b"\r\n"
    else:
        framing = "close"
        raw = body
    hints = b"".join(b"HTTP/1.1 %d Hint\r\nLink: </x>\r\n\r\n" % code for code in interim)
    data = hints + ("\r\n".join(head) + "\r\n\r\n").encode() + raw
    truncated = draw(st.booleans()) and framing != "close" and len(data) > 1 and draw(st.integers(0, 3)) == 0
    if truncated:  # the upstream dies mid-message: an error for both, never a short body taken as whole
        data = data[:draw(st.integers(1, len(data) - 1))]
    closes = truncated or framing == "close" or connection == "close" or version == "1.0"
    return data, cut(draw, data), closes


def h11_response(data: bytes, closes: bool):
    """(status, body, reusable) as h11 reads it, or "error"."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/x", headers=[("Host", "up"), ("Content-Length", "2")]))
    conn.send(h11.Data(data=b"{}"))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if closes:
        conn.receive_data(b"")
    status, body = None, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                # reusable: h11's states allow another request, and the server did not close
                return status, body, conn.our_state is h11.DONE and conn.their_state is h11.DONE and not closes
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return "error"
    except h11.RemoteProtocolError:
        return "error"


def ours_response(pieces: list[bytes], closes: bool):
    async def handler(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n{}")
            await write_slowly(writer, pieces)
            if not closes:  # a keep-alive server waits for the next request
                await reader.read()
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            resp = await pool.request("POST", "/x", b"", b"{}", 10, 10)
            body = await resp.read()
            return resp.status, body, len(pool.idle) == 1
        except UpstreamError:
            return "error"
        finally:
            pool.close()
            server.close()

    return asyncio.run(main())


@SETTINGS
@given(responses())
def test_client_framing_agrees_with_h11(case):
    data, pieces, closes = case
    assert ours_response(pieces, closes) == h11_response(data, closes), data


def test_client_framing_agrees_with_h11_at_every_split_point():
    data = (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n")
    expected = h11_response(data, False)
    assert expected == (200, b"hello!", True)
    for at in range(1, len(data)):
        assert ours_response([data[:at], data[at:]], False) == expected, at


# --- requests: http/server.py vs h11's server ---

@st.composite
def requests(draw):
    """One to three pipelined requests, sometimes a malformed one last."""
    out, expected_close = [], False
    for i in range(draw(st.integers(1, 3))):
        version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0"]))
        method = draw(st.sampled_from(["GET", "POST", "POST"]))
        target = "/" + draw(TOKEN) + draw(st.sampled_from(["", "?q=1"]))
        connection = draw(st.sampled_from([None, None, "close", "keep-alive"]))
        head = [f"{method} {target} HTTP/{version}", "Host: gw"]
        if connection:
            head.append(f"Connection: {connection}")
        body = draw(BODY) if method == "POST" else b""
        framing = draw(st.sampled_from(["length", "chunked"])) if version == "1.1" and method == "POST" else "length"
        if framing == "chunked":
            head.append("Transfer-Encoding: chunked")
            parts = [body[at:at + 50] for at in range(0, len(body), 50)]
            raw = b"".join(b"%x%s\r\n%s\r\n" % (len(p), draw(st.sampled_from([b"", b";e=1"])), p) for p in parts)
            raw += b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"])) + b"\r\n"
        else:
            if method == "POST" or draw(st.booleans()):
                head.append(f"Content-Length: {len(body)}")
            raw = body
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
    if draw(st.integers(0, 3)) == 0:
        out.append(draw(st.sampled_from([b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
                                         b"POST / HTTP/1.1\r\nContent-Length: x1\r\n\r\n",
                                         b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                         b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"])))
    data = b"".join(out)
    return data, cut(draw, data)


def h11_requests(data: bytes):
    """([(method, target, body)] h11 sees, and after them "error", "close" or "open")."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    seen, current = [], None
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                current = [event.method.decode(), event.target.decode(), b""]
            elif isinstance(event, h11.Data):
                current[2] += event.data
            elif isinstance(event, h11.EndOfMessage):
                seen.append(tuple(current))
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return seen, "close"
                conn.start_next_cycle()
            elif event is h11.NEED_DATA:
                return seen, "open"
            else:
                return seen, "close"
    except h11.RemoteProtocolError:
        return seen, "error"


def ours_requests(pieces: list[bytes], expected: int):
    seen = []

    async def app(req: Request):
        seen.append((req.method, req.path + ("?" + req.query if req.query else ""), req.body))
        return Response(200, b"")

    async def main():
        server = Server(app, Limits())
        port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await write_slowly(writer, pieces)
            got = b""
            while len(re.findall(rb"HTTP/1.1 200 ", got)) < expected:  # the answers h11 expects
                more = await asyncio.wait_for(reader.read(65536), 10)
                if not more:
                    break
                got += more
            if got.count(b"HTTP/1.1 ") > expected:
                return seen, "error"  # (an error answer follows the expected ones: then the close)
            writer.write(b"GET /probe HTTP/1.1\r\nHost: gw\r\n\r\n")
            rest = await asyncio.wait_for(reader.read(65536), 10)
            if rest.startswith(b"HTTP/1.1 200"):
                seen.pop()  # the probe
                return seen, "open"
            return seen, ("error" if rest.startswith(b"HTTP/1.1 4") else "close")
        except ConnectionError:
            return seen, "close"
        finally:
            writer.close()
            await server.shutdown(0)

    return asyncio.run(main())


@SETTINGS
@given(requests())
def test_server_framing_agrees_with_h11(case):
    data, pieces = case
    expected, state = h11_requests(data)
    assert ours_requests(pieces, len(expected)) == (expected, state), data


def test_server_framing_agrees_with_h11_at_every_split_point():
    data = (b"POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n"
            b"GET /b?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
    expected = h11_requests(data)
    assert expected == ([("POST", "/a", b"abc"), ("GET", "/b?q=1", b"")], "open")
    for at in range(1, len(data)):
        assert ours_requests([data[:at], data[at:]], 2) == expected, at
