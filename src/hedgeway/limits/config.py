"""The `limits:` config section: global budgets, per-model rate limits, their backend, and alerts.

    limits:
      backend: redis                     # memory (one process, the default) | redis (shared by replicas)
      redis: {url: os.environ/REDIS_URL, prefix: "hedgeway:", timeout: 0.25}   # one multiplexed connection
      # redis.lease: {requests: 32, seconds: 1, share: 0.05}  # leases (leases.py); requests: 0 turns them off
      fail: closed                       # redis unreachable: closed (503) | open (local in-memory limits)
      budgets: [{limit: "500.00", period: monthly}]          # global budgets (scope "global")
      models: {gpt-4o: {rpm: 60, tpm: 200000}}               # per logical model name (scope "model:<name>")
      default_max_tokens: 4096           # reserved output when a request sets no max_tokens
      bytes_per_token: 3                 # prompt-size estimate (UTF-8 bytes per token; 1 = hard upper bound)
      reserve_margin: 0.1                # reservations hold 10 % more than the estimate (other tokenizers)
      reservation_ttl: 900               # seconds an unsettled reservation is held (crash safety)
      budget_wait: 10                    # seconds a request may wait for in-flight reservations to settle
      window: 60                         # rate-limit window, seconds (sliding log; 60 = per minute)
      alerts: {thresholds: [0.8], webhook: https://hooks.example/x, format: json}   # or format: slack

Money is `Decimal`; secrets (`redis.url`, `alerts.webhook`) may be written `os.environ/NAME`.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from hedgeway.strict import Strict

ENV_PREFIX = "os.environ/"
PERIODS = ("daily", "weekly", "monthly", "total")


def _env(value: str | None) -> str | None:
    """`os.environ/NAME` → the variable's value (ValueError naming the variable, never a value)."""
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):]
    if name not in os.environ:
        raise ValueError(f"environment variable {name} is not set")
    return os.environ[name]


class BudgetIn(Strict):
    limit: Decimal = Field(gt=0)
    period: Literal["daily", "weekly", "monthly", "total"] = "monthly"


class RateIn(Strict):
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class LeaseIn(Strict):
    requests: int = Field(32, ge=0)  # a lease asks for this many requests' worth; 0 or 1: no leases
    seconds: float = Field(1.0, gt=0, le=60)  # a lease admits for at most this long
    share: float = Field(0.05, gt=0, le=1)  # and never holds more than this share of the room left


class RedisIn(Strict):
    url: str = Field("redis://127.0.0.1:6379/0", repr=False)
    prefix: str = Field("hedgeway:", min_length=1)
    timeout: float = Field(0.25, gt=0, le=10)  # no reply byte for this long: Redis is down (never hang a request)
    retry_interval: float = Field(1.0, gt=0)  # after an error, Redis is retried at most this often
    connect_timeout: float = Field(1.0, gt=0, le=10)
    # Accepted so existing configs keep loading; unused since each process talks to Redis over one
    # multiplexed connection (redis_wire.py), which has no pool to size or wait for.
    max_connections: int = Field(16, ge=1)
    pool_timeout: float = Field(2.0, gt=0)
    lease: LeaseIn = LeaseIn()

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = _env(v)
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v


class AlertsIn(Strict):
    thresholds: list[float] = Field(default_factory=lambda: [0.8])
    webhook: str | None = Field(None, repr=False)
    format: Literal["json", "slack"] = "json"
    timeout: float = Field(5.0, gt=0)
    retries: int = Field(5, ge=0, le=20)
    backoff: float = Field(0.5, gt=0)  # seconds before the first retry, doubled each time

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        for t in v:
            if not 0 < t <= 1:
                raise ValueError("each threshold is a fraction of the budget in (0, 1], e.g. 0.8")
        return sorted(set(v))

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        v = _env(v)
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v


class LimitsIn(Strict):
    backend: Literal["memory", "redis"] = "memory"
    redis: RedisIn = RedisIn()
    fail: Literal["closed", "open"] = "closed"
    budgets: list[BudgetIn] = []
    models: dict[str, RateIn] = {}
    default_max_tokens: int = Field(4096, ge=1)
    bytes_per_token: float = Field(3.0, ge=1)
    reserve_margin: float = Field(0.1, ge=0, le=10)
    reservation_ttl: float = Field(900.0, ge=1)
    budget_wait: float = Field(10.0, ge=0)
    window: float = Field(60.0, ge=1)
    alerts: AlertsIn = AlertsIn()

    @property
    def leasing(self) -> bool:
        """Admission on budget and rate leases (Redis backend, leases of more than one request)."""
        return self.backend == "redis" and self.redis.lease.requests > 1
