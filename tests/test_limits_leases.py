"""Budget and rate leases (limits/leases.py) on the real Redis at 127.0.0.1:6379, several Limiters standing
for replicas: admission without a round trip while a lease has room, no overspend and no refusal while
room is left across replicas, rate windows that never admit more than their limit, leases that go back
to Redis when idle, at shutdown and with every cent spent on them counted once. The "cheap" model falls
back to "pricey": reservations use $10 / $20 per million input / output tokens."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from decimal import Decimal

import pytest

from hedgeway.errors import BudgetExceeded, LimitsUnavailable, RateLimited
from hedgeway.limits.estimate import to_units
from hedgeway.limits.periods import bounds
from hedgeway.types import Principal, Usage
from test_limits_redis import prefix  # noqa: F401 - the fixture: a fresh key prefix, deleted after
from test_limits_support import REDIS_URL, limiter, run

MASTER = Principal(key_id="master")
BODY = {"model": "cheap", "messages": [{"role": "user", "content": "x" * 30}], "max_tokens": 100}
AMOUNT = to_units(Decimal(37 * 10 + 100 * 20) * Decimal("1.1") / 1_000_000)  # one request's reservation


def leasing(prefix: str, requests: int = 8, seconds: float = 5.0, share: float = 1.0, **kw):
    return limiter("redis", prefix, redis={"lease": {"requests": requests, "seconds": seconds, "share": share}},
                   **kw)


async def budget_state(prefix: str, period: str = "daily") -> tuple[int, int]:
    """(spent, held) of the global budget in Redis, read with the reference client."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    spent, held = await client.hmget(f"{prefix}b:global:{period}:{bounds(period, time.time())[0]}", "spent", "held")
    await client.aclose()
    return int(spent or 0), int(held or 0)


async def window_state(prefix: str, name: str) -> tuple[int, dict[bytes, int], dict[bytes, float]]:
    """(sum, weight per member, date per member in ms) of a rate window in Redis."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    k = f"{prefix}w:{name}"
    total = int(await client.get(k + ":s") or 0)
    weights = {m: int(w) for m, w in (await client.hgetall(k + ":w")).items()}
    dates = dict(await client.zrange(k, 0, -1, withscores=True))
    await client.aclose()
    return total, weights, dates


def test_a_lease_admits_without_redis_and_goes_back_with_every_cent(prefix):
    async def main():
        lim = leasing(prefix, requests=8, budgets=[{"limit": "100", "period": "daily"}], models={"cheap": {"rpm": 1000}})
        tickets = [await lim.admit(MASTER, "cheap", BODY) for _ in range(8)]
        assert lim.leases.count == 1 and all(t.leased for t in tickets)  # one Redis call for eight requests
        assert await budget_state(prefix) == (0, 8 * AMOUNT)  # the lease is held like a reservation
        total, weights, _ = await window_state(prefix, "model:cheap:rpm")
        assert total == 8 and list(weights.values()) == [8]
        ninth = await lim.admit(MASTER, "cheap", BODY)  # the first lease is used up: a second one
        assert lim.leases.count == 2
        for t in tickets + [ninth]:
            lim.settle(t, Usage(30, 20), Decimal("0.000700"))
        await lim.close()  # returns both leases
        assert await budget_state(prefix) == (9 * to_units(Decimal("0.000700")), 0)
        total, weights, dates = await window_state(prefix, "model:cheap:rpm")
        assert total == 9 and sorted(weights.values()) == [1, 8]  # each lease's weight: what was admitted on it
        assert max(dates.values()) <= time.time() * 1000 + 50  # re-dated to its return, not its end
    run(main())


def test_an_idle_lease_goes_back_after_its_seconds(prefix):
    async def main():
        lim = leasing(prefix, requests=16, seconds=0.3, budgets=[{"limit": "100", "period": "daily"}])
        started = time.monotonic()
        t = await lim.admit(MASTER, "cheap", BODY)
        lim.settle(t, Usage(30, 20), Decimal("0.0005"))
        assert await budget_state(prefix) == (0, 16 * AMOUNT)
        while await budget_state(prefix) != (to_units(Decimal("0.0005")), 0):  # returned, with its spend
            assert time.monotonic() - started < 5
            await asyncio.sleep(0.02)
        assert time.monotonic() - started >= 0.3  # not before its 0.3 s were up
        assert lim.use[("global", "daily")][0] == to_units(Decimal("0.0005"))
        await lim.close()
    run(main())


def test_a_lease_never_takes_more_than_its_share_of_the_room(prefix):
    async def main():
        limit = Decimal("0.05")  # room for 16 reservations
        lim = leasing(prefix, requests=32, share=0.25, budgets=[{"limit": str(limit), "period": "daily"}])
        t = await lim.admit(MASTER, "cheap", BODY)
        assert (await budget_state(prefix))[1] == to_units(limit) // 4  # not 32 requests' worth
        lim.settle(t, Usage(1, 1), Decimal(0))
        await lim.close()
        tiny = leasing(prefix, requests=32, share=0.01, budgets=[{"limit": str(limit), "period": "daily"}])
        t = await tiny.admit(MASTER, "cheap", BODY)
        assert (await budget_state(prefix))[1] == AMOUNT  # a share smaller than one request: the request alone
        tiny.settle(t, Usage(1, 1), Decimal(0))
        await tiny.close()
    run(main())


def test_replicas_on_leases_never_overspend_and_never_refuse_with_room(prefix):
    """The budget race: more demand than budget, costs below the reservation, requests of random length.
    Settled spend never passes the limit, every admitted request is counted exactly once, and refusals
    come only once the settled spend leaves no room for one more reservation."""
    cost, limit, replicas = Decimal("0.000700"), Decimal("0.25"), 4

    async def main():
        lims = [leasing(prefix, requests=16, seconds=0.2, share=0.1, budget_wait=5,
                        budgets=[{"limit": str(limit), "period": "daily"}]) for _ in range(replicas)]
        admitted, refused = [], []

        async def client(lim):
            for _ in range(60):
                try:
                    t = await lim.admit(MASTER, "cheap", BODY)
                except BudgetExceeded:
                    refused.append(1)
                    continue
                await asyncio.sleep(random.random() * 0.004)
                admitted.append(1)
                lim.settle(t, Usage(30, 20), cost)

        await asyncio.gather(*(client(lim) for lim in lims for _ in range(8)))
        for lim in lims:
            await lim.close()
        spent, held = await budget_state(prefix)
        assert held == 0 and spent == len(admitted) * to_units(cost)  # exactly once, all leases back
        assert spent <= to_units(limit)
        assert refused, "the demand exceeds the budget"
        assert to_units(limit) - spent < AMOUNT  # nothing was refused while a reservation still fitted
    run(main())


def test_a_rate_window_on_leases_never_admits_more_than_its_limit(prefix):
    """Three replicas race for 150 requests per 1 s window for 3.5 s: in no 1 s window (by the admission
    times) are more than 150 admitted; every replica is admitted, and the window admits again once it has
    moved on (how much of the limit is used is a figure for bench/budget_race.py rpm, not a test)."""
    limit, window, duration = 150, 1.0, 3.5

    async def main():
        lims = [leasing(prefix, requests=16, seconds=0.1, share=0.2, window=window,
                        models={"cheap": {"rpm": limit}}) for _ in range(3)]
        times: list[float] = []
        per = {id(lim): 0 for lim in lims}
        end = time.monotonic() + duration

        async def client(lim):
            while time.monotonic() < end:
                try:
                    t = await lim.admit(MASTER, "cheap", BODY)
                except RateLimited:
                    await asyncio.sleep(0.005)
                    continue
                times.append(time.monotonic())
                per[id(lim)] += 1
                await asyncio.sleep(random.random() * 0.01)
                lim.settle(t, Usage(30, 20), Decimal(0))

        await asyncio.gather(*(client(lim) for lim in lims for _ in range(6)))
        for lim in lims:
            await lim.close()
        times.sort()
        j = 0
        most = 0
        for i, t in enumerate(times):
            while times[j] <= t - window:
                j += 1
            most = max(most, i - j + 1)
        assert most <= limit
        assert all(per.values()) and len(times) > limit  # no replica starved; the window moved on
        total, weights, _ = await window_state(prefix, "model:cheap:rpm")
        assert sum(weights.values()) == total  # the window's sum matches its entries after every return
    run(main())


def test_a_full_rate_window_says_when_to_retry_on_leases(prefix):
    async def main():
        lim = leasing(prefix, requests=4, seconds=0.2, window=2, models={"cheap": {"rpm": 4}})
        tickets = [await lim.admit(MASTER, "cheap", BODY) for _ in range(4)]
        with pytest.raises(RateLimited) as exc:
            await lim.admit(MASTER, "cheap", BODY)
        assert 1 <= int(exc.value.headers["retry-after"]) <= 3
        for t in tickets:
            lim.settle(t, Usage(1, 1), Decimal(0))
        await lim.close()
    run(main())


def test_alerts_fire_once_when_the_spend_on_leases_crosses_a_threshold(prefix):
    async def main():
        lims = [leasing(prefix, requests=4, seconds=0.1, budgets=[{"limit": "0.01", "period": "daily"}],
                        alerts={"thresholds": [0.5]}) for _ in range(2)]
        for _ in range(4):
            for lim in lims:
                t = await lim.admit(MASTER, "cheap", BODY)
                lim.settle(t, Usage(30, 20), Decimal("0.001"))
        for lim in lims:
            await lim.close()
        assert sum(lim.alerter.fired for lim in lims) == 1  # $0.008 of $0.01: 50 % crossed once, across both
    run(main())


def test_a_closing_lease_goes_back_before_the_renewal_that_needs_its_room(prefix):
    """Room for one reservation: the lease is that one request. Once it settled, the next request needs
    the lease's rest back in Redis before its own reservation, or it is refused with room left
    (budget_wait 0: nothing waits)."""
    async def main():
        lim = leasing(prefix, requests=8, share=0.01, budget_wait=0, budgets=[{"limit": "0.0035", "period": "daily"}])
        for _ in range(3):
            t = await lim.admit(MASTER, "cheap", BODY)
            lim.settle(t, Usage(30, 20), Decimal("0.0001"))
        assert lim.leases.count == 3
        await lim.close()
        assert await budget_state(prefix) == (3 * to_units(Decimal("0.0001")), 0)
    run(main())


def test_a_stopped_redis_admits_what_the_leases_hold_and_never_hangs_the_rest(private_redis):
    """Leases are reservations Redis already granted: while Redis stops answering, a replica admits on them;
    past them, requests fail closed within the timeout (503), never hang; when Redis is back, so are the
    leases, and what was spent on the old ones is counted."""
    url, proc = private_redis

    async def main():
        lim = limiter("redis", "s:", redis={"url": url, "timeout": 0.2, "retry_interval": 0.3,
                                            "lease": {"requests": 4, "seconds": 30, "share": 1}},
                      budgets=[{"limit": "10", "period": "total"}])
        first = await lim.admit(MASTER, "cheap", BODY)
        os.kill(proc.pid, signal.SIGSTOP)
        held = [await asyncio.wait_for(lim.admit(MASTER, "cheap", BODY), 1) for _ in range(3)]
        assert all(t.leased for t in held)  # the lease's other three requests
        results = await asyncio.wait_for(asyncio.gather(
            *(lim.admit(MASTER, "cheap", BODY) for _ in range(5)), return_exceptions=True), 5)
        assert all(isinstance(r, LimitsUnavailable) for r in results)
        for t in [first, *held]:
            lim.settle(t, Usage(30, 20), Decimal("0.001"))
        os.kill(proc.pid, signal.SIGCONT)
        await asyncio.sleep(0.4)  # past retry_interval
        t = await asyncio.wait_for(lim.admit(MASTER, "cheap", BODY), 2)
        lim.settle(t, Usage(30, 20), Decimal("0.001"))
        await lim.close()
        import redis.asyncio as aioredis
        client = aioredis.Redis.from_url(url)
        spent = int(await client.hget("s:b:global:total:0", "spent") or 0)
        await client.aclose()
        assert spent == 5 * to_units(Decimal("0.001"))  # nothing admitted on a lease went uncounted
    run(main())
