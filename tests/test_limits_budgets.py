"""Budgets and rate limits through `Limiter.admit / deployment / settle`, on both backends: the memory
store, and the real Redis at 127.0.0.1:6379 (unique key prefix, deleted afterwards; skipped when absent
unless CI=true). The "cheap" model falls back to "pricey", so reservations use pricey's prices:
$10 / $20 per million input / output tokens."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import pytest

from conftest import require_service
from hedgeway.errors import BudgetExceeded, PermissionDenied, RateLimited, UpstreamRateLimited
from hedgeway.limits.estimate import to_units, to_usd
from hedgeway.limits.periods import bounds, iso
from hedgeway.types import Budget, Principal, RateLimit, Usage
from test_limits_support import MODELS, delete_prefix, limiter, new_prefix, redis_available, run

MASTER = Principal(key_id="master")
PROMPT = [{"role": "user", "content": "x" * 30}]  # 30/3 + chat template 3 + 5 + 19 = 37 estimated tokens


def body(max_tokens: int = 20000) -> dict:
    return {"model": "cheap", "messages": PROMPT, "max_tokens": max_tokens}


AMOUNT = Decimal(37 * 10 + 20000 * 20) * Decimal("1.1") / 1_000_000  # $0.4404070 reserved (10 % margin)


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """make(**limits) -> Limiter on the parametrized backend (call it inside the test's event loop)."""
    prefix = new_prefix()
    if request.param == "redis":
        reason = redis_available()
        if reason:
            require_service("Redis", reason)
    yield lambda **kw: limiter(request.param, prefix, **kw)
    if request.param == "redis":
        run(delete_prefix(prefix))


def test_budget_refuses_with_scope_limit_period_and_reset(make):
    async def main():
        lim = make(budgets=[{"limit": "1.00", "period": "monthly"}], budget_wait=0)
        t1 = await lim.admit(MASTER, "cheap", body())
        t2 = await lim.admit(MASTER, "cheap", body())
        with pytest.raises(BudgetExceeded) as soft:  # in-flight reservations hold the rest
            await lim.admit(MASTER, "cheap", body())
        assert soft.value.headers["retry-after"] == "1"
        lim.settle(t1, Usage(10, 100), Decimal("0.30"))
        lim.settle(t2, Usage(10, 100), Decimal("0.30"))
        await asyncio.sleep(0.05)  # redis settles in a background task
        with pytest.raises(BudgetExceeded) as hard:  # $0.40 left, the request may cost $0.440407
            await lim.admit(MASTER, "cheap", body())
        exc = hard.value
        assert exc.status_code == 429 and exc.code == "budget_exceeded"
        reset = iso(bounds("monthly", time.time())[1])
        assert "global" in exc.message and "monthly" in exc.message and "$1.00" in exc.message
        assert reset in exc.message and "$0.40 left" in exc.message
        assert 0 < int(exc.headers["retry-after"]) <= 31 * 86400
        assert lim.use[("global", "monthly")] == (to_units(Decimal("0.60")), to_units(Decimal(1)))
        await lim.admit(MASTER, "cheap", body(100))  # a smaller request still fits
        await lim.close()
    run(main())


def test_a_request_waits_for_in_flight_reservations_instead_of_being_refused(make):
    async def main():
        lim = make(budgets=[{"limit": "1.00", "period": "daily"}], budget_wait=3)
        t1 = await lim.admit(MASTER, "cheap", body())
        await lim.admit(MASTER, "cheap", body())
        waiting = asyncio.ensure_future(lim.admit(MASTER, "cheap", body()))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        lim.settle(t1, Usage(17, 10), Decimal("0.001"))
        assert await asyncio.wait_for(waiting, 2) is not None
        await lim.close()
    run(main())


def test_an_unsettled_reservation_expires(make):
    async def main():
        lim = make(budgets=[{"limit": "0.50", "period": "total"}], budget_wait=0, reservation_ttl=1)
        await lim.admit(MASTER, "cheap", body())  # never settled: the process "crashed"
        with pytest.raises(BudgetExceeded):
            await lim.admit(MASTER, "cheap", body())
        await asyncio.sleep(1.1)
        assert await lim.admit(MASTER, "cheap", body()) is not None
        await lim.close()
    run(main())


def test_principal_budgets_and_model_access(make):
    async def main():
        lim = make(budget_wait=0)
        p = Principal(key_id="k1", team="t1", models=frozenset({"cheap"}),
                      budgets=(Budget("team:t1", Decimal(5), "weekly"), Budget("key:k1", Decimal("0.5"), "daily")))
        with pytest.raises(PermissionDenied):
            await lim.admit(p, "pricey", body())
        t = await lim.admit(p, "cheap", body())
        with pytest.raises(BudgetExceeded) as exc:
            await lim.admit(p, "cheap", body())
        assert "key:k1" in exc.value.message and "daily" in exc.value.message
        lim.settle(t, Usage(17, 5), Decimal("0.0002"))
        await asyncio.sleep(0.05)
        await lim.admit(p, "cheap", body())
        with pytest.raises(PermissionDenied):  # still refused once its rules are remembered
            await lim.admit(p, "pricey", body())
        # The key edited (a key ring reload makes a new principal): its new rules apply at once.
        edited = Principal(key_id="k1", team="t1", models=frozenset({"cheap", "pricey"}),
                           budgets=(Budget("key:k1", Decimal("0.01"), "daily"),))
        with pytest.raises(BudgetExceeded) as exc:
            await lim.admit(edited, "cheap", body())
        assert "$0.01" in exc.value.message
        await lim.close()
    run(main())


def test_rpm_is_a_sliding_window_with_retry_after(make):
    async def main():
        lim = make(models={"cheap": {"rpm": 3}}, window=1)
        for _ in range(3):
            await lim.admit(MASTER, "cheap", body())
        with pytest.raises(RateLimited) as exc:
            await lim.admit(MASTER, "cheap", body())
        assert not isinstance(exc.value, BudgetExceeded)
        assert exc.value.headers["retry-after"] == "1" and "model:cheap" in exc.value.message
        await asyncio.sleep(1.05)
        await lim.admit(MASTER, "cheap", body())
        await lim.close()
    run(main())


def test_tpm_counts_the_estimate_then_the_actual_tokens(make):
    async def main():
        lim = make()
        p = Principal(key_id="k2", limits=(RateLimit("key:k2", tpm=100),))
        t = await lim.admit(p, "cheap", body(40))  # 37 + 40 = 77 tokens
        with pytest.raises(RateLimited) as exc:
            await lim.admit(p, "cheap", body(40))  # 154 > 100
        assert "key:k2" in exc.value.message and "tokens" in exc.value.message
        lim.settle(t, Usage(5, 5), Decimal(0))  # actually 10 tokens
        await asyncio.sleep(0.05)
        await lim.admit(p, "cheap", body(40))  # 10 + 77 = 87
        await lim.close()
    run(main())


def test_deployment_rpm_raises_a_fallback_eligible_error(make):
    async def main():
        lim = make()
        pricey = MODELS["pricey"][0]
        ticket = await lim.admit(MASTER, "cheap", body())  # pricey (rpm 2) is in cheap's chain: ticket
        await lim.deployment(pricey, ticket)
        await lim.deployment(pricey, ticket)
        with pytest.raises(UpstreamRateLimited) as exc:
            await lim.deployment(pricey, ticket)
        assert exc.value.deployment == "pricey/1" and exc.value.fallback_eligible
        assert 0 < exc.value.retry_after <= 60
        await lim.deployment(MODELS["cheap"][0], ticket)  # no limits on that one
        await lim.close()
    run(main())


def test_alerts_fire_once_per_threshold_and_period(make):
    async def main():
        lim = make(budgets=[{"limit": "1.00", "period": "monthly"}], alerts={"thresholds": [0.5, 0.8]})
        other = make(budgets=[{"limit": "1.00", "period": "monthly"}], alerts={"thresholds": [0.5, 0.8]})
        replicas = [lim] if lim.store is lim.local else [lim, other]  # redis: two replicas, one store
        for spend, expected in (("0.30", 0), ("0.25", 1), ("0.01", 1), ("0.30", 2), ("0.01", 2)):
            for replica in replicas:  # a second replica over the same store must not re-fire
                t = await replica.admit(MASTER, "cheap", body(100))
                replica.settle(t, Usage(1, 1), Decimal(spend) / len(replicas))
                await asyncio.sleep(0.03)
            assert sum(r.alerter.fired for r in replicas) == expected
        await lim.close()
        await other.close()
    run(main())


@pytest.mark.parametrize("replicas", [1, 3])
def test_concurrent_admits_never_overspend_and_never_refuse_while_budget_remains(make, replicas):
    async def main():
        budget = Decimal("10.00")
        lims = [make(budgets=[{"limit": str(budget), "period": "daily"}], budget_wait=5) for _ in range(replicas)]
        if lims[0].store is lims[0].local and replicas > 1:
            pytest.skip("replicas share a store only with redis")
        rng = random.Random(7)
        settled: list[Decimal] = []
        refused = 0

        async def one(i: int):
            nonlocal refused
            lim = lims[i % replicas]
            try:
                t = await lim.admit(MASTER, "cheap", body())
            except BudgetExceeded:
                refused += 1
                return
            await asyncio.sleep(rng.random() * 0.02)
            actual = (AMOUNT * Decimal(rng.randint(50, 100)) / 100).quantize(Decimal("0.000001"))
            settled.append(actual)
            lim.settle(t, Usage(17, 100), actual)

        await asyncio.gather(*(one(i) for i in range(200)))
        await asyncio.sleep(0.1)
        total = sum(settled)
        assert total <= budget
        assert refused > 0 and len(settled) > 25  # reservations settle lower, so more than 10/0.40 ran
        assert budget - total < AMOUNT  # whoever was refused could not have fit
        spent = max(lim.use[("global", "daily")][0] for lim in lims if lim.use)  # the last settle seen
        assert to_usd(spent) >= total  # the counter rounds each cost up to 1e-9 USD
        assert to_usd(spent) - total <= Decimal(len(settled)) / 10 ** 9
        for lim in lims:
            await lim.close()
    run(main())
