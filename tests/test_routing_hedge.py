"""The fallback loop with a guard: hedged races, SLA deadlines, breaker-aware retries (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from hedgeway.errors import AllDeploymentsFailed, UpstreamError, UpstreamRejected
from hedgeway.fallback import RetryPolicy, call_with_fallback
from hedgeway.routing.config import BreakerIn
from hedgeway.routing.health import Guard, Health
from hedgeway.types import Deployment

A, B, C = (Deployment(id=x, model_name=x, provider="simulated", model=x) for x in "abc")


def run(behaviour, *, delay=None, deadlines=None, hold=False):
    """behaviour[id] = (seconds, result or exception)."""
    inflight = {"a": 0, "b": 0, "c": 0}
    started, cancelled = [], []
    health = Health(BreakerIn(), 0.5, inflight)
    guard = Guard(health, deadlines or {}, None, delay)

    async def call(dep):
        started.append(dep.id)
        wait, result = behaviour[dep.id]
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            cancelled.append(dep.id)
            raise
        if isinstance(result, Exception):
            raise result
        return result

    async def main():
        out = await call_with_fallback([(A,), (B,), (C,)], call, RetryPolicy(1, 0.001, 0.01), inflight,
                                       hold=hold, guard=guard)
        await asyncio.sleep(0.01)  # let cancellations land
        return out

    try:
        return asyncio.run(main()), started, cancelled, inflight, health
    except Exception as exc:
        exc.trace = (started, cancelled, inflight)
        raise


def test_slow_primary_is_raced_and_cancelled():
    out, started, cancelled, inflight, _ = run({"a": (1.0, "A"), "b": (0.01, "B")}, delay=0.05)
    assert out.result == "B" and out.hedged == "a" and cancelled == ["a"] and started == ["a", "b"]
    assert inflight == {"a": 0, "b": 0, "c": 0}


def test_stream_winner_stays_in_flight():
    out, *_, inflight, _ = run({"a": (1.0, "A"), "b": (0.01, "B")}, delay=0.05, hold=True)
    assert out.deployment is B and inflight == {"a": 0, "b": 1, "c": 0}


def test_both_fail_then_the_plan_goes_on():
    out, started, *_ = run({"a": (0.1, UpstreamError("x")), "b": (0.01, UpstreamError("y")), "c": (0, "C")},
                           delay=0.05)
    assert out.result == "C" and out.hedged is None and [f.deployment for f in out.failures][:2] == ["b", "a"]


def test_rejected_request_is_raised_and_the_race_cancelled():
    with pytest.raises(UpstreamRejected) as err:
        run({"a": (1.0, "A"), "b": (0.01, UpstreamRejected("bad"))}, delay=0.05)
    assert err.value.trace[2] == {"a": 0, "b": 0, "c": 0}


def test_sla_deadline_moves_to_next_group_without_retrying():
    out, started, cancelled, *_ = run({"a": (1.0, "A"), "b": (0.0, "B")}, deadlines={"a": (None, 0.05)})
    assert out.result == "B" and started == ["a", "b"] and cancelled == ["a"]
    assert out.failures[0].code == "sla_deadline_missed"


def test_all_failing_collects_every_attempt():
    with pytest.raises(AllDeploymentsFailed):
        run({k: (0, UpstreamError(k)) for k in "abc"})
