"""Admission: model access, rate limits and budget reservations, before the cache and the router.

The pipeline calls, per request:

    ticket = await admission.admit(principal, model_name, body)   # may raise (403, 429, 503)
    await admission.deployment(dep, ticket)    # before each upstream attempt: deployment rpm/tpm;
                                               # raises UpstreamRateLimited (fallback-eligible) when full
    admission.settle(ticket, usage, cost)      # exactly once when the request ends (cost 0 on a cache
                                               # hit or a failure); never blocks, never raises

`build_admission(config)` builds the `Limiter` (limits/admission.py); `Unlimited` admits everything.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from hedgeway.types import Deployment, Principal, Usage


class Admission(Protocol):
    async def admit(self, principal: Principal, model: str, body: dict[str, Any]) -> Any: ...

    async def deployment(self, dep: Deployment, ticket: Any) -> None: ...

    def settle(self, ticket: Any, usage: Usage, cost: Decimal) -> None: ...

    def restore(self, ledger: Any, ring: Any) -> None: ...  # at start: spend settled before a restart

    def render_metrics(self) -> str: ...  # Prometheus text, read at scrape time

    async def close(self) -> None: ...


class Unlimited:
    """No keys' caps, no budgets, no rate limits: admits everything at no cost."""

    async def admit(self, principal: Principal, model: str, body: dict[str, Any]) -> None:
        return None

    async def deployment(self, dep: Deployment, ticket: Any) -> None:
        return None

    def settle(self, ticket: Any, usage: Usage, cost: Decimal) -> None:
        return None

    def restore(self, ledger: Any, ring: Any) -> None:
        return None

    def render_metrics(self) -> str:
        return ""

    async def close(self) -> None:
        return None


def build_admission(config: Any) -> Admission:
    """A `Limiter` over the configured backend (memory by default). It admits a request that no budget or
    limit applies to without touching its store, so a config without limits costs a few attribute reads.
    Raises ConfigError for limits on model names the config does not declare."""
    from hedgeway.errors import ConfigError
    from hedgeway.limits.admission import Limiter

    limits = config.limits
    for name in limits.models:
        if name not in config.models:
            raise ConfigError(f"limits.models.{name}", f"unknown model name {name!r}")
    return Limiter(limits, config.models, config.routing.fallbacks)
