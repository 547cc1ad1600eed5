import asyncio

import pytest

from hedgeway.errors import AllDeploymentsFailed, UpstreamError, UpstreamRejected, UpstreamTimeout
from hedgeway.fallback import RetryPolicy, call_with_fallback, retry_delay
from hedgeway.routing import Planner, least_in_flight, weighted
from hedgeway.types import Deployment


def dep(name, model="m", weight=1.0):
    return Deployment(id=name, model_name=model, provider="simulated", model=name, weight=weight)


A, B, C = dep("a"), dep("b"), dep("c", model="fb")


def run(groups, behaviour, retries=1, hold=False):
    calls = []
    inflight = {d.id: 0 for g in groups for d in g}

    async def call(d):
        calls.append(d.id)
        result = behaviour[d.id]
        if isinstance(result, Exception):
            raise result
        return result

    async def main():
        return await call_with_fallback(groups, call, RetryPolicy(retries, 0.001, 0.01), inflight, hold=hold)

    return asyncio.run(main()), calls, inflight


def test_retry_moves_to_next_deployment_then_fallback_group():
    out, calls, inflight = run([(A, B), (C,)], {"a": UpstreamError("x"), "b": UpstreamError("y"), "c": "ok"})
    assert calls == ["a", "b", "c"] and out.result == "ok" and out.deployment is C
    assert out.attempts == 3 and [f.deployment for f in out.failures] == ["a", "b"]
    assert inflight == {"a": 0, "b": 0, "c": 0}


def test_single_deployment_is_retried_then_all_failures_collected():
    with pytest.raises(AllDeploymentsFailed) as err:
        run([(A,)], {"a": UpstreamTimeout("t")}, retries=2)
    assert len(err.value.failures) == 3 and err.value.status_code == 504


def test_non_eligible_error_stops_at_once():
    with pytest.raises(UpstreamRejected):
        run([(A, B)], {"a": UpstreamRejected("bad request"), "b": "ok"})


def test_hold_keeps_the_winner_in_flight():
    _, _, inflight = run([(A,)], {"a": "ok"}, hold=True)
    assert inflight["a"] == 1


def test_least_in_flight_prefers_idle_deployment():
    assert least_in_flight((A, B), {"a": 3, "b": 0})[0] is B
    heavy = dep("h", weight=4.0)
    assert least_in_flight((A, heavy), {"a": 1, "h": 2})[0] is heavy  # 2/4 < 1/1


def test_weighted_order_follows_weights():
    heavy, light = dep("h", weight=9.0), dep("l", weight=1.0)
    firsts = sum(weighted((heavy, light), {})[0] is heavy for _ in range(4000))
    assert 0.86 < firsts / 4000 < 0.94


def test_planner_appends_fallback_groups_and_rejects_unknown_models():
    planner = Planner({"m": (A, B), "fb": (C,)}, {"m": ["fb"]}, "least-in-flight")
    groups = planner.plan("m").groups
    assert {d.id for d in groups[0]} == {"a", "b"} and groups[1] == (C,)
    from hedgeway.errors import NotFound
    with pytest.raises(NotFound):
        planner.plan("ghost")


@pytest.mark.parametrize("jitter", [0.0, 0.999999])
def test_retry_delay_doubles_honours_retry_after_up_to_its_cap_and_jitters_down_to_half(monkeypatch, jitter):
    monkeypatch.setattr("hedgeway.fallback.random.random", lambda: jitter)
    factor = 0.5 + jitter / 2
    policy = RetryPolicy(num_retries=3, backoff=0.1, max_retry_after=5.0)
    assert [retry_delay(policy, n, None) for n in (1, 2, 3)] == pytest.approx([0.1 * factor, 0.2 * factor, 0.4 * factor])
    assert retry_delay(policy, 1, 0.3) == pytest.approx(0.3 * factor)  # the upstream asked for more: wait that
    assert retry_delay(policy, 3, 0.3) == pytest.approx(0.4 * factor)  # our own back-off is longer already
    assert retry_delay(policy, 1, 60.0) == pytest.approx(5.0 * factor)  # a huge Retry-After is capped
