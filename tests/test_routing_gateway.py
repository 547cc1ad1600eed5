"""Routing through a real gateway: decision in the ledger row and the header, SLA bypass, breaker, stats."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import openai

from conftest import MASTER, UPSTREAM_KEY, gateway_config
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from test_http_openai import raw, records


def dep(upstream, model, **kw):
    return {"provider": "openai", "model": model, "api_base": upstream.base_url, "api_key": UPSTREAM_KEY, **kw}


def routed_config(upstream, ledger_url, route, **router):
    cfg = gateway_config(upstream.base_url, ledger_url)
    cfg["models"] += [
        {"name": "llama-local", "deployments": [dep(upstream, "ok-llama", price={"input": "0.05", "output": "0.1"})]},
        {"name": "premium", "deployments": [dep(upstream, "ok-premium", price={"input": "2.5", "output": "10"})]},
        {"name": "slow-local", "deployments": [dep(upstream, "slow", id="slow-local", timeout=10,
                                                   price={"input": "0.05", "output": "0.1"})]},
    ]
    cfg["router"] = {"routes": [{"name": "auto", **route}], **router}
    return from_dict(cfg)


TIERS = {"simple": "llama-local", "medium": "gpt-4o-mini", "complex": "premium"}


def sdk(gw):
    return openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=20)


def test_route_decision_in_header_and_ledger(upstream, ledger_url):
    with BackgroundGateway(routed_config(upstream, ledger_url, {"router": "heuristic", "tiers": TIERS})) as gw:
        client = sdk(gw)
        hi = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello!"}])
        hard = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Write a Python function to merge intervals."}])
        stream = client.chat.completions.create(model="auto", stream=True,
                                                messages=[{"role": "user", "content": "hi"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("echo")
        assert "auto" in [m.id for m in client.models.list().data]
        route = json.loads(hi.headers["x-hedgeway-route"])
        assert route["router"] == "heuristic" and route["tier"] == "simple" and route["complexity"] == "simple"
        assert hi.headers["x-hedgeway-deployment"] == "llama-local/openai/ok-llama"
        assert json.loads(hard.headers["x-hedgeway-route"])["tier"] == "complex"
        assert hard.headers["x-hedgeway-deployment"] == "premium/openai/ok-premium"
        _, _, body = raw(gw, "GET", "/v1/router/stats")
    rows = sorted(records(ledger_url, 3), key=lambda r: r.ts)
    assert [json.loads(r.route)["tier"] for r in rows] == ["simple", "complex", "simple"]
    assert rows[1].model_name == "auto" and rows[1].deployment == "premium/openai/ok-premium"
    assert float(json.loads(rows[1].route)["score"]) >= 0.45
    stats = json.loads(body)
    assert stats["routes"]["auto"] == {"complex": 1, "simple": 2}


def test_slow_tier_is_bypassed_within_its_sla(upstream, ledger_url):
    cfg = routed_config(upstream, ledger_url, {"router": "heuristic",
                        "tiers": {"simple": "slow-local", "medium": "gpt-4o-mini", "complex": "premium"},
                        "sla": {"simple": {"ttft": 0.3, "total": 0.4}}})
    with BackgroundGateway(cfg) as gw:
        client = sdk(gw)
        # slow-local answers only after 3 s: an answer from the next tier means its SLA deadline cut it short
        resp = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}])
        assert resp.parse().choices[0].message.content.startswith("echo")
        assert resp.headers["x-hedgeway-deployment"] == "gpt-4o-mini/openai/ok-mini"  # next tier up
        chunks = list(client.chat.completions.create(model="auto", stream=True,
                                                     messages=[{"role": "user", "content": "hi"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.strip() == "echo: hi"  # one answer, not two
        _, _, body = raw(gw, "GET", "/v1/router/stats")
        assert json.loads(body)["sla_fallbacks"] == {"slow-local": 2}
    rows = records(ledger_url, 2)
    assert all("sla" in r.route or "UpstreamTimeout" in r.route for r in rows)
    assert all(json.loads(r.route)["fallbacks"] == ["slow-local (UpstreamTimeout)"] for r in rows)


def test_breaker_opens_skips_deployment_then_half_open_probe(upstream, ledger_url):
    cfg = routed_config(upstream, ledger_url,
                        {"router": "heuristic", "tiers": {"simple": "flaky", "complex": "premium"}},
                        breaker={"failures": 2, "cooldown": 0.5})
    with BackgroundGateway(cfg) as gw:
        client = sdk(gw)
        before = upstream.calls["fail-500"]
        for _ in range(4):
            r = client.chat.completions.with_raw_response.create(model="auto",
                                                                 messages=[{"role": "user", "content": "hi"}])
            assert r.headers["x-hedgeway-deployment"] == "premium/openai/ok-premium"
        # num_retries=1: 2 attempts on the first request open the breaker; later plans skip flaky
        assert upstream.calls["fail-500"] - before == 2
        _, _, body = raw(gw, "GET", "/v1/router/stats")
        stats = json.loads(body)
        assert stats["deployments"]["flaky/openai/fail-500"]["state"] == "open"
        assert stats["breaker_skips"]["flaky/openai/fail-500"] == 3
        time.sleep(0.6)  # cooldown over: exactly one probe, which fails and re-opens
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        assert upstream.calls["fail-500"] - before == 3
        _, _, body = raw(gw, "GET", "/v1/router/stats")
        assert json.loads(body)["deployments"]["flaky/openai/fail-500"]["state"] == "open"
        _, _, metrics = raw(gw, "GET", "/metrics")


def test_hedge_races_the_next_tier_and_the_client_gets_one_answer(upstream, ledger_url):
    cfg = routed_config(upstream, ledger_url, {"router": "heuristic", "hedge": {"delay": 0.2},
                        "tiers": {"simple": "slow-local", "complex": "premium"}})
    with BackgroundGateway(cfg) as gw:
        client = sdk(gw)
        # slow-local answers only after 3 s and has no SLA deadline here: premium's answer is the hedge's
        # (the ledger below says so too)
        resp = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}])
        assert resp.headers["x-hedgeway-deployment"] == "premium/openai/ok-premium"
        assert resp.parse().choices[0].message.content == "echo: hi"
        chunks = list(client.chat.completions.create(model="auto", stream=True,
                                                     messages=[{"role": "user", "content": "hi"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "echo: hi"
    rows = records(ledger_url, 2)
    assert all(json.loads(r.route)["hedged"] == "slow-local" and r.status == 200 for r in rows)
    assert all(r.deployment == "premium/openai/ok-premium" for r in rows)
    # both calls billed: the winner's usage at premium prices + the loser's reading of the same 12-token
    # prompt at its own input price ($0.05 / M)
    assert all(json.loads(r.route)["hedged_cost"] == "0.0000006" for r in rows)
    assert [r.cost for r in rows] == [Decimal("0.00008") + Decimal("0.0000006")] * 2


def test_hedge_not_started_when_the_primary_is_fast(upstream, tmp_path):
    url = f"sqlite:///{tmp_path}/h.db"
    cfg = routed_config(upstream, url, {"router": "heuristic", "hedge": {"delay": 0.5},
                        "tiers": {"simple": "llama-local", "complex": "premium"}})
    with BackgroundGateway(cfg) as gw:
        before = upstream.calls["ok-premium"]
        r = sdk(gw).chat.completions.with_raw_response.create(model="auto",
                                                              messages=[{"role": "user", "content": "hi"}])
        assert r.headers["x-hedgeway-deployment"] == "llama-local/openai/ok-llama"
        assert upstream.calls["ok-premium"] == before
    assert "hedged" not in records(url, 1)[0].route
