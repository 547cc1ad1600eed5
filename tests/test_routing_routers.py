"""Routers' decisions on made-up prompts, tier selection, capability gating, fallback order, config."""

from __future__ import annotations

import time

import pytest

from hedgeway.errors import ConfigError
from hedgeway.routing import Planner
from hedgeway.routing.baselines import RandomRouter
from hedgeway.routing.config import RouteIn, RouterIn
from hedgeway.routing.features import prompt_of
from hedgeway.routing.heuristic import HeuristicRouter
from hedgeway.types import Deployment, PriceCard
from decimal import Decimal

H = HeuristicRouter()


def score(prompt):
    return H.score(prompt_of(prompt))


SIMPLE = ["hi", "Hello there!", "thanks so much", "What is the capital of France?", "good morning"]
COMPLEX = [
    "Write a Python function that parses ISO-8601 durations and returns seconds; include unit tests.",
    "```js\nfunction f(a){ return a.map(x => x*2) }\n```\nWhy does this throw on undefined input? Fix the bug.",
    "Prove that the square root of 2 is irrational, then explain why the proof generalises to primes.",
    "First, calculate the compound interest on $5,000 at 4% for 3 years. Then compare it with simple "
    "interest, and finally explain which is better for a saver and why.",
    "Analyze the trade-offs between event sourcing and CRUD for a payments system; justify a design.",
    "word " * 2500,  # a long document
]


@pytest.mark.parametrize("prompt", SIMPLE)
def test_heuristic_small_talk_is_simple(prompt):
    assert score(prompt) < HeuristicRouter.thresholds[0]


@pytest.mark.parametrize("prompt", COMPLEX)
def test_heuristic_code_reasoning_multistep_long_is_complex(prompt):
    assert score(prompt) >= HeuristicRouter.thresholds[1]


def test_heuristic_tools_and_depth_raise_the_score():
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    plain = score({"messages": msgs})
    tools = score({"messages": msgs, "tools": [{"type": "function", "function": {"name": "weather"}}]})
    assert tools >= HeuristicRouter.thresholds[1] > plain
    deep = [{"role": r, "content": "ok, and then?"} for r in ["user", "assistant"] * 5]
    assert score({"messages": deep}) > score({"messages": deep[:1]})


def test_prompt_of_reads_strings_messages_and_content_parts():
    p = prompt_of([{"role": "system", "content": "be brief"},
                   {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                {"type": "image_url", "image_url": {"url": "data:..."}}]}])
    assert p.text == "what is this?" and p.system == "be brief" and p.vision and p.turns == 1
    assert prompt_of("plain").text == "plain"


def test_heuristic_decision_is_fast():
    long = {"messages": [{"role": "user", "content": COMPLEX[3] * 40}]}
    times = []
    for _ in range(30):  # the best of 30: CPU cost, not the scheduler's noise on a shared machine
        started = time.perf_counter()
        H.score(prompt_of(long))
        times.append(time.perf_counter() - started)
    assert min(times) < 0.001


def test_random_router_is_uniform_and_seedable():
    r1, r2 = RandomRouter({"seed": 7}), RandomRouter({"seed": 7})
    a = [r1.score(prompt_of("x")) for _ in range(2000)]
    assert a[:5] == [r2.score(prompt_of("x")) for _ in range(5)]
    assert 0.45 < sum(a) / len(a) < 0.55 and 0.3 < sum(x < 1 / 3 for x in a) / 2000 < 0.37


def dep(name, model, price):
    return Deployment(id=name, model_name=model, provider="openai", model=name,
                      price=PriceCard(Decimal(price), Decimal(price)))


MODELS = {"small": (dep("s1", "small", "0.1"),), "mid": (dep("m1", "mid", "1"),),
          "big": (dep("b1", "big", "10"),)}


def planner(**route):
    r = {"name": "auto", "router": "heuristic", "tiers": {"simple": "small", "medium": "mid", "complex": "big"},
         **route}
    return Planner(MODELS, {}, "least-in-flight", RouterIn(routes=[RouteIn(**r)]))


def ids(plan):
    return [d.id for g in plan.groups for d in g]


def test_planner_routes_by_tier_and_falls_back_up_then_down():
    p = planner()
    simple = p.plan("auto", {"messages": [{"role": "user", "content": "hello"}]})
    assert simple.route["tier"] == "simple" and simple.route["complexity"] == "simple"
    assert ids(simple) == ["s1", "m1", "b1"]
    hard = p.plan("auto", {"messages": [{"role": "user", "content": COMPLEX[0]}]})
    assert hard.route["tier"] == "complex" and ids(hard) == ["b1", "m1", "s1"]
    medium = p.plan("auto", {"messages": [{"role": "user", "content": "Explain photosynthesis."}]})
    assert medium.route == {"router": "heuristic", "tier": "medium", "score": medium.route["score"],
                            "complexity": "medium", "model": "mid"}
    assert ids(medium) == ["m1", "b1", "s1"]
    assert "auto" in p.names() and p.stats.tiers[("auto", "simple")] == 1
    metrics = p.render_metrics()
    assert 'hedgeway_router_requests_total{route="auto",tier="simple"} 1' in metrics
    assert 'hedgeway_breaker_state{deployment="s1"} 0' in metrics


def test_thresholds_from_config_and_missing_tier_goes_up():
    p = planner(tiers={"simple": "small", "complex": "big"}, thresholds={"medium": 0.0, "complex": 0.99})
    plan = p.plan("auto", {"messages": [{"role": "user", "content": "hello"}]})
    assert plan.route["complexity"] == "medium" and plan.route["tier"] == "complex"


def test_capabilities_skip_a_tier_that_cannot_serve():
    p = planner(capabilities={"small": {"tools": False, "context": 50}})
    tools = p.plan("auto", {"messages": [{"role": "user", "content": "hi"}],
                            "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert tools.route["tier"] != "simple" and "s1" not in ids(tools)
    long = p.plan("auto", {"messages": [{"role": "user", "content": "hi " + "a" * 400}]})
    assert "s1" not in ids(long)


def test_cost_router_picks_cheapest_capable_tier():
    p = planner(router="cost", capabilities={"small": {"vision": False}})
    plain = p.plan("auto", {"messages": [{"role": "user", "content": COMPLEX[2]}]})
    assert plain.route["tier"] == "simple" and ids(plain)[0] == "s1"
    assert plain.route["complexity"] == "complex"  # still classified for the build-vs-buy planner
    img = p.plan("auto", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})
    assert ids(img)[0] == "m1" and img.route["reason"] == "simple lacks vision"


@pytest.mark.parametrize("route, path", [
    ({"tiers": {"simple": "ghost"}}, "router.routes[0].tiers.simple"),
    ({"router": "nope"}, "router.routes[0].router"),
    ({"name": "gpt-4o-mini"}, "router.routes[0].name"),
    ({"sla": {"huge": {"ttft": 1}}}, "router.routes[0].sla.huge"),
    ({"tiers": {"trivial": "gpt-4o-mini"}}, "router.routes[0].tiers.trivial"),
    ({"thresholds": {"medium": 0.8, "complex": 0.2}}, "router.routes[0].thresholds"),
])
def test_config_errors_name_the_path(route, path):
    from conftest import gateway_config
    from hedgeway.config import from_dict

    r = {"name": "auto", "tiers": {"simple": "gpt-4o-mini", "complex": "sim"}, **route}
    with pytest.raises(ConfigError) as err:
        from_dict(gateway_config("http://127.0.0.1:1/v1", "sqlite:///:memory:", router={"routes": [r]}))
    assert str(err.value).startswith(path)
