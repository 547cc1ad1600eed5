"""CPU per upstream response in the pooled client's parse path (upstream.py), without sockets.

A canned response is fed to one connection's protocol the way the event loop would (`data_received`),
after the same `start()` a request makes; the connection goes back to the pool each time. Figures are
CPU microseconds per response (process time), median of 7 runs. `--module PATH` measures another copy of upstream.py (e.g.
the previous commit's, from `git show REV:src/hedgeway/upstream.py > /tmp/old.py`) for a before/after.

    python bench/upstream_parse.py [--module /tmp/old.py] [-n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time

BODY = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":'
        b'[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help?"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}')
CASES = {
    "content-length": b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 04:00:00 GMT\r\ncontent-type: application/json\r\n"
                      b"x-request-id: req_123\r\nopenai-processing-ms: 212\r\ncontent-length: %d\r\n\r\n%s"
                      % (len(BODY), BODY),
    "chunked-sse": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                   + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in [b"data: " + BODY + b"\n\n"] * 20)
                   + b"0\r\n\r\n",
}


class NullTransport:
    def write(self, data): pass
    def abort(self): pass
    def pause_reading(self): pass
    def resume_reading(self): pass


def load(path: str | None):
    if path is None:
        from hedgeway import upstream
        return upstream
    spec = importlib.util.spec_from_file_location("upstream_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def per_response(mod, raw: bytes, n: int) -> float:
    pool = mod.Pool("http://127.0.0.1:1/v1", "bench")
    pool.loop = asyncio.get_running_loop()
    conn = mod._Conn(pool)
    conn.connection_made(NullTransport())
    payload = b"POST /v1/chat/completions HTTP/1.1\r\n\r\n{}"
    start = time.process_time()  # CPU time: what the parse costs, less sensitive to a loaded machine
    for _ in range(n):
        resp = conn.start(payload, 10.0, 60.0)
        conn.data_received(raw)
        assert resp._eof and resp.status == 200
        pool.idle.pop()
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module")
    ap.add_argument("-n", type=int, default=20000)
    args = ap.parse_args()
    mod = load(args.module)
    for name, raw in CASES.items():
        runs = [asyncio.run(per_response(mod, raw, args.n)) for _ in range(7)]
        print(f"{name:15s} {statistics.median(runs):7.2f} µs/response (median of 7, n={args.n})")


if __name__ == "__main__":
    main()
