"""A route with a `trained` router through a real gateway: it routes by its model only once the
artefact says proven; until then every request goes to the default tier and every surface says why."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from conftest import UPSTREAM_KEY, gateway_config
from hedgeway.cli import main
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.routing.labelled import minilm_embed
from hedgeway.routing.proof import train_from_labels
from test_http_openai import raw, records
from test_routing_proof import _prompts

HARD_Q = "Derive the closed form of the falcon recurrence and prove it by induction."
EASY_Q = "What colour is a lantern?"


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """(proven, unproven) artefacts: the same prompts with text-dependent labels, and shuffled."""
    rng = np.random.default_rng(11)
    prompts = _prompts(200, rng)
    vecs = minilm_embed([p for p, _ in prompts])
    rows = [{"id": i, "prompt": p, "embedding": v.tolist(), "strong_wins": float(rng.random() < (0.9 if hard else 0.3))}
            for i, ((p, hard), v) in enumerate(zip(prompts, vecs))]
    perm = rng.permutation(len(rows))
    shuffled = [{**r, "strong_wins": rows[j]["strong_wins"]} for r, j in zip(rows, perm)]
    out = []
    for name, lines in (("proven", rows), ("unproven", shuffled)):
        report, model, _ = train_from_labels(lines, cv=5, repeats=1, permutations=40, curve_points=False)
        assert report["proven"] is (name == "proven")
        path = tmp_path_factory.mktemp("router") / f"{name}.npz"
        model.save(path, f"auto-{name}")
        out.append(str(path))
    return out


def _config(upstream, ledger_url, model_path, **route):
    dep = lambda m, price: {"provider": "openai", "model": m, "api_base": upstream.base_url,  # noqa: E731
                            "api_key": UPSTREAM_KEY, "price": price}
    cfg = gateway_config(upstream.base_url, ledger_url)
    cfg["models"] += [{"name": "llama-local", "deployments": [dep("ok-llama", {"input": "0.05", "output": "0.1"})]},
                      {"name": "premium", "deployments": [dep("ok-premium", {"input": "2.5", "output": "10"})]}]
    cfg["router"] = {"routes": [{"name": "auto", "router": "trained", "tiers": {"simple": "llama-local",
                                 "complex": "premium"}, "options": {"model": model_path}, **route}]}
    return cfg


def _ask(gw, text, stream=False):
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "stream": stream}
    status, headers, data = raw(gw, "POST", "/v1/chat/completions", json.dumps(body).encode(),
                                {"content-type": "application/json"})
    assert status == 200, data
    return json.loads(headers["x-hedgeway-route"]), headers["x-hedgeway-deployment"]


def test_unproven_router_sends_everything_to_the_default_tier_and_says_why(upstream, ledger_url, artefacts):
    with BackgroundGateway(from_dict(_config(upstream, ledger_url, artefacts[1]))) as gw:
        for text, stream in ((EASY_Q, False), (HARD_Q, False), (EASY_Q, True)):
            route, deployment = _ask(gw, text, stream)
            assert deployment == "premium/openai/ok-premium"  # the top tier: no default configured
            assert route["proven"] is False and route["tier"] == "complex" and "score" not in route
            assert route["reason"].startswith("unproven: APGR") and "random band" in route["reason"]
        _, _, stats = raw(gw, "GET", "/v1/router/stats")
        _, _, metrics = raw(gw, "GET", "/metrics")
        _, _, live = raw(gw, "GET", "/ui/api/live")  # the dashboard's route-proof panel
    assert json.loads(live)["proof"] == json.loads(stats)["proof"]
    assert json.loads(live)["routes"]["auto"] == {"complex": 3}
    proof = json.loads(stats)["proof"]["auto"]
    assert proof["proven"] is False and proof["version"] == "auto-unproven" and proof["n"] == 200
    assert proof["router"] == "trained" and proof["ci"][0] <= proof["random_band"][1]
    assert 'hedgeway_router_proven{route="auto"} 0' in metrics.decode()
    assert 'hedgeway_router_labels{route="auto"} 200' in metrics.decode()
    assert all(json.loads(r.route)["proven"] is False for r in records(ledger_url, 3))


def test_unproven_router_honours_a_configured_default_tier(upstream, ledger_url, artefacts):
    with BackgroundGateway(from_dict(_config(upstream, ledger_url, artefacts[1], default="simple"))) as gw:
        route, deployment = _ask(gw, HARD_Q)
    assert route["tier"] == "simple" and deployment == "llama-local/openai/ok-llama"


def test_proven_router_routes_by_its_model(upstream, ledger_url, artefacts):
    with BackgroundGateway(from_dict(_config(upstream, ledger_url, artefacts[0]))) as gw:
        hard, hard_dep = _ask(gw, HARD_Q)
        easy, easy_dep = _ask(gw, EASY_Q, stream=True)
        _, _, metrics = raw(gw, "GET", "/metrics")
    assert hard["router"] == "trained" and hard["tier"] == "complex" and hard_dep == "premium/openai/ok-premium"
    assert easy["tier"] == "simple" and easy_dep == "llama-local/openai/ok-llama"
    assert hard["score"] > easy["score"] and "proven" not in hard
    assert 'hedgeway_router_proven{route="auto"} 1' in metrics.decode()


def test_config_check_names_the_proof_and_rejects_a_default_outside_the_tiers(upstream, ledger_url, artefacts,
                                                                                tmp_path, capsys):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(upstream, ledger_url, artefacts[1])))
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "auto: trained (auto-unproven) unproven: APGR" in out and "every request goes to complex" in out
    path.write_text(yaml.safe_dump(_config(upstream, ledger_url, artefacts[1], default="medium")))
    assert main(["config", "check", str(path)]) == 1
    assert "router.routes[0].default" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(_config(upstream, ledger_url, str(tmp_path / "missing.npz"))))
    assert main(["config", "check", str(path)]) == 1
    assert "router.routes[0].options" in capsys.readouterr().err


# --- a new router version through the canary -----------------------------------------------------------

def _sim_route_config(tmp_path, url: str, baseline: str) -> tuple[dict, str]:
    """Two simulated models whose answers differ (the cheap one degrades); route `auto` over them."""
    import uuid

    import yaml

    sim = lambda model: {"provider": "simulated", "model": model, "price": {"input": "1", "output": "2"},  # noqa: E731
                         "settings": {"ttft_ms": 1, "tokens_per_second": 20000, "max_output_tokens": 30}}
    cfg = {"auth": {"master_key": "sk-master-test"}, "ledger": {"url": url, "flush_interval": 0.02},
           "routing": {"canary_poll": 0.05},
           "models": [{"name": "strong", "deployments": [sim("llama-70b")]},
                      {"name": "weak", "deployments": [sim("llama-8b-degraded")]}],
           "router": {"routes": [{"name": "auto", "router": "trained", "tiers": {"simple": "weak", "complex": "strong"},
                                  "options": {"model": baseline}}]}}
    path = tmp_path / f"sim-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, str(path)


@pytest.mark.parametrize("quality, final", [(False, "promoted"), (True, "rolled_back")])
def test_a_proven_router_version_goes_live_as_a_canary_and_decides_by_itself(tmp_path, artefacts, quality, final,
                                                                             monkeypatch):
    """Baseline: the unproven version (everything to `strong`). The proven version sends easy prompts to
    `weak`. Healthy, it ramps to promotion by itself; with the quality check on, its answers (from the
    degraded model) disagree with the baseline's and it rolls back by itself. An unproven version is refused."""
    import random

    import openai

    import hedgeway.canary

    # The arm draw is random; a seeded source makes both arms appear before four candidate samples end the
    # canary (unseeded, all four early requests went to the candidate about one run in sixteen).
    monkeypatch.setattr(hedgeway.canary, "random", random.Random(1))

    from hedgeway.canary.store import CanaryStore
    from test_canary import _events, _seen, _wait_state

    url = f"sqlite:///{tmp_path}/sim.db"
    cfg, path = _sim_route_config(tmp_path, url, artefacts[1])
    start = ["canary", "start", "v2", "--model", "auto", "--config", path, "--stages", "50,100",
             "--min-requests", "6", "--min-seconds", "0"]
    checks = ["--min-agreement", "0.6", "--quality-sample", "1", "--min-quality-samples", "4"] if quality else []
    assert main([*start, "--candidate", f"router:{artefacts[1]}"]) == 2  # unproven: never goes live
    assert main([*start, "--candidate", "router:/nonexistent.npz"]) == 2
    with BackgroundGateway(from_dict(cfg)) as gw:
        assert main([*start, "--candidate", f"router:{artefacts[0]}", *checks]) == 0
        _seen(gw, "v2", "running")
        client = openai.OpenAI(base_url=gw.base_url, api_key="sk-master-test", max_retries=0)
        arms, deadline = [], time.monotonic() + 30
        while _wait_state(url, "v2", final, timeout=0).state != final:
            assert time.monotonic() < deadline, _events(url, "v2")
            resp = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": EASY_Q}])
            route = json.loads(resp.headers["x-hedgeway-route"])
            if "arm" in route:  # none once this gateway has loaded the transition the loop is waiting for
                arms.append((route["arm"], route["tier"]))
        _seen(gw, "v2", final)
        after = json.loads(client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": EASY_Q}]).headers["x-hedgeway-route"])
    assert ("candidate", "simple") in arms and ("baseline", "complex") in arms  # each arm by its own version
    assert all(tier == ("simple" if arm == "candidate" else "complex") for arm, tier in arms)
    events = _events(url, "v2")
    if final == "promoted":
        assert after["arm"] == "candidate" and after["tier"] == "simple"  # the new version plans everything
        assert [e["to"] for e in events] == ["running", "running", "promoted"]
    else:
        assert "canary" not in after and after["tier"] == "complex"  # back to the configured version alone
        assert events[-1]["to"] == "rolled_back" and events[-1]["reason"].startswith("agreement with the baseline")
    store = CanaryStore(url)
    assert store.get("v2").candidate == f"router:{artefacts[0]}"
    store.close()


@pytest.mark.parametrize("cached", [True, False])
def test_one_embedding_per_request_shared_with_the_semantic_cache(upstream, ledger_url, artefacts, monkeypatch,
                                                                   cached):
    """With the semantic cache on, the router reads the vector the cache computed; without it, the
    gateway embeds the request once itself. Either way: one MiniLM call per routed request."""
    from hedgeway.embedders import EMBEDDERS

    model = EMBEDDERS["minilm"](None, None)  # the process's shared MiniLM, which the gateway uses
    calls: list[list[str]] = []
    real = model.embed

    async def counting(texts, whole_only=False):
        calls.append(list(texts))
        return await real(texts, whole_only)

    monkeypatch.setattr(model, "embed", counting)
    cfg = _config(upstream, ledger_url, artefacts[0])
    if cached:
        cfg["cache"] = {"enabled": True, "backend": "memory", "embedder": "minilm"}
    with BackgroundGateway(from_dict(cfg)) as gw:
        hard, _ = _ask(gw, HARD_Q)
        easy, _ = _ask(gw, EASY_Q)
    assert calls == [[HARD_Q], [EASY_Q]]
    assert hard["tier"] == "complex" and easy["tier"] == "simple"
