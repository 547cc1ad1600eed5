"""A raw asyncio TCP upstream that speaks OpenAI's wire format — and misbehaves on command.

The fault is the upstream model name the gateway sends (the deployment's `model`), so one server plays
every deployment of a test config:

    ok             a normal chat.completion (or chat.completion.chunk SSE stream ending with [DONE])
    500            HTTP 500 with an OpenAI error body
    429 / 429-ra   HTTP 429 without / with `Retry-After: 0.3`
    hang           reads the request, never answers (read timeout)
    malformed      200 with a body that is not JSON
    huge-<bytes>   200 with a valid chat.completion padded to about <bytes> bytes
    never-close    non-stream: headers and part of a Content-Length body, then silence;
                   stream: one event, then silence (the connection stays open)
    slow-first     stream: headers at once, the first event after 2 s
    reset-before   stream: headers, then a TCP reset before any event
    reset-after    stream: one event, then a TCP reset
    truncated-sse  stream: two events and half of a third, then a clean end of body without [DONE]
    echo-<status>  that status, with an error message echoing the key it received, whole and masked the
                   way OpenAI masks it (some providers echo part of the key)

Every answer carries `Connection: close` and the server closes its side afterwards, so `open` (the
connections this server has not seen closed) is exactly the number of upstream sockets the gateway still
holds: after a request has finished it must drop back to 0. `blackhole()` gives a port whose accept
queue is full (SYNs are dropped: a connect timeout); `closed_port()` one nobody listens on (refused).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections import Counter

import orjson

USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
BASE = {"id": "chatcmpl-faulty", "created": 1700000000, "system_fingerprint": "fp"}


def _head(status: int, content_type: str = "application/json", length: int | None = None,
          extra: str = "") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests",
              500: "Internal Server Error"}.get(status, "Error")
    size = f"content-length: {length}\r\n" if length is not None else "transfer-encoding: chunked\r\n"
    return f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n{size}connection: close\r\n{extra}\r\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _event(model: str, choices: list, usage: dict | None = None) -> bytes:
    payload = {**BASE, "object": "chat.completion.chunk", "model": model, "choices": choices}
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _delta(model: str, text: str) -> bytes:
    return _event(model, [{"index": 0, "delta": {"content": text}, "finish_reason": None}])


def _completion(model: str, text: str = "fine") -> bytes:
    return orjson.dumps({**BASE, "object": "chat.completion", "model": model, "usage": USAGE,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}]})


def _json_reply(status: int, body: dict, extra: str = "") -> bytes:
    data = orjson.dumps(body)
    return _head(status, length=len(data), extra=extra) + data


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # linger 0: the peer sees RST, not FIN


class FaultyUpstream:
    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.open = 0
        self.seen_auth: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-faulty", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FaultyUpstream":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def wait_closed(self, timeout: float = 2.0) -> int:
        """Wait until every connection is closed (or timeout); returns how many are still open."""
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = orjson.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            self.seen_auth.append(headers.get("authorization", ""))
            fault = body.get("model", "")
            self.calls[fault] += 1
            await self._serve(fault, body, headers, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()
            self.open -= 1

    async def _until_peer_closes(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def _serve(self, fault: str, body: dict, headers: dict, reader, writer) -> None:
        stream = bool(body.get("stream"))
        w = writer.write
        if fault == "500":
            w(_json_reply(500, {"error": {"message": "internal failure", "type": "server_error"}}))
        elif fault in ("429", "429-ra"):
            w(_json_reply(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                          "retry-after: 0.3\r\n" if fault == "429-ra" else ""))
        elif fault.startswith("echo-"):  # echo-<status>: the key, whole and masked OpenAI-style, in the error
            key = headers.get("authorization", "").removeprefix("Bearer ")
            masked = f"{key[:7]}{'*' * 8}{key[-4:]}"
            w(_json_reply(int(fault[5:]), {"error": {
                "message": f"Incorrect API key provided: {masked}. You sent {key} in {headers.get('authorization')}",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}))
        elif fault == "hang":
            await self._until_peer_closes(reader)
        elif fault == "malformed":
            data = b'{"id": "chatcmpl-x", "choices": [{"message": '
            w(_head(200, length=len(data)) + data)
        elif fault.startswith("huge-"):
            pad = "x" * int(fault.split("-", 1)[1])
            data = _completion(fault, pad)
            w(_head(200, length=len(data)))
            for i in range(0, len(data), 1 << 20):
                w(data[i:i + (1 << 20)])
                await writer.drain()
        elif fault == "never-close":
            if stream:
                w(_head(200, "text/event-stream") + _chunk(_delta(fault, "one ")))
            else:
                w(_head(200, length=1000) + b'{"id": "chatcmpl')
            await writer.drain()
            await self._until_peer_closes(reader)
        elif stream:
            await self._stream(fault, writer, reader)
        else:
            data = _completion(fault)
            w(_head(200, length=len(data)) + data)
        await writer.drain()

    async def _stream(self, fault: str, writer: asyncio.StreamWriter, reader) -> None:
        w = writer.write
        w(_head(200, "text/event-stream"))
        if fault == "slow-first":
            await writer.drain()
            try:  # 2 s of silence, unless the gateway gives up first
                await asyncio.wait_for(self._until_peer_closes(reader), 2.0)
                return
            except asyncio.TimeoutError:
                pass
        if fault == "reset-before":
            await writer.drain()
            await asyncio.sleep(0.05)
            return _reset(writer)
        w(_chunk(_event(fault, [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                 "finish_reason": None}])))
        w(_chunk(_delta(fault, "hello ")))
        if fault == "reset-after":
            await writer.drain()
            await asyncio.sleep(0.05)
            return _reset(writer)
        if fault == "truncated-sse":
            w(_chunk(b'data: {"id": "chatcmpl-faulty", "choices": [{"delta": {"cont'))
            w(b"0\r\n\r\n")
            return
        w(_chunk(_event(fault, [{"index": 0, "delta": {}, "finish_reason": "stop"}])))
        w(_chunk(_event(fault, [], USAGE)))
        w(_chunk(b"data: [DONE]\n\n"))
        w(b"0\r\n\r\n")


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def blackhole() -> tuple[int, list[socket.socket]]:
    """(port, sockets to keep alive): a listener whose accept queue is full, so further SYNs are dropped
    and a connect hangs until the client's own timeout. Close the sockets when done."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = [listener]
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(s)
    time.sleep(0.05)
    return port, held
