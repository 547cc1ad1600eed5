"""Routing: which deployments serve a request, in what order.

`Planner.plan(model_name, body)` is pure (no I/O): it returns a `Plan` — the ordered groups to try (the
requested model's deployments ordered by the balancing strategy, then each fallback model's) and the
routing decision for the ledger and the `x-hedgeway-route` header (None when there was nothing to decide).
Balancers are picked from `BALANCERS` by name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hedgeway.errors import NotFound
from hedgeway.types import Deployment

Group = tuple[Deployment, ...]


@dataclass(slots=True)
class Plan:
    groups: list[Group]
    route: dict[str, Any] | None = None  # the decision (router, score, tier), when a router made one


def least_in_flight(group: Group, inflight: Mapping[str, int]) -> Group:
    """Fewest requests in flight per unit of weight first; ties broken at random so load spreads."""
    return tuple(sorted(group, key=lambda d: (inflight.get(d.id, 0) / d.weight, random.random())))


def weighted(group: Group, inflight: Mapping[str, int]) -> Group:
    """A weighted random order (Efraimidis–Spirakis keys): the first pick is proportional to weight."""
    return tuple(sorted(group, key=lambda d: random.random() ** (1.0 / d.weight), reverse=True))


BALANCERS: dict[str, Callable[[Group, Mapping[str, int]], Group]] = {
    "least-in-flight": least_in_flight,
    "weighted": weighted,
}


class Planner:
    def __init__(self, models: Mapping[str, Group], fallbacks: Mapping[str, Sequence[str]], strategy: str):
        self.models = models
        self.fallbacks = fallbacks
        self.balance = BALANCERS[strategy]
        self.strategy = strategy
        self.inflight: dict[str, int] = {d.id: 0 for group in models.values() for d in group}

    def plan(self, model_name: str, body: Mapping[str, Any] | None = None) -> Plan:
        """Ordered groups to try; raises NotFound (404) for a model name the config does not declare.
        `body` is the request (routers read the prompt from it)."""
        group = self.models.get(model_name)
        if group is None:
            raise NotFound(f"The model `{model_name}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        groups = [group if len(group) == 1 else self.balance(group, self.inflight)]
        for name in self.fallbacks.get(model_name, ()):
            fb = self.models[name]
            groups.append(fb if len(fb) == 1 else self.balance(fb, self.inflight))
        return Plan(groups)
