"""Budgets, rate limits and alerts end to end: a real gateway (master key) in front of the fake OpenAI
upstream, with global budgets and per-model limits from the config, deployment rpm from a LiteLLM config,
a real aiohttp webhook receiver on loopback, and the real Redis for the shared-store case."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from conftest import MASTER, UPSTREAM_KEY, gateway_config, require_service
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import open_store
from test_limits_support import REDIS_URL, delete_prefix, free_port, new_prefix, redis_available, run


def post(gw, body: dict, key: str = MASTER) -> tuple[int, dict, dict]:
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def chat(max_tokens: int, model: str = "gpt-4o-mini") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": max_tokens}


def ledger_rows(url: str, n: int, timeout: float = 5.0):
    store = open_store(url)
    deadline = time.time() + timeout
    try:
        while True:
            rows = store.records()
            if len(rows) >= n or time.time() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        store.close()


def test_global_budget_refuses_with_an_openai_error_naming_it(upstream, ledger_url):
    # gpt-4o-mini: $0.15 / $0.60 per M. max_tokens 2000 may cost $0.0012+ > $0.001: refused outright.
    cfg = gateway_config(upstream.base_url, ledger_url,
                         limits={"budgets": [{"limit": "0.001", "period": "daily"}]})
    with BackgroundGateway(from_dict(cfg)) as gw:
        status, headers, body = post(gw, chat(2000))
        assert status == 429
        err = body["error"]
        assert err["code"] == "budget_exceeded" and err["type"] == "rate_limit_error"
        assert "global" in err["message"] and "daily" in err["message"] and "$0.001" in err["message"]
        assert "T00:00:00Z" in err["message"] and int(headers["retry-after"]) <= 86400
        for _ in range(3):  # max_tokens 1000 fits; each settles to its actual $0.0000045
            assert post(gw, chat(1000))[0] == 200
        u = urlsplit(gw.base_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        assert 'hedgeway_budget_used_ratio{scope="global",period="daily"} 0.013500' in metrics
        assert 'hedgeway_limits_refused_total{reason="budget"} 1' in metrics
        assert "hedgeway_requests_total{" in metrics  # the core families are still there
    rows = ledger_rows(ledger_url, 4)
    assert sorted(r.status for r in rows) == [200, 200, 200, 429]
    assert sum(r.cost for r in rows) == Decimal("0.0000135")


def test_model_rpm_answers_429_with_retry_after(upstream, ledger_url):
    cfg = gateway_config(upstream.base_url, ledger_url, limits={"models": {"gpt-4o-mini": {"rpm": 2}}})
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert [post(gw, chat(10))[0] for _ in range(2)] == [200, 200]
        status, headers, body = post(gw, chat(10))
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        assert 50 <= int(headers["retry-after"]) <= 60
        assert post(gw, chat(10, "sim"))[0] == 200  # another model is not limited


def test_litellm_deployment_rpm_moves_traffic_to_the_other_deployment(upstream, ledger_url):
    dep = {"api_base": upstream.base_url, "api_key": UPSTREAM_KEY}
    cfg = {"model_list": [
        {"model_name": "duo", "litellm_params": {"model": "openai/ok-capped", "rpm": 1, **dep},
         "model_info": {"id": "capped"}},
        {"model_name": "duo", "litellm_params": {"model": "openai/ok-free", **dep}, "model_info": {"id": "free"}}],
        "general_settings": {"master_key": MASTER, "database_url": ledger_url}}
    with BackgroundGateway(from_dict(cfg)) as gw:
        # ties between the two idle deployments are broken at random: with 20 requests the capped one is
        # picked at least once but for 2**-20 of runs (6 requests left 1.6% of runs without it)
        served = [post(gw, chat(10, "duo"))[1]["x-hedgeway-deployment"] for _ in range(20)]
    assert served.count("capped") == 1 and served.count("free") == 19


class Receiver:
    """A webhook endpoint on loopback (aiohttp); answers 500 to the first `fail` posts."""

    def __init__(self, fail: int = 0):
        self.bodies: list[dict] = []
        self.fail = fail
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    async def hook(self, request):
        body = await request.json()
        if self.fail > 0:
            self.fail -= 1
            return web.json_response({"error": "try later"}, status=500)
        self.bodies.append(body)
        return web.json_response({"ok": True})

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.mark.parametrize("fmt", ["json", "slack"])
def test_budget_alert_webhook_is_retried_and_sent_once(upstream, ledger_url, fmt):
    hook = Receiver(fail=2)
    # Each request reserves $0.000011715 ((4 + 27 template tokens) x $0.15/M + 10 x $0.60/M, + 10 %) and
    # costs $0.0000045: 50% of $0.000027 is crossed by the 3rd request, 65% by the 4th; the 5th no longer fits.
    cfg = gateway_config(upstream.base_url, ledger_url, limits={
        "budgets": [{"limit": "0.000027", "period": "weekly"}], "budget_wait": 0,
        "alerts": {"thresholds": [0.5, 0.65], "webhook": f"http://127.0.0.1:{hook.port}/hook", "format": fmt,
                   "backoff": 0.05}})
    try:
        with BackgroundGateway(from_dict(cfg)) as gw:
            for _ in range(4):
                assert post(gw, chat(10))[0] == 200
            deadline = time.time() + 5
            while len(hook.bodies) < 2 and time.time() < deadline:
                time.sleep(0.05)
            assert post(gw, chat(10))[0] == 429  # $0.000009 left: stopped before 100%
    finally:
        hook.stop()
    assert len(hook.bodies) == 2
    texts = [b["text"] for b in hook.bodies]
    assert "50%" in texts[0] and "65%" in texts[1] and "global weekly budget" in texts[0]
    if fmt == "slack":
        assert all(set(b) == {"text"} for b in hook.bodies)
    else:
        first = hook.bodies[0]
        assert first["threshold"] == 0.5 and first["scope"] == "global" and first["limit_usd"] == "0.000027"
        assert first["spent_usd"] == "0.0000135" and first["resets_at"].endswith("T00:00:00Z")


def test_fail_closed_and_fail_open_through_the_gateway(upstream, ledger_url):
    dead = {"url": f"redis://127.0.0.1:{free_port()}/0", "prefix": "x:"}
    for fail, expected in (("closed", 503), ("open", 200)):
        cfg = gateway_config(upstream.base_url, ledger_url, limits={
            "backend": "redis", "redis": dead, "fail": fail, "budgets": [{"limit": "1"}]})
        with BackgroundGateway(from_dict(cfg)) as gw:
            status, headers, body = post(gw, chat(10))
            assert status == expected
            if expected == 503:
                assert body["error"]["code"] == "limits_unavailable"


def test_replicas_sharing_redis_never_overspend(upstream, ledger_url, tmp_path):
    reason = redis_available()
    if reason:
        require_service("Redis", reason)
    prefix = new_prefix()
    # Reservation for max_tokens 100: ~$0.0000627; 60 concurrent requests, budget for about 12 reservations.
    limits = {"backend": "redis", "redis": {"url": REDIS_URL, "prefix": prefix},
              "budgets": [{"limit": "0.00075", "period": "daily"}], "budget_wait": 5}
    urls = [f"sqlite:///{tmp_path}/l{i}.db" for i in range(2)]
    gws = [BackgroundGateway(from_dict(gateway_config(upstream.base_url, u, limits=limits))).start() for u in urls]
    try:
        with ThreadPoolExecutor(60) as pool:
            statuses = list(pool.map(lambda i: post(gws[i % 2], chat(100))[0], range(60)))
    finally:
        for gw in gws:
            gw.stop()
        run(delete_prefix(prefix))
    rows = [r for u in urls for r in ledger_rows(u, 1)]
    spent = sum(r.cost for r in rows)
    assert statuses.count(200) + statuses.count(429) == 60 and statuses.count(200) == 60  # all fit once settled
    assert spent == Decimal("0.0000045") * 60 <= Decimal("0.00075")


def test_streams_settle_when_they_end(upstream, ledger_url):
    import openai

    # Each stream reserves ~$0.0006 of $0.001: without settlement the second would be refused (after
    # waiting up to 2 s; the relay settles just after the client has read the last event).
    cfg = gateway_config(upstream.base_url, ledger_url, limits={
        "budgets": [{"limit": "0.001", "period": "daily"}], "budget_wait": 2})
    with BackgroundGateway(from_dict(cfg)) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)
        for _ in range(3):
            chunks = list(client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=1000, stream=True))
            assert chunks
        rows = ledger_rows(ledger_url, 3)  # while serving: the relay records just after the last event
    assert len(rows) == 3 and all(r.cost > 0 for r in rows), [(r.status, r.error_type, r.cost) for r in rows]
