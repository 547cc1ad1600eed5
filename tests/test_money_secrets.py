"""Money and secrets against a llama.cpp-like upstream: streams without usage are priced from an offline
token count, budgets hold across stream cut-offs, upstreams that ignore max_tokens and restarts, and no
configured credential or stack trace leaves the gateway.

The fake speaks llama-cpp-python's server format: `chat.completion.chunk` events serialised by Python's
json (`"content": "…"`, with spaces), no usage in any stream (with or without
`stream_options.include_usage`), usage in plain answers. By upstream model name:

    nousage          8 words, then finish and [DONE]
    zero-usage       the same, then a usage event of zeros (as some proxies send); a plain answer with zeros
    endless          streams 10,000 tokens (" the"), ignoring max_tokens; a plain answer claims 100,000 tokens
    echo-key-stream  two words, then an error event quoting the deployment's key and an unknown Google key
    echo-key         HTTP 500 quoting another deployment's key and an unknown Google key
    trace-500        HTTP 500 whose message is a Python stack trace (llama.cpp's on a bad top_k)
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import signal
import subprocess
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import quicktok
import yaml
from aiohttp import web

from conftest import MASTER, records, wait_ready
from fake_server import LoopbackServer
from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import Record, open_store
from hedgeway.ledger.dashboard import Dashboard
from hedgeway.limits import build_admission
from hedgeway.limits.estimate import to_units
from hedgeway.pricing import cost
from hedgeway.redaction import Redactor
from hedgeway.types import Principal, Usage
from test_cli import ENV, HW, free_port
from test_ledger_postgres import pg_admin, pg_url  # noqa: F401 - fixtures
from test_limits_gateway import post

GOOGLE_KEY = "AIzaSyD4fake0123456789abcdefghijklmnopq"  # the deployment's key, Gemini-style
OTHER_KEY = "AIzaSyC9another0123456789abcdefghijklmn"  # another deployment's
UNKNOWN_KEY = "AIzaSyB7unknown0123456789abcdefghijklmn"  # configured nowhere
TRACE = ('Traceback (most recent call last):\n  File "/srv/llama_cpp/server/app.py", line 512, in create_chat\n'
         '    return await run_in_threadpool(llama.create_chat_completion, **kwargs)\n'
         '  File "/srv/llama_cpp/llama.py", line 1901, in _sample\n    assert top_k >= 0\n'
         'ValueError: top_k must be a non-negative integer')
PROMPT = "Write a haiku about the sea.\nUse simple words."
ENC = quicktok.get_encoding("cl100k_base")


class FakeLlama(LoopbackServer):
    path_prefix = "/v1"

    def __init__(self):
        super().__init__()
        self.cancelled = 0  # streams whose client (the gateway) went away before the end

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)

    async def chat(self, request: web.Request):
        body = await self.received(request)
        model = body["model"]
        if model == "trace-500":
            return web.json_response({"error": {"message": TRACE, "type": "internal_server_error"}}, status=500)
        if model == "echo-key":
            return web.json_response({"error": {"message": f"API key not valid: {OTHER_KEY} / {UNKNOWN_KEY}",
                                                "type": "server_error"}}, status=500)
        base = {"id": "chatcmpl-llama", "created": 1700000000, "model": model}
        if not body.get("stream"):
            out = 100_000 if model == "endless" else 8  # an upstream that ignores max_tokens
            if model == "zero-usage":
                return web.json_response({**base, "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "word " * 8}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "word " * 8}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 39, "completion_tokens": out, "total_tokens": 39 + out}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj):
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\r\n\r\n")

        def chunk(delta, finish=None):
            return {**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        try:
            await send(chunk({"role": "assistant"}))
            for i in range(10_000 if model == "endless" else 8):
                # one token per event, as llama.cpp sends them
                await send(chunk({"content": " the" if model == "endless" else f"word{i} "}))
                if model == "endless":
                    await asyncio.sleep(0.002)
                if model == "echo-key-stream" and i == 1:
                    await send({"error": {"message": f"upstream auth failed: key {GOOGLE_KEY} (also {UNKNOWN_KEY})",
                                          "type": "server_error"}})
                    break
            await send(chunk({}, "stop"))
            if model == "zero-usage":  # a proxy that fills usage in with zeros
                await send({**base, "object": "chat.completion.chunk", "choices": [],
                            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
            await resp.write(b"data: [DONE]\r\n\r\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.cancelled += 1
            raise
        return resp


@pytest.fixture(scope="module")
def llama():
    fake = FakeLlama().start()
    yield fake
    fake.stop()


def config(llama_url: str, ledger_url: str, **extra) -> dict:
    def dep(model, key=GOOGLE_KEY):
        return {"provider": "openai", "model": model, "api_base": llama_url, "api_key": key,
                "price": {"input": "100", "output": "200"}}
    names = ("nousage", "zero-usage", "endless", "echo-key-stream", "echo-key", "trace-500")
    return {"auth": {"master_key": MASTER}, "ledger": {"url": ledger_url, "flush_interval": 0.05},
            "routing": {"num_retries": 0},
            "models": [{"name": n, "deployments": [dep(n)]} for n in names]
            + [{"name": "other", "deployments": [dep("nousage", OTHER_KEY)]}], **extra}


def raw_stream(gw, body: dict, key: str = MASTER, read: int | None = None) -> tuple[int, bytes]:
    """(status, body bytes) of a streamed chat request; with `read`, hang up after that many bytes."""
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read(read) if read else resp.read()
    conn.close()
    return resp.status, data


def ask(model: str, **kw) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], **kw}


def relayed_text(data: bytes) -> str:
    text = ""
    for line in data.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                text += (choice.get("delta") or {}).get("content") or ""
    return text


# --- finding 3: streams the upstream reports no usage for ---------------------------------------------------

def test_stream_without_usage_is_priced_from_a_token_count_and_marked_estimated(llama, ledger_url):
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, data = raw_stream(gw, ask("nousage", stream_options={"include_usage": True}))
    assert status == 200 and data.rstrip().endswith(b"data: [DONE]")
    [row] = records(ledger_url, 1)
    # the prompt's tokens plus the chat template: 5 per message, 3 for the reply, 19 for a default system prompt
    assert row.prompt_tokens == ENC.count(PROMPT) + 5 + 3 + 19
    assert row.completion_tokens == ENC.count(relayed_text(data)) > 0
    assert row.usage_estimated is True and row.status == 200 and row.error_type is None
    assert row.cost == cost(Usage(row.prompt_tokens, row.completion_tokens),
                            from_dict(config(llama.base_url, ledger_url)).deployments["nousage/openai/nousage"].price)
    assert row.cost > 0


def test_a_stream_whose_usage_is_all_zeros_is_counted_too(llama, ledger_url):
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, data = raw_stream(gw, ask("zero-usage", stream_options={"include_usage": True}))
    [row] = records(ledger_url, 1)
    assert status == 200 and row.usage_estimated and row.prompt_tokens == ENC.count(PROMPT) + 27 and row.cost > 0


def test_a_plain_answer_without_usage_is_counted_too(llama, ledger_url):
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, _, body = post(gw, ask("zero-usage"))
    [row] = records(ledger_url, 1)
    assert status == 200 and body["choices"][0]["message"]["content"] == "word " * 8
    assert row.usage_estimated and row.prompt_tokens == ENC.count(PROMPT) + 27
    assert row.completion_tokens == ENC.count("word " * 8) and row.cost > 0


def test_a_client_that_hangs_up_mid_stream_is_billed_what_was_relayed(llama, ledger_url):
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, data = raw_stream(gw, ask("endless"), read=1500)
        deadline = time.time() + 10
        while not llama.cancelled and time.time() < deadline:  # the gateway cancelled the upstream call
            time.sleep(0.05)
    [row] = records(ledger_url, 1)
    assert status == 200 and row.status == 499 and row.error_type == "ClientDisconnected"
    assert row.usage_estimated and row.prompt_tokens > 0 and row.completion_tokens >= 3 and row.cost > 0
    assert llama.cancelled >= 1


def test_a_cache_hit_on_an_estimated_stream_records_its_estimated_saving(llama, ledger_url):
    cfg = config(llama.base_url, ledger_url, cache={"enabled": True, "semantic": False, "embedder": "none"})
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert raw_stream(gw, ask("nousage"))[0] == 200
        records(ledger_url, 1)  # the first answer is counted and cached off the request path
        time.sleep(0.3)
        assert raw_stream(gw, ask("nousage"))[0] == 200
    first, hit = records(ledger_url, 2)
    assert hit.cache == "hit-exact" and first.cost > 0 and hit.saved == first.cost


def test_budgets_see_the_estimated_cost_of_streams_without_usage(llama, ledger_url):
    # $0.0071 a stream (estimated: 39 prompt + 16 output tokens), $0.00825 reserved: a $0.02 budget takes 2
    cfg = config(llama.base_url, ledger_url, limits={"budgets": [{"limit": "0.02", "period": "total"}]})
    with BackgroundGateway(from_dict(cfg)) as gw:
        statuses = [raw_stream(gw, ask("nousage", max_tokens=16))[0] for _ in range(6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    rows = records(ledger_url, 6)
    assert sum(r.cost for r in rows) <= Decimal("0.02")


# --- finding 4: budget overshoot ------------------------------------------------------------------------------

def test_the_reservation_covers_what_a_chat_template_server_bills(llama, ledger_url):
    """llama.cpp counted 39 prompt tokens for this 2-line prompt (its template adds a system prompt)."""
    cfg = from_dict(config(llama.base_url, ledger_url, limits={"budgets": [{"limit": "1", "period": "total"}]}))
    limiter = build_admission(cfg)
    ticket = asyncio.run(limiter.admit(Principal("k"), "nousage", ask("nousage", max_tokens=40)))
    held = limiter.local.budgets[ticket.keys[0]].held
    settled = to_units(cost(Usage(39, 40), cfg.deployments["nousage/openai/nousage"].price))
    assert held >= settled


def test_a_stream_past_its_reserved_output_is_stopped_with_finish_reason_length(llama, ledger_url):
    cfg = config(llama.base_url, ledger_url, limits={"budgets": [{"limit": "10", "period": "total"}]})
    llama.cancelled = 0
    with BackgroundGateway(from_dict(cfg)) as gw:
        status, data = raw_stream(gw, ask("endless", max_tokens=20))
        deadline = time.time() + 10
        while not llama.cancelled and time.time() < deadline:
            time.sleep(0.05)
    events = [line.strip()[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
    assert status == 200 and events[-1] == b"[DONE]"
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "length" and last["id"] == "chatcmpl-llama"
    assert len(relayed_text(data).split()) == 20  # exactly the reserved output, not 10,000 words
    assert llama.cancelled == 1  # the upstream call was cancelled there
    [row] = records(ledger_url, 1)
    assert row.status == 200 and row.error_type is None and row.usage_estimated
    assert row.completion_tokens == 20 and row.cost == Decimal("0.0079")  # 39 x $100/M + 20 x $200/M
    assert row.cost <= Decimal("0.00913")  # what was reserved: (43 x $100/M + 20 x $200/M) x 1.1


def test_an_upstream_ignoring_max_tokens_is_settled_at_its_cost_and_the_next_request_refused(llama, ledger_url):
    cfg = config(llama.base_url, ledger_url, limits={"budgets": [{"limit": "0.50", "period": "total"}]})
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert post(gw, ask("endless", max_tokens=10))[0] == 200
        status, _, body = post(gw, ask("nousage", max_tokens=10))
    assert status == 429 and body["error"]["code"] == "budget_exceeded"
    row = records(ledger_url, 2)[0]
    assert row.completion_tokens == 100_000 and row.cost == Decimal("20.0039")  # the real bill, not capped


# --- finding 5: budgets across a restart (memory backend) -----------------------------------------------------

def _serve(cfg_path: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(HW + ["serve", "--config", cfg_path, "--port", str(port)], env=ENV,
                            stderr=subprocess.PIPE, text=True)
    wait_ready(port, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_budgets_survive_a_restart_of_hedgeway_serve(llama, tmp_path, capsys, backend, request):
    ledger = f"sqlite:///{tmp_path}/ledger.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump(config(llama.base_url, ledger)))
    team = f"t-{uuid.uuid4().hex[:8]}"
    assert main(["teams", "create", team, "--db", ledger, "--budget", "1000/monthly"]) == 0
    capsys.readouterr()
    assert main(["keys", "create", "--db", ledger, "--team", team, "--budget", "0.50/total"]) == 0
    key = capsys.readouterr().out.split()[1]
    assert main(["keys", "create", "--db", ledger, "--team", team]) == 0
    sibling = capsys.readouterr().out.split()[1]
    port = free_port()
    proc = _serve(str(cfg), port)
    gw = type("Gw", (), {"base_url": f"http://127.0.0.1:{port}/v1"})()
    try:
        assert post(gw, ask("endless", max_tokens=10), key)[0] == 200  # settles at $20, over the $0.50 budget
        assert post(gw, ask("endless", max_tokens=10), sibling)[0] == 200  # the team: $40 of $1000
    finally:
        _stop(proc)
    proc = _serve(str(cfg), port)
    try:
        status, _, body = post(gw, ask("nousage", max_tokens=10), key)
        assert status == 429 and "key:" in body["error"]["message"]
        assert post(gw, ask("nousage", max_tokens=10), sibling)[0] == 200
    finally:
        _stop(proc)
    store = open_store(ledger)
    try:
        assert sum(r.cost for r in store.records()) > Decimal("40")
    finally:
        store.close()


# --- finding 6: secrets and stack traces ----------------------------------------------------------------------

def test_an_upstream_error_event_quoting_keys_reaches_the_client_redacted(llama, ledger_url):
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, data = raw_stream(gw, ask("echo-key-stream"))
    assert status == 200 and b"upstream auth failed" in data
    assert GOOGLE_KEY.encode() not in data and UNKNOWN_KEY.encode() not in data
    assert data.count(b"[redacted]") == 2


def test_error_bodies_and_log_lines_never_carry_a_configured_or_google_key(llama, ledger_url, caplog):
    caplog.set_level(logging.WARNING)
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, _, body = post(gw, ask("echo-key"))
        logging.getLogger("hedgeway.test").warning("echoed %s", OTHER_KEY)  # anything logged is redacted
    assert status == 502 and "API key not valid" in body["error"]["message"]
    text = json.dumps(body) + "\n".join(r.getMessage() for r in caplog.records)
    assert "request" in text and OTHER_KEY not in text and UNKNOWN_KEY not in text and GOOGLE_KEY not in text
    assert "echoed [redacted]" in text


def test_an_upstream_stack_trace_is_neither_forwarded_nor_logged(llama, ledger_url, caplog):
    caplog.set_level(logging.WARNING)
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))) as gw:
        status, _, body = post(gw, ask("trace-500", top_k=-1))
    message = body["error"]["message"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert status == 502 and "upstream returned 500" in message
    assert "ValueError: top_k must be a non-negative integer" in message and "(stack trace removed)" in message
    for text in (message, logged):
        assert "Traceback" not in text and 'File "' not in text and "run_in_threadpool" not in text
    assert "top_k" in logged


# --- finding 8: broken streams are errors in spend and the dashboard -----------------------------------------

def test_broken_streams_count_as_errors_in_spend_and_the_dashboard(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/l.db"
    store = open_store(url)
    store.migrate()
    now = time.time()
    store.write([Record("a", now, "chat", "m", "d", "openai", 200, stream=True),
                 Record("b", now, "chat", "m", "d", "openai", 200, stream=True, error_type="UpstreamErrorMidStream"),
                 Record("c", now, "chat", "m", None, None, 502, error_type="AllDeploymentsFailed"),
                 Record("d", now, "chat", "m", "d", "openai", 200, stream=True, usage_estimated=True)])
    try:
        [row] = store.spend(group_by=["model_name"])
        assert row["errors"] == 2 and row["estimated"] == 1
        panel = Dashboard(store).errors(None)
        assert panel["errors"] == 2 and panel["types"]["UpstreamErrorMidStream"] == 1 and panel["estimated"] == 1
    finally:
        store.close()
    assert main(["spend", "--db", url, "--by", "model", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["errors"] == 2 and row["estimated"] == 1


def test_every_credential_of_the_config_is_redacted_by_value(llama, ledger_url, monkeypatch):
    monkeypatch.setenv("HW_HOOK", "https://hooks.example/T0123/b-path-xyz")  # matches no key pattern
    cfg = from_dict(config(llama.base_url, ledger_url, limits={"alerts": {"webhook": "os.environ/HW_HOOK"}}))
    redact = Redactor(cfg.secrets)
    text = redact(f"posting to https://hooks.example/T0123/b-path-xyz as {MASTER} with {OTHER_KEY}; port 8080")
    assert text == "posting to [redacted] as [redacted] with [redacted]; port 8080"
    assert redact.relayed(f'data: {{"error": {{"message": "bad key {GOOGLE_KEY}"}}}}\n\n'.encode()) == (
        b'data: {"error": {"message": "bad key [redacted]"}}\n\n')


def test_a_logged_exception_s_traceback_is_masked_too(llama, ledger_url, caplog):
    caplog.set_level(logging.ERROR)
    with BackgroundGateway(from_dict(config(llama.base_url, ledger_url))):
        try:
            raise ConnectionError(f"cannot reach https://x.example/?key={GOOGLE_KEY}")
        except ConnectionError:
            logging.getLogger("hedgeway.test").exception("call failed")
    [record] = [r for r in caplog.records if r.name == "hedgeway.test"]
    assert GOOGLE_KEY not in caplog.text and "key=[redacted]" in record.exc_text


def test_current_spend_per_scope_and_period_leaves_out_the_gateway_s_own_copies(tmp_path):
    from hedgeway.limits.periods import bounds
    from hedgeway.limits.restore import current_spend

    store = open_store(f"sqlite:///{tmp_path}/l.db")
    store.migrate()
    now = time.time()
    month = bounds("monthly", now)[0]
    rows = [Record("a", now, "chat", "m", "d", "openai", 200, key_id="k1", team="t", cost=Decimal("1.5")),
            Record("b", now, "shadow", "m", "d", "openai", 200, key_id="k1", team="t", cost=Decimal("7")),
            Record("c", month - 10, "chat", "m", "d", "openai", 200, key_id="k1", cost=Decimal("2")),
            Record("d", now, "messages", "m", "d", "openai", 200, key_id="k2", team="t", cost=Decimal("0.25"))]
    store.write(rows)
    try:
        spent = current_spend(store, {"k1": "u1", "k2": None}, now)
    finally:
        store.close()
    assert spent[("key:k1", "monthly")] == spent[("user:u1", "monthly")] == 1_500_000_000
    assert spent[("key:k1", "total")] == 3_500_000_000 and spent[("team:t", "daily")] == 1_750_000_000
    assert spent[("global", "total")] == 3_750_000_000 and ("user:None", "total") not in spent
