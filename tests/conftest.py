"""Shared fixtures: a fake OpenAI upstream on loopback and a real Hedgeway gateway in front of it.

The fake speaks OpenAI's documented wire format (chat.completion, chat.completion.chunk SSE with
`stream_options.include_usage`, embeddings list, error envelope) and misbehaves on demand, chosen by the
upstream model name the gateway sends:

    ok-*            normal answers (usage with prompt_tokens_details.cached_tokens)
    fail-500        HTTP 500            fail-429   HTTP 429 with Retry-After: 0
    bad-400         HTTP 400 (the request itself is invalid)
    context-400     HTTP 400 code context_length_exceeded, param messages (as OpenAI words it)
    slow            waits 3 s before answering
    cut-stream      sends two SSE events, then drops the connection
    linger-stream   a normal stream that keeps the response open 0.4 s after `data: [DONE]`
    no-embed        404 on /embeddings
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time

import orjson
import pytest
from aiohttp import web

from fake_server import LoopbackServer
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import open_store

MASTER = "sk-hedgeway-test-master"
UPSTREAM_KEY = "sk-upstream-secret-0123456789"


class FakeOpenAI(LoopbackServer):
    path_prefix = "/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)

    async def _common(self, request: web.Request):
        body = await self.received(request)
        model = body.get("model", "")
        self.calls[model] += 1
        if model == "fail-500":
            return body, web.json_response({"error": {"message": "internal", "type": "server_error"}}, status=500)
        if model == "fail-429":
            return body, web.json_response({"error": {"message": "Rate limit reached", "type": "requests"}},
                                           status=429, headers={"Retry-After": "0"})
        if model == "bad-400":
            return body, web.json_response({"error": {"message": "Invalid 'messages[0].role'", "type":
                                                      "invalid_request_error", "param": "messages", "code": None}},
                                           status=400)
        if model == "context-400":
            return body, web.json_response({"error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted "
                           "in 130000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
                status=400)
        if model == "slow":
            await asyncio.sleep(3)
        return body, None

    async def chat(self, request: web.Request):
        body, early = await self._common(request)
        if early is not None:
            return early
        text = "echo: " + str(body["messages"][-1].get("content"))[:200]
        usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                 "prompt_tokens_details": {"cached_tokens": 4}}
        base = {"id": f"chatcmpl-fake{len(self.requests)}", "created": 1700000000, "model": body["model"],
                "system_fingerprint": "fp"}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": text, "refusal": None}
            if body.get("tools"):
                msg = {"role": "assistant", "content": None, "refusal": None,
                       "tool_calls": [{"id": "call_1", "type": "function",
                       "function": {"name": body["tools"][0]["function"]["name"], "arguments": '{"city":"Paris"}'}}]}
            choices = [{"index": i, "message": msg, "logprobs": None,
                        "finish_reason": "tool_calls" if body.get("tools") else "stop"} for i in range(body.get("n", 1))]
            return web.json_response({**base, "object": "chat.completion", "choices": choices, "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        chunk = {**base, "object": "chat.completion.chunk"}
        if include_usage:
            chunk["usage"] = None

        async def send(choices, usage_obj=None):
            payload = {**chunk, "choices": choices}
            if usage_obj is not None:
                payload["usage"] = usage_obj
            await resp.write(b"data: " + orjson.dumps(payload) + b"\n\n")

        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for word in text.split(" "):
            await send([{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}])
            if body["model"] == "cut-stream":
                request.transport.abort()
                return resp
        await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if include_usage:
            await send([], usage)
        await resp.write(b"data: [DONE]\n\n")
        if body["model"] == "linger-stream":
            await asyncio.sleep(0.4)
        await resp.write_eof()
        return resp

    async def embeddings(self, request: web.Request):
        body, early = await self._common(request)
        if early is not None:
            return early
        if body["model"] == "no-embed":
            return web.json_response({"error": {"message": "not found", "type": "invalid_request_error"}},
                                     status=404)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]} for i in range(len(inputs))]
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}})


@pytest.fixture(scope="session")
def upstream():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def gateway_config(upstream_url: str, ledger_url: str, **overrides) -> dict:
    dep = lambda model, **kw: {"provider": "openai", "model": model, "api_base": upstream_url,  # noqa: E731
                               "api_key": UPSTREAM_KEY, **kw}
    cfg = {
        "auth": {"master_key": MASTER},
        "ledger": {"url": ledger_url, "flush_interval": 0.05},
        "routing": {"num_retries": 1, "retry_backoff": 0.01,
                    "fallbacks": {"flaky": ["gpt-4o-mini"], "dead": ["also-dead"]}},
        "models": [
            {"name": "gpt-4o-mini", "deployments": [dep("ok-mini", price={"input": "0.15", "output": "0.60",
                                                                        "cached_input": "0.075"})]},
            {"name": "flaky", "deployments": [dep("fail-500")]},
            {"name": "limited", "deployments": [dep("fail-429")]},
            {"name": "dead", "deployments": [dep("fail-500")]},
            {"name": "also-dead", "deployments": [dep("fail-500")]},
            {"name": "bad", "deployments": [dep("bad-400")]},
            {"name": "slow", "deployments": [dep("slow", timeout=0.5)]},
            {"name": "cut", "deployments": [dep("cut-stream")]},
            {"name": "linger", "deployments": [dep("linger-stream")]},
            {"name": "no-embed", "deployments": [dep("no-embed")]},
            {"name": "sim", "deployments": [{"provider": "simulated", "model": "sim-1",
                                             "price": {"input": "1", "output": "2"},
                                             "settings": {"ttft_ms": 5, "tokens_per_second": 5000}}]},
        ],
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture()
def ledger_url(tmp_path):
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture()
def gateway(upstream, ledger_url):
    """A running gateway (real server on loopback) in front of the fake upstream."""
    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, ledger_url))) as gw:
        yield gw


@pytest.fixture()
def client(gateway):
    import openai

    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER, max_retries=0, timeout=10)


def require_service(name: str, reason: str):
    """Skip when a shared service is absent, except in CI (CI=true), where its absence is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} not reachable: {reason}")


def records(ledger_url: str, n: int, timeout: float = 5.0) -> list:
    """Ledger rows once `n` have been written, or what is there after `timeout` s (the writer is
    asynchronous by design)."""
    store, deadline = open_store(ledger_url), time.time() + timeout
    try:
        while len(rows := store.records()) < n and time.time() < deadline:
            time.sleep(0.05)
        return rows
    finally:
        store.close()


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until the `hedgeway serve` process `proc` answers /readyz with 200 (fails if it exits or never does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the gateway on {port} exited with {proc.returncode}"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the gateway on {port} is not ready")


@pytest.fixture()
def private_redis(tmp_path):
    """A redis-server of the test's own on a free loopback port, for tests that stop (SIGSTOP) or kill it:
    yields (url, process); resumed and terminated afterwards."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server binary not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
