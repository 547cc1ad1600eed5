"""The admin API end to end: real gateways on loopback (one, or two sharing a database), the fake OpenAI
upstream, the official `openai` SDK for traffic, and the ledger read back to check attribution and spend."""

from __future__ import annotations

import http.client
import json
import logging
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from urllib.parse import urlsplit

import openai
import pytest

from conftest import MASTER, gateway_config, records
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.keys.views import PERIODS
from test_ledger_postgres import pg_admin  # noqa: F401  (the shared PostgreSQL fixture)

MSG = [{"role": "user", "content": "hi"}]


def call(gw, method: str, path: str, body=None, key: str | None = MASTER, raw: bytes | None = None):
    """(status, parsed JSON) of one plain HTTP call."""
    u = urlsplit(gw.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, json.loads(payload)


def sdk(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)


def chat_status(gw, key: str) -> int:
    try:
        sdk(gw, key).chat.completions.create(model="gpt-4o-mini", messages=MSG)
        return 200
    except openai.APIStatusError as exc:
        return exc.status_code


@pytest.fixture
def gw(upstream, ledger_url):
    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, ledger_url))) as g:
        yield g


def make_key(gw, **body) -> dict:
    status, out = call(gw, "POST", "/admin/keys", body)
    assert status == 201, out
    return out


def test_admin_needs_the_master_key(gw):
    virtual = make_key(gw)["key"]
    assert call(gw, "GET", "/admin/keys", key=None)[0] == 401
    status, out = call(gw, "GET", "/admin/keys", key="sk-wrong")
    assert status == 401 and out["error"]["type"] == "authentication_error" and "sk-wrong" not in json.dumps(out)
    status, out = call(gw, "GET", "/admin/keys", key=virtual)
    assert status == 403 and out["error"]["type"] == "permission_error"
    assert call(gw, "POST", "/admin/keys", {}, key=virtual)[0] == 403
    assert call(gw, "GET", "/admin/nothing")[0] == 404
    assert call(gw, "GET", "/admin/keys/key_nope")[1]["error"]["code"] == "key_not_found"
    status, out = call(gw, "PUT", "/admin/keys")
    assert status == 405 and out["error"]["code"] == "method_not_allowed"


def test_bodies_are_validated_strictly(gw):
    cases = [
        (b"{not json", "invalid_json", None),
        (b'{"colour": "red"}', "invalid_value", "colour"),
        (b'{"budgets": [{"limit": "10", "period": "fortnightly"}]}', "invalid_value", "budgets[0].period"),
        (b'{"limits": {"rpm": -5}}', "invalid_value", "limits.rpm"),
        (b'{"team": "ghost"}', "team_not_found", "team"),
        (b'[1, 2]', None, None),
    ]
    for raw, code, param in cases:
        status, out = call(gw, "POST", "/admin/keys", raw=raw)
        assert status == 400 and out["error"]["type"] == "invalid_request_error", out
        assert out["error"]["code"] == code and out["error"]["param"] == param, out
    assert call(gw, "POST", "/admin/teams", {"id": "a b"})[0] == 400
    assert call(gw, "GET", "/admin/spend?by=flavour")[0] == 400
    assert call(gw, "GET", "/admin/spend?period=hour")[0] == 400
    assert call(gw, "GET", "/admin/spend?since=tuesday")[0] == 400
    assert call(gw, "GET", "/admin/spend?colour=red")[0] == 400


def test_a_new_key_works_at_once_and_its_requests_carry_key_and_team(gw, ledger_url):
    assert call(gw, "POST", "/admin/teams", {"id": "search", "budgets": [{"limit": "500", "period": "monthly"}],
                                             "limits": {"rpm": 600}})[0] == 201
    assert call(gw, "POST", "/admin/users", {"id": "alice@example.com"})[0] == 201
    created = make_key(gw, name="ci", team="search", user="alice@example.com", models=["gpt-4o-mini"],
                       budgets=[{"limit": 5, "period": "daily"}], metadata={"ticket": 42})
    secret = created["key"]
    assert created["status"] == "active" and created["prefix"] == secret[:10] + "…"
    completion = sdk(gw, secret).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert completion.choices[0].message.content == "echo: hi"
    assert [m["id"] for m in call(gw, "GET", "/v1/models", key=secret)[1]["data"]] == ["gpt-4o-mini"]
    assert len(call(gw, "GET", "/v1/models")[1]["data"]) > 1  # the master key sees every model
    [rec] = records(ledger_url, 1)
    assert (rec.key_id, rec.team) == (created["id"], "search")
    # shown once: never again in a listing or a read
    status, listing = call(gw, "GET", "/admin/keys?team=search")
    assert status == 200 and [k["id"] for k in listing["data"]] == [created["id"]]
    assert secret not in json.dumps(listing) and secret[10:] not in json.dumps(call(gw, "GET", f"/admin/keys/{created['id']}")[1])
    assert call(gw, "GET", "/admin/keys?team=other")[1]["data"] == []
    status, patched = call(gw, "PATCH", f"/admin/keys/{created['id']}", {"models": None, "name": "ci-2"})
    assert status == 200 and patched["models"] is None and patched["name"] == "ci-2"
    status, teams = call(gw, "GET", "/admin/teams")
    assert teams["data"][0]["budgets"] == [{"limit": "500", "period": "monthly"}]
    assert call(gw, "DELETE", "/admin/teams/search")[0] == 400  # it still has an active key
    assert call(gw, "PATCH", "/admin/users/alice@example.com", {"limits": {"tpm": 1000}})[1]["limits"]["tpm"] == 1000


def test_rotate_and_expiry(gw):
    created = make_key(gw)
    status, rotated = call(gw, "POST", f"/admin/keys/{created['id']}/rotate")
    assert status == 200 and rotated["key"] != created["key"] and rotated["id"] == created["id"]
    assert chat_status(gw, rotated["key"]) == 200
    status, out = call(gw, "GET", "/v1/models", key=created["key"])
    assert status == 401 and "rotated" in out["error"]["message"] and created["key"] not in json.dumps(out)
    brief = make_key(gw, expires_at=time.time() + 1.0)
    assert chat_status(gw, brief["key"]) == 200
    time.sleep(1.1)
    status, out = call(gw, "GET", "/v1/models", key=brief["key"])
    assert status == 401 and out["error"]["code"] == "expired_api_key" and "expired" in out["error"]["message"]
    assert call(gw, "GET", f"/admin/keys/{brief['id']}")[1]["status"] == "expired"


def _revocation_reaches_the_other_replica(upstream, url: str) -> None:
    cfg = from_dict(gateway_config(upstream.base_url, url))
    with BackgroundGateway(cfg) as a, BackgroundGateway(cfg) as b:
        created = make_key(a)
        deadline = time.monotonic() + 2
        while chat_status(b, created["key"]) != 200:  # B learns of the new key by polling
            assert time.monotonic() < deadline
        assert call(a, "DELETE", f"/admin/keys/{created['id']}")[1]["status"] == "revoked"
        start = time.monotonic()
        assert chat_status(a, created["key"]) == 401  # the replica that revoked: at once
        while chat_status(b, created["key"]) != 401:  # the other: on its next poll (how soon: bench/)
            assert time.monotonic() - start < 10, "the revocation never reached the other replica"
        status, out = call(b, "GET", "/v1/models", key=created["key"])
        assert "revoked" in out["error"]["message"]


def test_revocation_reaches_a_second_gateway_sqlite(upstream, ledger_url):
    _revocation_reaches_the_other_replica(upstream, ledger_url)


def test_revocation_reaches_a_second_gateway_postgres(upstream, pg_admin):  # noqa: F811
    url, admin = pg_admin
    schema = f"hw_admin_{uuid.uuid4().hex[:12]}"
    try:
        _revocation_reaches_the_other_replica(upstream, f"{url}?schema={schema}")
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_keys_never_reach_logs_or_errors(upstream, ledger_url, caplog):
    caplog.set_level(logging.DEBUG)
    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, ledger_url))) as g:
        created = make_key(g)
        secrets = [created["key"]]
        chat_status(g, created["key"])
        call(g, "POST", "/v1/chat/completions", {"model": "flaky", "messages": MSG}, key=created["key"])
        secrets.append(call(g, "POST", f"/admin/keys/{created['id']}/rotate")[1]["key"])
        call(g, "DELETE", f"/admin/keys/{created['id']}")
        bodies = [call(g, "GET", "/v1/models", key=s)[1] for s in secrets]
    text = caplog.text + json.dumps(bodies)
    for s in secrets + [MASTER]:
        assert s not in text and s[6:] not in text


def test_spend_views_match_the_ledger_exactly(gw, ledger_url):
    for team in ("red", "blue"):
        assert call(gw, "POST", "/admin/teams", {"id": team})[0] == 201
    assert call(gw, "POST", "/admin/users", {"id": "ann"})[0] == 201
    keys = [make_key(gw, team="red", user="ann"), make_key(gw, team="red"), make_key(gw, team="blue", user="ann")]
    plan = [(keys[0], "gpt-4o-mini")] * 3 + [(keys[1], "sim")] * 2 + [(keys[2], "gpt-4o-mini"), (keys[2], "flaky")]
    for k, model in plan:
        try:
            sdk(gw, k["key"]).chat.completions.create(model=model, messages=MSG, max_tokens=20)
        except openai.APIStatusError:
            pass  # "flaky" falls back; its row still counts
    rows = records(ledger_url, len(plan))
    assert len(rows) == len(plan)
    users = {k["id"]: ("ann" if k is not keys[1] else None) for k in keys}
    attr = {"key": lambda r: r.key_id, "team": lambda r: r.team, "model": lambda r: r.model_name,
            "user": lambda r: users[r.key_id]}
    for by, of in attr.items():
        want: dict = defaultdict(lambda: [0, Decimal(0)])
        for r in rows:
            want[of(r)][0] += 1
            want[of(r)][1] += r.cost
        status, out = call(gw, "GET", f"/admin/spend?by={by}&period=total")
        assert status == 200
        got = {row[by]: [row["requests"], Decimal(row["cost"])] for row in out["data"]}
        assert got == dict(want), by
        assert all(isinstance(row["cost"], str) for row in out["data"])
    total = sum((r.cost for r in rows), Decimal(0))
    assert total > 0
    for period in PERIODS:
        status, out = call(gw, "GET", f"/admin/spend?by=team&period={period}&since=1h")
        assert sum(Decimal(row["cost"]) for row in out["data"]) == total
        assert {row["period"] for row in out["data"]} == {PERIODS[period](time.strftime("%Y-%m-%d", time.gmtime()))}
    assert call(gw, "GET", "/admin/spend?by=key&since=2099-01-01")[1]["data"] == []
