#!/usr/bin/env python3
"""Reliability bench for budgets and rate limits across replicas (see bench/README.md).

Starts a mock OpenAI upstream (aiohttp, its own process) and N `hedgeway serve` processes sharing the
Redis at 127.0.0.1:6379 (a fresh key prefix) and PostgreSQL database `test` (a fresh schema, dropped
at the end), then runs one of:

  race     R runs of C concurrent requests against a global budget that allows about B of them:
           settled spend (ledger and Redis counter) vs budget, and whether anything was refused while
           the budget left room for one more request
  rpm      saturating load against `rpm` requests per `window` seconds across the replicas: the most
           admissions in any window, and the fewest per consecutive window
  latency  one gateway, concurrency 1: p50/p99 latency and gateway overhead without limits vs with the
           Redis-backed admission (global budget + model rpm/tpm: one reserve and one settle script)

usage: python bench/budget_race.py race [--runs 20] [--concurrency 200] [--allow 50] [--max-tokens 32]
       python bench/budget_race.py rpm [--rpm 60] [--window 60] [--duration 300]
       python bench/budget_race.py latency [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

PG = os.environ.get("BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
MOCK_PORT, BASE_PORT = 18400, 18410
KEY = f"sk-bench-{uuid.uuid4().hex}"
PRICE = {"input": "10", "output": "30"}  # USD per M: a request of 25 + 32 tokens costs $0.00121
COST = Decimal("0.00121")
# 63 bytes: estimated 63/3 + 7 = 28 prompt tokens >= the mock's 25, so the reservation covers the cost.
PROMPT = [{"role": "user", "content": "Say hello to the reliability bench, please, kindly and briefly."}]


# --- mock upstream: OpenAI chat.completion with usage 25 / 32 tokens, after `delay` ms ---
def run_mock(port: int, delay_ms: float) -> None:
    arrivals: list[float] = []  # when each call arrived (GET /arrivals): admissions, as the upstream sees them

    async def times(request):
        return web.json_response(arrivals)

    async def chat(request):
        arrivals.append(time.time())
        body = await request.json()
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return web.json_response({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello " * 32},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 25, "completion_tokens": 32, "total_tokens": 57}})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/arrivals", times)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Cluster:
    """The mock and `replicas` gateways, started with `limits` (None: no limits section); stopped by pid."""

    def __init__(self, replicas: int, limits: dict | None, delay_ms: float = 0, upstream: str | None = None):
        self.tag = uuid.uuid4().hex[:10]
        self.schema, self.prefix = f"hw_bench_{self.tag}", f"hwbench-{self.tag}:"
        self.replicas, self.delay = replicas, delay_ms
        cfg = {"auth": {"master_key": "os.environ/HEDGEWAY_MASTER_KEY"},
               "ledger": {"url": f"{PG}?schema={self.schema}"},
               "models": [{"name": "fast", "deployments": [{
                   "provider": "openai", "model": "gpt-bench", "api_key": "sk-dummy", "price": PRICE,
                   "api_base": upstream or f"http://127.0.0.1:{MOCK_PORT}/v1"}]}]}
        if limits is not None:
            cfg["limits"] = {"backend": "redis", "redis": {"url": REDIS, "prefix": self.prefix}, **limits}
        self.dir = tempfile.mkdtemp(prefix="hw-bench-")
        self.config = Path(self.dir, "hedgeway.yaml")
        self.config.write_text(yaml.safe_dump(cfg))
        self.procs: list[subprocess.Popen] = []
        self.urls = [f"http://127.0.0.1:{BASE_PORT + i}/v1/chat/completions" for i in range(replicas)]

    def __enter__(self):
        env = {**os.environ, "HEDGEWAY_MASTER_KEY": KEY}
        self.procs.append(subprocess.Popen([sys.executable, __file__, "_mock", str(self.delay)]))
        for i in range(self.replicas):
            log = open(Path(self.dir, f"gw{i}.log"), "w")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "hedgeway", "serve", "--config", str(self.config), "--port",
                 str(BASE_PORT + i)], env=env, stdout=log, stderr=subprocess.STDOUT))
        asyncio.run(self._wait_ready())
        return self

    async def _wait_ready(self):
        async with aiohttp.ClientSession() as s:
            for url in [u.replace("/v1/chat/completions", "/healthz") for u in self.urls]:
                for _ in range(150):
                    try:
                        async with s.get(url) as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"{url} not ready; logs in {self.dir}")

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        asyncio.run(self.reset())

    def sql(self, query: str, *args):
        import psycopg
        with psycopg.connect(PG, autocommit=True) as conn:
            cur = conn.execute(query, args)
            return cur.fetchall() if cur.description else None

    async def reset(self) -> None:
        """Delete every Redis key of this cluster (a fresh budget and fresh windows)."""
        import redis.asyncio as aioredis
        client = aioredis.Redis.from_url(REDIS)
        keys = [k async for k in client.scan_iter(f"{self.prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    async def redis_spent(self) -> Decimal:
        import redis.asyncio as aioredis
        client = aioredis.Redis.from_url(REDIS)
        total = 0
        async for k in client.scan_iter(f"{self.prefix}b:global:*", count=1000):
            if k.count(b":") == 4:
                total += int(await client.hget(k, "spent") or 0)
        await client.aclose()
        return Decimal(total) / 10 ** 9


async def post(s: aiohttp.ClientSession, url: str, max_tokens: int = 32):
    t0 = time.perf_counter()
    async with s.post(url, json={"model": "fast", "messages": PROMPT, "max_tokens": max_tokens},
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        await r.read()
        return r.status, time.perf_counter() - t0, r.headers.get("x-hedgeway-overhead-ms")


def race(a) -> None:
    budget = COST * a.allow + Decimal("0.0005")  # room for `allow` requests, not for one more reservation
    from hedgeway.limits.estimate import Estimator
    prompt = Estimator(3, 4096).prompt_tokens({"messages": PROMPT})
    reservation = Decimal(10 * prompt + 30 * a.max_tokens) / 10 ** 6
    worst, refused_with_room = Decimal("-1"), 0
    print(f"budget ${budget} (global, daily); {a.concurrency} concurrent requests; {a.replicas} replicas; "
          f"actual cost ${COST}, reservation ${reservation} per request; upstream {a.delay} ms")
    limits = {"budgets": [{"limit": str(budget), "period": "daily"}], "budget_wait": 10}
    with Cluster(a.replicas, limits, a.delay) as c:
        for run in range(1, a.runs + 1):
            asyncio.run(c.reset())
            t0 = time.time()

            async def burst():
                conn = aiohttp.TCPConnector(limit=0)
                async with aiohttp.ClientSession(connector=conn) as s:
                    return await asyncio.gather(*(post(s, c.urls[i % a.replicas], a.max_tokens)
                                                  for i in range(a.concurrency)))
            statuses = [r[0] for r in asyncio.run(burst())]
            time.sleep(0.6)  # the ledger writers flush every 20 ms; settles run in the background
            (n, spent), = c.sql("SELECT count(*), coalesce(sum(cost), 0) FROM "
                                f"{c.schema}.requests WHERE ts >= %s AND status = 200", t0)
            counter = asyncio.run(c.redis_spent())
            left = budget - spent
            room = left >= reservation and statuses.count(429) > 0
            refused_with_room += room
            worst = max(worst, spent - budget)
            print(f"run {run:2}: 200={statuses.count(200):3} 429={statuses.count(429):3} "
                  f"other={len(statuses) - statuses.count(200) - statuses.count(429)} ledger spend ${spent} "
                  f"(redis counter ${counter}) left ${left} {'REFUSED WITH ROOM' if room else ''}")
            time.sleep(0.2)
    print(f"worst over {a.runs} runs: settled spend - budget = ${worst} "
          f"({'overspend' if worst > 0 else 'no overspend'}); runs refusing while a request still fit: "
          f"{refused_with_room}")


def window_stats(ts: list[float], window: float, duration: float) -> tuple[int, list[int]]:
    """(most admissions in any [t, t + window), counts per consecutive window inside the load)."""
    ts = sorted(ts)
    most, j = 0, 0
    for i in range(len(ts)):
        while j < len(ts) and ts[j] < ts[i] + window:
            j += 1
        most = max(most, j - i)
    buckets = [0] * int((ts[-1] - ts[0]) // window + 1)
    for t in ts:
        buckets[int((t - ts[0]) // window)] += 1
    return most, buckets[:int(duration // window) - 1]  # whole windows inside the load


def rpm(a) -> None:
    limits = {"models": {"fast": {"rpm": a.rpm}}, "window": a.window}
    print(f"limit {a.rpm} per {a.window:g} s on model fast, {a.replicas} replicas, {a.clients} client loops, "
          f"{a.duration:g} s")
    with Cluster(a.replicas, limits) as c:
        async def load():
            end = time.time() + a.duration
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                async def loop(i):
                    while time.time() < end:
                        status, _, _ = await post(s, c.urls[i % a.replicas], 8)
                        if status != 200:
                            await asyncio.sleep(0.02)  # saturating, but no busy spin on refusals
                await asyncio.gather(*(loop(i) for i in range(a.clients)))
                async with s.get(f"http://127.0.0.1:{MOCK_PORT}/arrivals") as r:
                    return await r.json()
        t0 = time.time()
        upstream = asyncio.run(load())
        time.sleep(0.6)
        ts = [r[0] for r in c.sql(f"SELECT ts FROM {c.schema}.requests WHERE status = 200 AND ts >= %s", t0)]
        refused = c.sql(f"SELECT count(*) FROM {c.schema}.requests WHERE status = 429")[0][0]
    print(f"admitted {len(ts)} (ledger), {len(upstream)} (upstream); refused {refused}")
    # Admission happens between a request's arrival at a replica and its call upstream: with leases there is
    # no per-request log in Redis to read (tests/test_limits_leases.py checks the admission times themselves).
    for label, times in (("upstream arrivals (just after admission)", upstream),
                         ("ledger ts (arrival at the replica)", ts)):
        most, full = window_stats(times, a.window, a.duration)
        print(f"  {label}: max in any {a.window:g} s window {most} (limit {a.rpm}); per consecutive window "
              f"min {min(full)}, max {max(full)}: {full}")


def latency(a) -> None:
    full = {"budgets": [{"limit": "1000000", "period": "monthly"}],
            "models": {"fast": {"rpm": 10 ** 7, "tpm": 10 ** 9}}}
    rows = {}
    for label, limits in (("no limits", None), ("redis admission", full)) * a.repeats:
        with Cluster(1, limits) as c:
            async def seq():
                async with aiohttp.ClientSession() as s:
                    for _ in range(300):  # warm-up
                        await post(s, c.urls[0])
                    return [await post(s, c.urls[0]) for _ in range(a.requests)]
            res = asyncio.run(seq())
        lat = sorted(r[1] * 1000 for r in res)
        ovh = sorted(float(r[2]) for r in res if r[2])
        assert all(r[0] == 200 for r in res), "non-200 answers"
        rows.setdefault(label, []).append((lat[len(lat) // 2], lat[int(len(lat) * 0.99)], ovh[len(ovh) // 2]))
        print(f"{label:16} p50 {lat[len(lat) // 2]:.3f} ms  p99 {lat[int(len(lat) * .99)]:.3f} ms  "
              f"gateway overhead p50 {ovh[len(ovh) // 2]:.3f} ms")
    med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
    print(f"added by the redis admission (medians of {a.repeats}): p50 {med['redis admission'][0] - med['no limits'][0]:+.3f} ms, "
          f"p99 {med['redis admission'][1] - med['no limits'][1]:+.3f} ms, "
          f"overhead p50 {med['redis admission'][2] - med['no limits'][2]:+.3f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_mock":
        return run_mock(MOCK_PORT, float(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("race")
    r.add_argument("--runs", type=int, default=20)
    r.add_argument("--concurrency", type=int, default=200)
    r.add_argument("--allow", type=int, default=50)
    r.add_argument("--replicas", type=int, default=4)
    r.add_argument("--delay", type=float, default=20, help="upstream latency, ms")
    r.add_argument("--max-tokens", type=int, default=32, help="the mock always answers 32 tokens")
    m = sub.add_parser("rpm")
    m.add_argument("--rpm", type=int, default=60)
    m.add_argument("--window", type=float, default=60)
    m.add_argument("--duration", type=float, default=300)
    m.add_argument("--replicas", type=int, default=4)
    m.add_argument("--clients", type=int, default=8)
    lt = sub.add_parser("latency")
    lt.add_argument("--requests", type=int, default=3000)
    lt.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    {"race": race, "rpm": rpm, "latency": latency}[a.cmd](a)


if __name__ == "__main__":
    main()
