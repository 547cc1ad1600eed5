"""The fault matrix: every way an upstream misbehaves, through a real gateway, one row per fault.

Each row asserts the behaviour (retry, fallback, or a clean OpenAI-format error with the right status),
no hang (the upstreams that stall never answer, so only the gateway's deadlines can end those rows;
the client's socket timeout fails a row that hangs), exactly one ledger record with the
right status (one row in the ledger, and one record observed by metrics — the ledger alone could not
tell: it ignores a repeated request id), and nothing leaked afterwards: the fake upstream sees every
connection closed (it answers with `Connection: close`, so any socket still open is one the gateway
holds) and the gateway's event loop is back to its baseline task count.

Deadlines: fault deployments have `timeout: 0.6` (whole exchange) and `first_byte_timeout: 0.3`;
`num_retries: 1` gives each model group two attempts.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import time

import orjson
import pytest

from conftest import MASTER, UPSTREAM_KEY
from fake_faulty import FaultyUpstream, blackhole, closed_port
from test_fuzz import Unhandled
from hedgeway import fallback
from hedgeway import upstream as upstream_mod
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import SQLiteStore

TIMEOUT, FIRST_BYTE = 0.6, 0.3
HUGE_LIMIT = 4 << 20  # the upstream response cap for this module (patched; the default is far larger)


@pytest.fixture(scope="module")
def faulty():
    fake = FaultyUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def hole():
    port, held = blackhole()
    yield port
    for s in held:
        s.close()


@pytest.fixture(scope="module")
def gw(faulty, hole, tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "ledger.db"

    def dep(fault: str, base: str = faulty.base_url, **kw) -> dict:
        return {"provider": "openai", "model": fault, "api_base": base, "api_key": UPSTREAM_KEY,
                "timeout": TIMEOUT, "first_byte_timeout": FIRST_BYTE, **kw}

    models = {"good": dep("ok"), "m500": dep("500"), "m500-fb": dep("500"), "m429": dep("429"),
              "m429-ra": dep("429-ra"), "refused": dep("ok", f"http://127.0.0.1:{closed_port()}/v1"),
              "refused-fb": dep("ok", f"http://127.0.0.1:{closed_port()}/v1"),
              "blackhole": dep("ok", f"http://127.0.0.1:{hole}/v1"), "hang": dep("hang"),
              "hang-fb": dep("hang"), "slow-first": dep("slow-first"), "reset-before": dep("reset-before"),
              "reset-after": dep("reset-after"), "malformed": dep("malformed"), "malformed-fb": dep("malformed"),
              "truncated": dep("truncated-sse"), "never-close": dep("never-close"),
              "big": dep(f"huge-{HUGE_LIMIT // 2}"), "huge": dep(f"huge-{HUGE_LIMIT * 2}")}
    cfg = {
        "auth": {"master_key": MASTER},
        "ledger": {"url": f"sqlite:///{path}", "flush_interval": 0.01, "spool_path": None},
        "routing": {"num_retries": 1, "retry_backoff": 0.01, "max_retry_after": 5.0,
                    "fallbacks": {m: ["good"] for m in ("m500-fb", "refused-fb", "hang-fb", "slow-first",
                                                        "reset-before", "malformed-fb")}},
        "models": [{"name": name, "deployments": [d]} for name, d in models.items()],
    }
    saved = upstream_mod.MAX_RESPONSE_BYTES
    upstream_mod.MAX_RESPONSE_BYTES = HUGE_LIMIT
    watch = Unhandled()
    logging.getLogger().addHandler(watch)
    try:
        with BackgroundGateway(from_dict(cfg)) as gateway:
            gateway.ledger_path = path
            _request(gateway, "good", False)  # warm up: the loop's steady set of tasks exists from here
            gateway.baseline_tasks = _tasks(gateway)
            yield gateway
    finally:
        upstream_mod.MAX_RESPONSE_BYTES = saved
        logging.getLogger().removeHandler(watch)
    assert watch.records == [], [r.getMessage() for r in watch.records]  # no unhandled exception anywhere


def _tasks(gw) -> int:
    async def count():
        return len(asyncio.all_tasks())
    return asyncio.run_coroutine_threadsafe(count(), gw._loop).result(5)


def _request(gw, model: str, stream: bool):
    """(status, headers, body bytes) for one chat request over a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=15)
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    conn.request("POST", "/v1/chat/completions", body,
                 {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _metric_requests(gw) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(int(m) for m in re.findall(r"^hedgeway_requests_total\{[^}]*\} (\d+)$", text, re.M))


def _ledger_rows(gw, request_id: str, timeout: float = 3.0):
    store = SQLiteStore(gw.ledger_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in store.records() if r.request_id == request_id]
            if rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)
    finally:
        store.close()


def _events(body: bytes) -> list:
    out = []
    for event in body.split(b"\n\n"):
        if event.startswith(b"data: ") and event != b"data: [DONE]":
            try:
                out.append(orjson.loads(event[6:]))
            except orjson.JSONDecodeError:
                out.append(event)
    return out


# (id, model, stream, client status, error type (None: success), ledger status, ledger error_type,
#  ledger attempts). The stalling upstreams never answer, so for them a timeout status, a fallback's answer
#  or the in-band error can only come from the gateway's own deadlines. A hang would hit the client's socket
#  timeout (`_request`) and fail the row.
MATRIX = [
    ("5xx, retried then 502", "m500", False, 502, "upstream_error", 502, "AllDeploymentsFailed", 2),
    ("5xx, falls back", "m500-fb", False, 200, None, 200, None, 3),
    ("429 without Retry-After", "m429", False, 429, "rate_limit_error", 429, "AllDeploymentsFailed", 2),
    ("429 with Retry-After honoured", "m429-ra", False, 429, "rate_limit_error", 429, "AllDeploymentsFailed", 2),
    ("connect refused", "refused", False, 502, "upstream_error", 502, "AllDeploymentsFailed", 2),
    ("connect refused, falls back", "refused-fb", False, 200, None, 200, None, 3),
    ("connect timeout (blackhole)", "blackhole", False, 504, "timeout_error", 504, "AllDeploymentsFailed", 2),
    ("read timeout", "hang", False, 504, "timeout_error", 504, "AllDeploymentsFailed", 2),
    ("read timeout, falls back", "hang-fb", False, 200, None, 200, None, 3),
    ("slow first token, falls back", "slow-first", True, 200, None, 200, None, 3),
    ("reset before first token, falls back", "reset-before", True, 200, None, 200, None, 3),
    ("reset after first token", "reset-after", True, 200, "upstream_error", 200, "UpstreamErrorMidStream", 1),
    ("malformed JSON", "malformed", False, 502, "upstream_error", 502, "AllDeploymentsFailed", 2),
    ("malformed JSON, falls back", "malformed-fb", False, 200, None, 200, None, 3),
    ("truncated SSE", "truncated", True, 200, "upstream_error", 200, "UpstreamErrorMidStream", 1),
    ("never closes (body)", "never-close", False, 504, "timeout_error", 504, "AllDeploymentsFailed", 2),
    ("never closes (stream)", "never-close", True, 200, "timeout_error", 200, "UpstreamTimeoutMidStream", 1),
    ("large body within the cap", "big", False, 200, None, 200, None, 1),
    ("body over the cap", "huge", False, 502, "upstream_error", 502, "AllDeploymentsFailed", 2),
]


@pytest.mark.parametrize("case", MATRIX, ids=[c[0] for c in MATRIX])
def test_fault(gw, faulty, case, monkeypatch):
    _, model, stream, status, err_type, rec_status, rec_error, attempts = case
    before = _metric_requests(gw)
    waits = []  # every back-off the fallback loop takes, as (Retry-After hint, seconds slept)

    def spy(policy, again, retry_after):
        waits.append((retry_after, delay := real_delay(policy, again, retry_after)))
        return delay

    real_delay = fallback.retry_delay
    monkeypatch.setattr(fallback, "retry_delay", spy)
    got, headers, body = _request(gw, model, stream)

    assert got == status, body[:300]
    if model == "m429-ra":  # the upstream's Retry-After: 0.3 reached the back-off, jittered down to half at most
        assert len(waits) == 1 and waits[0][0] == 0.3 and 0.15 <= waits[0][1] <= 0.3
    if stream and status == 200:
        events = _events(body)
        assert headers["content-type"].startswith("text/event-stream")
        errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
        if err_type is None:
            assert body.rstrip().endswith(b"data: [DONE]") and not errors
            assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                           if isinstance(e, dict) and e.get("choices")) == "hello "
        else:  # broken after it started: the client is told in-band, in OpenAI's envelope
            assert errors and errors[-1]["type"] == err_type and set(errors[-1]) == {"message", "type", "param",
                                                                                     "code"}
    elif err_type is None:
        assert orjson.loads(body)["object"] == "chat.completion"
    else:
        error = orjson.loads(body)["error"]
        assert error["type"] == err_type and set(error) == {"message", "type", "param", "code"}
        assert headers["content-type"] == "application/json"

    rid = headers["x-hedgeway-request-id"]
    rows = _ledger_rows(gw, rid)
    assert len(rows) == 1, rows
    assert (rows[0].status, rows[0].error_type, rows[0].attempts) == (rec_status, rec_error, attempts)
    assert rows[0].stream is stream
    assert _metric_requests(gw) - before == 1  # one record, not one per attempt or per cleanup path

    assert faulty.wait_closed() == 0, "the gateway still holds upstream connections"
    deadline_tasks = time.monotonic() + 2
    while _tasks(gw) > gw.baseline_tasks and time.monotonic() < deadline_tasks:
        time.sleep(0.02)
    assert _tasks(gw) <= gw.baseline_tasks, "tasks leaked on the gateway loop"


def test_fault_matrix_under_concurrency(gw, faulty):
    """Every fault at once, twice over: same outcomes, nothing leaked."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [c for c in MATRIX if c[1] not in ("big", "huge")] * 2
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda c: (c, _request(gw, c[1], c[2])), cases))
    for case, (status, _, body) in results:
        assert status == case[3], (case[0], body[:200])
    assert faulty.wait_closed(3) == 0
    deadline = time.monotonic() + 2
    while _tasks(gw) > gw.baseline_tasks and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _tasks(gw) <= gw.baseline_tasks
