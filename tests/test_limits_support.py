"""Support for the limits tests (no tests here): a real Redis on 127.0.0.1:6379 under a unique key prefix,
and Limiters built from a `limits:` dict over a small priced model set."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from decimal import Decimal

from hedgeway.limits.admission import Limiter
from hedgeway.limits.config import LimitsIn
from hedgeway.types import Deployment, PriceCard

REDIS_URL = os.environ.get("HEDGEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# $1 / $2 per million input / output tokens; "pricey" is 10x and is "cheap"'s fallback.
MODELS = {
    "cheap": (Deployment(id="cheap/1", model_name="cheap", provider="openai", model="c",
                         price=PriceCard(Decimal(1), Decimal(2))),),
    "pricey": (Deployment(id="pricey/1", model_name="pricey", provider="openai", model="p",
                          price=PriceCard(Decimal(10), Decimal(20)), rpm=2),),
}
FALLBACKS = {"cheap": ["pricey"]}


def redis_available() -> str | None:
    """None if Redis answers PING, else the reason."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return None if s.recv(16).startswith(b"+PONG") else "no PONG"
    except OSError as exc:
        return str(exc)


def new_prefix() -> str:
    return f"hwtest-{uuid.uuid4().hex[:10]}:"


async def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    keys = [k async for k in client.scan_iter(f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return len(keys)


def limiter(backend: str = "memory", prefix: str = "", **kw) -> Limiter:
    cfg = {"backend": backend, **kw}
    if backend == "redis":
        cfg.setdefault("redis", {})
        # per-request reservations unless a test asks for leases (test_limits_leases.py)
        cfg["redis"] = {"url": REDIS_URL, "prefix": prefix, "lease": {"requests": 0}, **cfg["redis"]}
    return Limiter(LimitsIn.model_validate(cfg), MODELS, FALLBACKS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(coro)
