"""Canary ramps: the verdict rules, and real gateways (one, or two sharing a database) in front of the fake
OpenAI upstream, driven by the `hedgeway canary` CLI — rollback on errors, rollback on SLA misses, a full
ramp to promotion, state shared by replicas with exactly one transition per stage, and the ledger's events."""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest
import yaml

from conftest import MASTER, UPSTREAM_KEY, gateway_config
from hedgeway.canary import verdict
from hedgeway.canary.store import CanaryStore, Row
from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import open_store
from test_ledger_postgres import pg_admin  # noqa: F401  (the shared PostgreSQL fixture)

MSG = [{"role": "user", "content": "hi"}]
FAST = ["--min-seconds", "0", "--min-requests", "8"]


def _config(upstream, url: str, tmp_path, candidate_model: str = "ok-cand", **extra) -> tuple[dict, str]:
    cfg = gateway_config(upstream.base_url, url)
    cfg["routing"]["canary_poll"] = 0.05
    cfg["models"].append({"name": "cand", "deployments": [{
        "provider": "openai", "model": candidate_model, "api_base": upstream.base_url, "api_key": UPSTREAM_KEY,
        "id": "cand-1", "timeout": 5, "price": {"input": "0.05", "output": "0.1"}}]})
    cfg.update(extra)
    path = tmp_path / f"hedgeway-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, str(path)


def _send(gw, n: int, model: str = "gpt-4o-mini") -> list[str]:
    client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)
    out = []
    for _ in range(n):
        resp = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
        assert resp.status_code == 200  # the user never sees the canary fail: the baseline covers it
        out.append(resp.headers["x-hedgeway-deployment"])
    return out


def _wait_state(url: str, name: str, state: str, timeout: float = 5.0) -> Row:
    store = CanaryStore(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = store.get(name)
            if row.state == state or time.monotonic() > deadline:
                return row
            time.sleep(0.05)
    finally:
        store.close()


def _events(url: str, name: str) -> list[dict]:
    store = CanaryStore(url)
    try:
        return store.events(name)
    finally:
        store.close()


# --- the rules ---------------------------------------------------------------------------------------

def _row(stage=0, started=0.0, **settings) -> Row:
    return Row("c", "m", "k", {"stages": [5, 25, 100], "min_requests": 10, "min_seconds": 60, **settings},
               "running", stage, 1, started)


def test_verdict_rules():
    t = lambda req, err=0, sla=0, checked=0, agree=0.0: (req, err, sla, checked, agree)  # noqa: E731
    assert verdict(_row(), t(9, 9, 9), now=1000) is None  # too few requests to judge anything
    assert verdict(_row(), t(100, 3), now=1000)[:2] == ("rolled_back", 0)  # 3% > 2%
    assert "error rate 3.0%" in verdict(_row(), t(100, 3), now=1000)[2]
    assert verdict(_row(), t(100, 2), now=1000) == ("running", 1, "healthy: 100 requests, 2 errors, 0 SLA fallbacks")
    assert verdict(_row(), t(100, 0, 11), now=1000)[0] == "rolled_back"  # 11% SLA fallbacks > 10%
    assert verdict(_row(started=990), t(100), now=1000) is None  # the stage is 10 s old, needs 60
    assert verdict(_row(stage=2), t(100), now=1000)[:2] == ("promoted", 2)
    assert verdict(_row(max_error_rate=0.5), t(100, 40), now=1000)[0] == "running"
    q = dict(min_agreement=0.6, min_quality_samples=5)
    assert verdict(_row(**q), t(100, 0, 0, 5, 2.0), now=1000)[0] == "rolled_back"  # mean 0.4 < 0.6
    assert "agreement with the baseline 0.40 < 0.6" in verdict(_row(**q), t(100, 0, 0, 5, 2.0), now=1000)[2]
    assert verdict(_row(**q), t(3, 0, 0, 5, 1.0), now=1000)[0] == "rolled_back"  # quality needs no min_requests
    assert verdict(_row(**q), t(100, 0, 0, 4, 0.0), now=1000) is None  # not enough compared: no promotion yet
    assert verdict(_row(**q), t(100, 0, 0, 5, 4.5), now=1000)[0] == "running"  # 0.9: healthy


def test_rouge_l_agreement():
    from hedgeway.canary.quality import answer_text, rouge_l

    assert rouge_l("The cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("a b c d", "e f g h") == 0.0
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert answer_text(b'{"choices":[{"message":{"content":"hi"}}]}') == "hi" and answer_text(b"{") == ""


# --- through real gateways -------------------------------------------------------------------------------

def test_a_failing_candidate_rolls_back_by_itself_and_users_never_see_it(upstream, ledger_url, tmp_path):
    cfg, path = _config(upstream, ledger_url, tmp_path, candidate_model="fail-500")
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert main(["canary", "start", "bad", "--model", "gpt-4o-mini", "--candidate", "cand", "--config", path,
                     "--stages", "50,100", *FAST]) == 0
        deadline = time.monotonic() + 30
        while True:  # traffic until the canary acts (on a loaded machine its poll can lag the requests)
            _send(gw, 10)
            row = _wait_state(ledger_url, "bad", "rolled_back", timeout=0.5)
            if row.state == "rolled_back" or time.monotonic() > deadline:
                break
        assert row.state == "rolled_back" and row.share == 0
        _seen(gw, "bad", "rolled_back")
        assert set(_send(gw, 10)) == {"gpt-4o-mini/openai/ok-mini"}  # all traffic is back on the baseline
    events = _events(ledger_url, "bad")
    assert [(e["from"], e["to"]) for e in events] == [(None, "running"), ("running", "rolled_back")]
    assert events[1]["reason"].startswith("error rate 100.0% > 2.0%")
    store = open_store(ledger_url)
    rows = store.records()
    store.close()
    canary_rows = [(r, json.loads(r.route)) for r in rows if r.route and "canary" in r.route]
    assert {route["arm"] for _, route in canary_rows} == {"candidate", "baseline"}
    assert all(r.status == 200 and r.deployment == "gpt-4o-mini/openai/ok-mini" for r in rows)
    # the candidate failed and fell back, until its breaker opened and plans skipped it
    assert any("cand-1 (" in route.get("fallbacks", [""])[0] for _, route in canary_rows)


def test_a_healthy_candidate_ramps_to_promotion_and_the_cli_reports_it(upstream, ledger_url, tmp_path, capsys):
    cfg, path = _config(upstream, ledger_url, tmp_path)
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert main(["canary", "start", "good", "--model", "gpt-4o-mini", "--candidate", "cand", "--config", path,
                     "--stages", "25,50,100", *FAST]) == 0
        assert main(["canary", "start", "good", "--model", "gpt-4o-mini", "--candidate", "cand",
                     "--config", path]) == 1  # a live canary of that name exists
        _seen(gw, "good", "running")
        deadline = time.monotonic() + 20
        while _wait_state(ledger_url, "good", "promoted", timeout=0).state != "promoted":
            assert time.monotonic() < deadline
            _send(gw, 10)
        _seen(gw, "good", "promoted")
        assert set(_send(gw, 10)) == {"cand-1"}  # promoted: the candidate takes all the model's traffic
        assert main(["canary", "status", "good", "--config", path]) == 0
        text = capsys.readouterr().out
        assert "good: promoted, cand takes 100% of gpt-4o-mini" in text
        assert "running → running at 50%" in text and "running → promoted at 100%" in text
        assert main(["canary", "rollback", "good", "--config", path]) == 0
        _seen(gw, "good", "rolled_back")
        assert set(_send(gw, 5)) == {"gpt-4o-mini/openai/ok-mini"}
        assert b'hedgeway_canary_state{canary="good",state="rolled_back"} 1' in _metrics(gw)
    assert [e["to"] for e in _events(ledger_url, "good")] == ["running", "running", "running", "promoted",
                                                             "rolled_back"]


def _metrics(gw) -> bytes:
    from test_http_openai import raw

    return raw(gw, "GET", "/metrics")[2]


def _seen(gw, name: str, state: str, timeout: float = 10.0) -> None:
    """Wait until the gateway itself (its /metrics) has loaded the canary in `state`: its poll runs on its own
    thread and can lag a change made through the CLI on a loaded machine."""
    want = f'hedgeway_canary_state{{canary="{name}",state="{state}"}} 1'.encode()
    deadline = time.monotonic() + timeout
    while want not in _metrics(gw):
        assert time.monotonic() < deadline, f"the gateway never saw canary {name} {state}"
        time.sleep(0.05)


def test_sla_misses_of_a_candidate_in_a_routed_tier_roll_it_back(upstream, ledger_url, tmp_path):
    # `auto` routes every prompt to the simple tier (gpt-4o-mini) whose SLA is 0.3 s; the candidate ("slow",
    # 3 s) stands in for that tier and is held to the same SLA: each miss falls back to the baseline in time.
    cfg, path = _config(upstream, ledger_url, tmp_path, candidate_model="slow", router={"routes": [{
        "name": "auto", "router": "heuristic", "tiers": {"simple": "gpt-4o-mini"},
        "sla": {"simple": {"total": 0.3}}}]})
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert main(["canary", "start", "slowpoke", "--model", "gpt-4o-mini", "--candidate", "cand",
                     "--config", path, "--stages", "100", "--min-requests", "3", "--min-seconds", "0"]) == 0
        _seen(gw, "slowpoke", "running")
        # the candidate answers only after 3 s: the baseline's answers mean the 0.3 s SLA cut each one short
        assert set(_send(gw, 3, model="auto")) == {"gpt-4o-mini/openai/ok-mini"}
        row = _wait_state(ledger_url, "slowpoke", "rolled_back")
    assert row.state == "rolled_back"
    assert "SLA-fallback rate 100.0% > 10.0%" in _events(ledger_url, "slowpoke")[-1]["reason"]


def _two_replicas_share_one_ramp(upstream, url: str, tmp_path) -> None:
    cfg, path = _config(upstream, url, tmp_path)
    with BackgroundGateway(from_dict(cfg)) as a, BackgroundGateway(from_dict(cfg)) as b:
        assert main(["canary", "start", "shared", "--model", "gpt-4o-mini", "--candidate", "cand",
                     "--config", path, "--stages", "100", "--min-requests", "6", "--min-seconds", "0"]) == 0
        _seen(a, "shared", "running")
        _seen(b, "shared", "running")
        # 4 candidate requests on each replica: neither reaches 6 alone, together they do
        assert set(_send(a, 4)) == set(_send(b, 4)) == {"cand-1"}
        row = _wait_state(url, "shared", "promoted", timeout=8)
        assert row.state == "promoted"
        assert main(["canary", "pause", "shared", "--config", path]) == 1  # promoted: nothing to pause
    events = _events(url, "shared")
    assert [e["to"] for e in events] == ["running", "promoted"]  # once, whichever replica won
    judged = int(events[1]["reason"].split()[1])  # "healthy: N requests, …": summed over both replicas
    assert 4 < judged <= 8, events[1]["reason"]


def test_two_replicas_share_one_ramp_sqlite(upstream, ledger_url, tmp_path):
    _two_replicas_share_one_ramp(upstream, ledger_url, tmp_path)


def test_two_replicas_share_one_ramp_postgres(upstream, pg_admin, tmp_path):  # noqa: F811
    url, admin = pg_admin
    schema = f"hw_canary_{uuid.uuid4().hex[:12]}"
    try:
        _two_replicas_share_one_ramp(upstream, f"{url}?schema={schema}", tmp_path)
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_cli_validates_names_stages_and_transitions(upstream, ledger_url, tmp_path, capsys):
    _, path = _config(upstream, ledger_url, tmp_path)
    assert main(["canary", "start", "x", "--model", "nope", "--candidate", "cand", "--config", path]) == 2
    with pytest.raises(SystemExit):
        main(["canary", "start", "x", "--model", "gpt-4o-mini", "--candidate", "cand", "--config", path,
              "--stages", "50,25"])
    assert main(["canary", "start", "x", "--model", "gpt-4o-mini", "--candidate", "cand", "--config", path]) == 0
    assert main(["canary", "resume", "x", "--config", path]) == 1  # running, not paused
    assert main(["canary", "pause", "x", "--config", path]) == 0
    assert main(["canary", "promote", "x", "--config", path]) == 0  # paused → next stage, still paused
    assert main(["canary", "status", "x", "--config", path, "--json"]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[out.index("["):])
    assert status[0]["state"] == "paused" and status[0]["share"] == 0.25
    assert main(["canary", "rollback", "missing", "--config", path]) == 1


def _sim_config(tmp_path, url: str, candidate_model: str) -> tuple[dict, str]:
    sim = lambda model: {"provider": "simulated", "model": model, "price": {"input": "1", "output": "2"},  # noqa: E731
                         "settings": {"ttft_ms": 1, "tokens_per_second": 20000, "max_output_tokens": 30}}
    cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": url, "flush_interval": 0.02},
           "routing": {"canary_poll": 0.05},
           "models": [{"name": "base", "deployments": [sim("llama-70b")]},
                      {"name": "cand", "deployments": [{**sim(candidate_model), "id": "cand-1"}]}]}
    path = tmp_path / f"sim-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, str(path)


@pytest.mark.parametrize("candidate_model, final", [("llama-70b", "promoted"), ("llama-8b-degraded", "rolled_back")])
def test_quality_trigger_with_the_simulated_provider(tmp_path, candidate_model, final):
    """Same simulated model: the same answers (agreement 1.0), promoted. Another model: answers unlike the
    baseline's (the candidate that degrades), rolled back on agreement — while users still got answers."""
    url = f"sqlite:///{tmp_path}/sim.db"
    cfg, path = _sim_config(tmp_path, url, candidate_model)
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert main(["canary", "start", "q", "--model", "base", "--candidate", "cand", "--config", path,
                     "--stages", "100", "--min-requests", "5", "--min-seconds", "0", "--min-agreement", "0.6",
                     "--quality-sample", "1", "--min-quality-samples", "5"]) == 0
        _seen(gw, "q", "running")
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
        for i in range(12):
            client.chat.completions.create(model="base", messages=[{"role": "user", "content": f"question {i}"}])
        row = _wait_state(url, "q", final)
    assert row.state == final
    events = _events(url, "q")
    if final == "rolled_back":
        assert events[-1]["reason"].startswith("agreement with the baseline 0.")
    store = open_store(url)
    rows = store.records()
    store.close()
    checks = [r for r in rows if r.endpoint == "canary_check"]
    assert checks and all(r.deployment == "base/simulated/llama-70b" and r.cost > 0 for r in checks)
    assert all(r.request_id.endswith("-canary_check") for r in checks)
