"""The Redis limits store's own contract: Lua period arithmetic, keys under the prefix, and what happens
when Redis is unreachable (a closed port) or stops answering (a real redis-server we start and SIGSTOP):
fail-closed refuses with 503, fail-open admits against local limits; never a hang, logged once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from conftest import require_service
from hedgeway.errors import BudgetExceeded, LimitsUnavailable
from hedgeway.limits.periods import bounds
from hedgeway.limits.redis_store import COMMON
from hedgeway.types import Principal, Usage
from test_limits_support import REDIS_URL, delete_prefix, free_port, limiter, new_prefix, redis_available, run

MASTER = Principal(key_id="master")
BODY = {"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@pytest.fixture()
def prefix():
    reason = redis_available()
    if reason:
        require_service("Redis", reason)
    p = new_prefix()
    yield p
    run(delete_prefix(p))


def _ts(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def test_lua_periods_match_python(prefix):
    """The script's UTC period starts (from Redis TIME) equal periods.bounds for awkward dates."""
    import redis.asyncio as aioredis

    probe = COMMON.replace("redis.call('TIME')", "{ARGV[1], '0'}") + "return {bounds(ARGV[2])}"
    moments = [_ts(2024, 2, 29, 23, 59, 59), _ts(2024, 3, 1), _ts(2023, 12, 31, 12), _ts(2024, 1, 1),
               _ts(2026, 11, 30, 23), _ts(2000, 2, 29, 1), _ts(2100, 3, 1), _ts(2025, 9, 1) - 1,
               _ts(2026, 11, 23), _ts(2026, 11, 29, 23, 59, 59), _ts(1999, 12, 31, 23)]

    async def main():
        client = aioredis.Redis.from_url(REDIS_URL)
        for t in moments:
            for period in ("daily", "weekly", "monthly", "total"):
                start, end = await client.eval(probe, 0, t, period)
                py_start, py_end = bounds(period, t)
                assert (start, end) == (py_start, -1 if py_end is None else py_end), (t, period)
        await client.aclose()
    run(main())


def test_keys_live_under_the_prefix_and_expire(prefix):
    import redis.asyncio as aioredis

    async def main():
        lim = limiter("redis", prefix, budgets=[{"limit": "1", "period": "daily"}], models={"cheap": {"rpm": 5}})
        t = await lim.admit(MASTER, "cheap", BODY)
        lim.settle(t, Usage(3, 3), Decimal("0.0001"))
        await lim.close()
        client = aioredis.Redis.from_url(REDIS_URL)  # the reference client inspects
        keys = [k.decode() async for k in client.scan_iter(f"{prefix}*")]
        assert keys and all(k.startswith(prefix) for k in keys)
        for k in keys:
            assert await client.ttl(k) > 0, k  # nothing outlives its period or window
        assert int(await client.hget(f"{prefix}b:global:daily:{bounds('daily', time.time())[0]}", "spent")) == 100000
        await client.aclose()
    run(main())


def test_fail_closed_on_a_closed_port_is_fast_and_logged_once(caplog):
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def main():
        lim = limiter("redis", "x:", redis={"url": url}, budgets=[{"limit": "1"}])
        for _ in range(20):
            with pytest.raises(LimitsUnavailable) as exc:
                await asyncio.wait_for(lim.admit(MASTER, "cheap", BODY), 10)  # a hang fails, not a slow run
            assert exc.value.status_code == 503
        # fast because the backend was tried once, not per request (until its retry interval)
        assert lim.counts["fail_closed"] == 20 and lim.counts["backend_errors"] == 1
        assert "hedgeway_limits_backend_up 0" in lim.render_metrics()
        await lim.close()
    with caplog.at_level(logging.ERROR, "hedgeway.limits"):
        run(main())
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    assert url not in caplog.text  # the URL may carry a password


def test_fail_open_uses_local_limits():
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def main():
        lim = limiter("redis", "x:", redis={"url": url}, fail="open", budget_wait=0,
                      budgets=[{"limit": "0.0012"}])  # 2 requests of $0.000528 (pricey's prices)
        await lim.admit(MASTER, "cheap", BODY)
        await lim.admit(MASTER, "cheap", BODY)
        with pytest.raises(BudgetExceeded):
            await lim.admit(MASTER, "cheap", BODY)
        assert lim.counts["fail_open"] == 3
        await lim.close()
    run(main())


def test_a_redis_that_stops_answering_never_hangs_a_request(private_redis):
    url, proc = private_redis

    async def main():
        lim = limiter("redis", "s:", redis={"url": url, "timeout": 0.2, "retry_interval": 0.5},
                      budgets=[{"limit": "1"}])
        assert await lim.admit(MASTER, "cheap", BODY) is not None
        os.kill(proc.pid, signal.SIGSTOP)
        # a stopped Redis never answers: only the 0.2 s timeout can end these (a hang fails wait_for)
        results = await asyncio.wait_for(asyncio.gather(
            *(lim.admit(MASTER, "cheap", BODY) for _ in range(10)), return_exceptions=True), 10)
        assert all(isinstance(r, LimitsUnavailable) for r in results)
        os.kill(proc.pid, signal.SIGCONT)
        await asyncio.sleep(0.6)  # past retry_interval: Redis is tried again
        assert await lim.admit(MASTER, "cheap", BODY) is not None
        assert "hedgeway_limits_backend_up 1" in lim.render_metrics()
        await lim.close()
    run(main())
